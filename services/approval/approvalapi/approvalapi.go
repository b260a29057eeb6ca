// Package approvalapi is the contract of the approval service: its
// endpoints (subjects with their request and reply types) and a typed
// client. The gateway knows approval only through this package.
package approvalapi

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/rpc"
)

// Approval's endpoints.
var (
	Queue       = rpc.Endpoint[QueueRequest, QueuePage]{Subject: "eva.approval.queue", Idempotent: true}
	Claim       = rpc.Endpoint[CaseCommand, caseview.Case]{Subject: "eva.approval.claim", Idempotent: true}
	Release     = rpc.Endpoint[CaseCommand, caseview.Case]{Subject: "eva.approval.release", Idempotent: true}
	Approve     = rpc.Endpoint[ApproveRequest, caseview.Case]{Subject: "eva.approval.approve", Idempotent: true}
	Reject      = rpc.Endpoint[RejectRequest, caseview.Case]{Subject: "eva.approval.reject", Idempotent: true}
	RequestInfo = rpc.Endpoint[RequestInfoRequest, caseview.Case]{Subject: "eva.approval.request_info", Idempotent: true}

	Policy        = rpc.Endpoint[PolicyRequest, PolicyVersion]{Subject: "eva.approval.policy", Idempotent: true}
	ChangePolicy  = rpc.Endpoint[ChangePolicyRequest, PolicyVersion]{Subject: "eva.approval.policy_change", Idempotent: true}
	PolicyHistory = rpc.Endpoint[PolicyRequest, PolicyHistoryPage]{Subject: "eva.approval.policy_history", Idempotent: true}
)

// PolicyDoc is the decision policy as the API shows it: caps by category
// and per case, the second-approval threshold, deadlines by urgency and
// the claim lease, durations as Go durations ("4h", "90s").
type PolicyDoc struct {
	Version                     string            `json:"version,omitempty"`
	CapsUSDCents                map[string]int64  `json:"caps_usd_cents"`
	CaseCapUSDCents             int64             `json:"case_cap_usd_cents"`
	SecondApprovalAboveUSDCents int64             `json:"second_approval_above_usd_cents"`
	Deadlines                   map[string]string `json:"deadlines"`
	ClaimTTL                    string            `json:"claim_ttl"`
}

// PolicyRequest asks for the policy or its history.
type PolicyRequest struct{}

// ChangePolicyRequest sets a new version of the policy (its Version is
// ignored: the next one is given).
type ChangePolicyRequest struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	Policy    PolicyDoc    `json:"policy"`
}

// PolicyVersion is one version of the policy: who set it, when (neither
// for the initial policy).
type PolicyVersion struct {
	Policy    PolicyDoc `json:"policy"`
	ChangedBy string    `json:"changed_by,omitempty"`
	ChangedAt time.Time `json:"changed_at"`
}

// PolicyHistoryPage is every version of the policy, oldest first.
type PolicyHistoryPage struct {
	Items []PolicyVersion `json:"items"`
}

// QueueRequest asks for a page of the review queue.
type QueueRequest struct {
	Limit  int    `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

// QueueItem is an open case in the queue: the queue's own columns. The
// whole case is intake's (intakeapi.Cases).
type QueueItem struct {
	CaseID         string    `json:"case_id"`
	Status         string    `json:"status"`
	Urgency        string    `json:"urgency"`
	Deadline       time.Time `json:"deadline"`
	Escalated      bool      `json:"escalated"`
	ClaimedBy      string    `json:"claimed_by,omitempty"`
	ClaimExpiresAt time.Time `json:"claim_expires_at"`
	// Overdue is set when the decision deadline has passed.
	Overdue bool `json:"overdue"`
	// DueSoon is set when its deadline is near (DeadlineWarning: three
	// quarters of the time to it passed) and it has not escalated.
	DueSoon bool `json:"due_soon"`
	// PossibleDuplicates lists other open cases, at any post, for the same
	// beneficiary reference and category. They are flagged, never merged.
	PossibleDuplicates []string `json:"possible_duplicates"`
}

// QueuePage is one page of the queue: missed deadlines first, then by
// deadline.
type QueuePage struct {
	Items      []QueueItem `json:"items"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

// CaseCommand is a command on one case without arguments (claim, release).
type CaseCommand struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	CaseID    string       `json:"case_id"`
}

