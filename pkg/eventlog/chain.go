package eventlog

import (
	"cmp"
	"context"
	"errors"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A thing's history read by its next-by-subject batch (scan) costs the
// server a walk over every message stored from the thing's first event
// to the stream's end: with a subject per event, the server finds each
// next match by reading the messages in between, a copy each. In an
// embedded bench that walk was a seventh of the process's CPU and 43 % of
// everything it allocated. The server finds a subject's last message from
// its subject index instead, without a walk: one multi-last direct get
// answers the last event of each of the thing's subjects
// (eva.case.<id>.<Type>), which for most cases is every event, since few
// repeat a type. Each event names the one before it (HeaderPrev), so the
// answer proves itself whole, or says which events are missing; those are
// read one by one, by sequence.

// maxChainGets bounds the events loadByChain reads one by one, after
// which the history is read by scan: each is a round trip, and a thing
// whose events repeat a type many times (a fund's) is better read in one.
// A case that went through a loop once (claimed again after information
// was asked for) misses one or two.
const maxChainGets = 2

// loadByChain reads the messages on filter by a multi-last direct get
// and follows their HeaderPrev chain from the last back to the first,
// reading by sequence any event the answer lacked. ok is false when that
// does not prove the history whole (an event without HeaderPrev, one the
// chain does not reach, more than maxChainGets missing, a status it does
// not know): the caller reads it by scan instead, which knows no more
// than the stream holds and tells a broken history (whole). err is set
// only when the stream did not answer (no responders, ctx, the
// connection).
func (l *Log) loadByChain(ctx context.Context, filter string) (msgs []Msg, ok bool, err error) {
	var last []Msg
	var pending int64 = -1
	err = l.directGet(ctx, Stream, directBatch{MultiLast: []string{filter}}, func(raw *jetstream.RawStreamMsg) error {
		last = append(last, FromRaw(raw))
		var err error
		pending, err = numPending(raw)
		return err
	})
	switch {
	case errors.Is(err, errNoResults):
		return nil, true, nil
	case unanswered(ctx, err):
		return nil, false, err
	case err != nil, pending != 0:
		// An answer cut short (its time ran out) or not understood.
		return nil, false, nil
	}
	slices.SortFunc(last, func(a, b Msg) int { return cmp.Compare(a.Seq, b.Seq) })
	// Walk back from the last event; chain holds it newest first.
	chain := make([]Msg, 0, len(last)+1)
	i, gets := len(last)-1, 0
	m := last[i]
	for {
		if !m.chained || m.Prev >= m.Seq {
			return nil, false, nil
		}
		chain = append(chain, m)
		if m.Prev == 0 {
			break
		}
		switch {
		case i > 0 && last[i-1].Seq == m.Prev:
			i--
			m = last[i]
			continue
		case i > 0 && last[i-1].Seq > m.Prev:
			return nil, false, nil // an event of the thing off the chain
		case gets == maxChainGets:
			return nil, false, nil
		}
		gets++
		prev, ok, err := l.getOn(ctx, filter, m.Prev)
		if !ok || err != nil {
			return nil, false, err
		}
		m = prev
	}
	if i > 0 {
		return nil, false, nil // events before the first
	}
	slices.Reverse(chain)
	return chain, true, nil
}

// getOn reads the message at seq when it is on filter; ok is false when
// it is not (or the answer was not understood).
func (l *Log) getOn(ctx context.Context, filter string, seq uint64) (Msg, bool, error) {
	var got []Msg
	err := l.directGet(ctx, Stream, directBatch{Seq: seq, NextBySubj: filter, Batch: 1}, func(raw *jetstream.RawStreamMsg) error {
		got = append(got, FromRaw(raw))
		return nil
	})
	switch {
	case unanswered(ctx, err):
		return Msg{}, false, err
	case err != nil, len(got) != 1, got[0].Seq != seq:
		return Msg{}, false, nil
	}
	return got[0], true, nil
}

// unanswered reports whether err says the stream did not answer a direct
// get, rather than how it answered.
func unanswered(ctx context.Context, err error) bool {
	return err != nil && (ctx.Err() != nil || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrBadSubscription))
}
