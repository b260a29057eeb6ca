package gateway

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// postRoutes are the POST routes, with a user allowed to call each, a
// string field and, where there is one, an integer field.
var postRoutes = []struct {
	pattern, user, strField, intField string
}{
	{"/v1/requests", "ana", "justification", "amount_usd_cents"},
	{"/v1/requests/{id}/amend", "ana", "justification", "amount_usd_cents"},
	{"/v1/requests/{id}/withdraw", "ana", "reason", ""},
	{"/v1/requests/{id}/info", "ana", "answer", ""},
	{"/v1/requests/{id}/erase", "adm", "reason", ""},
	{"/v1/requests/{id}/claim", "olu", "", ""},
	{"/v1/requests/{id}/release", "olu", "", ""},
	{"/v1/requests/{id}/approve", "olu", "fund_id", "amount_usd_cents"},
	{"/v1/requests/{id}/reject", "olu", "reason", ""},
	{"/v1/requests/{id}/request-info", "olu", "question", ""},
	{"/v1/funds", "fin", "name", "allocated_usd_cents"},
	{"/v1/payees", "fin", "account", ""},
	{"/v1/payees/{id}/account", "fin", "account", ""},
	{"/v1/payouts/{id}/retry", "fin", "", ""},
	{"/v1/payouts/{id}/cancel", "fin", "reason", ""},
	{"/v1/funds/{id}/allocation", "fin", "reason", "allocated_usd_cents"},
	{"/v1/payouts/reconcile", "aud", "lines", ""},
	{"/v1/admin/users", "adm", "username", ""},
	{"/v1/webhooks", "adm", "url", ""},
}

func TestPostRoutesCovered(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	var want []string
	for _, rt := range h.srv.routes() {
		if rt.method == http.MethodPost && !strings.HasPrefix(rt.pattern, "/v1/auth/") {
			want = append(want, rt.pattern)
		}
	}
	var got []string
	for _, p := range postRoutes {
		got = append(got, p.pattern)
	}
	if !sameSet(got, want) {
		t.Fatalf("postRoutes %v, routes %v", got, want)
	}
}

// TestBadInput sends every POST route bad input: each answer is a 4xx
// problem naming the field, and nothing is written: no service is called,
// no idempotency key stored.
func TestBadInput(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, func(c *Config) { c.MaxBodyBytes = 4096 })
		type bad struct {
			name   string
			body   string
			header map[string]string
			status int
			field  string
		}
		for _, rt := range postRoutes {
			cases := []bad{
				{"malformed JSON", `{"reason": "x"`, nil, 400, "body"},
				{"not JSON", `reason=x`, nil, 400, "body"},
				{"not an object", `["x"]`, nil, 400, "body"},
				{"null", `null`, nil, 400, "body"},
				{"unknown field", `{"surprise": 1}`, nil, 400, "surprise"},
				{"trailing data", `{} {}`, nil, 400, "body"},
				{"trailing garbage", `{}x`, nil, 400, "body"},
				{"no Content-Type", `{}`, map[string]string{"Content-Type": ""}, 400, "Content-Type"},
				{"form Content-Type", `{}`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 400, "Content-Type"},
				{"latin-1", `{}`, map[string]string{"Content-Type": "application/json; charset=latin1"}, 400, "Content-Type"},
				{"oversized", `{"x":"` + strings.Repeat("a", 5000) + `"}`, nil, 413, "body"},
				{"empty key", `{}`, map[string]string{IdempotencyHeader: " "}, 400, IdempotencyHeader},
				{"long key", `{}`, withKey(strings.Repeat("k", 256)), 400, IdempotencyHeader},
				{"key with a space", `{}`, withKey("a b"), 400, IdempotencyHeader},
				{"non-ASCII key", `{}`, withKey("clé"), 400, IdempotencyHeader},
			}
			if rt.strField != "" {
				cases = append(cases,
					bad{"number for a string", `{"` + rt.strField + `": 12}`, nil, 400, rt.strField},
					bad{"object for a string", `{"` + rt.strField + `": {"a": [1]}}`, nil, 400, rt.strField},
					bad{"duplicate key", `{"` + rt.strField + `": "a", "` + rt.strField + `": "b"}`, nil, 400, rt.strField},
					bad{"other case", `{"` + strings.ToUpper(rt.strField) + `": "a"}`, nil, 400, strings.ToUpper(rt.strField)},
					bad{"empty body", ``, nil, 400, "body"},
				)
			}
			if rt.intField != "" {
				cases = append(cases,
					bad{"float amount", `{"` + rt.intField + `": 10.5}`, nil, 400, rt.intField},
					bad{"exponent amount", `{"` + rt.intField + `": 1e3}`, nil, 400, rt.intField},
					bad{"string amount", `{"` + rt.intField + `": "1000"}`, nil, 400, rt.intField},
					bad{"huge amount", `{"` + rt.intField + `": 99999999999999999999}`, nil, 400, rt.intField},
				)
			}
			if rt.pattern == "/v1/requests" || rt.pattern == "/v1/requests/{id}/amend" {
				cases = append(cases,
					bad{"unknown nested field", `{"beneficiary": {"reference": "R", "passport": "X1"}}`, nil, 400, "beneficiary.passport"},
					bad{"wrong nested type", `{"beneficiary": {"reference": 7}}`, nil, 400, "beneficiary.reference"},
					bad{"string for an object", `{"beneficiary": "R"}`, nil, 400, "beneficiary"},
				)
			}
			for _, c := range cases {
				h.calls.reset()
				w := h.do(req{user: rt.user, method: http.MethodPost, path: concrete(rt.pattern), body: c.body, header: c.header})
				name := rt.pattern + ": " + c.name
				if w.Code != c.status {
					t.Errorf("%s: status %d, want %d; %s", name, w.Code, c.status, w.Body)
					continue
				}
				p := decodeProblem(t, w, c.status)
				if fs := fieldsOf(p); !slices.Contains(fs, c.field) {
					t.Errorf("%s: fields %v, want %s (%s)", name, fs, c.field, p.Detail)
				}
				for _, f := range p.Errors {
					if f.Message == "" {
						t.Errorf("%s: field %s without a message", name, f.Field)
					}
				}
				if got := h.calls.list(); len(got) != 0 {
					t.Errorf("%s: services called: %v", name, got)
				}
			}
		}
		if n := h.idemRows(); n != 0 {
			t.Fatalf("%d idempotency keys stored for bad input", n)
		}
	})
}

