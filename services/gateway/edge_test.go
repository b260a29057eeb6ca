package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// TestMetricsCardinalityBounded sends made-up methods and paths, as the
// security review did (issue 7: /metrics grew to 19.5 MB after a few
// dozen requests). The request metrics keep only route templates and
// known methods, so their series stay few however many requests come, and
// the exposition stays small.
func TestMetricsCardinalityBounded(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	rng := rand.New(rand.NewPCG(7, 7))
	word := func(n int) string {
		const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		b := make([]byte, 1+rng.IntN(n))
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		return string(b)
	}
	paths := []func() string{
		func() string { return "/" + word(40) },
		func() string { return "/v1/" + word(20) + "/" + word(20) },
		func() string { return "/v1/requests/" + word(36) },
		func() string {
			return fmt.Sprintf("/v1/requests/0194e1c2-7a3b-7c4d-8e5f-%012x/history", rng.Uint64()>>16)
		},
		func() string { return "/v1/funds/" + word(30) + "?cursor=" + word(30) },
		func() string { return "/metrics/" + word(10) },
	}
	methods := []func() string{
		func() string { return strings.ToUpper(word(12)) },
		func() string {
			return []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}[rng.IntN(7)]
		},
	}
	send := func(n int) {
		for range n {
			r := httptest.NewRequest("GET", "/", nil)
			r.Method, r.URL.Path = methods[rng.IntN(len(methods))](), paths[rng.IntN(len(paths))]()
			if rng.IntN(2) == 0 {
				r.Header.Set("Authorization", "Bearer "+h.tokens["olu"])
			}
			h.h.ServeHTTP(httptest.NewRecorder(), r)
		}
	}
	series := func() (n int, routes, methods []string) {
		mfs, err := h.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "eva_http_requests_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				n++
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "route":
						routes = append(routes, l.GetValue())
					case "method":
						methods = append(methods, l.GetValue())
					}
				}
			}
		}
		return n, routes, methods
	}

	send(500)
	after500, _, _ := series()
	send(2000)
	n, routeLabels, methodLabels := series()
	allowedRoutes := []string{"unmatched", "ui"}
	for _, rt := range h.srv.routes() {
		allowedRoutes = append(allowedRoutes, rt.pattern)
	}
	for _, r := range routeLabels {
		if !slices.Contains(allowedRoutes, r) {
			t.Errorf("route label %q is not a route template", r)
		}
	}
	for _, m := range methodLabels {
		if m != "other" && !knownMethods[m] {
			t.Errorf("method label %q is not a known method", m)
		}
	}
	// Every request above is one of a handful of (route, method, status)
	// triples: more requests add no series.
	if n != after500 || n > 60 {
		t.Errorf("%d series after 500 requests, %d after 2,500; want the same, and few", after500, n)
	}
	w := h.get("", "/metrics")
	if w.Code != http.StatusOK {
		t.Fatalf("metrics: %d", w.Code)
	}
	const maxBytes = 256 << 10
	if w.Body.Len() > maxBytes {
		t.Errorf("the exposition is %d bytes after 2,500 made-up requests; want at most %d", w.Body.Len(), maxBytes)
	}
	t.Logf("%d request series, exposition %d bytes after 2,500 requests with made-up methods and paths", n, w.Body.Len())
}

// TestSecurityHeadersOnEveryResponse checks the headers of issue 7 on an
// answer of every route, on a 404, a 405 and an error: one content
// security policy without inline script (that lets the page's script
// connect to its own origin), no framing, no Referer, no sniffing; HSTS
// only over HTTPS.
func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	check := func(t *testing.T, name string, hd http.Header, hsts bool) {
		t.Helper()
		csp := hd.Get("Content-Security-Policy")
		switch {
		case !strings.Contains(csp, "frame-ancestors 'none'"), !strings.Contains(csp, "default-src 'none'"),
			strings.Contains(csp, "unsafe-inline"), strings.Contains(csp, "unsafe-eval"),
			// The live queue's fetches and EventSource (GET /v1/changes).
			!strings.Contains(csp, "connect-src 'self'"):
			t.Errorf("%s: Content-Security-Policy %q", name, csp)
		}
		for k, v := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
			"X-Content-Type-Options": "nosniff"} {
			if got := hd.Get(k); got != v {
				t.Errorf("%s: %s %q, want %q", name, k, got, v)
			}
		}
		if got := hd.Get("Strict-Transport-Security"); (got != "") != hsts {
			t.Errorf("%s: Strict-Transport-Security %q, want it %v", name, got, hsts)
		}
	}
	for _, rt := range h.srv.routes() {
		path := strings.ReplaceAll(rt.pattern, "{id}", dhakaCase)
		r := httptest.NewRequest(rt.method, path, nil)
		r.Header.Set("Authorization", "Bearer "+h.tokens["olu"])
		w := httptest.NewRecorder()
		h.h.ServeHTTP(w, r)
		check(t, rt.method+" "+rt.pattern, w.Header(), false)
	}
	for _, r := range []*http.Request{
		httptest.NewRequest("GET", "/v1/nothing-here", nil),
		httptest.NewRequest("BREW", "/v1/me", nil),
		httptest.NewRequest("POST", "/v1/requests", strings.NewReader("{")),
	} {
		w := httptest.NewRecorder()
		h.h.ServeHTTP(w, r)
		check(t, r.Method+" "+r.URL.Path, w.Header(), false)
	}

	// Over TLS, and behind a proxy that terminates it (CookieSecure),
	// browsers are told to keep to HTTPS.
	r := httptest.NewRequest("GET", "/healthz", nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	h.h.ServeHTTP(w, r)
	check(t, "over TLS", w.Header(), true)
	behind := newHarness(t, sqldbtest.SQLite(t), func(c *Config) { c.CookieSecure = true })
	check(t, "behind HTTPS", behind.get("", "/healthz").Header(), true)
}

