package eventlog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
)

// scanBatch is how many events Scan's consumer keeps in flight.
const scanBatch = 4096

// Scan reads the events of the log from sequence from to sequence to
// (both included; to 0 is the log's end when Scan starts), in order, and
// calls f with each: events of every kind, the case's and the others'. It
// reads with an ordered consumer (ephemeral, no acks, flow controlled,
// scanBatch events in flight): a third of the CPU of batched direct gets
// per event, whose every message the server builds headers for. It
// returns the last sequence read. The consumer may be placed on a replica
// still catching up, which says nothing is pending before the log's end:
// Scan then asks the leader (Holds) and waits for the rest.
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
	last = from - 1
	if to < from {
		return last, nil
	}
	if l.files != nil {
		if last, err = l.scanFiles(ctx, from, to, f); err != nil || last == to {
			return last, err
		}
		from = last + 1 // the rest through the server
	}
	err = l.readOrdered(ctx, "read", from, nil, scanBatch, func(m Msg, pending uint64) (bool, error) {
		if m.Seq > to {
			return false, nil
		}
		if err := f(m); err != nil {
			return false, err
		}
		last = m.Seq
		switch {
		case last >= to:
			return false, nil
		case pending > 0:
			return true, nil
		}
		// Nothing pending: the stream ends here, unless the reader's
		// consumer sits on a replica still catching up after its server
		// restarted, whose store ends early. The leader says which.
		return l.Holds(ctx, last+1)
	})
	if err != nil {
		return last, err
	}
	return last, nil
}

// scanFiles is Scan from the stream's files (WithFiles), as far as they
// read cleanly: it returns the last sequence read, and an error only from
// f. A stream from which messages were deleted is not read from its files
// at all (its files keep the deleted messages' records, in blocks before
// the deletes' tombstones).
func (l *Log) scanFiles(ctx context.Context, from, to uint64, f func(Msg) error) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return from - 1, unavailable("stream info", err)
	}
	if info.State.NumDeleted > 0 {
		return from - 1, nil
	}
	last, err := l.files.scan(ctx, from, to, f)
	if cb, ok := err.(callbackError); ok {
		return last, cb.err
	}
	return last, nil // errFilesStop: the server reads the rest
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

// DeleteAll is a Reset (RebuildOptions, RebuildTarget) that deletes every
// row of tables, in their order.
func DeleteAll(tables ...string) func(ctx context.Context, q sqldb.Querier) error {
	return func(ctx context.Context, q sqldb.Querier) error {
		for _, t := range tables {
			if _, err := q.Exec(ctx, `DELETE FROM `+t); err != nil {
				return err
			}
		}
		return nil
	}
}

// StagedProjection is a BulkProjection whose ProjectAll is two halves:
// PrepareAll makes the rows of cases, touching no database, and returns
// what writes them in a transaction. RebuildAll then makes a batch's rows
// while the database writes the batch before (on another CPU: the JSON
// and the statement's values of the next batch, beside SQLite's or
// PostgreSQL's work on this one).
type StagedProjection interface {
	BulkProjection
	// PrepareAll makes the rows of cases of distinct ids; the function
	// it returns writes them, as ProjectAll(cs) would.
	PrepareAll(cs []*assist.Case) (func(ctx context.Context, q sqldb.Querier) error, error)
}

// BulkProjection is a Projection that also stores many cases in one call,
// as Project would store each (the same rows, written in statements of
// many rows): Rebuild uses it when the projection has it.
type BulkProjection interface {
	Projection
	// ProjectAll stores cases of distinct ids.
	ProjectAll(ctx context.Context, q sqldb.Querier, cs []*assist.Case) error
}

// RebuildTarget is one read model RebuildAll rebuilds: its projection,
// the database that holds it, Reset as in RebuildOptions, and Tables, the
// tables the projection writes: on the embedded store their secondary
// indexes are dropped while the cases are written and made again after,
// in the same transaction (sqldb.BulkWrite).
type RebuildTarget struct {
	DB         sqldb.DB
	Projection Projection
	Reset      func(ctx context.Context, q sqldb.Querier) error
	Tables     []string
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
	res, err := l.RebuildAll(ctx, []RebuildTarget{{DB: db, Projection: p, Reset: opt.Reset}}, opt.Progress)
	if err != nil {
		return Rebuilt{}, err
	}
	return res[0], nil
}

