// Package web is EVA's web UI (UI.md): server-rendered pages for every
// desk — requester, approver, finance, auditor, admin — served by the
// gateway beside its API. Every page reads, and every form acts, through
// the gateway's own JSON API called in process with the user's token, so
// that the UI has exactly the API's roles, post scoping, validation,
// idempotency and errors, and adds no authorization of its own.
//
// Pages work with JavaScript turned off (every action is a plain form
// with a CSRF token); one small script, shipped in the binary like the
// templates, the styles and the message catalogs, refreshes the queue
// live. Charts are SVG drawn on the server.
package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/klauspost/compress/gzhttp"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/gateway"
)

// Config is the UI's configuration. Zero values take the defaults.
type Config struct {
	// CookieSecure marks the UI's cookies Secure (set it behind HTTPS),
	// as the API's session cookie.
	CookieSecure bool
	// IdleTimeout ends a session nobody used for that long (default 30m).
	IdleTimeout time.Duration
	// SessionTTL bounds the UI's own cookies (default 12h, the API's
	// token lifetime).
	SessionTTL time.Duration
	// QueueRefresh is how often the live queue refreshes (default 15s).
	QueueRefresh time.Duration
	// SSO shows "Sign in with SSO" on the sign-in page and serves
	// /login/sso/callback: set it when the gateway has single sign-on
	// (gateway.Config.OIDC), whose redirect URL is then
	// https://<host>/login/sso/callback.
	SSO bool
}

// Defaults.
const (
	DefaultIdleTimeout  = 30 * time.Minute
	DefaultSessionTTL   = 12 * time.Hour
	DefaultQueueRefresh = 15 * time.Second
)

func (c Config) withDefaults() Config {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.QueueRefresh <= 0 {
		c.QueueRefresh = DefaultQueueRefresh
	}
	return c
}

// Deps is what the UI runs on.
type Deps struct {
	Config Config
	// API is the gateway's JSON API, called in process.
	API    http.Handler
	Logger *zap.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// site is the UI: its templates, catalogs, assets and the API.
type site struct {
	cfg    Config
	api    apiClient
	log    *zap.Logger
	now    func() time.Time
	cat    *catalog
	pages  map[string]*template.Template
	assets *assets
}

// New returns the UI's handler. It serves the pages of UI.md at /, /login,
// /requests..., /queue, /funds..., /payees, /payouts..., /audit...,
// /admin, /users, /policy and its assets at /static/; answers are gzipped
// for clients that accept it.
//
// Errors: a missing API; a template, catalog or asset that does not load.
func New(d Deps) (http.Handler, error) {
	if d.API == nil {
		return nil, errors.New("web: API is required")
	}
	s := &site{cfg: d.Config.withDefaults(), api: apiClient{h: d.API}, log: d.Logger, now: d.Now}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if s.cat, err = newCatalog(); err != nil {
		return nil, err
	}
	if s.assets, err = newAssets(staticFS); err != nil {
		return nil, err
	}
	if s.pages, err = parsePages(s.assets); err != nil {
		return nil, err
	}
	gz, err := gzhttp.NewWrapper(gzhttp.MinSize(512), gzhttp.ContentTypes([]string{
		"text/html", "text/css", "text/javascript", "image/svg+xml", "text/csv", "application/jsonl", "application/json"}))
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	return gz(s.routes()), nil
}

// routes maps the UI's paths.
func (s *site) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.headers, s.recoverer)
	r.NotFound(s.page(anyone, s.notFound))
	r.MethodNotAllowed(s.page(anyone, s.notFound))
	r.Get("/static/{name}", s.assets.serve)

	r.Get("/", s.page(anyone, s.home))
	r.Get("/login", s.page(anyone, s.loginForm))
	r.Post("/login", s.action(anyone, s.login))
	r.Get("/login/sso/callback", s.page(anyone, s.ssoCallback))
	r.Post("/logout", s.action(signedIn, s.logout))
	r.Post("/lang", s.action(anyone, s.setLanguage))

	r.Get("/requests", s.page(signedIn, s.requestList))
	r.Get("/requests/new", s.page(signedIn, s.fileForm))
	r.Post("/requests/new", s.action(signedIn, s.file))
	r.Get("/requests/{id}", s.page(signedIn, s.casePage))
	r.Get("/requests/{id}/amend", s.page(signedIn, s.amendForm))
	r.Get("/requests/{id}/as-of", s.page(signedIn, s.asOfPage))
	r.Post("/requests/{id}/as-of", s.action(signedIn, s.asOf))
	r.Post("/requests/{id}/beneficiary", s.action(signedIn, s.beneficiary))
	r.Post("/requests/{id}/{command}", s.action(signedIn, s.caseCommand))

	r.Get("/queue", s.page(signedIn, s.queuePage))

	r.Get("/funds", s.page(signedIn, s.fundList))
	r.Post("/funds", s.action(signedIn, s.createFund))
	r.Get("/funds/{id}", s.page(signedIn, s.fundPage))
	r.Post("/funds/{id}/allocation", s.action(signedIn, s.changeAllocation))
	r.Get("/payees", s.page(signedIn, s.payeeList))
	r.Post("/payees", s.action(signedIn, s.createPayee))
	r.Get("/payouts", s.page(signedIn, s.payoutList))
	r.Post("/payouts/{id}/{command}", s.action(signedIn, s.payoutCommand))

	r.Get("/audit", s.page(signedIn, s.auditPage))
	r.Post("/audit/verify", s.action(signedIn, s.verify))
	r.Post("/audit/access", s.action(signedIn, s.accessLog))
	r.Post("/audit/export", s.action(signedIn, s.export))

	r.Get("/admin", s.page(signedIn, s.adminPage))
	r.Get("/admin/erase", s.page(signedIn, s.eraseForm))
	r.Post("/admin/erase", s.action(signedIn, s.erase))
	r.Get("/users", s.page(signedIn, s.usersPage))
	r.Post("/users", s.action(signedIn, s.createUser))
	r.Post("/users/{username}", s.action(signedIn, s.changeUser))
	r.Get("/policy", s.page(signedIn, s.policyPage))
	r.Post("/policy", s.action(signedIn, s.changePolicy))
	r.Get("/webhooks", s.page(signedIn, s.webhookList))
	r.Post("/webhooks", s.action(signedIn, s.createWebhook))
	r.Post("/webhooks/{id}/remove", s.action(signedIn, s.removeWebhook))
	return r
}

