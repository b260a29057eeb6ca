package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/gateway"
)

// fakeAPI is a stand-in for the gateway's JSON API: it answers the calls
// the UI makes with canned JSON and records them. The UI's tests against
// the real API (and services) are in cmd/eva.
type fakeAPI struct {
	calls   []string
	headers []http.Header
	answer  func(r *http.Request, body []byte) (int, any)
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.calls = append(f.calls, r.Method+" "+r.URL.RequestURI())
	f.headers = append(f.headers, r.Header.Clone())
	status, v := f.answer(r, body)
	ct := "application/json"
	if status >= 400 {
		ct = "application/problem+json"
	}
	w.Header().Set("Content-Type", ct)
	if status == http.StatusOK && (r.URL.Path == "/v1/auth/token" && r.Method == http.MethodPost || r.URL.Path == "/v1/auth/oidc/callback") {
		http.SetCookie(w, &http.Cookie{Name: gateway.SessionCookie, Value: "eva_tok", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

const caseID = "01900000-0000-7000-8000-0000000000c1"

func sampleCase() caseJSON {
	return caseJSON{ID: caseID, Status: "submitted", Post: "BGD-DHAKA", Category: "shelter", Urgency: "critical",
		AmountCents: 45000, Deadline: t0.Add(4 * time.Hour).Format(time.RFC3339), CreatedAt: t0.Format(time.RFC3339),
		UpdatedAt: t0.Format(time.RFC3339), Requester: "ana", Justification: "three nights"}
}

// standardAPI answers as the API would for ana (a requester at
// BGD-DHAKA) signed in with the token eva_tok.
func standardAPI(t *testing.T) *fakeAPI {
	return &fakeAPI{answer: func(r *http.Request, body []byte) (int, any) {
		if r.URL.Path != "/v1/auth/token" && r.Header.Get("Authorization") != "Bearer eva_tok" {
			return 401, problem{Status: 401, Code: "unauthenticated", Detail: "sign in"}
		}
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/auth/token":
			var in map[string]string
			_ = json.Unmarshal(body, &in)
			if in["password"] != "demo" {
				return 401, problem{Status: 401, Code: "unauthenticated", Detail: "wrong username or password"}
			}
			return 200, tokenJSON{Token: "eva_tok"}
		case "DELETE /v1/auth/token":
			return 204, nil
		case "GET /v1/me":
			return 200, me{Username: "ana", Roles: []string{"requester"}, Posts: []string{"BGD-DHAKA"}}
		case "GET /v1/payees":
			return 200, page[payeeJSON]{Items: []payeeJSON{{ID: "p1", Name: "Safe Haven"}}}
		case "POST /v1/requests":
			var in fileBody
			if err := json.Unmarshal(body, &in); err != nil {
				t.Errorf("filing body %s: %v", body, err)
			}
			if in.AmountCents > 500000 {
				return 400, problem{Status: 400, Code: "invalid", Detail: "invalid request", Errors: []fieldError{
					{Field: "amount_usd_cents", Message: "exceeds the category cap"}, {Field: "beneficiary.name", Message: "is too long"}}}
			}
			return 201, sampleCase()
		case "GET /v1/requests":
			return 200, page[caseJSON]{Items: []caseJSON{sampleCase()}}
		case "GET /v1/requests/" + caseID:
			return 200, sampleCase()
		case "GET /v1/requests/" + caseID + "/history":
			return 200, page[eventJSON]{Items: []eventJSON{{Seq: 1, Type: "RequestSubmitted", At: t0.Format(time.RFC3339),
				Actor: actorJSON{Username: "ana", Role: "requester", Post: "BGD-DHAKA"}}}}
		case "POST /v1/requests/" + caseID + "/withdraw":
			return 409, problem{Status: 409, Code: "conflict", Detail: "a disbursed request can no longer be withdrawn"}
		case "GET /v1/queue":
			return 403, problem{Status: 403, Code: "forbidden", Detail: "this needs the role approver"}
		}
		return 404, problem{Status: 404, Code: "not_found", Detail: "no such resource"}
	}}
}

// signedInAPI answers as the API would for a user of role (at
// BGD-DHAKA) signed in with the token eva_tok: without the token 401, the
// token and GET /v1/me, then answer for everything else.
func signedInAPI(role string, answer func(r *http.Request, body []byte) (int, any)) *fakeAPI {
	return &fakeAPI{answer: func(r *http.Request, body []byte) (int, any) {
		if r.URL.Path != "/v1/auth/token" && r.Header.Get("Authorization") != "Bearer eva_tok" {
			return 401, problem{Status: 401, Code: "unauthenticated", Detail: "sign in"}
		}
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/auth/token":
			return 200, tokenJSON{Token: "eva_tok"}
		case "GET /v1/me":
			return 200, me{Username: "u", Roles: []string{role}, Posts: []string{"BGD-DHAKA"}}
		}
		return answer(r, body)
	}}
}

// client is a browser without scripts: a cookie jar and no redirects.
type client struct {
	t    *testing.T
	h    http.Handler
	jar  map[string]*http.Cookie
	lang string
}

func newClient(t *testing.T, h http.Handler) *client {
	return &client{t: t, h: h, jar: map[string]*http.Cookie{}}
}

func (c *client) do(method, path string, form url.Values) *httptest.ResponseRecorder {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, path, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.lang != "" {
		r.Header.Set("Accept-Language", c.lang)
	}
	for _, ck := range c.jar {
		r.AddCookie(ck)
	}
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, r)
	for _, ck := range w.Result().Cookies() {
		if ck.MaxAge < 0 {
			delete(c.jar, ck.Name)
			continue
		}
		c.jar[ck.Name] = ck
	}
	return w
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var keyRE = regexp.MustCompile(`name="key" value="([^"]+)"`)

func csrfOf(t *testing.T, html string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no CSRF token in %s", html)
	}
	return m[1]
}

func newSite(t *testing.T, api http.Handler, now func() time.Time) http.Handler {
	t.Helper()
	h, err := New(Deps{API: api, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func signIn(t *testing.T, c *client) {
	t.Helper()
	w := c.do("GET", "/login", nil)
	w = c.do("POST", "/login", url.Values{"csrf": {csrfOf(t, w.Body.String())}, "username": {"ana"}, "password": {"demo"}})
	if w.Code != http.StatusSeeOther || c.jar[gateway.SessionCookie] == nil || c.jar[seenCookie] == nil {
		t.Fatalf("sign in: %d %v", w.Code, w.Header())
	}
}

func TestSignInAndOut(t *testing.T) {
	api := standardAPI(t)
	c := newClient(t, newSite(t, api, nil))
	w := c.do("GET", "/requests", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login?next=%2Frequests" {
		t.Fatalf("signed out /requests: %d %q", w.Code, w.Header().Get("Location"))
	}
	w = c.do("GET", "/login", nil)
	tok := csrfOf(t, w.Body.String())
	for _, want := range []string{`<label for="login-username">Username</label>`, `<label for="login-password">Password</label>`, `>Sign in</button>`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("sign-in page lacks %s", want)
		}
	}
	w = c.do("POST", "/login", url.Values{"csrf": {tok}, "username": {"ana"}, "password": {"wrong"}})
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `id="login-password" name="password" type="password" value=""`) ||
		!strings.Contains(w.Body.String(), `aria-invalid="true" aria-describedby="login-password-error"`) {
		t.Fatalf("wrong password: %d %s", w.Code, w.Body)
	}
	signIn(t, c)
	ck := c.jar[gateway.SessionCookie]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %+v", ck)
	}
	w = c.do("GET", "/", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/requests" {
		t.Fatalf("home of a requester: %d %q", w.Code, w.Header().Get("Location"))
	}
	w = c.do("GET", "/requests", nil)
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, `data-case-id="`+caseID+`"`) || !strings.Contains(body, `data-status="submitted"`) ||
		!strings.Contains(body, ">Sign out</button>") || !strings.Contains(body, `href="/requests/new"`) {
		t.Fatalf("requests: %d %s", w.Code, body)
	}
	w = c.do("POST", "/logout", url.Values{"csrf": {csrfOf(t, body)}})
	if w.Code != http.StatusSeeOther || c.jar[gateway.SessionCookie] != nil || !slices.Contains(api.calls, "DELETE /v1/auth/token") {
		t.Fatalf("sign out: %d, jar %v, calls %v", w.Code, c.jar, api.calls)
	}
}