// ApproveRequest approves a claimed case.
type ApproveRequest struct {
	CommandID   string       `json:"command_id"`
	Actor       assist.Actor `json:"actor"`
	CaseID      string       `json:"case_id"`
	AmountCents int64        `json:"amount_usd_cents"`
	FundID      string       `json:"fund_id"`
	PayeeID     string       `json:"payee_id,omitempty"`
	Note        string       `json:"note,omitempty"`
}

// RejectRequest rejects a claimed case.
type RejectRequest struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	CaseID    string       `json:"case_id"`
	Reason    string       `json:"reason"`
}

// RequestInfoRequest asks the requester a question.
type RequestInfoRequest struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	CaseID    string       `json:"case_id"`
	Question  string       `json:"question"`
}

// Client calls approval over NATS.
type Client struct{ nc *nats.Conn }

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// Queue reads the review queue: open cases, missed deadlines first, then
// by deadline, each with its possible duplicates.
//
// Errors: CodeInvalid for a bad cursor.
func (c *Client) Queue(ctx context.Context, r QueueRequest) (QueuePage, error) {
	return Queue.Call(ctx, c.nc, r)
}

// Claim gives the approver the case for the policy's claim time.
//
// Errors: CodeNotFound, CodeForbidden (not an approver, or the filer),
// CodeConflict (held by another, or not waiting for review).
func (c *Client) Claim(ctx context.Context, r CaseCommand) (caseview.Case, error) {
	return Claim.Call(ctx, c.nc, r)
}

// Release gives a claimed case back to the queue.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict unless the actor holds
// the claim.
func (c *Client) Release(ctx context.Context, r CaseCommand) (caseview.Case, error) {
	return Release.Call(ctx, c.nc, r)
}

// Approve decides to pay, after holding the amount on the fund.
//
// Errors: CodeNotFound, CodeForbidden (not an approver, or the filer),
// CodeConflict (no live claim, lost race), CodeInsufficientFunds with the
// available amount, CodeInvalid naming the field.
func (c *Client) Approve(ctx context.Context, r ApproveRequest) (caseview.Case, error) {
	return Approve.Call(ctx, c.nc, r)
}

// Reject decides not to pay.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid.
func (c *Client) Reject(ctx context.Context, r RejectRequest) (caseview.Case, error) {
	return Reject.Call(ctx, c.nc, r)
}

// RequestInfo asks the requester a question.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid.
func (c *Client) RequestInfo(ctx context.Context, r RequestInfoRequest) (caseview.Case, error) {
	return RequestInfo.Call(ctx, c.nc, r)
}

// Policy is the policy in force.
//
// Errors: CodeUnavailable.
func (c *Client) Policy(ctx context.Context, r PolicyRequest) (PolicyVersion, error) {
	return Policy.Call(ctx, c.nc, r)
}

// ChangePolicy sets the next version of the policy.
//
// Errors: CodeForbidden unless an admin, CodeInvalid naming each bad
// field, CodeConflict after losing races.
func (c *Client) ChangePolicy(ctx context.Context, r ChangePolicyRequest) (PolicyVersion, error) {
	return ChangePolicy.Call(ctx, c.nc, r)
}

// PolicyHistory is every version of the policy.
//
// Errors: CodeUnavailable.
func (c *Client) PolicyHistory(ctx context.Context, r PolicyRequest) (PolicyHistoryPage, error) {
	return PolicyHistory.Call(ctx, c.nc, r)
}
