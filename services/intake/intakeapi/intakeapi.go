// Package intakeapi is the contract of the intake service: its endpoints
// (subjects with their request and reply types) and a typed client. The
// gateway and other services know intake only through this package.
package intakeapi

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/rpc"
)

// Intake's endpoints.
var (
	File     = rpc.Endpoint[FileRequest, caseview.Case]{Subject: "eva.intake.file", Idempotent: true}
	Amend    = rpc.Endpoint[AmendRequest, caseview.Case]{Subject: "eva.intake.amend", Idempotent: true}
	Withdraw = rpc.Endpoint[WithdrawRequest, caseview.Case]{Subject: "eva.intake.withdraw", Idempotent: true}
	Answer   = rpc.Endpoint[AnswerRequest, caseview.Case]{Subject: "eva.intake.answer", Idempotent: true}
	Get      = rpc.Endpoint[GetRequest, caseview.Case]{Subject: "eva.intake.get", Idempotent: true}
	List     = rpc.Endpoint[ListFilter, ListPage]{Subject: "eva.intake.list", Idempotent: true}
	Cases    = rpc.Endpoint[CasesRequest, CasesPage]{Subject: "eva.intake.cases", Idempotent: true}
	Personal = rpc.Endpoint[PersonalRequest, Beneficiary]{Subject: "eva.intake.personal"}
	Erase    = rpc.Endpoint[EraseRequest, caseview.Case]{Subject: "eva.intake.erase", Idempotent: true}
)

// Beneficiary is the person a request is for. Only Reference is required;
// everything here is personal data and is stored sealed.
type Beneficiary struct {
	Reference   string `json:"reference"`
	Name        string `json:"name,omitempty"`
	DateOfBirth string `json:"date_of_birth,omitempty"`
	Nationality string `json:"nationality,omitempty"`
	Contact     string `json:"contact,omitempty"`
}

// FileRequest files a new request; CommandID becomes the case id.
type FileRequest struct {
	CommandID     string       `json:"command_id"`
	Actor         assist.Actor `json:"actor"`
	Post          string       `json:"post"`
	Category      string       `json:"category"`
	Urgency       string       `json:"urgency"`
	AmountCents   int64        `json:"amount_usd_cents"`
	Justification string       `json:"justification"`
	Beneficiary   Beneficiary  `json:"beneficiary"`
	PayeeID       string       `json:"payee_id,omitempty"`
	// IdempotencyKeyHash, when the client sent an Idempotency-Key, is a
	// hash of the key and its user: retries with it file nothing new.
	IdempotencyKeyHash []byte `json:"idempotency_key_hash,omitempty"`
	// RequestHash identifies the request the key came with; the key with
	// another request is refused.
	RequestHash []byte `json:"request_hash,omitempty"`
}

// AmendRequest changes the fields that are set.
type AmendRequest struct {
	CommandID     string       `json:"command_id"`
	Actor         assist.Actor `json:"actor"`
	CaseID        string       `json:"case_id"`
	Category      *string      `json:"category,omitempty"`
	Urgency       *string      `json:"urgency,omitempty"`
	AmountCents   *int64       `json:"amount_usd_cents,omitempty"`
	Justification *string      `json:"justification,omitempty"`
	Beneficiary   *Beneficiary `json:"beneficiary,omitempty"`
	PayeeID       *string      `json:"payee_id,omitempty"`
}

// WithdrawRequest ends a request.
type WithdrawRequest struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	CaseID    string       `json:"case_id"`
	Reason    string       `json:"reason"`
}

// AnswerRequest answers an approver's question.
type AnswerRequest struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	CaseID    string       `json:"case_id"`
	Answer    string       `json:"answer"`
}

// GetRequest reads one case, rebuilt from the log.
type GetRequest struct {
	CaseID string `json:"case_id"`
}

// PersonalRequest reads a case's personal data; the read is recorded.
type PersonalRequest struct {
	Actor  assist.Actor `json:"actor"`
	CaseID string       `json:"case_id"`
}