func TestFilingThroughTheAPI(t *testing.T) {
	api := standardAPI(t)
	c := newClient(t, newSite(t, api, nil))
	signIn(t, c)
	w := c.do("GET", "/requests/new", nil)
	page := w.Body.String()
	key := keyRE.FindStringSubmatch(page)[1]
	for _, label := range []string{"Post", "Category", "Urgency", "Amount (USD)", "Justification", "Beneficiary reference",
		"Beneficiary name", "Date of birth", "Nationality", "Contact", "Payee"} {
		if !strings.Contains(page, ">"+label+"</label>") {
			t.Errorf("filing form lacks the label %q", label)
		}
	}
	form := url.Values{"csrf": {csrfOf(t, page)}, "key": {key}, "post": {"BGD-DHAKA"}, "category": {"shelter"},
		"urgency": {"critical"}, "amount": {"1,250.50"}, "justification": {"three nights"}, "ben_ref": {"R-1"}}
	w = c.do("POST", "/requests/new", form)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/requests/"+caseID+"?done=filed" {
		t.Fatalf("file: %d %q %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	i := slices.Index(api.calls, "POST /v1/requests")
	if got := api.headers[i].Get("Idempotency-Key"); got != key {
		t.Fatalf("filing sent Idempotency-Key %q, want the form's %q", got, key)
	}
	// The API's field errors come back at the form's fields, with what
	// was typed and a fresh key.
	form.Set("amount", "9999.00")
	w = c.do("POST", "/requests/new", form)
	body := w.Body.String()
	if w.Code != http.StatusBadRequest ||
		!strings.Contains(body, `value="9999.00" inputmode="decimal" aria-required="true" aria-invalid="true" aria-describedby="file-amount-error file-amount-hint"`) ||
		!strings.Contains(body, `<span class="error" id="file-amount-error">exceeds the category cap</span>`) ||
		!strings.Contains(body, `id="file-ben_name-error">is too long</span>`) || !strings.Contains(body, `role="alert"`) {
		t.Fatalf("refused filing: %d %s", w.Code, body)
	}
	if k := keyRE.FindStringSubmatch(body)[1]; k == key {
		t.Fatal("a refused form keeps its key: the corrected form would be refused as a reuse")
	}
	// The UI's own checks: an amount that is not one, a missing field.
	form.Set("amount", "12.345")
	form.Set("justification", "")
	before := len(api.calls)
	w = c.do("POST", "/requests/new", form)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `id="file-amount-error">Enter an amount in US dollars`) ||
		!strings.Contains(w.Body.String(), `id="file-justification-error">This is required.`) {
		t.Fatalf("UI checks: %d %s", w.Code, w.Body)
	}
	if slices.Contains(api.calls[before:], "POST /v1/requests") {
		t.Fatal("a form the UI refused was sent to the API")
	}
}

