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
)

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
