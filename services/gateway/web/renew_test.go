package web

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/eva-org/eva/services/gateway"
)

// fakeAccessToken is shaped like the gateway's access tokens (the fake
// API does not check signatures): session sid, access expiry exp.
func fakeAccessToken(sid string, exp time.Time) string {
	claims, _ := json.Marshal(map[string]any{"sid": sid, "sub": "ana", "roles": []string{"requester"}, "exp": exp.UnixMicro()})
	return "eva_" + base64.RawURLEncoding.EncodeToString(claims) + ".fake-mac"
}

// A session's token is renewed before its access expiry, the cookie
// follows, and a form shown before the renewal still posts (its CSRF
// token is the session's, not the token's).
func TestSessionTokenRenewed(t *testing.T) {
	now := t0
	first := fakeAccessToken("S1", t0.Add(5*time.Minute))
	second := fakeAccessToken("S1", t0.Add(10*time.Minute))
	current := first
	api := &fakeAPI{}
	api.answer = func(r *http.Request, body []byte) (int, any) {
		if r.URL.Path != "/v1/auth/token" && r.Header.Get("Authorization") != "Bearer "+current {
			return 401, problem{Status: 401, Code: "unauthenticated", Detail: "sign in"}
		}
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/auth/token":
			return 200, tokenJSON{Token: first}
		case "POST /v1/auth/refresh":
			current = second
			return 200, tokenJSON{Token: second}
		case "GET /v1/me":
			return 200, me{Username: "ana", Roles: []string{"requester"}, Posts: []string{"BGD-DHAKA"}}
		case "GET /v1/requests":
			return 200, page[caseJSON]{Items: []caseJSON{sampleCase()}}
		case "DELETE /v1/auth/token":
			return 204, nil
		}
		return 404, problem{Status: 404, Code: "not_found", Detail: "no such resource"}
	}
	c := newClient(t, newSite(t, api, func() time.Time { return now }))
	w := c.do("GET", "/login", nil)
	w = c.do("POST", "/login", url.Values{"csrf": {csrfOf(t, w.Body.String())}, "username": {"ana"}, "password": {"demo"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("sign in: %d", w.Code)
	}
	c.jar[gateway.SessionCookie] = &http.Cookie{Name: gateway.SessionCookie, Value: first}
	page := c.do("GET", "/requests", nil)
	if page.Code != http.StatusOK || slices.Contains(api.calls, "POST /v1/auth/refresh?cookie=1") {
		t.Fatalf("fresh token: %d, calls %v", page.Code, api.calls)
	}
	csrf := csrfOf(t, page.Body.String())

	now = t0.Add(4*time.Minute + 30*time.Second) // within a minute of the access expiry
	api.calls = nil
	if w := c.do("GET", "/requests", nil); w.Code != http.StatusOK {
		t.Fatalf("page at renewal: %d %s", w.Code, w.Body)
	}
	if !slices.Contains(api.calls, "POST /v1/auth/refresh?cookie=1") {
		t.Fatalf("no renewal: %v", api.calls)
	}
	if got := api.headers[len(api.headers)-1].Get("Authorization"); got != "Bearer "+second {
		t.Fatalf("calls after the renewal use %q", got)
	}
	if csrfToken(first) != csrf || csrfToken(second) != csrf {
		t.Fatal("the CSRF token changed with the renewal")
	}
	// The idle cookie made for the first token holds for the second.
	c.jar[gateway.SessionCookie] = &http.Cookie{Name: gateway.SessionCookie, Value: second}
	if _, ok := lastSeen(httpRequestWith(c), second); !ok {
		t.Fatal("the idle cookie does not hold after the renewal")
	}
}

// httpRequestWith is a request carrying c's cookies.
func httpRequestWith(c *client) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	for _, ck := range c.jar {
		r.AddCookie(ck)
	}
	return r
}