func TestCSRF(t *testing.T) {
	api := standardAPI(t)
	c := newClient(t, newSite(t, api, nil))
	signIn(t, c)
	for _, tok := range []string{"", "forged", csrfToken("another-session")} {
		before := len(api.calls)
		w := c.do("POST", "/requests/"+caseID+"/withdraw", url.Values{"csrf": {tok}, "reason": {"x"}})
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "Form expired") {
			t.Fatalf("token %q: %d", tok, w.Code)
		}
		for _, call := range api.calls[before:] {
			if strings.HasPrefix(call, "POST") {
				t.Fatalf("token %q: the API was called: %v", tok, api.calls[before:])
			}
		}
	}
	// With the right token, the API's refusal is shown on the form.
	w := c.do("GET", "/requests/"+caseID, nil)
	w = c.do("POST", "/requests/"+caseID+"/withdraw", url.Values{"csrf": {csrfOf(t, w.Body.String())}, "key": {"k"}, "reason": {"x"}})
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "can no longer be withdrawn") {
		t.Fatalf("withdraw refused by the API: %d %s", w.Code, w.Body)
	}
}

func TestIdleSessionEnds(t *testing.T) {
	now := t0
	api := standardAPI(t)
	c := newClient(t, newSite(t, api, func() time.Time { return now }))
	signIn(t, c)
	now = now.Add(DefaultIdleTimeout - time.Minute)
	if w := c.do("GET", "/requests", nil); w.Code != 200 {
		t.Fatalf("active session: %d", w.Code)
	}
	now = now.Add(DefaultIdleTimeout + time.Second)
	w := c.do("GET", "/requests", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login?ended=idle" {
		t.Fatalf("idle session: %d %q", w.Code, w.Header().Get("Location"))
	}
	if !slices.Contains(api.calls, "DELETE /v1/auth/token") || c.jar[gateway.SessionCookie] != nil {
		t.Fatalf("the idle token was not revoked: %v", api.calls)
	}
	// A forged idle cookie is no session either.
	signIn(t, c)
	c.jar[seenCookie] = &http.Cookie{Name: seenCookie, Value: "99999999999.forged"}
	if w := c.do("GET", "/requests", nil); w.Code != http.StatusSeeOther {
		t.Fatalf("forged idle cookie: %d", w.Code)
	}
}

