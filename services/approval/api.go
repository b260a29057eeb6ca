package approval

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/rpc"
)

// Subjects of approval's commands and queries.
const (
	SubjectQueue       = "eva.approval.queue"
	SubjectClaim       = "eva.approval.claim"
	SubjectRelease     = "eva.approval.release"
	SubjectApprove     = "eva.approval.approve"
	SubjectReject      = "eva.approval.reject"
	SubjectRequestInfo = "eva.approval.request_info"
)

// QueueRequest asks for a page of the review queue.
type QueueRequest struct {
	Limit  int    `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

// QueueItem is an open case in the queue.
type QueueItem struct {
	Case *assist.Case `json:"case"`
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

// Queue reads the review queue. Errors: CodeInvalid for a bad cursor.
func (c *Client) Queue(ctx context.Context, r QueueRequest) (QueuePage, error) {
	return rpc.Call[QueuePage](ctx, c.nc, SubjectQueue, r)
}

// Claim takes a case for review. Errors: see Service.Claim.
func (c *Client) Claim(ctx context.Context, r CaseCommand) (*assist.Case, error) {
	return rpc.Call[*assist.Case](ctx, c.nc, SubjectClaim, r)
}

// Release gives a case back. Errors: see Service.Release.
func (c *Client) Release(ctx context.Context, r CaseCommand) (*assist.Case, error) {
	return rpc.Call[*assist.Case](ctx, c.nc, SubjectRelease, r)
}

// Approve approves a case. Errors: see Service.Approve.
func (c *Client) Approve(ctx context.Context, r ApproveRequest) (*assist.Case, error) {
	return rpc.Call[*assist.Case](ctx, c.nc, SubjectApprove, r)
}

// Reject rejects a case. Errors: see Service.Reject.
func (c *Client) Reject(ctx context.Context, r RejectRequest) (*assist.Case, error) {
	return rpc.Call[*assist.Case](ctx, c.nc, SubjectReject, r)
}

// RequestInfo asks a question. Errors: see Service.RequestInfo.
func (c *Client) RequestInfo(ctx context.Context, r RequestInfoRequest) (*assist.Case, error) {
	return rpc.Call[*assist.Case](ctx, c.nc, SubjectRequestInfo, r)
}
