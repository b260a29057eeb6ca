package gateway

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// apiWho is API.md's "who" column, written out independently of routes():
// nil means any signed-in user, "public" anyone.
var apiWho = map[string][]string{
	"GET /healthz":                        {"public"},
	"GET /readyz":                         {"public"},
	"GET /metrics":                        {"public"},
	"GET /v1/openapi.json":                {"public"},
	"POST /v1/auth/token":                 {"public"},
	"DELETE /v1/auth/token":               nil,
	"POST /v1/auth/refresh":               nil,
	"GET /v1/auth/oidc/login":             {"public"},
	"GET /v1/auth/oidc/callback":          {"public"},
	"POST /v1/auth/totp":                  {"public"},
	"POST /v1/auth/totp/confirm":          {"public"},
	"GET /v1/me":                          nil,
	"GET /v1/policy":                      nil,
	"PUT /v1/policy":                      {admin},
	"GET /v1/policy/history":              {admin, auditor},
	"GET /v1/admin/users":                 {admin},
	"POST /v1/admin/users":                {admin},
	"PATCH /v1/admin/users/{username}":    {admin},
	"GET /v1/webhooks":                    {admin},
	"POST /v1/webhooks":                   {admin},
	"DELETE /v1/webhooks/{id}":            {admin},
	"POST /v1/requests":                   {requester},
	"GET /v1/requests":                    {requester, approver, finance, auditor},
	"GET /v1/requests/{id}":               {requester, approver, finance, auditor},
	"POST /v1/requests/{id}/amend":        {requester},
	"POST /v1/requests/{id}/withdraw":     {requester},
	"POST /v1/requests/{id}/info":         {requester},
	"GET /v1/requests/{id}/history":       {requester, approver, finance, auditor},
	"GET /v1/requests/{id}/as-of":         {approver, auditor},
	"GET /v1/requests/{id}/beneficiary":   {requester, approver},
	"POST /v1/requests/{id}/erase":        {admin},
	"GET /v1/queue":                       {approver},
	"POST /v1/requests/{id}/claim":        {approver},
	"POST /v1/requests/{id}/release":      {approver},
	"POST /v1/requests/{id}/approve":      {approver},
	"POST /v1/requests/{id}/reject":       {approver},
	"POST /v1/requests/{id}/request-info": {approver},
	"GET /v1/funds":                       {finance, approver, auditor},
	"POST /v1/funds":                      {finance},
	"GET /v1/funds/{id}":                  {finance, approver, auditor},
	"GET /v1/funds/{id}/history":          {finance, approver, auditor}, // an addition: the burn-down of the web UI
	"GET /v1/funds/{id}/ledger":           {finance, approver, auditor}, // an addition: the double-entry ledger (ADR 29)
	"POST /v1/funds/{id}/allocation":      {finance},                    // an addition: FundAllocationChanged
	"POST /v1/payouts/reconcile":          {finance, auditor},           // an addition: reconcile (ADR 29); changes nothing
	"GET /v1/payees":                      nil,
	"POST /v1/payees":                     {finance},
	"GET /v1/payees/{id}":                 nil,
	"POST /v1/payees/{id}/account":        {"finance"},
	"GET /v1/payouts":                     {finance, auditor, approver},
	"POST /v1/payouts/{id}/retry":         {finance},
	"POST /v1/payouts/{id}/cancel":        {finance},
	"GET /v1/audit/events":                {auditor},
	"GET /v1/audit/checkpoint":            {auditor},
	"GET /v1/audit/key":                   {auditor},
	"GET /v1/audit/access/checkpoint":     {auditor}, // an addition: the access log's own tree
	"GET /v1/audit/leaves/{seq}":          {auditor},
	"GET /v1/audit/proof/inclusion":       {auditor},
	"GET /v1/audit/proof/consistency":     {auditor},
	"GET /v1/audit/verify":                {auditor},
	"GET /v1/audit/export":                {auditor},
	"GET /v1/audit/access":                {auditor},
	"GET /v1/admin/dead-letters":          {admin},                      // an addition: dead letters are "visible to admins" (DESIGN §4)
	"GET /v1/changes":                     {approver, finance, auditor}, // an addition: those who see every case
}

