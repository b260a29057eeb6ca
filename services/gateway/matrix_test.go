package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// The callers of the matrix: nobody signed in, a requester on a case of
// her post and on one of another post, and one user of each other role.
const (
	anon = iota
	reqOwn
	reqOther
	appr
	fina
	audi
	admi
	callers
)

// callerUsers are the test users of each column (reqOwn and reqOther are
// both ana, at BGD-DHAKA).
var callerUsers = [callers]string{anon: "", reqOwn: "ana", reqOther: "ana", appr: "olu", fina: "fin", audi: "aud", admi: "adm"}

// routeMatrix is who gets what from every route: the status each caller
// gets for a valid request (validBodies, concrete). It is data, reviewed
// against API.md's "who" column and its error conventions: 401 without
// credentials, 403 for a role the route does not serve, 404 for a case of
// another post (a requester learns nothing more), 403 for filing at
// another post. A route without a row fails TestRouteMatrix.
var routeMatrix = map[string][callers]int{
	//                                     anon reqOwn reqOther appr fina audi admi
	"GET /healthz":                        {200, 200, 200, 200, 200, 200, 200},
	"GET /readyz":                         {200, 200, 200, 200, 200, 200, 200},
	"GET /metrics":                        {200, 200, 200, 200, 200, 200, 200},
	"GET /v1/openapi.json":                {200, 200, 200, 200, 200, 200, 200},
	"GET /v1/admin/dead-letters":          {401, 403, 403, 403, 403, 403, 200},
	"GET /v1/changes":                     {401, 403, 403, 200, 200, 200, 403},
	"POST /v1/auth/token":                 {200, 200, 200, 200, 200, 200, 200},
	"DELETE /v1/auth/token":               {401, 204, 204, 204, 204, 204, 204},
	"POST /v1/auth/totp":                  {200, 200, 200, 200, 200, 200, 200},
	"POST /v1/auth/totp/confirm":          {401, 401, 401, 401, 401, 401, 401},
	"POST /v1/auth/refresh":               {401, 200, 200, 200, 200, 200, 200},
	"GET /v1/auth/oidc/login":             {404, 404, 404, 404, 404, 404, 404}, // single sign-on is off here: oidc_test.go
	"GET /v1/auth/oidc/callback":          {404, 404, 404, 404, 404, 404, 404},
	"GET /v1/me":                          {401, 200, 200, 200, 200, 200, 200},
	"POST /v1/requests":                   {401, 201, 403, 403, 403, 403, 403},
	"GET /v1/requests":                    {401, 200, 200, 200, 200, 200, 403},
	"GET /v1/requests/{id}":               {401, 200, 404, 200, 200, 200, 403},
	"POST /v1/requests/{id}/amend":        {401, 200, 404, 403, 403, 403, 403},
	"POST /v1/requests/{id}/withdraw":     {401, 200, 404, 403, 403, 403, 403},
	"POST /v1/requests/{id}/info":         {401, 200, 404, 403, 403, 403, 403},
	"GET /v1/requests/{id}/history":       {401, 200, 404, 200, 200, 200, 403},
	"GET /v1/requests/{id}/as-of":         {401, 403, 403, 200, 403, 200, 403},
	"GET /v1/requests/{id}/beneficiary":   {401, 200, 404, 200, 403, 403, 403},
	"POST /v1/requests/{id}/erase":        {401, 403, 403, 403, 403, 403, 200},
	"GET /v1/queue":                       {401, 403, 403, 200, 403, 403, 403},
	"POST /v1/requests/{id}/claim":        {401, 403, 403, 200, 403, 403, 403},
	"POST /v1/requests/{id}/release":      {401, 403, 403, 200, 403, 403, 403},
	"POST /v1/requests/{id}/approve":      {401, 403, 403, 200, 403, 403, 403},
	"POST /v1/requests/{id}/reject":       {401, 403, 403, 200, 403, 403, 403},
	"POST /v1/requests/{id}/request-info": {401, 403, 403, 200, 403, 403, 403},
	"GET /v1/funds":                       {401, 403, 403, 200, 200, 200, 403},
	"POST /v1/funds":                      {401, 403, 403, 403, 201, 403, 403},
	"GET /v1/funds/{id}":                  {401, 403, 403, 200, 200, 200, 403},
	"GET /v1/funds/{id}/history":          {401, 403, 403, 200, 200, 200, 403},
	"GET /v1/funds/{id}/ledger":           {401, 403, 403, 200, 200, 200, 403},
	"POST /v1/funds/{id}/allocation":      {401, 403, 403, 403, 200, 403, 403},
	"POST /v1/payouts/reconcile":          {401, 403, 403, 403, 200, 200, 403},
	"GET /v1/payees":                      {401, 200, 200, 200, 200, 200, 200},
	"POST /v1/payees":                     {401, 403, 403, 403, 201, 403, 403},
	"GET /v1/payees/{id}":                 {401, 200, 200, 200, 200, 200, 200},
	"POST /v1/payees/{id}/account":        {401, 403, 403, 403, 200, 403, 403},
	"GET /v1/payouts":                     {401, 403, 403, 200, 200, 200, 403},
	"POST /v1/payouts/{id}/retry":         {401, 403, 403, 403, 200, 403, 403},
	"POST /v1/payouts/{id}/cancel":        {401, 403, 403, 403, 200, 403, 403},
	"GET /v1/policy":                      {401, 200, 200, 200, 200, 200, 200},
	"PUT /v1/policy":                      {401, 403, 403, 403, 403, 403, 200},
	"GET /v1/policy/history":              {401, 403, 403, 403, 403, 200, 200},
	"GET /v1/admin/users":                 {401, 403, 403, 403, 403, 403, 200},
	"POST /v1/admin/users":                {401, 403, 403, 403, 403, 403, 201},
	"PATCH /v1/admin/users/{username}":    {401, 403, 403, 403, 403, 403, 200},
	"GET /v1/webhooks":                    {401, 403, 403, 403, 403, 403, 200},
	"POST /v1/webhooks":                   {401, 403, 403, 403, 403, 403, 201},
	"DELETE /v1/webhooks/{id}":            {401, 403, 403, 403, 403, 403, 200},
	"GET /v1/audit/events":                {401, 403, 403, 403, 403, 200, 403},
	"GET /v1/audit/checkpoint":            {401, 403, 403, 403, 403, 200, 403},
	"GET /v1/audit/key":                   {401, 403, 403, 403, 403, 200, 403},
	"GET /v1/audit/leaves/{seq}":          {401, 403, 403, 403, 403, 200, 403},
	"GET /v1/audit/proof/inclusion":       {401, 403, 403, 403, 403, 200, 403},
	"GET /v1/audit/proof/consistency":     {401, 403, 403, 403, 403, 200, 403},
	"GET /v1/audit/verify":                {401, 403, 403, 403, 403, 200, 403},
	"GET /v1/audit/export":                {401, 403, 403, 403, 403, 200, 403},
	"GET /v1/audit/access":                {401, 403, 403, 403, 403, 200, 403},
	"GET /v1/audit/access/checkpoint":     {401, 403, 403, 403, 403, 200, 403},
}

