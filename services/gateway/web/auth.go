package web

import (
	"net/http"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/gateway"
)

// home is /: the sign-in page, or the desk of the user's first role.
func (s *site) home(v *view) error {
	if v.Me == nil {
		return s.loginForm(v)
	}
	v.redirect(homeOf(v))
	return nil
}

// homeOf is where a user's work starts.
func homeOf(v *view) string {
	switch {
	case v.Has(assist.RoleApprover):
		return "/queue"
	case v.Has(assist.RoleRequester):
		return "/requests"
	case v.Has(assist.RoleFinance):
		return "/funds"
	case v.Has(assist.RoleAuditor):
		return "/audit"
	case v.Has(assist.RoleAdmin):
		return "/admin"
	}
	return "/requests"
}

type loginData struct {
	Form  *form
	Next  string
	Ended string
	// SSO is the address of "Sign in with SSO", "" without single
	// sign-on.
	SSO string
}

// ssoLink is where "Sign in with SSO" goes (the API's redirect to the
// identity provider), "" without single sign-on.
func (s *site) ssoLink(next string) string {
	if !s.cfg.SSO {
		return ""
	}
	return query("/v1/auth/oidc/login", "next", next)
}

// loginForm is the sign-in page (/, /login).
func (s *site) loginForm(v *view) error {
	if v.Me != nil {
		v.redirect(homeOf(v))
		return nil
	}
	d := loginData{Form: newForm(), Next: localPath(v.r.URL.Query().Get("next"))}
	d.SSO = s.ssoLink(d.Next)
	switch v.r.URL.Query().Get("ended") {
	case "idle":
		d.Ended = v.L.T("login.ended.idle")
	case "expired":
		d.Ended = v.L.T("login.ended.expired")
	case "out":
		d.Ended = v.L.T("login.ended.out")
	}
	v.render(http.StatusOK, "login", v.L.T("login.title"), d)
	return nil
}

// login is POST /login: it signs in through the API (POST
// /v1/auth/token?cookie=1), which sets the session cookie.
func (s *site) login(v *view) error {
	f := formFrom(v.r, "username", "password")
	f.Values["password"] = v.r.PostForm.Get("password") // as typed
	next := localPath(v.r.PostForm.Get("next"))
	f.require(v.L, "username", "password")
	if f.OK() {
		res, err := s.api.do(v.ctx(), call{method: http.MethodPost, path: "/v1/auth/token?cookie=1",
			body: map[string]string{"username": f.V("username"), "password": f.V("password")}})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			var tok tokenJSON
			if err := res.decode(&tok); err != nil {
				return err
			}
			for _, c := range res.Header.Values("Set-Cookie") {
				v.w.Header().Add("Set-Cookie", c)
			}
			s.touch(v.w, tok.Token)
			if next == "/" || next == "/login" {
				next = "/"
			}
			v.redirect(next)
			return nil
		}
		switch res.Problem.Status {
		case http.StatusUnauthorized:
			f.Fail("password", v.L.T("login.wrong"))
		case http.StatusTooManyRequests:
			f.Summary = append(f.Summary, v.L.T("login.slow"))
		default:
			f.fromProblem(v.L, res.Problem)
		}
	}
	f.Values["password"] = "" // never sent back
	v.render(http.StatusUnauthorized, "login", v.L.T("login.title"), loginData{Form: f, Next: next, SSO: s.ssoLink(next)})
	return nil
}

// logout is POST /logout: the API revokes the token and clears the cookie.
func (s *site) logout(v *view) error {
	res, err := v.call(call{method: http.MethodDelete, path: "/v1/auth/token"})
	if err != nil {
		return err
	}
	for _, c := range res.Header.Values("Set-Cookie") {
		v.w.Header().Add("Set-Cookie", c)
	}
	s.clearSession(v.w)
	v.redirect("/login?ended=out")
	return nil
}

// setLanguage is POST /lang: the user's choice of language, kept in this
// browser.
func (s *site) setLanguage(v *view) error {
	lang := v.r.PostForm.Get("lang")
	if supported(lang) {
		http.SetCookie(v.w, s.cookie(langCookie, lang, 365*24*3600))
	}
	v.redirect(localPath(v.r.PostForm.Get("back")))
	return nil
}

// ssoCallback is GET /login/sso/callback, where the identity provider
// sends the browser back: the API (GET /v1/auth/oidc/callback?cookie=1,
// given the sign-on's cookie) checks everything and sets the session
// cookie. The page that follows moves on by itself (a Refresh, and a
// link): the session cookie is SameSite=Strict, and a redirect that
// continues the provider's cross-site navigation would arrive without it.
func (s *site) ssoCallback(v *view) error {
	if !s.cfg.SSO {
		return s.notFound(v)
	}
	q := v.r.URL.Query()
	q.Set("cookie", "1")
	c := call{method: http.MethodGet, path: "/v1/auth/oidc/callback?" + q.Encode()}
	if flow, err := v.r.Cookie(gateway.SSOCookie); err == nil {
		c.cookie = (&http.Cookie{Name: flow.Name, Value: flow.Value}).String()
	}
	res, err := s.api.do(v.ctx(), c)
	if err != nil {
		return err
	}
	for _, c := range res.Header.Values("Set-Cookie") {
		v.w.Header().Add("Set-Cookie", c)
	}
	if res.Problem != nil {
		msg := "sso.failed"
		switch res.Problem.Status {
		case http.StatusForbidden:
			msg = "sso.norole"
		case http.StatusConflict:
			msg = "sso.local"
		case http.StatusServiceUnavailable:
			msg = "sso.down"
		case http.StatusUnauthorized:
		default:
			return res.Problem
		}
		v.render(res.Problem.Status, "error", v.L.T("sso.title"), errorPage{Message: v.L.T(msg)})
		return nil
	}
	var tok struct {
		tokenJSON
		Next string `json:"next"`
	}
	if err := res.decode(&tok); err != nil {
		return err
	}
	s.touch(v.w, tok.Token)
	next := localPath(tok.Next)
	if next == "/login" {
		next = "/"
	}
	v.w.Header().Set("Refresh", "0; url="+next)
	v.render(http.StatusOK, "sso", v.L.T("sso.title"), ssoData{Next: next})
	return nil
}

type ssoData struct{ Next string }
