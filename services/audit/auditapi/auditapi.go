// Package auditapi is the contract of the audit service: its endpoints
// (subjects with their request and reply types) and a typed client. The
// gateway knows audit only through this package.
package auditapi

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/rpc"
)

// Audit's endpoints.
var (
	Events      = rpc.Endpoint[EventsRequest, EventsPage]{Subject: "eva.audit.events", Idempotent: true}
	Verify      = rpc.Endpoint[struct{}, VerifyResult]{Subject: "eva.audit.verify", Idempotent: true, Timeout: 10 * time.Minute}
	History     = rpc.Endpoint[CaseRequest, []ArchivedEvent]{Subject: "eva.audit.history", Idempotent: true}
	AsOf        = rpc.Endpoint[AsOfRequest, caseview.Case]{Subject: "eva.audit.as_of", Idempotent: true}
	Checkpoint  = rpc.Endpoint[struct{}, CheckpointHead]{Subject: "eva.audit.checkpoint", Idempotent: true}
	Access      = rpc.Endpoint[CaseRequest, []eventlog.Access]{Subject: "eva.audit.access", Idempotent: true}
	DeadLetters = rpc.Endpoint[DeadLettersRequest, DeadLettersPage]{Subject: "eva.audit.dead_letters", Idempotent: true}
)

// ArchivedEvent is one event of the archive, in log order.
type ArchivedEvent struct {
	Seq    uint64       `json:"seq"`
	ID     string       `json:"id"`
	CaseID string       `json:"request_id"`
	Type   string       `json:"type"`
	At     time.Time    `json:"at"`
	Actor  assist.Actor `json:"actor"`
	Reason string       `json:"reason,omitempty"`
	// Data is the event body as JSON (protobuf field names); personal
	// data appears only sealed.
	Data json.RawMessage `json:"data"`
	// Hash is the SHA-256 of the stored event (its sequence, subject, id
	// and bytes; see HashEvent), hex.
	Hash string `json:"hash"`
	// Chain is the hash chain up to and including this event, hex:
	// SHA-256(previous chain || hash).
	Chain string `json:"chain"`
	// DecodeError says why the event's bytes could not be rendered;
	// Data is then null. The event is archived and hashed all the same.
	DecodeError string `json:"decode_error,omitempty"`
}

// EventsRequest pages through the archive after a sequence.
type EventsRequest struct {
	After uint64 `json:"after"`
	Limit int    `json:"limit,omitempty"`
}

// EventsPage is a page of the archive. Next is the After of the next page,
// 0 at the end.
type EventsPage struct {
	Items []ArchivedEvent `json:"items"`
	Next  uint64          `json:"next,omitempty"`
}

// VerifyResult compares the archive with its chain and with the log.
type VerifyResult struct {
	OK     bool   `json:"ok"`
	Events uint64 `json:"events"`
	// FirstBad is the sequence of the first event that does not match,
	// with why; absent when OK.
	FirstBad *uint64 `json:"first_bad"`
	Reason   string  `json:"reason,omitempty"`
	// Lag is how many events of the log the archive has not reached yet;
	// they are not counted as bad.
	Lag uint64 `json:"lag"`
}

// CheckpointHead is the head of the archive.
type CheckpointHead struct {
	Size  uint64    `json:"size"`
	Chain string    `json:"chain"`
	At    time.Time `json:"at"`
}

// CaseRequest names a case.
type CaseRequest struct {
	CaseID string `json:"case_id"`
}

// AsOfRequest asks for a case as it stood at a time.
type AsOfRequest struct {
	CaseID string    `json:"case_id"`
	At     time.Time `json:"at"`
}

// DeadLettersRequest pages through the dead letters after a sequence of
// the dead-letter stream.
type DeadLettersRequest struct {
	After uint64 `json:"after"`
	Limit int    `json:"limit,omitempty"`
}

// DeadLettersPage is a page of dead letters. Next is the After of the next
// page, 0 at the end.
type DeadLettersPage struct {
	Items []eventlog.DeadLetter `json:"items"`
	Next  uint64                `json:"next,omitempty"`
}

// Client calls audit over NATS.
type Client struct{ nc *nats.Conn }

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// Events pages through the archive.
func (c *Client) Events(ctx context.Context, r EventsRequest) (EventsPage, error) {
	return Events.Call(ctx, c.nc, r)
}

// Verify re-verifies the archive against its chain and the log.
func (c *Client) Verify(ctx context.Context) (VerifyResult, error) {
	return Verify.Call(ctx, c.nc, struct{}{})
}

// History lists a case's events in order, from the log, with their
// archive hashes. Errors: CodeNotFound.
func (c *Client) History(ctx context.Context, caseID string) ([]ArchivedEvent, error) {
	return History.Call(ctx, c.nc, CaseRequest{CaseID: caseID})
}

// AsOf rebuilds a case as it stood at a time. Errors: CodeNotFound.
func (c *Client) AsOf(ctx context.Context, caseID string, at time.Time) (caseview.Case, error) {
	return AsOf.Call(ctx, c.nc, AsOfRequest{CaseID: caseID, At: at})
}

// Checkpoint reads the head of the archive.
func (c *Client) Checkpoint(ctx context.Context) (CheckpointHead, error) {
	return Checkpoint.Call(ctx, c.nc, struct{}{})
}

// Access lists the recorded reads of a case's personal data.
func (c *Client) Access(ctx context.Context, caseID string) ([]eventlog.Access, error) {
	return Access.Call(ctx, c.nc, CaseRequest{CaseID: caseID})
}

// DeadLetters lists the events consumers gave up on, with the reason.
func (c *Client) DeadLetters(ctx context.Context, r DeadLettersRequest) (DeadLettersPage, error) {
	return DeadLetters.Call(ctx, c.nc, r)
}
