package web

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/eva-org/eva/services/gateway"
)

// ssoAPI answers as the API does for single sign-on: the callback gives
// a session to a caller that brings the flow cookie, and status to
// anyone else (a refusal).
func ssoAPI(t *testing.T, status int) *fakeAPI {
	std := standardAPI(t)
	return &fakeAPI{answer: func(r *http.Request, body []byte) (int, any) {
		if r.URL.Path != "/v1/auth/oidc/callback" {
			return std.answer(r, body)
		}
		q := r.URL.Query()
		if q.Get("cookie") != "1" || q.Get("code") != "the-code" || q.Get("state") != "the-state" {
			t.Errorf("callback query %v", q)
		}
		if c, err := r.Cookie(gateway.SSOCookie); err != nil || c.Value != "flow" {
			t.Errorf("the flow cookie is not passed on: %v", r.Header)
		}
		if status != http.StatusOK {
			return status, map[string]any{"status": status, "code": "forbidden", "title": "refused", "detail": "no role"}
		}
		return http.StatusOK, map[string]any{"token": "eva_tok", "expires_at": "2026-03-01T22:00:00Z", "next": "/requests"}
	}}
}

// ssoSite is the UI with single sign-on on.
func ssoSite(t *testing.T, api http.Handler) http.Handler {
	t.Helper()
	h, err := New(Deps{Config: Config{SSO: true}, API: api})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestSSOLink: with single sign-on the sign-in page offers it beside the
// form (whose names stay); without, neither the link nor the callback.
func TestSSOLink(t *testing.T) {
	c := newClient(t, ssoSite(t, standardAPI(t)))
	w := c.do("GET", "/login?next=/queue", nil)
	body := w.Body.String()
	for _, want := range []string{`href="/v1/auth/oidc/login?next=%2Fqueue"`, ">Sign in with SSO</a>",
		`<label for="login-username">Username</label>`, `<label for="login-password">Password</label>`, `>Sign in</button>`} {
		if !strings.Contains(body, want) {
			t.Errorf("sign-in page lacks %s", want)
		}
	}

	api := standardAPI(t)
	c = newClient(t, newSite(t, api, nil))
	if w := c.do("GET", "/login", nil); strings.Contains(w.Body.String(), "SSO") || strings.Contains(w.Body.String(), "/v1/auth/oidc") {
		t.Error("the sign-in page offers single sign-on that is off")
	}
	if w := c.do("GET", "/login/sso/callback?code=the-code&state=the-state", nil); w.Code != http.StatusNotFound {
		t.Errorf("callback with single sign-on off: %d", w.Code)
	}
	if slices.ContainsFunc(api.calls, func(c string) bool { return strings.Contains(c, "oidc") }) {
		t.Errorf("calls %v", api.calls)
	}
}

// TestSSOCallback: the callback passes the code, state and flow cookie
// to the API, keeps its session cookie, and moves on by itself to the
// page the sign-in started from.
func TestSSOCallback(t *testing.T) {
	api := ssoAPI(t, http.StatusOK)
	c := newClient(t, ssoSite(t, api))
	c.jar[gateway.SSOCookie] = &http.Cookie{Name: gateway.SSOCookie, Value: "flow"}
	w := c.do("GET", "/login/sso/callback?code=the-code&state=the-state", nil)
	if w.Code != http.StatusOK || w.Header().Get("Refresh") != "0; url=/requests" || !strings.Contains(w.Body.String(), `href="/requests"`) {
		t.Fatalf("callback: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if c.jar[gateway.SessionCookie] == nil || c.jar[seenCookie] == nil {
		t.Fatalf("cookies after the callback: %v", c.jar)
	}
	if w := c.do("GET", "/requests", nil); w.Code != http.StatusOK {
		t.Fatalf("signed on, /requests: %d", w.Code)
	}
}

// TestSSORefusedPage: a user the API refuses (no role) gets a page that
// says why, with the API's status, and no session.
func TestSSORefusedPage(t *testing.T) {
	for status, says := range map[int]string{http.StatusForbidden: "gives you no role in EVA",
		http.StatusUnauthorized: "did not complete", http.StatusConflict: "signs in with a password",
		http.StatusServiceUnavailable: "cannot be reached"} {
		c := newClient(t, ssoSite(t, ssoAPI(t, status)))
		c.jar[gateway.SSOCookie] = &http.Cookie{Name: gateway.SSOCookie, Value: "flow"}
		w := c.do("GET", "/login/sso/callback?code=the-code&state=the-state", nil)
		if w.Code != status || !strings.Contains(w.Body.String(), says) || c.jar[gateway.SessionCookie] != nil {
			t.Errorf("%d: %d, jar %v, %s", status, w.Code, c.jar, w.Body)
		}
	}
}
