package gateway

import (
	"net/http"
	"testing"

	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// PUT /v1/policy reads objects keyed by name strictly: a value of the
// wrong type is 400 naming "<object>.<key>", and nothing is changed.
func TestPutPolicyBadValueNamesTheField(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	for body, field := range map[string]string{
		`{"caps_usd_cents":{"shelter":"lots"},"case_cap_usd_cents":1,"deadlines":{},"claim_ttl":"1m"}`: "caps_usd_cents.shelter",
		`{"caps_usd_cents":{},"case_cap_usd_cents":1,"deadlines":{"urgent":24},"claim_ttl":"1m"}`:      "deadlines.urgent",
		`{"caps_usd_cents":[],"case_cap_usd_cents":1,"deadlines":{},"claim_ttl":"1m"}`:                 "caps_usd_cents",
		`{"caps_usd_cents":{},"case_cap_usd_cents":1,"deadlines":{},"claim_ttl":"1m","version":"9"}`:   "version",
	} {
		h.calls.reset()
		w := h.do(req{user: "adm", method: http.MethodPut, path: "/v1/policy", body: body})
		p := decodeProblem(t, w, http.StatusBadRequest)
		if len(p.Errors) != 1 || p.Errors[0].Field != field {
			t.Errorf("%s: errors %+v, want %s", body, p.Errors, field)
		}
		if got := h.calls.list(); len(got) != 0 {
			t.Errorf("%s: refused but called %v", body, got)
		}
	}
}
