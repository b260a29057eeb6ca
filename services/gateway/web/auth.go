package web

import (
	"net/http"
	"strings"

	"github.com/eva-org/eva/pkg/assist"
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
}

// loginForm is the sign-in page (/, /login).
func (s *site) loginForm(v *view) error {
	if v.Me != nil {
		v.redirect(homeOf(v))
		return nil
	}
	d := loginData{Form: newForm(), Next: localPath(v.r.URL.Query().Get("next"))}
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
	f := formFrom(v.r, "username", "password", "otp")
	f.Values["password"] = v.r.PostForm.Get("password") // as typed
	next := localPath(v.r.PostForm.Get("next"))
	f.require(v.L, "username", "password")
	if f.OK() {
		body := map[string]string{"username": f.V("username"), "password": f.V("password")}
		if code := strings.ReplaceAll(f.V("otp"), " ", ""); code != "" {
			body["otp"] = code
		}
		res, err := s.api.do(v.ctx(), call{method: http.MethodPost, path: "/v1/auth/token?cookie=1", body: body})
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
		switch {
		case res.Problem.Status == http.StatusUnauthorized && names(res.Problem, "otp") && f.V("otp") == "":
			// The password was right: the account signs in with a code.
			f.Fail("otp", v.L.T("login.code.needed"))
		case res.Problem.Status == http.StatusUnauthorized && names(res.Problem, "otp"):
			f.Fail("otp", v.L.apiMessage(res.Problem.Errors[0].Message))
		case res.Problem.Status == http.StatusUnauthorized:
			f.Fail("password", v.L.T("login.wrong"))
		case res.Problem.Status == http.StatusTooManyRequests:
			f.Summary = append(f.Summary, v.L.T("login.slow"))
		default:
			f.fromProblem(v.L, res.Problem)
		}
	}
	f.Values["password"], f.Values["otp"] = "", "" // never sent back
	v.render(http.StatusUnauthorized, "login", v.L.T("login.title"), loginData{Form: f, Next: next})
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

// names reports whether a problem names field.
func names(p *problem, field string) bool {
	for _, fe := range p.Errors {
		if fe.Field == field {
			return true
		}
	}
	return false
}
