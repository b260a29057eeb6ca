package gateway

import (
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
)

// route is one operation of the API: where it is, who may call it, what
// it does and takes (op), and the words that document it. The OpenAPI
// document is made from the routes (openapi.go).
type route struct {
	method, pattern string
	// public routes need no token; the others need one, and, when roles
	// is not empty, one of the roles (else any signed-in user may call).
	public bool
	roles  []string
	// tag groups routes in the document (set by group).
	tag string
	// summary is a few words; doc says more (optional; "Who: ..." is
	// added from the roles); answer says what the success answer is.
	summary, doc, answer string
	// addition marks a route that API.md does not list (yet).
	addition bool
	op       operation
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

// group tags routes.
func group(tag string, rs ...route) []route {
	for i := range rs {
		rs[i].tag = tag
	}
	return rs
}

// routes is the API: every route, its roles (API.md's "who"), what its
// handler takes and answers, and its documentation.
func (s *server) routes() []route {
	const (
		get, post, put, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
		patch               = http.MethodPatch
		caseAfter           = "the case after the command"
	)
	return slices.Concat(
		group("operations",
			route{method: get, pattern: "/healthz", public: true, summary: "Liveness", answer: "the process serves",
				op: handleGet(s.healthz)},
			route{method: get, pattern: "/readyz", public: true, summary: "Readiness", answer: "NATS and the stores are reachable",
				op: handleGet(s.readyz).alsoAnswers(http.StatusServiceUnavailable)},
			route{method: get, pattern: "/metrics", public: true, summary: "Prometheus metrics",
				doc: "Labelled by route template (\"ui\" for the web UI, \"unmatched\" for any other path) and by method " +
					"(GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, else \"other\"), so that no request can add series. " +
					"With --metrics-listen they are served at that address alone, and here 404.",
				answer: "Prometheus text exposition: eva_http_requests_total and eva_http_request_duration_seconds by route, method and status, among others",
				op: rawOperation(s.serveMetrics, http.StatusOK, content{media: "text/plain", text: "Prometheus text exposition"}).
					alsoAnswers(http.StatusNotFound)},
			route{method: get, pattern: "/v1/openapi.json", public: true, summary: "This document", answer: "OpenAPI 3.1",
				op: rawOperation(s.serveOpenAPI, http.StatusOK, content{media: mediaJSON, text: "this OpenAPI 3.1 document"})},
			route{method: get, pattern: "/v1/admin/dead-letters", roles: []string{admin}, addition: true,
				summary: "Events a consumer gave up on",
				doc: "Each event that a service's consumer could not process after bounded retries, with the consumer, " +
					"the event's subject, sequence and id, and the reason; oldest first.",
				answer: "dead letters", op: handleQuery(s.deadLetters)},
		),
		group("identity",
			route{method: post, pattern: "/v1/auth/token", public: true, summary: "Sign in",
				doc: "Local accounts. A wrong username and a wrong password get the same 401. Failed sign-ins are " +
					"counted per account and client address (5 free), per address (20) and per account (100, not " +
					"held against addresses that signed in to it within 30 days); beyond, each failure doubles the " +
					"wait (1 s, 2 s, ... up to 15 min), answered 429 with Retry-After. An account with a second factor " +
					"also sends otp, its current TOTP code (401 naming otp when missing or wrong; each code once); " +
					"with RequireTOTP an approver, finance or admin account without one gets 403. Idempotency-Key is accepted " +
					"and ignored: tokens are not replayed.",
				answer: "a bearer token",
				op: handlePlain(s, s.login).alsoAnswers(http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests, http.StatusServiceUnavailable).
					withHeader("Set-Cookie", "with ?cookie=1: the eva_session cookie (HttpOnly, SameSite=Strict, Secure behind HTTPS)")},
			route{method: post, pattern: "/v1/auth/totp", public: true, summary: "Enrol a second factor",
				doc: "With the account's password (and, to replace a confirmed factor, its current code): a new TOTP " +
					"secret (RFC 6238, 6 digits, 30 s, SHA-1), pending until confirmed. Throttled like sign-in.",
				answer: "the secret and its otpauth:// URL",
				op:     handlePlain(s, s.enrolTOTP).alsoAnswers(http.StatusUnauthorized, http.StatusTooManyRequests, http.StatusServiceUnavailable)},
			route{method: post, pattern: "/v1/auth/totp/confirm", public: true, summary: "Confirm a second factor",
				doc: "With the account's password and a code of the pending secret: from then on the account signs in " +
					"with \"otp\" as well.",
				answer: "enabled",
				op:     handlePlain(s, s.confirmTOTP).alsoAnswers(http.StatusUnauthorized, http.StatusConflict, http.StatusTooManyRequests, http.StatusServiceUnavailable)},
			route{method: post, pattern: "/v1/auth/refresh", summary: "Renew the access token",
				doc: "A fresh access token for the session of the token sent, with the account's current roles and " +
					"posts; with ?cookie=1 also the eva_session cookie. It reads the session: 503 while the gateway's " +
					"database is down. An access token is verified by every replica without the database until its " +
					"access_expires_at (5 minutes); renew it before then to ride out a database outage.",
				answer: "a bearer token for the same session",
				op: handlePlain(s, s.refresh).alsoAnswers(http.StatusServiceUnavailable).
					withHeader("Set-Cookie", "with ?cookie=1: the eva_session cookie")},
			route{method: del, pattern: "/v1/auth/token", summary: "Sign out", addition: true,
				answer: "the session of the token (or session cookie) used for this request ends on every replica within a second, and the cookie is cleared",
				op:     rawOperation(s.logout, http.StatusNoContent)},
			route{method: get, pattern: "/v1/auth/oidc/login", public: true, summary: "Start single sign-on",
				doc: "With single sign-on configured (--oidc-issuer; else 404): a redirect to the OpenID provider, " +
					"authorization code flow with PKCE (S256), a state and a nonce, kept until the callback in the " +
					"eva_oidc cookie (HttpOnly, SameSite=Lax, 10 minutes, MACed). For a browser.",
				answer: "a redirect to the provider's authorization endpoint",
				op: withQuery[ssoLoginQuery](rawOperation(s.ssoLogin, http.StatusFound)).
					alsoAnswers(http.StatusNotFound, http.StatusServiceUnavailable).
					withHeader("Location", "the provider's authorization endpoint").
					withHeader("Set-Cookie", "eva_oidc: the sign-in in progress")},
			route{method: get, pattern: "/v1/auth/oidc/callback", public: true, summary: "Finish single sign-on",
				doc: "Where the provider sends the browser back (the web UI's /login/sso/callback calls it). The state " +
					"must be the eva_oidc cookie's, the code is redeemed with the PKCE verifier, and the ID token must " +
					"be signed by the provider's keys, for this client, unexpired, with the cookie's nonce (else 401 " +
					"naming state, code, id_token or nonce). Roles come from the configured claim through the role " +
					"map, posts from the posts claim: no EVA role, or an unusable username or post, is 403; a name " +
					"that is a local account with a password is 409. The user's account row is made or updated " +
					"(ADR 0023) and a session starts as with POST /v1/auth/token.",
				answer: "a bearer token, as POST /v1/auth/token, and next",
				op: withQuery[ssoCallbackQuery](rawOperation(s.ssoCallback, http.StatusOK,
					content{media: mediaJSON, typ: reflect.TypeFor[ssoResponse]()})).
					alsoAnswers(http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusConflict,
						http.StatusServiceUnavailable).
					withHeader("Set-Cookie", "with ?cookie=1: the eva_session cookie; always clears eva_oidc")},
			route{method: get, pattern: "/v1/me", summary: "Who am I", answer: "your account", op: handleGet(s.me)},
		),
		group("requests",
			route{method: post, pattern: "/v1/requests", roles: []string{requester}, summary: "File a request",
				doc: "post must be one of your posts (else 403). The request id is the command id; with an " +
					"Idempotency-Key a retry never files twice.",
				answer: "the case", op: handleSelfIdempotent(s, s.fileRequest)},
			route{method: get, pattern: "/v1/requests", roles: caseReaders, summary: "List requests",
				doc:    "A requester (without approver, finance or auditor role) sees only the requests of its posts.",
				answer: "newest first", op: handleQuery(s.listRequests)},
			route{method: get, pattern: "/v1/requests/{id}", roles: caseReaders, summary: "Read a request",
				doc: "A requester of another post gets 404.", answer: "the case", op: handleGet(s.getRequest)},
			route{method: post, pattern: "/v1/requests/{id}/amend", roles: []string{requester}, summary: "Amend a request",
				doc:    "While submitted or info_requested; only a requester of the request's post.",
				answer: caseAfter, op: handleCommand(s, s.amendRequest)},
			route{method: post, pattern: "/v1/requests/{id}/withdraw", roles: []string{requester}, summary: "Withdraw a request",
				doc: "Only a requester of the request's post, while it is open.", answer: caseAfter,
				op: handleCommand(s, s.withdrawRequest)},
			route{method: post, pattern: "/v1/requests/{id}/info", roles: []string{requester}, summary: "Answer a question",
				doc: "Back to submitted.", answer: caseAfter, op: handleCommand(s, s.answerRequest)},
			route{method: get, pattern: "/v1/requests/{id}/history", roles: caseReaders, summary: "A request's events",
				doc: "Same visibility as GET /v1/requests/{id}.", answer: "the case's events in log order",
				op: handleGet(s.history)},
			route{method: get, pattern: "/v1/changes", roles: []string{approver, finance, auditor},
				summary: "Follow the requests' events as they happen",
				doc: "A stream of server-sent events (text/event-stream; in a browser, new EventSource(\"/v1/changes\") " +
					"with the session cookie): each event of a request, in log order, as the log stores it, as " +
					"\"id: <seq>\" and \"data: \" then {\"id\",\"type\",\"case_id\",\"seq\",\"at\"} (never personal data; " +
					"the case itself is GET /v1/requests/{id}). It starts with the events stored from now on, or after " +
					"the sequence in Last-Event-ID (sent by a reconnecting EventSource) or ?after=, so a client that " +
					"reconnects misses nothing. An idle stream sends a comment line every 15 s; the stream ends when " +
					"the session does (checked then). 429 with Retry-After when the gateway already serves 256 streams.",
				answer: "server-sent events, one per event of a request",
				op: withQuery[changesQuery](rawOperation(s.changes, http.StatusOK,
					content{media: "text/event-stream", typ: reflect.TypeFor[changeJSON]()})).
					alsoAnswers(http.StatusTooManyRequests, http.StatusServiceUnavailable)},
			route{method: get, pattern: "/v1/requests/{id}/as-of", roles: []string{approver, auditor},
				summary: "A request as it stood at a time", answer: "the case rebuilt from the log up to t",
				op: handleQuery(s.asOf)},
			route{method: get, pattern: "/v1/requests/{id}/beneficiary", roles: []string{requester, approver},
				summary: "A request's personal data",
				doc: "An approver, or a requester of the request's post. Every read is recorded in the access log " +
					"(GET /v1/audit/access) before the data is returned.",
				answer: "the beneficiary, opened", op: handleGet(s.beneficiary).alsoAnswers(http.StatusGone)},
			route{method: post, pattern: "/v1/requests/{id}/erase", roles: []string{admin}, summary: "Erase a request's personal data",
				doc: "Whatever the request's state, also during a payout: the case's data key is destroyed and the event " +
					"PersonalDataErased records the admin and the reason. The history, the money trail and every audit " +
					"proof stay as they were and still verify; GET /v1/requests/{id}/beneficiary answers 410 from then on. " +
					"A retry with the same Idempotency-Key answers as the first time; erasing again with another key is 409.",
				answer: caseAfter, op: handleCommand(s, s.eraseRequest)},
		),
		group("review",
			route{method: get, pattern: "/v1/queue", roles: []string{approver}, summary: "The review queue",
				answer: "open cases: missed deadlines first, then by deadline", op: handleQuery(s.queue)},
			route{method: post, pattern: "/v1/requests/{id}/claim", roles: []string{approver}, summary: "Claim a request for review",
				doc: "→ under_review, held by you for a limited time. Four eyes: nobody who filed, amended or answered for " +
					"a request claims, approves, rejects or questions it (403 naming the rule).", answer: caseAfter,
				op: handleCommand(s, s.claim)},
			route{method: post, pattern: "/v1/requests/{id}/release", roles: []string{approver}, summary: "Give a claim back",
				doc: "Back to the queue.", answer: caseAfter, op: handleCommand(s, s.release)},
			route{method: post, pattern: "/v1/requests/{id}/approve", roles: []string{approver}, summary: "Approve",
				doc: "Holding the claim. The amount is held on the fund before the approval is recorded: a fund that " +
					"cannot cover it is 409 with available_usd_cents.",
				answer: caseAfter, op: handleCommand(s, s.approve)},
			route{method: post, pattern: "/v1/requests/{id}/reject", roles: []string{approver}, summary: "Reject",
				doc: "Holding the claim.", answer: caseAfter, op: handleCommand(s, s.reject)},
			route{method: post, pattern: "/v1/requests/{id}/request-info", roles: []string{approver},
				summary: "Ask the requester a question", doc: "Holding the claim; → info_requested.", answer: caseAfter,
				op: handleCommand(s, s.requestInfo)},
		),
		group("money",
			route{method: get, pattern: "/v1/funds", roles: []string{finance, approver, auditor}, summary: "List funds",
				answer: "funds", op: handleQuery(s.listFunds)},
			route{method: post, pattern: "/v1/funds", roles: []string{finance}, summary: "Create a fund",
				answer: "the fund", op: handleCreate(s, s.createFund)},
			route{method: get, pattern: "/v1/funds/{id}", roles: []string{finance, approver, auditor}, summary: "Read a fund",
				answer: "the fund", op: handleGet(s.getFund)},
			route{method: get, pattern: "/v1/funds/{id}/history", roles: []string{finance, approver, auditor},
				summary: "A fund's burn-down",
				doc:     "Its money after each change (a hold, a payment, a release, a change of its allocation) in time order from its creation, at most 500 points (a longer history is sampled).",
				answer:  "the fund's money over time", op: handleGet(s.fundHistory)},
			route{method: get, pattern: "/v1/funds/{id}/ledger", roles: []string{finance, approver, auditor},
				summary: "A fund's double-entry ledger",
				doc: "The fund's entries in log order after `after` (the seq of the last entry seen), each a balanced " +
					"double entry (amount from `credit` to `debit`: accounts allocation:<fund>, fund:<fund>:available, " +
					"fund:<fund>:reserved, fund:<fund>:paid) caused by one event (its seq, id and type), with the fund's " +
					"running balances; beside them the whole ledger's balances and the fund's figures, which equal them " +
					"but for unrecorded_holds_usd_cents (approvals being recorded at this moment).",
				answer: "a page of the fund's ledger", op: handleQuery(s.fundLedger)},
			route{method: post, pattern: "/v1/funds/{id}/allocation", roles: []string{finance}, summary: "Change a fund's allocation",
				doc: "`{\"allocated_usd_cents\",\"reason\"}`: recorded as the event FundAllocationChanged with its actor " +
					"and reason. A cut below what is reserved and paid is 409 with available_usd_cents (the most it can " +
					"drop by); the same allocation, a bad amount or no reason is 400 naming the field; an unknown fund 404.",
				answer: "the fund", op: handleCommand(s, s.changeAllocation)},
			route{method: get, pattern: "/v1/payees", summary: "List payees",
				doc:    "Service providers that receive payouts; every role reads them (a requester names one when filing).",
				answer: "payees", op: handleQuery(s.listPayees)},
			route{method: post, pattern: "/v1/payees", roles: []string{finance}, summary: "Create a payee",
				answer: "the payee", op: handleCreate(s, s.createPayee)},
			route{method: get, pattern: "/v1/payees/{id}", summary: "Read a payee", answer: "the payee",
				op: handleGet(s.getPayee)},
			route{method: post, pattern: "/v1/payees/{id}/account", roles: []string{finance}, summary: "Change a payee's account",
				doc: "`{\"account\",\"reason\"}`: recorded as the event PayeeAccountChanged with its actor and reason. " +
					"Payouts whose funds were reserved before keep paying the account their reservation recorded.",
				answer: "the payee", op: handleCommand(s, s.changePayeeAccount)},
			route{method: get, pattern: "/v1/payouts", roles: []string{finance, auditor, approver}, summary: "List payouts",
				answer: "payouts", op: handleQuery(s.listPayouts)},
			route{method: post, pattern: "/v1/payouts/{id}/retry", roles: []string{finance}, summary: "Retry a failed payout",
				answer: "the payout", op: handleCommand(s, s.retryPayout)},
			route{method: post, pattern: "/v1/payouts/{id}/cancel", roles: []string{finance}, summary: "Cancel a failed payout",
				answer: "the payout; its funds go back to the fund", op: handleCommand(s, s.cancelPayout)},
			route{method: post, pattern: "/v1/payouts/reconcile", roles: []string{finance, auditor},
				summary: "Reconcile a provider's statement with the ledger",
				doc: "`{\"lines\":[...]}`, each line one payment the provider settled (`provider_ref`, `key` or `payout_id`, " +
					"`payee_id`, `account`, `amount_usd_cents`, `currency`, `settled_at`; the JSON-lines statement format of " +
					"services/disbursement/reconcile, one object per line). Changes nothing. Findings name every payout the ledger " +
					"posted that the statement lacks, a line for no payout, a second line for a payout, and a line whose amount, " +
					"payee or currency differs; `ok` when there are none. A bad line is 400 naming `lines[i].<field>`.",
				answer: "the reconciliation's findings", op: handleCommand(s, s.reconcilePayouts)},
		),
		group("policy",
			route{method: get, pattern: "/v1/policy", summary: "The policy in force",
				doc: "Caps by category and per case, the second-approval threshold, deadlines by urgency and the " +
					"claim lease; durations as Go durations (\"4h\", \"90s\").",
				answer: "the policy", op: handleGet(s.getPolicy)},
			route{method: put, pattern: "/v1/policy", roles: []string{admin}, summary: "Set a new version of the policy",
				doc: "The whole policy without its version; the next version is given and recorded as the event " +
					"PolicyChanged with its actor. A bad value is 400 naming the field (durations at least 1s). " +
					"Requests filed and decisions taken before keep the version they record.",
				answer: "the new version", op: handleCommand(s, s.putPolicy)},
			route{method: get, pattern: "/v1/policy/history", roles: []string{admin, auditor}, summary: "Every version of the policy",
				answer: "the versions, the initial one first, with who set each and when", op: handleGet(s.policyHistory)},
		),
		group("users",
			route{method: get, pattern: "/v1/admin/users", roles: []string{admin}, summary: "List accounts",
				doc: "Local accounts by username, with their roles, posts and whether they are disabled; never a " +
					"password or its hash.",
				answer: "accounts", op: handleQuery(s.listUsers)},
			route{method: post, pattern: "/v1/admin/users", roles: []string{admin}, summary: "Create an account",
				doc: "Recorded as the event UserCreated (eva.user.<id>.UserCreated) with its actor, never with the " +
					"password. A bad field is 400 naming it (an unknown role, a bad post code, a password under 10 " +
					"characters or equal to the username, control or bidirectional characters); a username taken is 409.",
				answer: "the account", op: handleCreate(s, s.createUser).alsoAnswers(http.StatusConflict)},
			route{method: patch, pattern: "/v1/admin/users/{username}", roles: []string{admin}, summary: "Change an account",
				doc: "Only the fields sent change: roles, posts, disabled, password. Recorded as the event UserChanged " +
					"with its actor (a new password only as password_changed). The account's tokens issued before stop " +
					"holding on every replica within a second (RevocationPoll): a disabled account's at once, with " +
					"its web sessions; another change's are renewed with the new roles and posts. A change that " +
					"would leave no enabled admin (the last admin disabling itself) is 409 naming the reason.",
				answer: "the account after the change",
				op:     handleCommand(s, s.changeUser).alsoAnswers(http.StatusNotFound, http.StatusConflict)},
		),
		group("webhooks",
			route{method: get, pattern: "/v1/webhooks", roles: []string{admin}, summary: "The registered webhooks",
				answer: "the webhooks, oldest first, without their secrets", op: handleGet(s.listWebhooks)},
			route{method: post, pattern: "/v1/webhooks", roles: []string{admin}, summary: "Register a webhook",
				doc: "Recorded as the event WebhookRegistered with its actor (the secret sealed, never in clear). Each case " +
					"event of the types named that comes after it in the log is POSTed at least once as JSON " +
					"{\"id\",\"type\",\"case_id\",\"seq\",\"at\",\"status\"} (never personal data) with the headers " +
					"EVA-Event-Id (the event id, the same on every retry: de-duplicate on it) and " +
					"EVA-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>, and retried with " +
					"exponential back-off (capped) until a 2xx. A URL that is not http(s) or holds a user name, an " +
					"unknown event type or a secret under 16 bytes is 400 naming the field.",
				answer: "the webhook", op: handleCreate(s, s.registerWebhook)},
			route{method: del, pattern: "/v1/webhooks/{id}", roles: []string{admin}, summary: "Remove a webhook",
				doc:    "Recorded as the event WebhookRemoved with its actor; nothing more is sent to it, pending deliveries are dropped.",
				answer: "the webhook removed", op: handleCommand(s, s.removeWebhook)},
		),
		group("audit",
			route{method: get, pattern: "/v1/audit/events", roles: []string{auditor}, summary: "The archive, in log order",
				answer: "events with their sequence and hash", op: handleQuery(s.auditEvents)},
			route{method: get, pattern: "/v1/audit/checkpoint", roles: []string{auditor}, summary: "The latest signed checkpoint",
				doc: "A C2SP tlog-checkpoint (origin, tree size, root hash in base64) signed as a note with Ed25519 " +
					"(golang.org/x/mod/sumdb/note). The tree is the RFC 6962 Merkle tree whose leaf i is the event of " +
					"sequence i+1 (GET /v1/audit/leaves/{seq}). A new checkpoint is signed within a second of new events.",
				answer: "the signed checkpoint",
				op:     rawOperation(s.checkpoint, http.StatusOK, content{media: "text/plain", text: "a signed note: origin, size, root hash, a blank line, signatures"})},
			route{method: get, pattern: "/v1/audit/access/checkpoint", roles: []string{auditor}, addition: true,
				summary: "The access log's latest signed checkpoint",
				doc: "The access log (every read of personal data) has its own RFC 6962 Merkle tree, leaf i being its record " +
					"of sequence i+1 in the leaf encoding of GET /v1/audit/leaves/{seq} with an empty id; its checkpoints have " +
					"the origin of the event log's followed by /access, signed with the same key, and GET /v1/audit/verify checks them.",
				answer: "the signed checkpoint",
				op:     rawOperation(s.accessCheckpoint, http.StatusOK, content{media: "text/plain", text: "a signed note: origin, size, root hash, a blank line, signatures"})},
			route{method: get, pattern: "/v1/audit/key", roles: []string{auditor}, summary: "The checkpoints' verifier key",
				answer: "one line, <name>+<hash>+<base64 key> (note.NewVerifier's format)",
				op:     rawOperation(s.auditKey, http.StatusOK, content{media: "text/plain", text: "the verifier key and a newline"})},
			route{method: get, pattern: "/v1/audit/leaves/{seq}", roles: []string{auditor}, summary: "The Merkle leaf of an event",
				doc: "The exact bytes of leaf seq-1: six lines of text (eva-audit-leaf/v1, seq, subject, id, at, data <length>) " +
					"then the event's protobuf bytes. Leaf hash = SHA-256(0x00 ‖ bytes).",
				answer: "the leaf's bytes",
				op: rawOperation(s.leaf, http.StatusOK, content{media: "application/octet-stream", text: "the leaf"}).
					alsoAnswers(http.StatusBadRequest, http.StatusNotFound)},
			route{method: get, pattern: "/v1/audit/proof/inclusion", roles: []string{auditor}, summary: "Inclusion proof",
				doc:    "The proof that leaf seq-1 is in the tree of size leaves, in the order tlog.CheckRecord takes.",
				answer: "the proof's hashes, base64", op: handleQuery(s.inclusionProof)},
			route{method: get, pattern: "/v1/audit/proof/consistency", roles: []string{auditor}, summary: "Consistency proof",
				doc:    "The proof that the tree of from leaves is a prefix of the tree of to leaves, in the order tlog.CheckTree takes.",
				answer: "the proof's hashes, base64", op: handleQuery(s.consistencyProof)},
			route{method: get, pattern: "/v1/audit/verify", roles: []string{auditor}, summary: "Re-verify the archive",
				doc: "Walks the archive: its hash chain, its Merkle tree, the event log event by event, and every kept " +
					"checkpoint: a log cut short or rewritten after a checkpoint fails, with the reason.",
				answer: "archive vs its chain vs its checkpoints vs the event log", op: handleGet(s.verify)},
			route{method: get, pattern: "/v1/audit/export", roles: []string{auditor}, summary: "Export the archive",
				answer: "every event in log order, streamed; a response cut short is aborted, never ended cleanly",
				op: withQuery[exportQuery](rawOperation(s.export, http.StatusOK,
					content{media: "application/jsonl", typ: reflect.TypeFor[eventJSON]()},
					content{media: "text/csv", text: "columns: " + strings.Join(csvHeader, ",")}))},
			route{method: get, pattern: "/v1/audit/access", roles: []string{auditor}, summary: "Reads of a request's personal data",
				answer: "who read it, when", op: handleQuery(s.access)},
		),
	)
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
		r.With(mws...).Method(rt.method, rt.pattern, rt.op.handler)
	}
	return r
}

// checkID answers 404 for a path id that is not a canonical UUID: every
// id of EVA is a UUIDv7 string, and nothing else can name anything.
func checkID(pattern string) func(http.Handler) http.Handler {
	what := resourceOf(pattern)
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

// resourceOf names what a pattern's {id} is: /v1/requests/{id} → request,
// /v1/funds/{id} → fund, ...
func resourceOf(pattern string) string {
	what, _, _ := strings.Cut(strings.TrimPrefix(pattern, "/v1/"), "/")
	return strings.TrimSuffix(what, "s")
}
