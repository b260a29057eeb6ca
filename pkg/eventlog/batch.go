package eventlog

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
)

// batch is the consumer transaction its handlers run in: the events it
// applies, what the handlers keep for one another, and what runs after
// the last of them, before the commit. A transaction that fails takes its
// batch with it: the events applied again are applied in a new one.
type batch struct {
	msgs  []Msg
	local map[any]any
	end   []func(context.Context, sqldb.Querier) error
	after []func()
}

type batchKey struct{}

func withBatch(ctx context.Context, msgs []Msg) (context.Context, *batch) {
	b := &batch{msgs: msgs}
	return context.WithValue(ctx, batchKey{}, b), b
}

func batchOf(ctx context.Context) *batch {
	b, _ := ctx.Value(batchKey{}).(*batch)
	return b
}

// finish runs the batch's end functions in the order they were given.
// Their writes are the transaction's last: they are deferred
// (sqldb.Deferring), sent with the COMMIT in one round trip on
// PostgreSQL, and a row they lock (a fund's) is held for the commit
// alone. Their errors fail the whole batch either way.
func (b *batch) finish(ctx context.Context, q sqldb.Querier) error {
	q = sqldb.Deferring(q)
	for len(b.end) > 0 {
		fn := b.end[0]
		b.end = b.end[1:]
		if err := fn(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// applyAll applies msgs as the consumer cfg applies a batch, in the
// transaction q: those seen before are skipped, the others recorded as
// seen (unless the handler records it) and handled, and then the batch's
// end functions run. failed is the index of the event whose handler
// failed, -1 when none did; after is what the handlers asked to run once
// the transaction commits (AfterCommit).
func applyAll(ctx context.Context, q sqldb.Querier, cfg ConsumerConfig, h Handler, msgs []Msg) (failed int, after []func(), err error) {
	ctx, b := withBatch(ctx, msgs)
	fresh := func(int) bool { return true }
	if !cfg.SeenByHandler {
		seen, err := markSeen(ctx, q, cfg.Name, msgs)
		if err != nil {
			return -1, nil, err
		}
		fresh = func(i int) bool {
			// Once: a sequence delivered twice into one batch is new once.
			f := seen[msgs[i].Seq]
			delete(seen, msgs[i].Seq)
			return f
		}
	}
	for i, m := range msgs {
		if !fresh(i) {
			continue // seen before: a redelivery
		}
		if err := h(ctx, q, m); err != nil {
			return i, nil, err
		}
	}
	// The end functions first: one of them may ask for a hook too.
	if err := b.finish(ctx, q); err != nil {
		return -1, nil, err
	}
	return -1, b.after, nil
}

// markSeen records msgs as seen by the consumer name, in one statement,
// and returns the sequences that were not seen before. The list of
// sequences is padded (sqldb.Pad): a sequence twice in one INSERT ... ON
// CONFLICT DO NOTHING is inserted once.
func markSeen(ctx context.Context, q sqldb.Querier, name string, msgs []Msg) (map[uint64]bool, error) {
	seqs := make([]any, len(msgs))
	for i, m := range msgs {
		seqs[i] = int64(m.Seq)
	}
	seqs = sqldb.Pad(seqs)
	var sb strings.Builder
	sb.WriteString(`INSERT INTO event_seen (consumer, at, seq) VALUES `)
	for i := range seqs {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("($1, $2, $" + strconv.Itoa(i+3) + ")")
	}
	sb.WriteString(` ON CONFLICT DO NOTHING RETURNING seq`)
	args := append([]any{name, sqldb.Micros(time.Now())}, seqs...)
	rows, err := q.Query(ctx, sb.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	fresh := make(map[uint64]bool, len(msgs))
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return nil, err
		}
		fresh[uint64(seq)] = true
	}
	return fresh, rows.Err()
}

// BatchCaseIDs is id and then, each once and in the order applied, the
// cases of the other case events of the consumer batch that ctx runs in
// (those seen before included); outside a batch, id alone. A handler uses
// it at the batch's first event to read at once what the batch's other
// events will need (the rows of all its cases in one statement), keeping
// them with TxLocal.
func BatchCaseIDs(ctx context.Context, id string) []string {
	ids := []string{id}
	if b := batchOf(ctx); b != nil {
		for _, m := range b.msgs {
			if m.Kind == assist.KindCase && !slices.Contains(ids, m.CaseID) {
				ids = append(ids, m.CaseID)
			}
		}
	}
	return ids
}

// TxLocal returns the value kept under key in the consumer transaction
// that ctx runs in, made by mk on its first use there: what the handlers
// of one batch share (a head read once, rows to write once at the end).
// It goes with its transaction: a batch applied again after a failure
// starts without it. Outside a consumer's transaction (a handler called
// on its own) it returns a new value of mk each time. key compares as a
// map key; use an unexported type of your own.
func TxLocal[T any](ctx context.Context, key any, mk func() T) T {
	b := batchOf(ctx)
	if b == nil {
		return mk()
	}
	if v, ok := b.local[key]; ok {
		return v.(T)
	}
	if b.local == nil {
		b.local = make(map[any]any)
	}
	v := mk()
	b.local[key] = v
	return v
}

// BeforeCommit runs fn in a consumer's transaction after the last
// handler of its batch, with AtEnd's statements, in the order given,
// instead of now: for writes a batch's handlers gather (the rows of many
// events in one statement). Its error fails the whole transaction, which
// is then tried again. Outside a consumer's batch (a handler called on
// its own) it runs fn at once on q.
func BeforeCommit(ctx context.Context, q sqldb.Querier, fn func(context.Context, sqldb.Querier) error) error {
	b := batchOf(ctx)
	if b == nil {
		return fn(ctx, q)
	}
	b.end = append(b.end, fn)
	return nil
}

// AfterCommit runs fn once the consumer's transaction that ctx runs in
// has committed, after its events are acked: for what may only happen
// once the handler's writes are there for others to read (a step handed
// to a worker that will read them). fn must not block. It does not run
// when the transaction fails; the events applied again then register
// again. Outside a consumer's batch it does nothing and reports false.
func AfterCommit(ctx context.Context, fn func()) bool {
	b := batchOf(ctx)
	if b == nil {
		return false
	}
	b.after = append(b.after, fn)
	return true
}

// AddAtEnd runs query, a statement that adds its $1 (amount) to the row
// its $2 (row) names, in a consumer's transaction after the last handler
// of its batch, instead of now: for a row that others wait on (a fund's
// totals, which every approval updates), so that the row is locked only
// for the commit rather than through every other event of the batch. The
// amounts a batch adds with the same query to the same row are summed
// and written once, where the first of them was given (among
// BeforeCommit's functions, in order); a sum of zero writes nothing. A
// row written once a batch rather than once an event is one row version,
// one index check and one statement where there were many. Outside a
// consumer's batch (a handler called on its own) it runs at once on q.
// The handlers of the same batch must not read what it writes.
func AddAtEnd(ctx context.Context, q sqldb.Querier, query string, amount int64, row string) error {
	if batchOf(ctx) == nil {
		_, err := q.Exec(ctx, query, amount, row)
		return err
	}
	sums := TxLocal(ctx, addSums{}, func() map[addKey]*int64 { return map[addKey]*int64{} })
	k := addKey{query, row}
	if sum, ok := sums[k]; ok {
		*sum += amount
		return nil
	}
	sum := &amount
	sums[k] = sum
	return BeforeCommit(ctx, q, func(ctx context.Context, q sqldb.Querier) error {
		if *sum == 0 {
			return nil
		}
		_, err := q.Exec(ctx, query, *sum, row)
		return err
	})
}

// addKey is a row AddAtEnd adds to, with the statement that adds.
type addKey struct{ query, row string }

// addSums is the TxLocal key of a batch's AddAtEnd amounts, by addKey.
type addSums struct{}