// singleRoleUsers hold one role each.
var singleRoleUsers = map[string]string{"ana": requester, "olu": approver, "fin": finance, "aud": auditor, "adm": admin}

// concrete fills a pattern's {id} with an id the fakes know, and gives
// queries their required parameters.
func concrete(pattern string) string {
	p := pattern
	switch {
	case strings.HasPrefix(p, "/v1/requests/{id}"):
		p = strings.Replace(p, "{id}", dhakaCase, 1)
	case strings.HasPrefix(p, "/v1/funds/{id}"):
		p = strings.Replace(p, "{id}", fundID, 1)
	case strings.HasPrefix(p, "/v1/payees/{id}"):
		p = strings.Replace(p, "{id}", payeeID, 1)
	case strings.HasPrefix(p, "/v1/payouts/{id}"):
		p = strings.Replace(p, "{id}", payoutID, 1)
	case strings.HasSuffix(p, "{username}"):
		p = strings.Replace(p, "{username}", "ana", 1)
	case strings.HasPrefix(p, "/v1/webhooks/{id}"):
		p = strings.Replace(p, "{id}", webhookID, 1)
	case strings.HasSuffix(p, "{seq}"):
		p = strings.Replace(p, "{seq}", "1", 1)
	}
	switch pattern {
	case "/v1/requests/{id}/as-of":
		p += "?t=2025-03-01T10:00:00Z"
	case "/v1/audit/access":
		p += "?case=" + dhakaCase
	case "/v1/audit/proof/inclusion":
		p += "?seq=1&size=3"
	case "/v1/audit/proof/consistency":
		p += "?from=1&to=3"
	}
	return p
}

// validBodies are well-formed bodies of every POST route.
var validBodies = map[string]string{
	"/v1/auth/token":        `{"username":"ana","password":"pw"}`,
	"/v1/auth/refresh":      "",
	"/v1/auth/totp":         `{"username":"ana","password":"pw"}`,
	"/v1/auth/totp/confirm": `{"username":"ana","password":"pw","otp":"123456"}`,
	"/v1/requests": `{"post":"BGD-DHAKA","category":"shelter","urgency":"critical","amount_usd_cents":25000,` +
		`"justification":"three nights","beneficiary":{"reference":"REF-1","name":"Person Name"},"payee_id":"` + payeeID + `"}`,
	"/v1/requests/{id}/amend":        `{"amount_usd_cents":20000,"beneficiary":{"reference":"REF-2"}}`,
	"/v1/requests/{id}/withdraw":     `{"reason":"found other help"}`,
	"/v1/requests/{id}/erase":        `{"reason":"the survivor asked"}`,
	"/v1/requests/{id}/info":         `{"answer":"the shelter is in Mirpur"}`,
	"/v1/requests/{id}/claim":        ``,
	"/v1/requests/{id}/release":      `{}`,
	"/v1/requests/{id}/approve":      `{"amount_usd_cents":20000,"fund_id":"` + fundID + `","note":"ok"}`,
	"/v1/requests/{id}/reject":       `{"reason":"out of scope"}`,
	"/v1/requests/{id}/request-info": `{"question":"which shelter?"}`,
	"/v1/policy": `{"caps_usd_cents":{"shelter":500000},"case_cap_usd_cents":2000000,"second_approval_above_usd_cents":500000,` +
		`"deadlines":{"critical":"4h","urgent":"24h","routine":"72h"},"claim_ttl":"30m"}`,
	"/v1/admin/users":            `{"username":"nia","password":"long enough pw","roles":["requester"],"posts":["KEN-NAIROBI"]}`,
	"/v1/admin/users/{username}": `{"posts":["BGD-DHAKA","BGD-CTG"]}`,
	"/v1/funds":                  `{"name":"Emergency 2025","allocated_usd_cents":100000000}`,
	"/v1/payees":                 `{"name":"Clinic","country":"IN","account":"ACC-9"}`,
	"/v1/payees/{id}/account":    `{"account":"ACC-10","reason":"the clinic moved banks"}`,
	"/v1/funds/{id}/allocation":  `{"allocated_usd_cents":90000000,"reason":"the donor cut the grant"}`,
	"/v1/payouts/reconcile": `{"lines":[{"provider_ref":"SIM-1","payout_id":"` + payoutID + `","payee_id":"` + payeeID +
		`","amount_usd_cents":25000,"currency":"USD","settled_at":"2025-03-01T10:00:00Z"}]}`,
	"/v1/payouts/{id}/retry":  ``,
	"/v1/payouts/{id}/cancel": `{"reason":"payee closed"}`,
	"/v1/webhooks":            `{"url":"https://hooks.example.org/eva","events":["RequestApproved"],"secret":"0123456789abcdef"}`,
	"/v1/webhooks/{id}":       ``,
}

