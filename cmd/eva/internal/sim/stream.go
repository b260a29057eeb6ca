package sim

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/eventlog"
)

// fakeStream is a fake of the JetStream event stream, an
// eventlog.BatchStore kept in memory. It is faithful where the money path
// depends on the stream: sequences grow from 1 across the stream; an
// append expecting a filter's last sequence that is not the last fails
// with the API error 10071; a message id seen within the duplicate window
// answers the first message's sequence as a duplicate — checked before
// the sequence on a cluster and after it on a standalone server
// (NATS.md), the seed chooses which. It injects the stream's faults: an
// append that times out before or after it is stored, 10164 (a write in
// flight in a cluster), and no answer at all. It takes atomic batches
// too, as a replicated stream does. It survives crashes of the nodes, as
// the stream does.
type fakeStream struct {
	w           *world
	msgs        []*jetstream.RawStreamMsg
	ids         map[string]msgID
	dedupeFirst bool
	window      time.Duration
	batches     int // atomic batches stored
}

type msgID struct {
	seq uint64
	at  time.Time
}

var _ eventlog.BatchStore = (*fakeStream)(nil)

func newFakeStream(w *world) *fakeStream {
	return &fakeStream{w: w, ids: map[string]msgID{}, dedupeFirst: w.rng.IntN(2) == 0, window: 10 * time.Minute}
}

// Publish implements eventlog.Store.
func (s *fakeStream) Publish(ctx context.Context, m *nats.Msg, id, filter string, expected uint64) (uint64, bool, error) {
	_, typ, _ := eventlog.ParseSubject(m.Subject)
	yield(ctx, "log append "+typ)
	if err := s.faultBefore(); err != nil {
		return 0, false, err
	}
	seq, dup, err := s.append(m, id, filter, expected)
	if err != nil || dup {
		return seq, dup, err
	}
	yield(ctx, "log ack "+typ)
	if s.w.fault(faultLogAfter) != 0 {
		// Stored, but the ack is lost: the caller cannot tell.
		return 0, false, fmt.Errorf("fake stream: ack lost: %w", context.DeadlineExceeded)
	}
	return seq, false, nil
}

// PublishBatch implements eventlog.BatchStore, as a replicated stream
// takes an atomic batch: its faults are an append's (no answer before it
// is stored, or its ack lost after); a message id seen within the window
// (10201) or a filter moved on (10071) refuses the whole batch; else
// every message is stored, at consecutive sequences.
func (s *fakeStream) PublishBatch(ctx context.Context, msgs []*nats.Msg, ids []string, filter string, expected uint64) (uint64, error) {
	yield(ctx, fmt.Sprintf("log append batch of %d", len(msgs)))
	if err := s.faultBefore(); err != nil {
		return 0, err
	}
	now := s.w.clock.now()
	for _, id := range ids {
		if d, ok := s.ids[id]; ok && now.Sub(d.at) < s.window {
			return 0, &jetstream.APIError{Code: 400, ErrorCode: 10201, Description: "atomic publish batch contains duplicate message id"}
		}
	}
	if last := s.last(filter); last != expected {
		return 0, &jetstream.APIError{Code: 400, ErrorCode: 10071, Description: fmt.Sprintf("wrong last sequence: %d", last)}
	}
	var seq uint64
	for i, m := range msgs {
		seq = s.store(m, ids[i], now)
	}
	s.batches++
	yield(ctx, "log ack batch")
	if s.w.fault(faultLogAfter) != 0 {
		return 0, fmt.Errorf("fake stream: ack lost: %w", context.DeadlineExceeded)
	}
	return seq, nil
}

// faultBefore is the fault, if the seed draws one, of an append that
// stores nothing: no answer in time, 10164, or no responders.
func (s *fakeStream) faultBefore() error {
	switch s.w.fault(faultLogBefore) {
	case 1:
		return fmt.Errorf("fake stream: %w", context.DeadlineExceeded)
	case 2:
		return &jetstream.APIError{Code: 503, ErrorCode: 10164, Description: "expected last sequence check in flight"}
	case 3:
		return fmt.Errorf("fake stream: %w", nats.ErrNoResponders)
	}
	return nil
}

func (s *fakeStream) append(m *nats.Msg, id, filter string, expected uint64) (uint64, bool, error) {
	now := s.w.clock.now()
	dup := func() (uint64, bool) {
		d, ok := s.ids[id]
		return d.seq, ok && now.Sub(d.at) < s.window
	}
	if s.dedupeFirst {
		if seq, ok := dup(); ok {
			return seq, true, nil
		}
	}
	if last := s.last(filter); last != expected {
		return 0, false, &jetstream.APIError{Code: 400, ErrorCode: 10071, Description: fmt.Sprintf("wrong last sequence: %d", last)}
	}
	if !s.dedupeFirst {
		if seq, ok := dup(); ok {
			return seq, true, nil
		}
	}
	return s.store(m, id, now), false, nil
}

// store appends m with message id id at the next sequence.
func (s *fakeStream) store(m *nats.Msg, id string, now time.Time) uint64 {
	h := nats.Header{}
	maps.Copy(h, m.Header)
	h.Set(jetstream.MsgIDHeader, id)
	seq := uint64(len(s.msgs) + 1)
	s.msgs = append(s.msgs, &jetstream.RawStreamMsg{Subject: m.Subject, Sequence: seq, Header: h,
		Data: append([]byte(nil), m.Data...), Time: now})
	s.ids[id] = msgID{seq: seq, at: now}
	return seq
}

// last is the sequence of the last message on filter, 0 for none.
func (s *fakeStream) last(filter string) uint64 {
	for i := len(s.msgs) - 1; i >= 0; i-- {
		if matches(filter, s.msgs[i].Subject) {
			return s.msgs[i].Sequence
		}
	}
	return 0
}

// Scan implements eventlog.Store.
func (s *fakeStream) Scan(ctx context.Context, filter string, f func(eventlog.Msg) error) error {
	yield(ctx, "log read")
	if s.w.fault(faultLogRead) != 0 {
		return fmt.Errorf("fake stream: %w", nats.ErrNoResponders)
	}
	for _, raw := range s.msgs {
		if matches(filter, raw.Subject) {
			if err := f(eventlog.FromRaw(raw)); err != nil {
				return err
			}
		}
	}
	return nil
}

// all is every message, in order, read outside any task.
func (s *fakeStream) all() []eventlog.Msg {
	out := make([]eventlog.Msg, len(s.msgs))
	for i, raw := range s.msgs {
		out[i] = eventlog.FromRaw(raw)
	}
	return out
}

// matches reports whether subject is on filter (a subject, or a prefix
// ending in >).
func matches(filter, subject string) bool {
	if p, ok := strings.CutSuffix(filter, ">"); ok {
		return strings.HasPrefix(subject, p)
	}
	return filter == subject
}
