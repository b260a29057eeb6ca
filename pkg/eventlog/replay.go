package eventlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
)

// scanBatch is how many events one batched direct get of Scan asks for.
// The server also ends a batch at its max-pending bytes (64 MiB by
// default), so large events only make batches shorter.
const scanBatch = 4096

// scanTimeout bounds one batched read of Scan: a batch that runs out of
// time ends early without an error, and Scan asks again from where it
// stopped.
const scanTimeout = 30 * time.Second

// Scan reads the events of the log from sequence from to sequence to
// (both included; to 0 is the log's end when Scan starts), in order, a
// batch of direct gets at a time, the next batch read while f handles the
// current one, and calls f with each: events of every kind, the case's
// and the others'. It returns the last sequence read.
//
// Errors: f's; CodeUnavailable when the log does not answer.
func (l *Log) Scan(ctx context.Context, from, to uint64, f func(Msg) error) (last uint64, err error) {
	if from == 0 {
		from = 1
	}
	if to == 0 {
		if to, err = l.LastSeq(ctx); err != nil {
			return 0, err
		}
	}
	if to < from {
		return from - 1, nil
	}
	type batch struct {
		msgs []Msg
		err  error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan batch, 1)
	go func() {
		defer close(batches)
		for next := from; next <= to; {
			msgs, err := l.readBatch(ctx, next, to)
			select {
			case batches <- batch{msgs, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
			if len(msgs) == 0 {
				return // nothing left at or after next
			}
			next = msgs[len(msgs)-1].Seq + 1
		}
	}()
	last = from - 1
	for b := range batches {
		if b.err != nil {
			return last, b.err
		}
		for _, m := range b.msgs {
			if err := f(m); err != nil {
				return last, err
			}
			last = m.Seq
		}
	}
	return last, ctx.Err()
}

// readBatch reads one batch of events from sequence from on, none past to.
// An empty batch means the stream holds nothing at or after from.
func (l *Log) readBatch(ctx context.Context, from, to uint64) ([]Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, scanTimeout)
	defer cancel()
	it, err := jetstreamext.GetBatch(ctx, l.js, Stream, int(min(to-from+1, scanBatch)), jetstreamext.GetBatchSeq(from))
	if err != nil {
		return nil, unavailable(fmt.Sprintf("read the log at %d", from), err)
	}
	out := make([]Msg, 0, min(to-from+1, scanBatch))
	for raw, err := range it {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break
		}
		if err != nil {
			if len(out) > 0 && errors.Is(err, context.DeadlineExceeded) {
				break // a short batch: the caller asks again
			}
			return nil, unavailable(fmt.Sprintf("read the log at %d", from), err)
		}
		if raw.Sequence > to {
			break
		}
		out = append(out, FromRaw(raw))
	}
	return out, nil
}

// Rebuilt says what Rebuild did.
type Rebuilt struct {
	// Events is how many events of the log were read, Cases how many
	// cases were written.
	Events, Cases int
	// Last is the sequence of the last event folded in.
	Last uint64
}

// RebuildOptions are the optional parts of a Rebuild.
type RebuildOptions struct {
	// Reset deletes the read model's rows inside Rebuild's transaction,
	// before the cases are written: rows of cases the log does not hold
	// go. Nil keeps them (every case of the log is still overwritten).
	Reset func(ctx context.Context, q sqldb.Querier) error
	// Progress, when set, is called after each batch read with the last
	// sequence read and the log's end as Rebuild knows it.
	Progress func(done, total uint64)
}

// Rebuild rebuilds a projection from the log: it folds every case from its
// first event, in memory, reading the log in batches, then replaces the
// projection's copies in one transaction of db — Reset, then every case
// written — so that readers see the old read model or the new one, never a
// mix. Inside that transaction, after Reset, it folds in the events
// appended since the first read too, so that no row it writes is older
// than one the service's consumer wrote before Reset. Durable consumers
// are left as they are: one that keeps running skips the events at or
// below a rebuilt case's version. Stopping the service's consumer while it
// runs is still the safe way (README, Replay).
//
// Errors: those of the store; CodeUnavailable when the log does not
// answer; an event that does not decode, or that does not follow its case's
// previous event, naming its sequence.
func (l *Log) Rebuild(ctx context.Context, db sqldb.DB, p Projection, opt RebuildOptions) (Rebuilt, error) {
	var res Rebuilt
	cases := map[string]*assist.Case{}
	end, err := l.LastSeq(ctx)
	if err != nil {
		return res, err
	}
	fold := func(m Msg) error {
		res.Events++
		if opt.Progress != nil && (res.Events%scanBatch == 0 || m.Seq == end) {
			opt.Progress(m.Seq, max(end, m.Seq))
		}
		if m.CaseID == "" {
			return nil
		}
		next, _, err := Fold(cases[m.CaseID], m)
		if err != nil {
			return fmt.Errorf("rebuild: event %d of case %s: %w", m.Seq, m.CaseID, err)
		}
		cases[m.CaseID] = next
		return nil
	}
	if res.Last, err = l.Scan(ctx, 1, end, fold); err != nil {
		return res, err
	}
	err = db.Tx(ctx, func(q sqldb.Querier) error {
		if opt.Reset != nil {
			if err := opt.Reset(ctx, q); err != nil {
				return fmt.Errorf("rebuild: reset: %w", err)
			}
		}
		end, err = l.LastSeq(ctx)
		if err != nil {
			return err
		}
		if end > res.Last {
			if res.Last, err = l.Scan(ctx, res.Last+1, end, fold); err != nil {
				return err
			}
		}
		ids := make([]string, 0, len(cases))
		for id := range cases {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, strings.Compare)
		for _, id := range ids {
			if err := p.Project(ctx, q, cases[id]); err != nil {
				return fmt.Errorf("rebuild: case %s: %w", id, err)
			}
		}
		res.Cases = len(ids)
		return nil
	})
	return res, err
}