func TestHeadersAndAssets(t *testing.T) {
	h := newSite(t, standardAPI(t), nil)
	r := httptest.NewRequest("GET", "/login", nil)
	r.Header.Set("Accept-Encoding", "gzip")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	hd := w.Header()
	if hd.Get("Content-Encoding") != "gzip" || !strings.Contains(hd.Get("Content-Security-Policy"), "script-src 'self'") ||
		strings.Contains(hd.Get("Content-Security-Policy"), "unsafe-inline") || hd.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("headers %v", hd)
	}
	s := newSite(t, standardAPI(t), nil).(http.Handler)
	css := regexp.MustCompile(`/static/app\.[0-9a-f]{8}\.css`).FindString(newClient(t, s).do("GET", "/login", nil).Body.String())
	w = newClient(t, s).do("GET", css, nil)
	if w.Code != 200 || !strings.Contains(w.Header().Get("Cache-Control"), "immutable") || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("asset %s: %d %v", css, w.Code, w.Header())
	}
	if w := newClient(t, s).do("GET", "/static/app.00000000.css", nil); w.Code != 404 {
		t.Fatalf("unknown asset: %d", w.Code)
	}
}

func TestErrorsAreAPage(t *testing.T) {
	boom := &fakeAPI{answer: func(r *http.Request, _ []byte) (int, any) {
		if r.URL.Path == "/v1/me" {
			return 200, me{Username: "ana", Roles: []string{"requester"}, Posts: []string{"BGD-DHAKA"}}
		}
		if r.URL.Path == "/v1/auth/token" {
			return 200, tokenJSON{Token: "eva_tok"}
		}
		return 500, problem{Status: 500, Code: "internal", Detail: "internal error"}
	}}
	c := newClient(t, newSite(t, boom, nil))
	signIn(t, c)
	w := c.do("GET", "/requests", nil)
	if w.Code != 500 || !strings.Contains(w.Body.String(), "EVA could not answer just now") || strings.Contains(w.Body.String(), "goroutine") {
		t.Fatalf("API failure: %d %s", w.Code, w.Body)
	}
	w = c.do("GET", "/no/such/page", nil)
	if w.Code != 404 || !strings.Contains(w.Body.String(), "<h1>Not found</h1>") {
		t.Fatalf("unknown page: %d", w.Code)
	}
	c2 := newClient(t, newSite(t, standardAPI(t), nil))
	signIn(t, c2)
	w = c2.do("GET", "/queue", nil)
	if w.Code != 403 || !strings.Contains(w.Body.String(), "Not for your role") {
		t.Fatalf("a requester's queue: %d", w.Code)
	}
}

