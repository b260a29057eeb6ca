// Package auditapi is the contract of the audit service: its endpoints
// (subjects with their request and reply types) and a typed client. The
// gateway knows audit only through this package.
package auditapi

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/rpc"
)

// Audit's endpoints.
var (
	Events      = rpc.Endpoint[EventsRequest, EventsPage]{Subject: "eva.audit.events", Idempotent: true}
	Verify      = rpc.Endpoint[VerifyRequest, VerifyResult]{Subject: "eva.audit.verify", Idempotent: true, Timeout: 10 * time.Minute}
	History     = rpc.Endpoint[CaseRequest, []ArchivedEvent]{Subject: "eva.audit.history", Idempotent: true}
	AsOf        = rpc.Endpoint[AsOfRequest, caseview.Case]{Subject: "eva.audit.as_of", Idempotent: true}
	Checkpoint  = rpc.Endpoint[CheckpointRequest, SignedCheckpoint]{Subject: "eva.audit.checkpoint", Idempotent: true}
	Key         = rpc.Endpoint[struct{}, VerifierKey]{Subject: "eva.audit.key", Idempotent: true}
	LeafOf      = rpc.Endpoint[LeafRequest, Leaf]{Subject: "eva.audit.leaf", Idempotent: true}
	Inclusion   = rpc.Endpoint[InclusionRequest, Proof]{Subject: "eva.audit.proof_inclusion", Idempotent: true}
	Consistency = rpc.Endpoint[ConsistencyRequest, Proof]{Subject: "eva.audit.proof_consistency", Idempotent: true}
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
	// Checkpoints counts the signed checkpoints the log matched.
	Checkpoints int `json:"checkpoints"`
	// TreeSize and Root are the Merkle tree recomputed from the archive,
	// when OK (root in base64).
	TreeSize int64  `json:"tree_size"`
	Root     string `json:"root,omitempty"`
	// Access is the check of the access log (reads of personal data);
	// OK is false when it fails.
	Access *TreeCheck `json:"access,omitempty"`
}

// TreeCheck is the check of the access log's archive against its stream,
// its Merkle tree and its checkpoints.
type TreeCheck struct {
	OK          bool    `json:"ok"`
	Records     uint64  `json:"records"`
	FirstBad    *uint64 `json:"first_bad"`
	Reason      string  `json:"reason,omitempty"`
	Lag         uint64  `json:"lag"`
	Checkpoints int     `json:"checkpoints"`
	TreeSize    int64   `json:"tree_size"`
	Root        string  `json:"root,omitempty"`
}

// SignedCheckpoint is a signed checkpoint of the Merkle tree (see
// TreeHead): Note is its text with the signature lines.
type SignedCheckpoint struct {
	Size int64     `json:"size"`
	Note string    `json:"note"`
	At   time.Time `json:"at"`
}

// AccessLog names the access log's tree (reads of personal data) where a
// request may name a log; empty is the event log.
const AccessLog = "access"

// CheckpointRequest names the log whose checkpoint to read: "" the event
// log, AccessLog the access log.
type CheckpointRequest struct {
	Log string `json:"log,omitempty"`
}

// VerifierKey is the checkpoints' verifier key, <name>+<hash>+<base64 key>.
type VerifierKey struct {
	Key string `json:"key"`
}

// LeafRequest names the event of a sequence.
type LeafRequest struct {
	Seq uint64 `json:"seq"`
}

// Leaf is the Merkle leaf of the event of sequence Seq (audit.LeafBytes).
type Leaf struct {
	Seq   uint64 `json:"seq"`
	Bytes []byte `json:"bytes"`
}

// InclusionRequest asks for the proof that leaf Seq-1 is in the tree of
// Size leaves.
type InclusionRequest struct {
	Seq  uint64 `json:"seq"`
	Size uint64 `json:"size"`
}

// ConsistencyRequest asks for the proof that the tree of From leaves is a
// prefix of the tree of To leaves.
type ConsistencyRequest struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

// Proof is an inclusion proof (tlog.RecordProof) or a consistency proof
// (tlog.TreeProof).
type Proof struct {
	Hashes []tlog.Hash `json:"hashes"`
}

// VerifyRequest adds checkpoints saved elsewhere (signed notes) to those
// the service keeps; the log must hold exactly the tree of each.
type VerifyRequest struct {
	Checkpoints []string `json:"checkpoints,omitempty"`
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

// Verify re-verifies the archive against its chain, its Merkle tree, its
// checkpoints and those given, and the log.
func (c *Client) Verify(ctx context.Context, r VerifyRequest) (VerifyResult, error) {
	return Verify.Call(ctx, c.nc, r)
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

// Checkpoint reads the latest signed checkpoint. Errors: CodeUnavailable
// before the first.
func (c *Client) Checkpoint(ctx context.Context) (SignedCheckpoint, error) {
	return Checkpoint.Call(ctx, c.nc, CheckpointRequest{})
}

// AccessCheckpoint reads the latest signed checkpoint of the access log.
// Errors: CodeUnavailable before the first.
func (c *Client) AccessCheckpoint(ctx context.Context) (SignedCheckpoint, error) {
	return Checkpoint.Call(ctx, c.nc, CheckpointRequest{Log: AccessLog})
}

// Key reads the checkpoints' verifier key.
func (c *Client) Key(ctx context.Context) (VerifierKey, error) {
	return Key.Call(ctx, c.nc, struct{}{})
}

// Leaf reads the Merkle leaf of an archived event. Errors: CodeNotFound,
// CodeInvalid.
func (c *Client) Leaf(ctx context.Context, seq uint64) (Leaf, error) {
	return LeafOf.Call(ctx, c.nc, LeafRequest{Seq: seq})
}

// Inclusion proves an event is in a tree. Errors: CodeInvalid naming seq
// or size.
func (c *Client) Inclusion(ctx context.Context, r InclusionRequest) (Proof, error) {
	return Inclusion.Call(ctx, c.nc, r)
}

// Consistency proves a tree is a prefix of a larger one. Errors:
// CodeInvalid naming from or to.
func (c *Client) Consistency(ctx context.Context, r ConsistencyRequest) (Proof, error) {
	return Consistency.Call(ctx, c.nc, r)
}

// Access lists the recorded reads of a case's personal data.
func (c *Client) Access(ctx context.Context, caseID string) ([]eventlog.Access, error) {
	return Access.Call(ctx, c.nc, CaseRequest{CaseID: caseID})
}

// DeadLetters lists the events consumers gave up on, with the reason.
func (c *Client) DeadLetters(ctx context.Context, r DeadLettersRequest) (DeadLettersPage, error) {
	return DeadLetters.Call(ctx, c.nc, r)
}
