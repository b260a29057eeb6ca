package gateway

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
)

// route is one operation of the API and who may call it.
type route struct {
	method, pattern string
	// public routes need no token; the others need one, and, when roles
	// is not empty, one of the roles (else any signed-in user may call).
	public  bool
	roles   []string
	handler http.HandlerFunc
}

// Roles, short.
const (
	requester = assist.RoleRequester
	approver  = assist.RoleApprover
	finance   = assist.RoleFinance
	auditor   = assist.RoleAuditor
	admin     = assist.RoleAdmin
)

// caseReaders may read cases (a requester only its posts').
var caseReaders = []string{requester, approver, finance, auditor}

// routes is the API: every route, its roles (API.md's "who") and handler.
func (s *server) routes() []route {
	return []route{
		// Operations.
		{method: http.MethodGet, pattern: "/healthz", public: true, handler: s.healthz},
		{method: http.MethodGet, pattern: "/readyz", public: true, handler: s.readyz},
		{method: http.MethodGet, pattern: "/metrics", public: true, handler: s.metricsHandler().ServeHTTP},
		{method: http.MethodGet, pattern: "/v1/openapi.json", public: true, handler: serveOpenAPI},

		// Identity.
		{method: http.MethodPost, pattern: "/v1/auth/token", public: true, handler: s.login},
		{method: http.MethodDelete, pattern: "/v1/auth/token", handler: s.logout},
		{method: http.MethodGet, pattern: "/v1/me", handler: s.me},

		// Requests.
		{method: http.MethodPost, pattern: "/v1/requests", roles: []string{requester}, handler: handleSelfIdempotent(s, s.fileRequest)},
		{method: http.MethodGet, pattern: "/v1/requests", roles: caseReaders, handler: handleQuery(s.listRequests)},
		{method: http.MethodGet, pattern: "/v1/requests/{id}", roles: caseReaders, handler: handleQuery(s.getRequest)},
		{method: http.MethodPost, pattern: "/v1/requests/{id}/amend", roles: []string{requester}, handler: handleCommand(s, s.amendRequest)},
		{method: http.MethodPost, pattern: "/v1/requests/{id}/withdraw", roles: []string{requester}, handler: handleCommand(s, s.withdrawRequest)},
		{method: http.MethodPost, pattern: "/v1/requests/{id}/info", roles: []string{requester}, handler: handleCommand(s, s.answerRequest)},
		{method: http.MethodGet, pattern: "/v1/requests/{id}/history", roles: caseReaders, handler: handleQuery(s.history)},
		{method: http.MethodGet, pattern: "/v1/requests/{id}/as-of", roles: []string{approver, auditor}, handler: handleQuery(s.asOf)},
		{method: http.MethodGet, pattern: "/v1/requests/{id}/beneficiary", roles: []string{requester, approver}, handler: handleQuery(s.beneficiary)},

		// Review.
		{method: http.MethodGet, pattern: "/v1/queue", roles: []string{approver}, handler: handleQuery(s.queue)},
		{method: http.MethodPost, pattern: "/v1/requests/{id}/claim", roles: []string{approver}, handler: handleCommand(s, s.claim)},
		{method: http.MethodPost, pattern: "/v1/requests/{id}/release", roles: []string{approver}, handler: handleCommand(s, s.release)},
		{method: http.MethodPost, pattern: "/v1/requests/{id}/approve", roles: []string{approver}, handler: handleCommand(s, s.approve)},
		{method: http.MethodPost, pattern: "/v1/requests/{id}/reject", roles: []string{approver}, handler: handleCommand(s, s.reject)},
		{method: http.MethodPost, pattern: "/v1/requests/{id}/request-info", roles: []string{approver}, handler: handleCommand(s, s.requestInfo)},

		// Money.
		{method: http.MethodGet, pattern: "/v1/funds", roles: []string{finance, approver, auditor}, handler: handleQuery(s.listFunds)},
		{method: http.MethodPost, pattern: "/v1/funds", roles: []string{finance}, handler: handleCommand(s, s.createFund)},
		{method: http.MethodGet, pattern: "/v1/funds/{id}", roles: []string{finance, approver, auditor}, handler: handleQuery(s.getFund)},
		{method: http.MethodGet, pattern: "/v1/funds/{id}/history", roles: []string{finance, approver, auditor}, handler: handleQuery(s.fundHistory)},
		{method: http.MethodGet, pattern: "/v1/payees", handler: handleQuery(s.listPayees)},
		{method: http.MethodPost, pattern: "/v1/payees", roles: []string{finance}, handler: handleCommand(s, s.createPayee)},
		{method: http.MethodGet, pattern: "/v1/payees/{id}", handler: handleQuery(s.getPayee)},
		{method: http.MethodGet, pattern: "/v1/payouts", roles: []string{finance, auditor, approver}, handler: handleQuery(s.listPayouts)},
		{method: http.MethodPost, pattern: "/v1/payouts/{id}/retry", roles: []string{finance}, handler: handleCommand(s, s.retryPayout)},
		{method: http.MethodPost, pattern: "/v1/payouts/{id}/cancel", roles: []string{finance}, handler: handleCommand(s, s.cancelPayout)},

		// Audit.
		{method: http.MethodGet, pattern: "/v1/audit/events", roles: []string{auditor}, handler: handleQuery(s.auditEvents)},
		{method: http.MethodGet, pattern: "/v1/audit/checkpoint", roles: []string{auditor}, handler: handleQuery(s.checkpoint)},
		{method: http.MethodGet, pattern: "/v1/audit/verify", roles: []string{auditor}, handler: handleQuery(s.verify)},
		{method: http.MethodGet, pattern: "/v1/audit/export", roles: []string{auditor}, handler: s.export},
		{method: http.MethodGet, pattern: "/v1/audit/access", roles: []string{auditor}, handler: handleQuery(s.access)},
		{method: http.MethodGet, pattern: "/v1/admin/dead-letters", roles: []string{admin}, handler: handleQuery(s.deadLetters)},
	}
}

// router mounts the routes behind the edge middleware: authentication,
// then the role check, then the path id check, then the handler.
func (s *server) router() chi.Router {
	r := chi.NewRouter()
	r.Use(s.edge)
	r.NotFound(s.notFound)
	r.MethodNotAllowed(methodNotAllowedHandler)
	for _, rt := range s.routes() {
		var mws []func(http.Handler) http.Handler
		if !rt.public {
			mws = append(mws, s.authenticate)
			if len(rt.roles) > 0 {
				mws = append(mws, allow(rt.roles...))
			}
		}
		if strings.Contains(rt.pattern, "{id}") {
			mws = append(mws, checkID(rt.pattern))
		}
		r.With(mws...).Method(rt.method, rt.pattern, rt.handler)
	}
	return r
}

// checkID answers 404 for a path id that is not a canonical UUID: every
// id of EVA is a UUIDv7 string, and nothing else can name anything.
func checkID(pattern string) func(http.Handler) http.Handler {
	what, _, _ := strings.Cut(strings.TrimPrefix(pattern, "/v1/"), "/")
	what = strings.TrimSuffix(what, "s") // requests → request, funds → fund, ...
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id := chi.URLParam(r, "id"); !eventlog.ValidCaseID(id) {
				writeProblem(w, r, notFound(what, id))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// handleQuery makes a GET handler out of do: its value is the 200 answer,
// its error the problem.
func handleQuery(do func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := do(r)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}