func TestLanguage(t *testing.T) {
	h := newSite(t, standardAPI(t), nil)
	for _, tc := range []struct{ accept, cookie, want, text string }{
		{"", "", "en", "Sign in"},
		{"fr-FR,fr;q=0.9,en;q=0.5", "", "fr", "Se connecter"},
		{"es-419,es;q=0.9", "", "es", "Iniciar sesión"},
		{"de-DE", "", "en", "Sign in"},
		{"fr", "es", "es", "Iniciar sesión"},
		{"fr", "xx", "fr", "Se connecter"},
	} {
		c := newClient(t, h)
		c.lang = tc.accept
		if tc.cookie != "" {
			c.jar[langCookie] = &http.Cookie{Name: langCookie, Value: tc.cookie}
		}
		body := c.do("GET", "/login", nil).Body.String()
		if !strings.Contains(body, `<html lang="`+tc.want+`">`) || !strings.Contains(body, tc.text) {
			t.Errorf("Accept-Language %q, cookie %q: want lang %s with %q", tc.accept, tc.cookie, tc.want, tc.text)
		}
	}
	c := newClient(t, h)
	w := c.do("GET", "/login", nil)
	w = c.do("POST", "/lang", url.Values{"csrf": {csrfOf(t, w.Body.String())}, "lang": {"fr"}, "back": {"//evil.example/x"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" || c.jar[langCookie].Value != "fr" {
		t.Fatalf("choose French: %d %q %v", w.Code, w.Header().Get("Location"), c.jar[langCookie])
	}
}

// TestCatalogsComplete: every message exists in English, French and
// Spanish, and every id the templates and the code use is in the catalog.
func TestCatalogsComplete(t *testing.T) {
	cat, err := newCatalog()
	if err != nil {
		t.Fatal(err)
	}
	files, err := localeFiles()
	if err != nil || len(files) != 3 {
		t.Fatalf("catalog files %v %v", files, err)
	}
	en := cat.ids["en"]
	for _, lang := range []string{"fr", "es"} {
		if !slices.Equal(cat.ids[lang], en) {
			t.Errorf("%s: %d messages, en %d; missing: %v", lang, len(cat.ids[lang]), len(en), missing(en, cat.ids[lang]))
		}
	}
	used := regexp.MustCompile(`(?:\.T|L\.T|l\.T)\(?\s*"([a-z][a-z0-9_.]*)"`)
	var srcs []string
	for _, dir := range []string{"templates"} {
		names, _ := templateFS.ReadDir(dir)
		for _, n := range names {
			b, _ := templateFS.ReadFile(dir + "/" + n.Name())
			srcs = append(srcs, string(b))
		}
	}
	for _, n := range []string{"web.go", "auth.go", "requests.go", "queue.go", "money.go", "audit.go", "admin.go", "policy.go", "users.go", "forms.go", "format.go", "charts.go", "options.go"} {
		b, err := readSource(n)
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, b)
	}
	for _, src := range srcs {
		for _, m := range used.FindAllStringSubmatch(src, -1) {
			if id := m[1]; !strings.HasSuffix(id, ".") && id != "select" && id != "textarea" && !slices.Contains(en, id) {
				t.Errorf("message %q is used but not in the catalog", id)
			}
		}
	}
	// The data-made ids: every status, category, urgency and event type.
	l := cat.loc("fr")
	for _, id := range []string{"status.disbursed", "status.awaiting_second_approval", "category.family_tracing",
		"urgency.routine.long", "event.PayoutSettled", "event.DeadlineMissed", "payout.cancelled", "role.auditor"} {
		if !l.Has(id) {
			t.Errorf("no message %s", id)
		}
	}
	// Every event type a case's timeline can show has its label.
	for _, typ := range assist.EventTypes {
		if id := "event." + typ; !slices.Contains(en, id) {
			t.Errorf("no message %s for the timeline", id)
		}
	}
}

func missing(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

func readSource(name string) (string, error) {
	b, err := os.ReadFile(name)
	return string(b), err
}

func TestParseUSD(t *testing.T) {
	for in, want := range map[string]int64{"250": 25000, "250.5": 25050, "250.00": 25000, "1,250.00": 125000,
		"1 250,50": 125050, "250,5": 25050, "$ 12.30": 1230, "0.01": 1, "1,000,000": 100000000, " 7 USD": 700} {
		if got, err := parseUSD(in); err != nil || got != want {
			t.Errorf("parseUSD(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "abc", "1.234", "1e5", "-5", "4,50.0.0", "+3", "99999999999999999999"} {
		if got, err := parseUSD(in); err == nil {
			t.Errorf("parseUSD(%q) = %d, want an error", in, got)
		}
	}
	for in, want := range map[int64]string{0: "0.00", 5: "0.05", 25000: "250.00", 100000000: "1,000,000.00", -1234: "-12.34"} {
		if got := usd(in); got != want {
			t.Errorf("usd(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{"/requests?x=1": "/requests?x=1", "//evil.example": "/", "https://evil.example/": "/",
		"/\\evil": "/", "": "/", "requests": "/"} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}
