package gateway

import (
	"net/http"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// The gateway's own database out of reach: every request that needs it
// answers 503 with Retry-After — never 500 — and the same requests succeed
// once it is back.
func TestGatewayDatabaseOutageIs503(t *testing.T) {
	db, proxy := sqldbtest.PostgresBehind(t)
	h := newHarness(t, db)
	h.setDefaults()
	if w := h.get("ana", "/v1/me"); w.Code != http.StatusOK {
		t.Fatalf("before the outage: %d %s", w.Code, w.Body)
	}
	proxy.SetDown(true)
	for _, path := range []string{"/v1/me", "/v1/requests/" + dhakaCase} {
		w := h.get("ana", path)
		p := decodeProblem(t, w, http.StatusServiceUnavailable)
		if p.Code != assist.CodeUnavailable || w.Header().Get("Retry-After") == "" {
			t.Fatalf("%s during the outage: %+v, Retry-After %q", path, p, w.Header().Get("Retry-After"))
		}
	}
	if w := h.post("fin", "/v1/funds", `{"name":"F","allocated_usd_cents":100}`); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("a command during the outage: %d %s", w.Code, w.Body)
	}
	proxy.SetDown(false)
	if w := h.get("ana", "/v1/me"); w.Code != http.StatusOK {
		t.Fatalf("after the outage: %d %s", w.Code, w.Body)
	}
}