// With Config.MetricsAddr, /metrics moves to its own listener: the API's
// address answers 404 for it, and the metrics listener serves nothing
// else.
func TestMetricsOnSeparateAddr(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), func(c *Config) { c.MetricsAddr = "127.0.0.1:0" })
	decodeProblem(t, h.get("", "/metrics"), http.StatusNotFound)

	m := h.srv.metricsOnly()
	w := httptest.NewRecorder()
	m.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "eva_http_requests_total") {
		t.Fatalf("metrics listener: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	m.ServeHTTP(w, httptest.NewRequest("GET", "/v1/me", nil))
	if w.Code != http.StatusNotFound {
		t.Fatalf("metrics listener serves /v1/me: %d", w.Code)
	}
}

// Cursors and sequences beyond what a list can hold are refused with 400
// naming the parameter (issue 7: a cursor of 18446744073709551615 was
// answered 503 with an internal error, and int64(after) wrapped to -1,
// the start of the archive). The service is never asked.
func TestCursorOutOfRange(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	for _, tt := range []struct{ user, path, field string }{
		{"aud", "/v1/audit/events?cursor=18446744073709551615", "cursor"},
		{"aud", "/v1/audit/events?after=18446744073709551615", "after"},
		{"aud", "/v1/audit/events?after=9223372036854775808", "after"},
		{"aud", "/v1/audit/events?cursor=-1", "cursor"},
		{"aud", "/v1/audit/events?cursor=%00", "cursor"},
		{"adm", "/v1/admin/dead-letters?after=18446744073709551615", "after"},
	} {
		h.calls.reset()
		p := decodeProblem(t, h.get(tt.user, tt.path), http.StatusBadRequest)
		if got := fieldsOf(p); !slices.Equal(got, []string{tt.field}) {
			t.Errorf("%s: fields %v, want %s", tt.path, got, tt.field)
		}
		if c := h.calls.list(); len(c) != 0 {
			t.Errorf("%s: the service was asked: %v", tt.path, c)
		}
	}
	decodeJSONBody[eventsPageJSON](t, h.get("aud", "/v1/audit/events?after=9223372036854775807"), http.StatusOK)
}

// A requester's view of a case's history holds no fund balance (issue 7:
// requesters saw fund_available_usd_cents), no caps, holds or provider
// details; the roles that read every case see the event as archived.
func TestHistoryRequesterSeesNoBalance(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	h.audit.history = func(_ context.Context, id string) ([]auditapi.ArchivedEvent, error) {
		return []auditapi.ArchivedEvent{
			{Seq: 1, ID: id, CaseID: id, Type: "RequestApproved", At: t0, Actor: assist.Actor{Username: "olu", Role: approver},
				Data: json.RawMessage(`{"amount_usd_cents":"20000","fund_id":"` + fundID + `","hold_id":"h-1",` +
					`"payee_id":"` + payeeID + `","note":"lower rate","fund_available_usd_cents":"99980000",` +
					`"policy":{"version":"v1","case_cap_usd_cents":"500000"}}`),
				Hash: strings.Repeat("a", 64), Chain: strings.Repeat("b", 64)},
			{Seq: 2, ID: id, CaseID: id, Type: "PayoutFailed", At: t0, Actor: assist.Actor{Username: "eva", Role: assist.RoleSystem},
				Data: json.RawMessage(`{"payout_id":"p-1","error":"bank 10.0.0.7 refused","attempt":1}`),
				Hash: strings.Repeat("c", 64), Chain: strings.Repeat("d", 64)},
		}, nil
	}
	data := func(user string) []map[string]any {
		p := decodeJSONBody[page[eventJSON]](t, h.get(user, "/v1/requests/"+dhakaCase+"/history"), http.StatusOK)
		var out []map[string]any
		for _, e := range p.Items {
			var m map[string]any
			if err := json.Unmarshal(e.Data, &m); err != nil {
				t.Fatalf("%s: data %s: %v", user, e.Data, err)
			}
			out = append(out, m)
		}
		return out
	}
	ana := data("ana")
	if want := map[string]any{"amount_usd_cents": "20000", "payee_id": payeeID, "note": "lower rate"}; !maps.Equal(ana[0], want) {
		t.Errorf("requester sees %v, want %v", ana[0], want)
	}
	if len(ana[1]) != 0 {
		t.Errorf("requester sees the payout's %v", ana[1])
	}
	for _, user := range []string{"olu", "fin", "aud", "ana-aud"} {
		if d := data(user); d[0]["fund_available_usd_cents"] != "99980000" || d[1]["error"] == nil {
			t.Errorf("%s sees %v", user, d)
		}
	}
}
