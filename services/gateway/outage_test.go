package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// The gateway's own database out of reach (PostgreSQL behind a proxy cut
// by the test): reads and commands with a fresh access token go on, since
// the token is verified without the database; what needs the database
// (signing in, refreshing, signing out, a token past its access lifetime,
// an Idempotency-Key) answers 503 with Retry-After — never 500 — and
// succeeds once it is back.
func TestGatewayDatabaseOutage(t *testing.T) {
	db, proxy := sqldbtest.PostgresBehind(t)
	h := newHarness(t, db)
	h.setDefaults()
	if w := h.get("ana", "/v1/me"); w.Code != http.StatusOK {
		t.Fatalf("before the outage: %d %s", w.Code, w.Body)
	}
	proxy.SetDown(true)
	for _, path := range []string{"/v1/me", "/v1/requests/" + dhakaCase} {
		if w := h.get("ana", path); w.Code != http.StatusOK {
			t.Fatalf("%s during the outage: %d %s, want 200", path, w.Code, w.Body)
		}
	}
	unavailable := func(what string, w interface {
		Result() *http.Response
	}) {
		t.Helper()
		res := w.Result()
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
			t.Fatalf("%s during the outage: %d, Retry-After %q; want 503", what, res.StatusCode, res.Header.Get("Retry-After"))
		}
	}
	unavailable("sign-in", login(h, "olu", "pw", ""))
	unavailable("refresh", h.do(req{user: "ana", method: http.MethodPost, path: "/v1/auth/refresh"}))
	unavailable("sign-out", h.do(req{user: "ana", method: http.MethodDelete, path: "/v1/auth/token"}))
	unavailable("a command with an Idempotency-Key", h.do(req{user: "fin", method: http.MethodPost, path: "/v1/funds",
		body: `{"name":"F","allocated_usd_cents":100}`, header: map[string]string{IdempotencyHeader: "k-1"}}))
	h.clock.Advance(DefaultAccessTTL)
	w := h.get("ana", "/v1/me")
	if p := decodeProblem(t, w, http.StatusServiceUnavailable); p.Code != assist.CodeUnavailable {
		t.Fatalf("a token past its access lifetime: %+v", p)
	}
	proxy.SetDown(false)
	deadline := time.Now().Add(10 * time.Second)
	for w = h.get("ana", "/v1/me"); w.Code != http.StatusOK && time.Now().Before(deadline); w = h.get("ana", "/v1/me") {
		time.Sleep(50 * time.Millisecond)
	}
	if w.Code != http.StatusOK {
		t.Fatalf("after the outage: %d %s", w.Code, w.Body)
	}
}
