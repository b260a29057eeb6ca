package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	evav1 "github.com/eva-org/eva/proto/eva/v1"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// Page sizes of Events.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// Events pages through the archive after r.After, in log order: at most
// r.Limit events (default DefaultLimit, at most MaxLimit).
//
// Errors: CodeInvalid for a negative limit or an after beyond MaxInt64
// (never a wrap to the start); the store's errors.
func (s *Service) Events(ctx context.Context, r auditapi.EventsRequest) (auditapi.EventsPage, error) {
	limit := r.Limit
	switch {
	case r.After > math.MaxInt64:
		return auditapi.EventsPage{}, badAfter()
	case limit < 0:
		return auditapi.EventsPage{}, &assist.Error{Code: assist.CodeInvalid, Message: "invalid limit",
			Fields: []assist.FieldError{{Field: "limit", Message: "must not be negative"}}}
	case limit == 0:
		limit = DefaultLimit
	case limit > MaxLimit:
		limit = MaxLimit
	}
	recs, err := s.store.Range(ctx, r.After, limit+1)
	if err != nil {
		return auditapi.EventsPage{}, err
	}
	page := auditapi.EventsPage{Items: make([]auditapi.ArchivedEvent, 0, min(len(recs), limit))}
	for i, rec := range recs {
		if i == limit {
			page.Next = recs[i-1].Seq
			break
		}
		page.Items = append(page.Items, toArchivedEvent(rec))
	}
	return page, nil
}

// Verify re-verifies the whole archive against its chain, its Merkle
// tree, the kept checkpoints and those of r, and the log; see the function
// Verify.
//
// Errors: those of the store; CodeUnavailable.
func (s *Service) Verify(ctx context.Context, r auditapi.VerifyRequest) (auditapi.VerifyResult, error) {
	if s.key == nil {
		return auditapi.VerifyResult{}, assist.Errorf(assist.CodeUnavailable, "the audit log has no signing key")
	}
	saved := make([][]byte, len(r.Checkpoints))
	for i, c := range r.Checkpoints {
		saved[i] = []byte(c)
	}
	return VerifyAll(ctx, NewSQLStore(s.db), s.log, VerifyOptions{VerifierKey: s.key.Verifier, Checkpoints: saved})
}

// History lists a case's events in log order, read from the log itself so
// that it includes what was just written; each carries its archive hash and
// chain once archived, empty before.
//
// Errors: CodeNotFound for an unknown or malformed case id;
// CodeUnavailable; the store's errors.
func (s *Service) History(ctx context.Context, r auditapi.CaseRequest) ([]auditapi.ArchivedEvent, error) {
	if !eventlog.ValidCaseID(r.CaseID) {
		return nil, notFound(r.CaseID)
	}
	msgs, err := s.log.LoadRaw(ctx, r.CaseID)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, notFound(r.CaseID)
	}
	archived, err := s.store.Case(ctx, r.CaseID)
	if err != nil {
		return nil, err
	}
	bySeq := make(map[uint64]Record, len(archived))
	for _, a := range archived {
		bySeq[a.Seq] = a
	}
	out := make([]auditapi.ArchivedEvent, 0, len(msgs))
	for _, m := range msgs {
		rec := fromMsg(m)
		if a, ok := bySeq[m.Seq]; ok {
			rec.Hash, rec.Chain = a.Hash, a.Chain
		}
		out = append(out, toArchivedEvent(rec))
	}
	return out, nil
}

// AsOf rebuilds a case from its events up to and including r.At.
//
// Errors: CodeInvalid without a time; CodeNotFound for an unknown or
// malformed case id, or a case that did not exist yet at r.At;
// CodeUnavailable.
func (s *Service) AsOf(ctx context.Context, r auditapi.AsOfRequest) (*assist.Case, error) {
	if r.At.IsZero() {
		return nil, &assist.Error{Code: assist.CodeInvalid, Message: "invalid at",
			Fields: []assist.FieldError{{Field: "at", Message: "is required"}}}
	}
	if !eventlog.ValidCaseID(r.CaseID) {
		return nil, notFound(r.CaseID)
	}
	return s.log.AsOf(ctx, r.CaseID, r.At)
}

// Access lists the recorded reads of a case's personal data, oldest first;
// empty when nobody has read it.
//
// Errors: CodeNotFound for a malformed case id; CodeUnavailable.
func (s *Service) Access(ctx context.Context, r auditapi.CaseRequest) ([]eventlog.Access, error) {
	if !eventlog.ValidCaseID(r.CaseID) {
		return nil, notFound(r.CaseID)
	}
	return s.log.Accesses(ctx, r.CaseID)
}

// DeadLetters lists the events consumers gave up on, oldest first, for
// admins to see and act on.
//
// Errors: CodeInvalid for an after beyond MaxInt64, CodeUnavailable.
func (s *Service) DeadLetters(ctx context.Context, r auditapi.DeadLettersRequest) (auditapi.DeadLettersPage, error) {
	if r.After > math.MaxInt64 {
		return auditapi.DeadLettersPage{}, badAfter()
	}
	limit := r.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	items, err := s.log.DeadLetters(ctx, r.After, limit)
	if err != nil {
		return auditapi.DeadLettersPage{}, err
	}
	page := auditapi.DeadLettersPage{Items: items}
	if len(items) == limit {
		page.Next = items[len(items)-1].Seq
	}
	return page, nil
}

func notFound(caseID string) error {
	return assist.Errorf(assist.CodeNotFound, "no request %q", caseID)
}

// toArchivedEvent renders a record: the envelope's actor, reason and time,
// and the body as JSON with protobuf field names. An event that does not
// decode is rendered with its stream time and the decode error.
func toArchivedEvent(r Record) auditapi.ArchivedEvent {
	e := auditapi.ArchivedEvent{Seq: r.Seq, ID: r.ID, CaseID: r.CaseID, Type: r.Type, At: r.At,
		Hash: hex.EncodeToString(r.Hash), Chain: hex.EncodeToString(r.Chain)}
	var pe evav1.Event
	if err := proto.Unmarshal(r.Data, &pe); err != nil {
		e.DecodeError = fmt.Sprintf("does not decode: %v", err)
		return e
	}
	e.Actor = assist.Actor{Username: pe.GetActor().GetUsername(), Role: pe.GetActor().GetRole(), Post: pe.GetActor().GetPost()}
	e.Reason = pe.GetReason()
	if pe.GetAt() != nil {
		e.At = pe.GetAt().AsTime().UTC()
	}
	body := bodyOf(&pe)
	if body == nil {
		e.DecodeError = "no known body"
		return e
	}
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(body)
	if err != nil {
		e.DecodeError = fmt.Sprintf("body does not render: %v", err)
		return e
	}
	e.Data = data
	return e
}

// bodyOf returns the message set in the envelope's body oneof, nil when
// none is (or one this version does not know).
func bodyOf(pe *evav1.Event) proto.Message {
	m := pe.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("body")
	if od == nil {
		return nil
	}
	fd := m.WhichOneof(od)
	if fd == nil {
		return nil
	}
	return m.Get(fd).Message().Interface()
}

func (s *Service) now() time.Time { return s.clock().UTC() }

// badAfter is the error for a sequence past any the log can hold: the
// stores keep sequences as int64, and one more than the largest uint64
// would wrap to the start.
func badAfter() error {
	return &assist.Error{Code: assist.CodeInvalid, Message: "invalid after",
		Fields: []assist.FieldError{{Field: "after", Message: "must be at most 9223372036854775807"}}}
}