// RebuildAll is Rebuild of several read models from one reading of the
// log: every event is read, decoded and folded once, and each target is
// then written in its own transaction of its own database (catching up,
// after its Reset, with the events appended since). When every target has
// a database of its own (the embedded store: a file per service), the
// transactions run at once, one per CPU, and catch up together once all
// have Reset; else one after the other. The cases are written in order of
// their ids, many a statement when the projection is a BulkProjection.
// progress is called as in RebuildOptions. res[i] is what was done for
// targets[i]; Events counts the events folded before its transaction
// committed.
//
// Errors: those of Rebuild; a target that fails stops the others after
// it (those before it are rebuilt) or, written at once, rolls back the
// others that had not committed.
func (l *Log) RebuildAll(ctx context.Context, targets []RebuildTarget, progress func(done, total uint64)) ([]Rebuilt, error) {
	folder := newCaseFolder()
	end, err := l.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	events := 0
	fold := func(m Msg) error {
		events++
		if progress != nil && (events%scanBatch == 0 || m.Seq == end) {
			progress(m.Seq, max(end, m.Seq))
		}
		if m.CaseID == "" {
			return nil
		}
		return folder.add(m)
	}
	// scan reads from..to, the cases folded on every CPU (caseFolder).
	scan := func(from, to uint64) (uint64, error) {
		folder.start()
		last, err := l.Scan(ctx, from, to, fold)
		if ferr := folder.finish(); ferr != nil {
			return last, ferr
		}
		return last, err
	}
	last, err := scan(1, end)
	if err != nil {
		return nil, err
	}
	cases := folder.cases()
	// catchUp folds in the events appended since the first reading.
	catchUp := func() (Rebuilt, error) {
		end, err := l.LastSeq(ctx)
		if err != nil {
			return Rebuilt{}, err
		}
		if end > last {
			if last, err = scan(last+1, end); err != nil {
				return Rebuilt{}, err
			}
			cases = folder.cases()
		}
		return Rebuilt{Events: events, Cases: len(cases), Last: last}, nil
	}
	reset := func(q sqldb.Querier, t RebuildTarget) error {
		if t.Reset == nil {
			return nil
		}
		if err := t.Reset(ctx, q); err != nil {
			return fmt.Errorf("rebuild: reset: %w", err)
		}
		return nil
	}
	res := make([]Rebuilt, len(targets))
	if !ownDatabases(targets) {
		for i, t := range targets {
			err := t.DB.Tx(ctx, func(q sqldb.Querier) error {
				if err := reset(q, t); err != nil {
					return err
				}
				var err error
				if res[i], err = catchUp(); err != nil {
					return err
				}
				return sqldb.BulkWrite(ctx, t.DB, q, t.Tables, func() error { return writeCases(ctx, q, t.Projection, cases) })
			})
			if err != nil {
				return res, err
			}
		}
		return res, nil
	}
	// Written at once: every transaction Resets, then one catches up for
	// all (the others wait: the cases are not changed while written).
	var (
		resets   sync.WaitGroup
		caught   = sync.OnceValues(catchUp)
		failed   atomic.Bool
		errs     = make([]error, len(targets))
		finished sync.WaitGroup
	)
	resets.Add(len(targets))
	for i, t := range targets {
		finished.Go(func() {
			resetDone := sync.OnceFunc(resets.Done)
			defer resetDone()
			errs[i] = t.DB.Tx(ctx, func(q sqldb.Querier) error {
				err := reset(q, t)
				if err != nil {
					failed.Store(true)
				}
				resetDone()
				resets.Wait()
				if err != nil || failed.Load() {
					return cmp.Or(err, errOtherTarget)
				}
				if res[i], err = caught(); err != nil {
					return err
				}
				return sqldb.BulkWrite(ctx, t.DB, q, t.Tables, func() error { return writeCases(ctx, q, t.Projection, cases) })
			})
			if errs[i] != nil {
				failed.Store(true)
			}
		})
	}
	finished.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, errOtherTarget) {
			return res, err
		}
	}
	return res, errors.Join(errs...)
}

// errOtherTarget rolls back a read model written at once with another
// whose Reset failed.
var errOtherTarget = errors.New("rebuild: another read model's reset failed")

// ownDatabases reports whether there are several targets, each with a
// database of its own.
func ownDatabases(targets []RebuildTarget) bool {
	seen := map[sqldb.DB]bool{}
	for _, t := range targets {
		if seen[t.DB] {
			return false
		}
		seen[t.DB] = true
	}
	return len(targets) > 1
}

// writeCases writes every case to a projection, in order of their ids.
func writeCases(ctx context.Context, q sqldb.Querier, p Projection, cases map[string]*assist.Case) error {
	ids := slices.Sorted(maps.Keys(cases))
	if staged, ok := p.(StagedProjection); ok {
		return writeStaged(ctx, q, staged, ids, cases)
	}
	if bulk, ok := p.(BulkProjection); ok {
		batch := make([]*assist.Case, 0, bulkCases)
		for k, id := range ids {
			if batch = append(batch, cases[id]); len(batch) == bulkCases || k == len(ids)-1 {
				if err := bulk.ProjectAll(ctx, q, batch); err != nil {
					return fmt.Errorf("rebuild: cases %s to %s: %w", batch[0].ID, id, err)
				}
				batch = batch[:0]
			}
		}
		return nil
	}
	for _, id := range ids {
		if err := p.Project(ctx, q, cases[id]); err != nil {
			return fmt.Errorf("rebuild: case %s: %w", id, err)
		}
	}
	return nil
}

// writeStaged writes the cases of ids, a batch at a time, each batch's
// rows made (PrepareAll) by another goroutine while q writes the batch
// before.
func writeStaged(ctx context.Context, q sqldb.Querier, p StagedProjection, ids []string, cases map[string]*assist.Case) error {
	type batch struct {
		write       func(context.Context, sqldb.Querier) error
		first, last string
		err         error
	}
	ready := make(chan batch, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		defer close(ready)
		for lo := 0; lo < len(ids); lo += bulkCases {
			hi := min(lo+bulkCases, len(ids))
			cs := make([]*assist.Case, hi-lo)
			for i, id := range ids[lo:hi] {
				cs[i] = cases[id]
			}
			b := batch{first: ids[lo], last: ids[hi-1]}
			b.write, b.err = p.PrepareAll(cs)
			select {
			case ready <- b:
			case <-stop:
				return
			}
			if b.err != nil {
				return
			}
		}
	}()
	for b := range ready {
		err := b.err
		if err == nil {
			err = b.write(ctx, q)
		}
		if err != nil {
			return fmt.Errorf("rebuild: cases %s to %s: %w", b.first, b.last, err)
		}
	}
	return nil
}

// bulkCases is how many cases RebuildAll hands a BulkProjection at once.
const bulkCases = 1024
