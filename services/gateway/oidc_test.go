package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/gateway/oidctest"
)

const ssoRedirect = "http://eva.test/v1/auth/oidc/callback"

// newSSOHarness is a gateway whose single sign-on is the fake provider's.
func newSSOHarness(t *testing.T) (*harness, *oidctest.FakeProvider) {
	t.Helper()
	p := oidctest.NewFakeProvider(t, "eva", "eva-secret")
	roles, err := ParseRoleMap("eva-approvers=approver, eva-finance=finance,eva-field=requester,eva-ops=auditor,eva-ops=admin")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, sqldbtest.SQLite(t), func(c *Config) {
		c.OIDC = &OIDCConfig{Issuer: p.Issuer, ClientID: "eva", ClientSecret: "eva-secret", RedirectURL: ssoRedirect,
			RoleMap: roles, PostsClaim: "posts"}
	})
	p.Now = h.clock.Now
	return h, p
}

// ssoStart begins a sign-on as a browser would: the gateway's redirect
// to the provider, which sends the browser back at once. It returns the
// callback's path and query, and the flow cookie.
func ssoStart(t *testing.T, h *harness, p *oidctest.FakeProvider) (string, *http.Cookie) {
	t.Helper()
	w := h.get("", "/v1/auth/oidc/login?next=/queue")
	if w.Code != http.StatusFound {
		t.Fatalf("login: %d %s", w.Code, w.Body)
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil || !strings.HasPrefix(loc.String(), p.Issuer+"/authorize?") {
		t.Fatalf("login redirects to %q", w.Header().Get("Location"))
	}
	q := loc.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" ||
		q.Get("state") == "" || q.Get("redirect_uri") != ssoRedirect || !strings.Contains(q.Get("scope"), "openid") {
		t.Fatalf("authorization request %v", q)
	}
	var flow *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == SSOCookie {
			flow = c
		}
	}
	if flow == nil || !flow.HttpOnly || flow.SameSite != http.SameSiteLaxMode || flow.MaxAge <= 0 {
		t.Fatalf("flow cookie %+v", flow)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Get(loc.String())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	back, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(back.String(), ssoRedirect+"?") {
		t.Fatalf("provider: %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	return back.RequestURI(), flow
}

func ssoCallback(h *harness, path string, flow *http.Cookie) *httptest.ResponseRecorder {
	hdr := map[string]string{}
	if flow != nil {
		hdr["Cookie"] = flow.Name + "=" + flow.Value
	}
	return h.do(req{method: http.MethodGet, path: path, header: hdr})
}

// TestSSOSignIn: the whole code flow with PKCE against the fake provider
// gives a session like a password sign-in, with roles and posts mapped
// from the claims, and an account row that no password opens.
func TestSSOSignIn(t *testing.T) {
	h, p := newSSOHarness(t)
	p.SignIn(map[string]any{"sub": "u-1", "preferred_username": "kim", "groups": []string{"eva-approvers", "eva-field",
		"eva-finance", "unrelated"}, "posts": []string{"BGD-DHAKA", "NPL-KATHMANDU"}})
	path, flow := ssoStart(t, h, p)
	w := ssoCallback(h, path, flow)
	got := decodeJSONBody[ssoResponse](t, w, http.StatusOK)
	if got.Token == "" || got.Next != "/queue" {
		t.Fatalf("answer %+v", got)
	}
	cleared := false
	for _, c := range w.Result().Cookies() {
		cleared = cleared || (c.Name == SSOCookie && c.MaxAge < 0)
	}
	if !cleared {
		t.Error("the flow cookie is not cleared")
	}
	h.tokens["kim"] = got.Token
	me := decodeJSONBody[meResponse](t, h.get("kim", "/v1/me"), http.StatusOK)
	if me.Username != "kim" || !slices.Equal(me.Roles, []roleName{requester, approver, finance}) ||
		!slices.Equal(me.Posts, []string{"BGD-DHAKA", "NPL-KATHMANDU"}) {
		t.Fatalf("me %+v", me)
	}
	acct, err := h.store.Account(context.Background(), "kim")
	if err != nil || !isSSO(acct) {
		t.Fatalf("account %+v, %v", acct, err)
	}
	// No password opens it, not even its marker.
	for _, pw := range []string{"", ssoPassword, "pw"} {
		w := h.post("", "/v1/auth/token", `{"username":"kim","password":"`+pw+`"}`)
		if w.Code != http.StatusUnauthorized && w.Code != http.StatusBadRequest {
			t.Errorf("password %q: %d %s", pw, w.Code, w.Body)
		}
	}
	// The request's log line says how it signed in, not who.
	logged := h.logs.FilterMessage("request").FilterField(zap.String("sign_in", "oidc")).All()
	if len(logged) != 1 {
		t.Fatalf("%d log lines of oidc sign-ins", len(logged))
	}
	if n := h.logs.FilterMessage("request").FilterField(zap.String("sign_in", "password")).Len(); n != 0 {
		t.Fatalf("%d password sign-ins logged", n)
	}
	for _, f := range logged[0].Context {
		if strings.Contains(f.String, "kim") || f.Key == "username" {
			t.Errorf("the log line names the user: %+v", f)
		}
	}

	// The next sign-in takes the claims as they are then: fewer roles.
	h.clock.Advance(time.Minute)
	p.SignIn(map[string]any{"sub": "u-1", "preferred_username": "kim", "groups": "eva-approvers"})
	path, flow = ssoStart(t, h, p)
	got = decodeJSONBody[ssoResponse](t, ssoCallback(h, path, flow), http.StatusOK)
	h.tokens["kim"] = got.Token
	me = decodeJSONBody[meResponse](t, h.get("kim", "/v1/me"), http.StatusOK)
	if !slices.Equal(me.Roles, []roleName{approver}) || len(me.Posts) != 0 {
		t.Fatalf("after the second sign-in: %+v", me)
	}
	revs, err := h.store.Revocations(context.Background(), t0.Add(-time.Hour))
	if err != nil || !slices.ContainsFunc(revs, func(r Revocation) bool { return r.Kind == RevokeUser && r.Subject == "kim" }) {
		t.Fatalf("the role change revoked nothing: %+v, %v", revs, err)
	}
}

// TestSSORefuses: each way a sign-on can be wrong is refused, with the
// status and field that say why, and leaves no account and no session.
func TestSSORefuses(t *testing.T) {
	good := map[string]any{"sub": "u-2", "preferred_username": "lee", "groups": []string{"eva-approvers"}}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		opts   oidctest.FakeOptions
		// tamper changes the callback's path or cookie.
		tamper func(path string, flow *http.Cookie) (string, *http.Cookie)
		status int
		field  string
		// exchanged: the code reached the token endpoint.
		exchanged bool
	}{
		{name: "wrong state", tamper: func(path string, flow *http.Cookie) (string, *http.Cookie) {
			return setQuery(path, "state", "forged"), flow
		}, status: 401, field: "state"},
		{name: "no flow cookie", tamper: func(path string, _ *http.Cookie) (string, *http.Cookie) { return path, nil },
			status: 401, field: "state"},
		{name: "forged flow cookie", tamper: func(path string, flow *http.Cookie) (string, *http.Cookie) {
			c := *flow
			c.Value = "eyJzdGF0ZSI6IngifQ." + strings.SplitN(flow.Value, ".", 2)[1]
			return path, &c
		}, status: 401, field: "state"},
		{name: "wrong nonce", opts: oidctest.FakeOptions{Nonce: "someone-elses"}, status: 401, field: "nonce", exchanged: true},
		{name: "expired id token", opts: oidctest.FakeOptions{Lifetime: -time.Hour}, status: 401, field: "id_token", exchanged: true},
		{name: "signed by another key", opts: oidctest.FakeOptions{OtherKey: true}, status: 401, field: "id_token", exchanged: true},
		{name: "for another client", opts: oidctest.FakeOptions{Audience: "not-eva"}, status: 401, field: "id_token", exchanged: true},
		{name: "made-up code", tamper: func(path string, flow *http.Cookie) (string, *http.Cookie) {
			return setQuery(path, "code", "made-up"), flow
		}, status: 401, field: "code"},
		{name: "provider refused", opts: oidctest.FakeOptions{Refuse: true}, status: 401},
		{name: "no role", claims: map[string]any{"sub": "u-2", "preferred_username": "lee", "groups": []string{"unrelated"}},
			status: 403, exchanged: true},
		{name: "groups claim missing", claims: map[string]any{"sub": "u-2", "preferred_username": "lee"},
			status: 403, exchanged: true},
		{name: "requester without post", claims: map[string]any{"sub": "u-2", "preferred_username": "lee",
			"groups": []string{"eva-field"}}, status: 403, exchanged: true},
		{name: "bad username", claims: map[string]any{"sub": "u-2", "preferred_username": "lee smith",
			"groups": []string{"eva-approvers"}}, status: 403, exchanged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, p := newSSOHarness(t)
			claims := good
			if tc.claims != nil {
				claims = tc.claims
			}
			p.SignIn(claims)
			p.Set(tc.opts)
			path, flow := ssoStart(t, h, p)
			if tc.tamper != nil {
				path, flow = tc.tamper(path, flow)
			}
			pr := decodeProblem(t, ssoCallback(h, path, flow), tc.status)
			if tc.field != "" && !slices.Contains(fieldsOf(pr), tc.field) {
				t.Errorf("problem names %v, want %s: %+v", fieldsOf(pr), tc.field, pr)
			}
			if n := p.Exchanges(); (n == 1) != tc.exchanged {
				t.Errorf("%d codes redeemed", n)
			}
			if _, err := h.store.Account(context.Background(), "lee"); !assist.IsCode(err, assist.CodeNotFound) {
				t.Errorf("an account was made: %v", err)
			}
			if h.logs.FilterMessage("request").FilterFieldKey("sign_in").Len() != 1 {
				t.Errorf("the refusal is not logged: %v", h.logs.All())
			}
		})
	}
}

// TestSSOCodeOnce: replaying the callback (same code, same cookie) after
// a sign-in is refused.
func TestSSOCodeOnce(t *testing.T) {
	h, p := newSSOHarness(t)
	p.SignIn(map[string]any{"sub": "u-3", "preferred_username": "ola", "groups": []string{"eva-ops"}})
	path, flow := ssoStart(t, h, p)
	got := decodeJSONBody[ssoResponse](t, ssoCallback(h, path, flow), http.StatusOK)
	h.tokens["ola"] = got.Token
	me := decodeJSONBody[meResponse](t, h.get("ola", "/v1/me"), http.StatusOK)
	if !slices.Equal(me.Roles, []roleName{auditor, admin}) {
		t.Fatalf("me %+v", me)
	}
	decodeProblem(t, ssoCallback(h, path, flow), http.StatusUnauthorized)
}

// TestSSONeverTakesOverAPasswordAccount: a provider's user named like a
// local account with a password gets 409, and the account is unchanged.
func TestSSONeverTakesOverAPasswordAccount(t *testing.T) {
	h, p := newSSOHarness(t)
	p.SignIn(map[string]any{"sub": "u-4", "preferred_username": "olu", "groups": []string{"eva-ops"}})
	path, flow := ssoStart(t, h, p)
	decodeProblem(t, ssoCallback(h, path, flow), http.StatusConflict)
	acct, err := h.store.Account(context.Background(), "olu")
	if err != nil || isSSO(acct) || !slices.Equal(acct.Roles, []string{approver}) {
		t.Fatalf("olu is now %+v, %v", acct, err)
	}
}

// TestSSOOff: without configuration both routes are 404.
func TestSSOOff(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	decodeProblem(t, h.get("", "/v1/auth/oidc/login"), http.StatusNotFound)
	decodeProblem(t, h.get("", "/v1/auth/oidc/callback?code=x&state=y"), http.StatusNotFound)
}

// TestSSOProviderDown: a provider that cannot be reached is 503, and the
// discovery is tried again on the next sign-in.
func TestSSOProviderDown(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), func(c *Config) {
		c.OIDC = &OIDCConfig{Issuer: "http://127.0.0.1:1", ClientID: "eva", RedirectURL: ssoRedirect}
	})
	decodeProblem(t, h.get("", "/v1/auth/oidc/login"), http.StatusServiceUnavailable)
}

func TestParseRoleMap(t *testing.T) {
	m, err := ParseRoleMap(" a=approver,a=auditor, b=admin,a=approver,")
	if err != nil || !slices.Equal(m["a"], []string{approver, auditor}) || !slices.Equal(m["b"], []string{admin}) || len(m) != 2 {
		t.Fatalf("%v, %v", m, err)
	}
	for _, bad := range []string{"a", "=admin", "a=root", "a=approver,b"} {
		if _, err := ParseRoleMap(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func setQuery(path, key, value string) string {
	u, _ := url.Parse(path)
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.RequestURI()
}