func TestRoutesMatchAPIWho(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	seen := map[string]bool{}
	for _, rt := range h.srv.routes() {
		key := rt.method + " " + rt.pattern
		seen[key] = true
		want, ok := apiWho[key]
		if !ok {
			t.Errorf("%s: not in API.md's table", key)
			continue
		}
		switch {
		case slices.Equal(want, []string{"public"}):
			if !rt.public {
				t.Errorf("%s: should be public", key)
			}
		case rt.public:
			t.Errorf("%s: public, want %v", key, want)
		case !sameSet(rt.roles, want):
			t.Errorf("%s: roles %v, want %v", key, rt.roles, want)
		}
	}
	for key := range apiWho {
		if !seen[key] {
			t.Errorf("%s: not routed", key)
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestRoles calls every route as each single-role user: users without the
// route's role get 403 and reach no service; users with it get through.
func TestRoles(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		for _, rt := range h.srv.routes() {
			if rt.public || rt.pattern == "/v1/auth/token" {
				continue
			}
			for user, role := range singleRoleUsers {
				h.calls.reset()
				r := req{user: user, method: rt.method, path: concrete(rt.pattern), body: validBodies[rt.pattern]}
				w := h.do(r)
				allowed := len(rt.roles) == 0 || slices.Contains(rt.roles, role)
				if !allowed {
					decodeProblem(t, w, http.StatusForbidden)
					if got := h.calls.list(); len(got) != 0 {
						t.Errorf("%s %s as %s: refused but called %v", rt.method, rt.pattern, user, got)
					}
					continue
				}
				if w.Code >= 300 {
					t.Errorf("%s %s as %s (%s): %d %s", rt.method, rt.pattern, user, role, w.Code, w.Body)
				}
			}
		}
	})
}

// readOnlyPosts are the POST routes that change nothing (a query with a
// body, answered again for the same Idempotency-Key like any POST): an
// auditor may call them.
var readOnlyPosts = map[string]string{"/v1/payouts/reconcile": "disbursement.Reconcile"}

// TestAuditorChangesNothing: every command refuses an auditor.
func TestAuditorChangesNothing(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	for _, rt := range h.srv.routes() {
		if rt.method == http.MethodGet || strings.HasPrefix(rt.pattern, "/v1/auth/") {
			continue
		}
		if call, ok := readOnlyPosts[rt.pattern]; ok {
			w := h.do(req{user: "aud", method: rt.method, path: concrete(rt.pattern), body: validBodies[rt.pattern]})
			if got := h.calls.list(); w.Code != http.StatusOK || len(got) != 1 || got[0] != call {
				t.Fatalf("%s as an auditor: %d %s, calls %v; want 200 and only %s", rt.pattern, w.Code, w.Body, got, call)
			}
			h.calls.reset()
			continue
		}
		w := h.do(req{user: "aud", method: rt.method, path: concrete(rt.pattern), body: validBodies[rt.pattern]})
		decodeProblem(t, w, http.StatusForbidden)
	}
	if got := h.calls.list(); len(got) != 0 {
		t.Fatalf("an auditor's commands reached %v", got)
	}
	if n := h.idemRows(); n != 0 {
		t.Fatalf("%d idempotency keys written", n)
	}
}