// TestRouteMatrix calls every route of the route table as every caller
// and checks the status against routeMatrix. A route added without a row,
// or a row whose route is gone, fails. A refused call reaches no service.
func TestRouteMatrix(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	seen := map[string]bool{}
	for _, rt := range h.srv.routes() {
		key := rt.method + " " + rt.pattern
		seen[key] = true
		want, ok := routeMatrix[key]
		if !ok {
			t.Errorf("%s: no row in routeMatrix: add who may call it (see API.md)", key)
			continue
		}
		for caller, status := range want {
			user := callerUsers[caller]
			path, body := concrete(rt.pattern), validBodies[rt.pattern]
			if caller == reqOther {
				// The same requester, on another post's case, or filing
				// for another post.
				path = strings.ReplaceAll(path, dhakaCase, mumbaiCase)
				body = strings.ReplaceAll(body, "BGD-DHAKA", "IND-MUMBAI")
			}
			// Past any sign-in throttle's wait (at most 15 minutes): a
			// wrong code is a failed sign-in, and the matrix is about roles.
			h.clock.Advance(16 * time.Minute)
			r := req{method: rt.method, path: path, body: body, header: map[string]string{}}
			if user != "" {
				// A token of its own: DELETE /v1/auth/token revokes it.
				acct, err := h.store.Account(context.Background(), user)
				if err != nil {
					t.Fatal(err)
				}
				tok, _, err := h.srv.startSession(context.Background(), acct)
				if err != nil {
					t.Fatal(err)
				}
				r.header["Authorization"] = "Bearer " + tok
			}
			name := fmt.Sprintf("%s as %s", key, [callers]string{"nobody", "requester (own post)",
				"requester (other post)", "approver", "finance", "auditor", "admin"}[caller])
			h.calls.reset()
			w := h.do(r)
			if w.Code != status {
				t.Errorf("%s: %d, want %d; %s", name, w.Code, status, w.Body)
				continue
			}
			if status >= 400 {
				decodeProblem(t, w, status)
				if called := h.calls.list(); (status == http.StatusUnauthorized || status == http.StatusForbidden) && len(called) != 0 {
					t.Errorf("%s: refused with %d after calling %v", name, status, called)
				}
			}
		}
	}
	for key := range routeMatrix {
		if !seen[key] {
			t.Errorf("%s: a row of routeMatrix for a route that is gone", key)
		}
	}
}