// headers sets the headers of every answer of the UI: the gateway's
// security headers (one policy for the API and the UI), and Vary.
func (s *site) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		gateway.SecurityHeaders(h)
		h.Add("Vary", "Cookie")
		h.Add("Vary", "Accept-Language")
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panic into an error page: never a blank page or a
// stack trace in the browser; the stack goes to the log.
func (s *site) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if rv := recover(); rv != nil {
				if rv == http.ErrAbortHandler {
					panic(rv)
				}
				s.log.Error("web: panic", zap.String("path", r.URL.Path), zap.Any("panic", rv),
					zap.ByteString("stack", debug.Stack()))
				v := &view{s: s, w: w, r: r, L: s.cat.loc(s.cat.choose(r))}
				v.fail(errors.New("panic"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// Who may open a page: anyone, or only a signed-in user (others are sent
// to sign in). Roles are the API's business: a page whose API calls are
// refused shows the refusal.
type access int

const (
	anyone access = iota
	signedIn
)

// view is one request to the UI: who asks, in which language, and how to
// answer.
type view struct {
	s     *site
	w     http.ResponseWriter
	r     *http.Request
	L     *loc
	token string
	Me    *me
	csrf  string
}

// ctx is the request's context.
func (v *view) ctx() context.Context { return v.r.Context() }

// Has reports whether the user holds role.
func (v *view) Has(role string) bool { return v.Me != nil && slices.Contains(v.Me.Roles, role) }

// call calls the API as the user.
func (v *view) call(c call) (*result, error) {
	c.token = v.token
	return v.s.api.do(v.ctx(), c)
}

// page makes the handler of a GET page.
func (s *site) page(who access, h func(v *view) error) http.HandlerFunc {
	return s.handle(who, false, h)
}

// action makes the handler of a form's POST: its CSRF token must be the
// session's (else 403, and nothing is done).
func (s *site) action(who access, h func(v *view) error) http.HandlerFunc {
	return s.handle(who, true, h)
}

func (s *site) handle(who access, post bool, h func(v *view) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := &view{s: s, w: w, r: r, L: s.cat.loc(s.cat.choose(r)), token: sessionToken(r)}
		if v.token != "" && !s.loadUser(v) {
			return
		}
		if who == signedIn && v.Me == nil {
			if post {
				v.redirect("/login")
			} else {
				v.redirect(query("/login", "next", localPath(r.URL.RequestURI())))
			}
			return
		}
		if v.Me != nil {
			v.csrf = csrfToken(v.token)
		} else {
			v.csrf = csrfToken(s.preSecret(w, r))
		}
		if post {
			if err := r.ParseForm(); err != nil || !validCSRF(r, r.PostForm.Get("csrf")) {
				v.render(http.StatusForbidden, "error", v.L.T("error.csrf.title"), errorPage{Message: v.L.T("error.csrf")})
				return
			}
		}
		if err := h(v); err != nil {
			v.fail(err)
		}
	}
}

// loadUser reads who holds the session's token, ending an idle or revoked
// session; false when it answered (a redirect to sign in).
func (s *site) loadUser(v *view) bool {
	seen, ok := lastSeen(v.r, v.token)
	if !ok || s.now().Sub(seen) > s.cfg.IdleTimeout {
		// Idle (or not a session the UI began): end it for good.
		_, _ = s.api.do(v.ctx(), call{method: http.MethodDelete, path: "/v1/auth/token", token: v.token})
		s.clearSession(v.w)
		v.token = ""
		if ok {
			v.redirect("/login?ended=idle")
			return false
		}
		return true
	}
	if exp, ok := gateway.AccessExpiry(v.token); ok && s.now().After(exp.Add(-renewBefore)) {
		s.renew(v)
	}
	u, err := get[me](v.ctx(), s.api, v.token, "/v1/me")
	var p *problem
	switch {
	case errors.As(err, &p) && p.Status == http.StatusUnauthorized:
		s.clearSession(v.w)
		v.token = ""
		v.redirect("/login?ended=expired")
		return false
	case err != nil:
		v.fail(err)
		return false
	}
	v.Me = &u
	// A live refresh is not the user's activity.
	if v.r.Header.Get("X-EVA-Refresh") == "" {
		s.touch(v.w, v.token)
	}
	return true
}

// renewBefore is how long before its access expiry the UI renews the
// session's token, so that pages keep working while the gateway's
// database is down.
const renewBefore = time.Minute

// renew replaces the session's token with a fresh one (POST
// /v1/auth/refresh?cookie=1, which sets the cookie). A failure (the
// database down) leaves the token as it is: it still works while its
// session does, reading it.
func (s *site) renew(v *view) {
	res, err := s.api.do(v.ctx(), call{method: http.MethodPost, path: "/v1/auth/refresh?cookie=1", token: v.token})
	if err != nil || res.Problem != nil {
		return
	}
	var tok tokenJSON
	if res.decode(&tok) != nil || tok.Token == "" {
		return
	}
	for _, c := range res.Header.Values("Set-Cookie") {
		v.w.Header().Add("Set-Cookie", c)
	}
	v.token = tok.Token
}

// redirect answers 303 See Other to a local path.
func (v *view) redirect(to string) {
	http.Redirect(v.w, v.r, localPath(to), http.StatusSeeOther)
}

// localPath keeps a redirect on this site: anything but a path that
// starts with a single "/" becomes "/".
func localPath(p string) string { return gateway.LocalPath(p) }

// errorPage is the body of an error page.
type errorPage struct {
	Message string
	Detail  string
}

// fail answers an error as a page: a problem of the API with its meaning,
// anything else as "try again" (logged, never shown).
func (v *view) fail(err error) {
	var p *problem
	if !errors.As(err, &p) {
		v.s.log.Error("web: request failed", zap.String("path", v.r.URL.Path), zap.Error(err))
		v.render(http.StatusInternalServerError, "error", v.L.T("error.internal.title"), errorPage{Message: v.L.T("error.internal")})
		return
	}
	switch p.Status {
	case http.StatusUnauthorized:
		v.s.clearSession(v.w)
		v.redirect("/login?ended=expired")
	case http.StatusForbidden:
		v.render(p.Status, "error", v.L.T("error.forbidden.title"), errorPage{Message: v.L.T("error.forbidden"), Detail: p.Detail})
	case http.StatusNotFound:
		v.render(p.Status, "error", v.L.T("error.notfound.title"), errorPage{Message: v.L.T("error.notfound")})
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		v.render(p.Status, "error", v.L.T("error.busy.title"), errorPage{Message: v.L.T("error.busy")})
	default:
		if p.Status >= 500 {
			v.render(p.Status, "error", v.L.T("error.internal.title"), errorPage{Message: v.L.T("error.internal")})
			return
		}
		v.render(p.Status, "error", v.L.T("error.refused.title"), errorPage{Message: v.L.T("error.refused"), Detail: p.Detail})
	}
}

// notFound is the page of an unknown path.
func (s *site) notFound(v *view) error {
	return &problem{Status: http.StatusNotFound, Code: "not_found"}
}

// pageData is what every page's template gets.
type pageData struct {
	*view
	Title string
	Nav   []navLink
	Flash string
	// D is the page's own data.
	D any
	// Refresh is the live refresh period in seconds, 0 for none.
	Refresh int
	Assets  *assets
}

// navLink is one link of the navigation.
type navLink struct {
	Href, Label string
	Current     bool
}

// nav is the navigation of the user's roles (UI.md: Requests, File a
// request, Queue, Funds, Payees, Payouts, Audit, Users, Policy).
func (v *view) nav() []navLink {
	if v.Me == nil {
		return nil
	}
	type item struct {
		href, id string
		roles    []string
	}
	items := []item{
		{"/queue", "nav.queue", []string{assist.RoleApprover}},
		{"/requests", "nav.requests", []string{assist.RoleRequester, assist.RoleApprover, assist.RoleFinance, assist.RoleAuditor}},
		{"/requests/new", "nav.file", []string{assist.RoleRequester}},
		{"/funds", "nav.funds", []string{assist.RoleFinance, assist.RoleApprover, assist.RoleAuditor}},
		{"/payees", "nav.payees", []string{assist.RoleFinance, assist.RoleApprover, assist.RoleAuditor, assist.RoleAdmin}},
		{"/payouts", "nav.payouts", []string{assist.RoleFinance, assist.RoleApprover, assist.RoleAuditor}},
		{"/audit", "nav.audit", []string{assist.RoleAuditor}},
		{"/admin", "nav.admin", []string{assist.RoleAdmin}},
		{"/users", "nav.users", []string{assist.RoleAdmin}},
		{"/policy", "nav.policy", []string{assist.RoleAdmin, assist.RoleAuditor}},
		{"/webhooks", "nav.webhooks", []string{assist.RoleAdmin}},
	}
	var out []navLink
	for _, it := range items {
		if slices.ContainsFunc(it.roles, v.Has) {
			cur := v.r.URL.Path == it.href || (it.href != "/requests" && strings.HasPrefix(v.r.URL.Path, it.href+"/")) ||
				(it.href == "/requests" && strings.HasPrefix(v.r.URL.Path, "/requests/") && v.r.URL.Path != "/requests/new")
			out = append(out, navLink{Href: it.href, Label: v.L.T(it.id), Current: cur})
		}
	}
	return out
}

// render writes the page named page (templates/<page>.html in the layout)
// with status. It renders whole before writing, so that a template error
// is an error page, never half a page.
func (v *view) render(status int, page, title string, d any) {
	v.renderData(status, page, &pageData{view: v, Title: title, D: d})
}

func (v *view) renderData(status int, page string, pd *pageData) {
	pd.view, pd.Assets = v, v.s.assets
	pd.Nav = v.nav()
	if pd.Flash == "" {
		if done := v.r.URL.Query().Get("done"); done != "" && v.L.Has("done."+done) {
			pd.Flash = v.L.T("done." + done)
		}
	}
	t := v.s.pages[page]
	var buf bytes.Buffer
	name := "layout"
	if v.r.URL.Query().Get("partial") != "" && t != nil && t.Lookup("partial") != nil {
		name = "partial"
	}
	err := errors.New("no template " + page)
	if t != nil {
		err = t.ExecuteTemplate(&buf, name, pd)
	}
	if err != nil {
		v.s.log.Error("web: render", zap.String("page", page), zap.Error(err))
		buf.Reset()
		status = http.StatusInternalServerError
		if et := v.s.pages["error"]; et == nil || et.ExecuteTemplate(&buf, "layout", &pageData{view: v, Title: v.L.T("error.internal.title"),
			D: errorPage{Message: v.L.T("error.internal")}, Assets: v.s.assets}) != nil {
			buf.Reset()
			buf.WriteString("<!doctype html><title>EVA</title><p>" + template.HTMLEscapeString(v.L.T("error.internal")))
		}
	}
	h := v.w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", v.L.Lang)
	h.Set("Cache-Control", "no-store")
	v.w.WriteHeader(status)
	_, _ = v.w.Write(buf.Bytes())
}

// parsePages parses each page template with the layout and the partials.
func parsePages(a *assets) (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || base == "partials" {
			continue
		}
		t, err := template.New(base).Funcs(funcs(a)).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}