// EraseRequest erases a case's personal data: an admin, with a reason.
type EraseRequest struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	CaseID    string       `json:"case_id"`
	Reason    string       `json:"reason"`
}

// ListFilter selects requests. Empty fields do not filter.
type ListFilter struct {
	// Posts, when not empty, limits the list to these posts (a
	// requester's scope).
	Posts   []string `json:"posts,omitempty"`
	Status  string   `json:"status,omitempty"`
	Post    string   `json:"post,omitempty"`
	Urgency string   `json:"urgency,omitempty"`
	Limit   int      `json:"limit,omitempty"`
	Cursor  string   `json:"cursor,omitempty"`
}

// ListPage is one page of requests, newest first.
type ListPage struct {
	Items      []caseview.Case `json:"items"`
	NextCursor string          `json:"next_cursor,omitempty"`
}

// CasesRequest names cases to read, at most MaxCases.
type CasesRequest struct {
	IDs []string `json:"ids"`
}

// MaxCases bounds a CasesRequest.
const MaxCases = 500

// CasesPage holds the cases asked for that exist, in the order asked.
type CasesPage struct {
	Items []caseview.Case `json:"items"`
}

// Client calls intake over NATS.
type Client struct{ nc *nats.Conn }

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// File files a request.
//
// Errors: CodeInvalid naming each bad field (a cap exceeded names the cap),
// CodeForbidden when the actor does not file for the post,
// CodeIdempotencyMismatch for a key reused with another request,
// CodeUnavailable.
func (c *Client) File(ctx context.Context, r FileRequest) (caseview.Case, error) {
	return File.Call(ctx, c.nc, r)
}

// Amend changes a request while it is submitted or info_requested.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid naming
// each bad field, CodeUnavailable.
func (c *Client) Amend(ctx context.Context, r AmendRequest) (caseview.Case, error) {
	return Amend.Call(ctx, c.nc, r)
}

// Withdraw ends an open request.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid,
// CodeUnavailable.
func (c *Client) Withdraw(ctx context.Context, r WithdrawRequest) (caseview.Case, error) {
	return Withdraw.Call(ctx, c.nc, r)
}

// Answer provides the information an approver asked for.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid,
// CodeUnavailable.
func (c *Client) Answer(ctx context.Context, r AnswerRequest) (caseview.Case, error) {
	return Answer.Call(ctx, c.nc, r)
}

// Get reads a case, rebuilt from its events.
//
// Errors: CodeNotFound, CodeUnavailable.
func (c *Client) Get(ctx context.Context, caseID string) (caseview.Case, error) {
	return Get.Call(ctx, c.nc, GetRequest{CaseID: caseID})
}

// List lists requests, newest first.
//
// Errors: CodeInvalid for a bad cursor.
func (c *Client) List(ctx context.Context, f ListFilter) (ListPage, error) {
	return List.Call(ctx, c.nc, f)
}

// Cases reads several cases at once, from the read model (or the log for
// one the read model has yet to apply), in the order asked; an unknown id
// is left out.
//
// Errors: CodeInvalid for more than MaxCases ids, CodeUnavailable.
func (c *Client) Cases(ctx context.Context, ids []string) (CasesPage, error) {
	return Cases.Call(ctx, c.nc, CasesRequest{IDs: ids})
}

// Personal reads a case's personal data after recording the read in the
// access log.
//
// Errors: CodeNotFound, CodeGone after erasure, CodeUnavailable.
func (c *Client) Personal(ctx context.Context, r PersonalRequest) (Beneficiary, error) {
	return Personal.Call(ctx, c.nc, r)
}

// Erase destroys a case's data key and records PersonalDataErased with
// the admin and the reason; the case keeps its state and money trail.
//
// Errors: CodeNotFound, CodeForbidden for anyone but an admin,
// CodeInvalid without a reason, CodeConflict when erased before,
// CodeUnavailable.
func (c *Client) Erase(ctx context.Context, r EraseRequest) (caseview.Case, error) {
	return Erase.Call(ctx, c.nc, r)
}