// TestBadQueries: bad query parameters are 400 naming the parameter, and
// reach no service.
func TestBadQueries(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	for _, c := range []struct{ user, path, field string }{
		{"olu", "/v1/requests?limit=0", "limit"},
		{"olu", "/v1/requests?limit=501", "limit"},
		{"olu", "/v1/requests?limit=ten", "limit"},
		{"olu", "/v1/requests?limit=1&limit=2", "limit"},
		{"olu", "/v1/requests?status=lost", "status"},
		{"olu", "/v1/requests?urgency=soon", "urgency"},
		{"olu", "/v1/requests?post=" + strings.Repeat("P", 65), "post"},
		{"olu", "/v1/requests?cursor=" + strings.Repeat("c", 2000), "cursor"},
		{"olu", "/v1/queue?limit=-1", "limit"},
		{"olu", "/v1/requests/" + dhakaCase + "/as-of", "t"},
		{"olu", "/v1/requests/" + dhakaCase + "/as-of?t=yesterday", "t"},
		{"olu", "/v1/requests/" + dhakaCase + "/as-of?t=2025-03-01", "t"},
		{"fin", "/v1/funds?limit=1000", "limit"},
		{"fin", "/v1/payees?limit=x", "limit"},
		{"fin", "/v1/payouts?request=42", "request"},
		{"fin", "/v1/payouts?status=lost", "status"},
		{"aud", "/v1/audit/events?after=-1", "after"},
		{"aud", "/v1/audit/events?after=1&cursor=2", "cursor"},
		{"aud", "/v1/audit/events?limit=0", "limit"},
		{"aud", "/v1/audit/export?format=xml", "format"},
		{"aud", "/v1/audit/access", "case"},
		{"aud", "/v1/audit/access?case=" + strings.ToUpper(dhakaCase), "case"},
	} {
		h.calls.reset()
		p := decodeProblem(t, h.get(c.user, c.path), http.StatusBadRequest)
		if fs := fieldsOf(p); !slices.Equal(fs, []string{c.field}) {
			t.Errorf("%s: fields %v, want %s", c.path, fs, c.field)
		}
		if got := h.calls.list(); len(got) != 0 {
			t.Errorf("%s: services called: %v", c.path, got)
		}
	}
}

// TestBadPathIDs: ids that cannot name anything are 404 before any
// service is asked.
func TestBadPathIDs(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	for _, c := range []struct{ user, method, path string }{
		{"olu", http.MethodGet, "/v1/requests/42"},
		{"olu", http.MethodGet, "/v1/requests/" + strings.ToUpper(dhakaCase)},
		{"olu", http.MethodGet, "/v1/requests/{" + dhakaCase + "}"},
		{"olu", http.MethodGet, "/v1/requests/" + strings.ReplaceAll(dhakaCase, "-", "")},
		{"olu", http.MethodGet, "/v1/requests/x/history"},
		{"olu", http.MethodPost, "/v1/requests/x/claim"},
		{"ana", http.MethodPost, "/v1/requests/x/withdraw"},
		{"fin", http.MethodGet, "/v1/funds/a%20b"},
		{"fin", http.MethodGet, "/v1/funds/" + strings.Repeat("f", 129)},
		{"fin", http.MethodPost, "/v1/payouts/%3Cscript%3E/retry"},
	} {
		h.calls.reset()
		decodeProblem(t, h.do(req{user: c.user, method: c.method, path: c.path, body: `{"reason":"r"}`}), http.StatusNotFound)
		if got := h.calls.list(); len(got) != 0 {
			t.Errorf("%s %s: services called: %v", c.method, c.path, got)
		}
	}
	// Unknown routes and methods are problems too.
	decodeProblem(t, h.get("olu", "/v1/nothing"), http.StatusNotFound)
	decodeProblem(t, h.do(req{user: "olu", method: http.MethodPut, path: "/v1/queue"}), http.StatusMethodNotAllowed)
}
