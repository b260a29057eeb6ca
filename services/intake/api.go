package intake

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/rpc"
)

// Subjects of intake's commands and queries.
const (
	SubjectFile     = "eva.intake.file"
	SubjectAmend    = "eva.intake.amend"
	SubjectWithdraw = "eva.intake.withdraw"
	SubjectAnswer   = "eva.intake.answer"
	SubjectGet      = "eva.intake.get"
	SubjectList     = "eva.intake.list"
	SubjectPersonal = "eva.intake.personal"
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

// Client calls intake over NATS.
type Client struct{ nc *nats.Conn }

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// File files a request. Errors: see Service.File.
func (c *Client) File(ctx context.Context, r FileRequest) (*assist.Case, error) {
	return rpc.Call[*assist.Case](ctx, c.nc, SubjectFile, r)
}

// Amend changes a request. Errors: see Service.Amend.
func (c *Client) Amend(ctx context.Context, r AmendRequest) (*assist.Case, error) {
	return rpc.Call[*assist.Case](ctx, c.nc, SubjectAmend, r)
}

// Withdraw ends a request. Errors: see Service.Withdraw.
func (c *Client) Withdraw(ctx context.Context, r WithdrawRequest) (*assist.Case, error) {
	return rpc.Call[*assist.Case](ctx, c.nc, SubjectWithdraw, r)
}

// Answer answers a question. Errors: see Service.Answer.
func (c *Client) Answer(ctx context.Context, r AnswerRequest) (*assist.Case, error) {
	return rpc.Call[*assist.Case](ctx, c.nc, SubjectAnswer, r)
}

// Get reads a case from the log. Errors: CodeNotFound.
func (c *Client) Get(ctx context.Context, caseID string) (*assist.Case, error) {
	return rpc.Call[*assist.Case](ctx, c.nc, SubjectGet, GetRequest{CaseID: caseID})
}

// List lists requests. Errors: CodeInvalid for a bad cursor.
func (c *Client) List(ctx context.Context, f ListFilter) (ListPage, error) {
	return rpc.Call[ListPage](ctx, c.nc, SubjectList, f)
}

// Personal reads a case's personal data. Errors: see Service.Personal.
func (c *Client) Personal(ctx context.Context, r PersonalRequest) (Beneficiary, error) {
	return rpc.Call[Beneficiary](ctx, c.nc, SubjectPersonal, r)
}
