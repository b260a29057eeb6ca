package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

func effectsDB(t *testing.T, db sqldb.DB) {
	t.Helper()
	ctx := context.Background()
	if err := db.Migrate(ctx, eventlog.Migrations); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `CREATE TABLE effects (seq BIGINT NOT NULL, case_id TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

func effects(t *testing.T, db sqldb.DB) map[string]int {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT case_id FROM effects`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		got[c]++
	}
	return got
}

func record(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
	_, err := q.Exec(ctx, `INSERT INTO effects (seq, case_id) VALUES ($1, $2)`, int64(m.Seq), m.CaseID)
	return err
}

// A poison event goes to the dead-letter subject with its reason after
// bounded retries, and the next event of another case is still processed.
func TestPoisonEventIsDeadLetteredAndOthersFlow(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		effectsDB(t, db)
		l, js := openLog(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		poison, good := newID(), newID()
		var mu sync.Mutex
		attempts := map[string]int{}
		h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
			mu.Lock()
			attempts[m.CaseID]++
			mu.Unlock()
			if m.CaseID == poison {
				return errors.New("cannot apply this event")
			}
			return record(ctx, q, m)
		}
		for _, id := range []string{poison, good} {
			if _, err := l.Append(ctx, submitted(t, id), 0); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = l.Consume(ctx, db, eventlog.ConsumerConfig{Name: "test", MaxAttempts: 3, RetryDelay: 10 * time.Millisecond}, h, zaptest.NewLogger(t))
		}()
		evatest.Eventually(t, "the good event", func() bool { return effects(t, db)[good] == 1 })
		dlq, err := js.Stream(ctx, eventlog.DLQStream)
		if err != nil {
			t.Fatal(err)
		}
		var dead *jetstream.RawStreamMsg
		evatest.Eventually(t, "the dead letter", func() bool {
			dead, err = dlq.GetLastMsgForSubject(ctx, eventlog.DLQPrefix+"test")
			return err == nil
		})
		if got := dead.Header.Get("Eva-Dlq-Reason"); got != "cannot apply this event" {
			t.Errorf("dead letter reason %q", got)
		}
		if got := dead.Header.Get("Eva-Original-Subject"); got != eventlog.Subject(poison, "RequestSubmitted") {
			t.Errorf("dead letter subject %q", got)
		}
		// Admins see it through the log's list of dead letters.
		letters, err := l.DeadLetters(ctx, 0, 10)
		if err != nil || len(letters) != 1 {
			t.Fatalf("dead letters %+v, %v", letters, err)
		}
		if dl := letters[0]; dl.Consumer != "test" || dl.Subject != eventlog.Subject(poison, "RequestSubmitted") ||
			dl.Reason != "cannot apply this event" || dl.EventID != poison || dl.EventSeq == 0 {
			t.Errorf("dead letter %+v", dl)
		}
		if more, err := l.DeadLetters(ctx, letters[0].Seq, 10); err != nil || len(more) != 0 {
			t.Errorf("after the last: %+v, %v", more, err)
		}
		var reason string
		var tries int64
		evatest.Eventually(t, "the dead_letters row", func() bool {
			return db.QueryRow(ctx, `SELECT reason, attempts FROM dead_letters WHERE consumer = 'test'`).Scan(&reason, &tries) == nil
		})
		if reason != "cannot apply this event" || tries != 3 {
			t.Errorf("dead_letters row: %q after %d attempts, want 3", reason, tries)
		}
		// A later event of another case still flows.
		later := newID()
		if _, err := l.Append(ctx, submitted(t, later), 0); err != nil {
			t.Fatal(err)
		}
		evatest.Eventually(t, "the later event", func() bool { return effects(t, db)[later] == 1 })
		mu.Lock()
		if attempts[poison] != 3 {
			t.Errorf("poison event tried %d times, want 3", attempts[poison])
		}
		mu.Unlock()
		if effects(t, db)[poison] != 0 {
			t.Error("the poison event left an effect")
		}
		cancel()
		<-done
	})
}

// A handler that fails twice and then succeeds has its effect exactly once;
// an event marked Poison is dead-lettered without retries.
func TestTransientFailureRetriedAndPoisonNotRetried(t *testing.T) {
	db := sqldbtest.SQLite(t)
	effectsDB(t, db)
	l, _ := openLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	flaky, marked := newID(), newID()
	var mu sync.Mutex
	attempts := map[string]int{}
	h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
		mu.Lock()
		attempts[m.CaseID]++
		n := attempts[m.CaseID]
		mu.Unlock()
		if err := record(ctx, q, m); err != nil {
			return err
		}
		switch {
		case m.CaseID == flaky && n <= 2:
			return errors.New("flaky") // the effect above must be rolled back
		case m.CaseID == marked:
			return eventlog.Poison(errors.New("malformed"))
		}
		return nil
	}
	for _, id := range []string{flaky, marked} {
		if _, err := l.Append(ctx, submitted(t, id), 0); err != nil {
			t.Fatal(err)
		}
	}
	go l.Consume(ctx, db, eventlog.ConsumerConfig{Name: "t2", MaxAttempts: 5, RetryDelay: 5 * time.Millisecond}, h, zaptest.NewLogger(t))
	evatest.Eventually(t, "the flaky event", func() bool { return effects(t, db)[flaky] == 1 })
	var n int64
	evatest.Eventually(t, "the poison record", func() bool {
		return db.QueryRow(ctx, `SELECT attempts FROM dead_letters WHERE consumer = 't2'`).Scan(&n) == nil
	})
	mu.Lock()
	defer mu.Unlock()
	if attempts[flaky] != 3 || attempts[marked] != 1 || n != 1 {
		t.Fatalf("attempts flaky %d (want 3), poison %d (want 1), recorded %d", attempts[flaky], attempts[marked], n)
	}
	if got := effects(t, db); got[flaky] != 1 || got[marked] != 0 {
		t.Fatalf("effects %v", got)
	}
}

// Redelivery is harmless: when the consumer forgets its position and every
// event arrives again, no effect is applied twice.
func TestRedeliveryIsHarmless(t *testing.T) {
	db := sqldbtest.SQLite(t)
	effectsDB(t, db)
	l, js := openLog(t)
	ctx := context.Background()
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = newID()
		if _, err := l.Append(ctx, submitted(t, ids[i]), 0); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	calls := 0
	h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
		mu.Lock()
		calls++
		mu.Unlock()
		return record(ctx, q, m)
	}
	run := func() {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = l.Consume(cctx, db, eventlog.ConsumerConfig{Name: "t3", Batch: 7}, h, zaptest.NewLogger(t))
		}()
		evatest.Eventually(t, "all events", func() bool { return len(effects(t, db)) == len(ids) })
		cancel()
		<-done
	}
	run()
	// Forget the consumer's acks: everything is delivered again.
	if err := js.DeleteConsumer(ctx, eventlog.Stream, "t3"); err != nil {
		t.Fatal(err)
	}
	run()
	for id, n := range effects(t, db) {
		if n != 1 {
			t.Errorf("case %s applied %d times", id, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != len(ids) {
		t.Errorf("handler ran %d times for %d events; seen events must be skipped before the handler", calls, len(ids))
	}
}

// What a handler gives AfterCommit runs once its batch has committed,
// when its writes are there for another connection to read; a batch that
// fails runs none of it. Outside a batch it is refused.
func TestAfterCommitRunsOnceTheBatchCommitted(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		effectsDB(t, db)
		var ran []string
		h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
			if err := record(ctx, q, m); err != nil {
				return err
			}
			if !eventlog.AfterCommit(ctx, func() {
				// Read from outside the transaction: committed already.
				ran = append(ran, fmt.Sprintf("%s:%d", m.CaseID, effects(t, db)[m.CaseID]))
			}) {
				return errors.New("AfterCommit refused in a batch")
			}
			if m.CaseID == "bad" {
				return errors.New("fails")
			}
			return nil
		}
		cfg := eventlog.ConsumerConfig{Name: "after-commit"}
		if failed, err := eventlog.Deliver(ctx, db, cfg, h, []eventlog.Msg{{Seq: 1, CaseID: "a"}, {Seq: 2, CaseID: "b"}}); err != nil || failed != -1 {
			t.Fatalf("Deliver = %d, %v", failed, err)
		}
		if fmt.Sprint(ran) != "[a:1 b:1]" {
			t.Fatalf("after the commit ran %v, want each event's once, its write committed", ran)
		}
		if failed, err := eventlog.Deliver(ctx, db, cfg, h, []eventlog.Msg{{Seq: 3, CaseID: "c"}, {Seq: 4, CaseID: "bad"}}); err == nil || failed != 1 {
			t.Fatalf("Deliver of a failing batch = %d, %v", failed, err)
		}
		if fmt.Sprint(ran) != "[a:1 b:1]" {
			t.Fatalf("a failed batch ran %v after it", ran)
		}
		if eventlog.AfterCommit(ctx, func() { t.Error("ran outside a batch") }) {
			t.Error("AfterCommit outside a batch reported it would run")
		}
	})
}

// A statement given to AddAtEnd runs after the batch's last handler, in
// the same transaction: the handlers do not see it, the commit writes
// each row once with the sum of the batch's amounts for it (none when
// they sum to zero), and a batch that fails has none of it. Outside a
// batch it runs at once.
func TestAddAtEndWritesEachRowOnceAfterTheBatchInItsTransaction(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		effectsDB(t, db)
		if _, err := db.Exec(ctx, `CREATE TABLE totals (id TEXT PRIMARY KEY, n BIGINT NOT NULL, writes BIGINT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO totals (id, n, writes) VALUES ('fund', 0, 0), ('other', 0, 0), ('zero', 0, 0)`); err != nil {
			t.Fatal(err)
		}
		total := func(id string) (n, writes int64) {
			if err := db.QueryRow(ctx, `SELECT n, writes FROM totals WHERE id = $1`, id).Scan(&n, &writes); err != nil {
				t.Fatal(err)
			}
			return n, writes
		}
		const add = `UPDATE totals SET n = n + $1, writes = writes + 1 WHERE id = $2`
		var seen []int64
		h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
			var n int64
			if err := q.QueryRow(ctx, `SELECT n FROM totals WHERE id = 'fund'`).Scan(&n); err != nil {
				return err
			}
			seen = append(seen, n)
			if m.CaseID == "bad" {
				return errors.New("fails")
			}
			if err := record(ctx, q, m); err != nil {
				return err
			}
			switch m.CaseID {
			case "a":
				if err := eventlog.AddAtEnd(ctx, q, add, 1, "zero"); err != nil {
					return err
				}
			case "b":
				if err := eventlog.AddAtEnd(ctx, q, add, 7, "other"); err != nil {
					return err
				}
			case "c":
				if err := eventlog.AddAtEnd(ctx, q, add, -1, "zero"); err != nil {
					return err
				}
			}
			return eventlog.AddAtEnd(ctx, q, add, int64(m.Seq), "fund")
		}
		cfg := eventlog.ConsumerConfig{Name: "at-end"}
		msgs := []eventlog.Msg{{Seq: 1, CaseID: "a"}, {Seq: 2, CaseID: "b"}, {Seq: 3, CaseID: "c"}}
		if failed, err := eventlog.Deliver(ctx, db, cfg, h, msgs); err != nil || failed != -1 {
			t.Fatalf("Deliver = %d, %v", failed, err)
		}
		if len(seen) != 3 || seen[0] != 0 || seen[1] != 0 || seen[2] != 0 {
			t.Fatalf("handlers saw %v, want the total before the batch: 0, 0, 0", seen)
		}
		for id, want := range map[string][2]int64{"fund": {6, 1}, "other": {7, 1}, "zero": {0, 0}} {
			if n, w := total(id); n != want[0] || w != want[1] {
				t.Errorf("%s: total %d in %d writes, want %d in %d", id, n, w, want[0], want[1])
			}
		}
		// A batch that fails keeps nothing of its deferred statements.
		bad := []eventlog.Msg{{Seq: 4, CaseID: "d"}, {Seq: 5, CaseID: "bad"}}
		if failed, err := eventlog.Deliver(ctx, db, cfg, h, bad); err == nil || failed != 1 {
			t.Fatalf("Deliver of a failing batch = %d, %v", failed, err)
		}
		if n, w := total("fund"); n != 6 || w != 1 || effects(t, db)["d"] != 0 {
			t.Fatalf("after a failed batch: total %d in %d writes (want 6 in 1), effects %v", n, w, effects(t, db))
		}
		// Outside a consumer's batch it runs at once.
		err := db.Tx(ctx, func(q sqldb.Querier) error {
			return eventlog.AddAtEnd(ctx, q, add, 10, "fund")
		})
		if n, w := total("fund"); err != nil || n != 16 || w != 2 {
			t.Fatalf("AddAtEnd outside a batch: %v, total %d in %d writes (want 16 in 2)", err, n, w)
		}
	})
}

// With lanes, a batch is applied by several transactions at once, yet the
// events of each case are applied in log order, each once.
func TestLanesKeepEachCasesOrder(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		effectsDB(t, db)
		l, _ := openLog(t)
		ctx := context.Background()
		ids := make([]string, 12)
		last := make([]uint64, len(ids))
		for i := range ids {
			ids[i] = newID()
		}
		const perCase = 4
		for range perCase { // interleaved: every case's events spread over the log
			for i, id := range ids {
				e := submitted(t, id)
				e.ID = newID()
				seq, err := l.Append(ctx, e, last[i])
				if err != nil {
					t.Fatal(err)
				}
				last[i] = seq
			}
		}
		var mu sync.Mutex
		order := map[string][]uint64{}
		h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
			mu.Lock()
			order[m.CaseID] = append(order[m.CaseID], m.Seq)
			mu.Unlock()
			return record(ctx, q, m)
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = l.Consume(cctx, db, eventlog.ConsumerConfig{Name: "lanes", Batch: 16, Lanes: 4}, h, zaptest.NewLogger(t))
		}()
		evatest.Eventually(t, "all events", func() bool {
			n := 0
			for _, c := range effects(t, db) {
				n += c
			}
			return n == len(ids)*perCase
		})
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if seqs := order[id]; len(seqs) != perCase || !slices.IsSorted(seqs) {
				t.Errorf("case %s applied at %v; want %d events in log order", id, seqs, perCase)
			}
		}
		for id, n := range effects(t, db) {
			if n != perCase {
				t.Errorf("case %s has %d effects, want %d", id, n, perCase)
			}
		}
	})
}

// An event that waited for its predecessor through a long outage (here
// fourteen tries that found the gap) is tried again within a few first
// delays once the gap closes, not after the minute of back-off its tries
// would have built up: with a first delay of 20 ms, fourteen doubling
// waits add up to minutes, the gap's cap of eight first delays to about
// two seconds.
func TestGapWaitDoesNotBackOffToAMinute(t *testing.T) {
	db := sqldbtest.SQLite(t)
	effectsDB(t, db)
	l, _ := openLog(t)
	ctx := t.Context()
	id := newID()
	var mu sync.Mutex
	gaps := 0
	h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
		mu.Lock()
		defer mu.Unlock()
		if gaps < 14 {
			gaps++
			return eventlog.ErrGap
		}
		return record(ctx, q, m)
	}
	if _, err := l.Append(ctx, submitted(t, id), 0); err != nil {
		t.Fatal(err)
	}
	consumeInBackground(t, l, db, eventlog.ConsumerConfig{Name: "gap", RetryDelay: 20 * time.Millisecond}, h)
	evatest.Await(t, 20*time.Second, "the event after fourteen gaps", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return effects(t, db)[id] == 1, fmt.Sprintf("%d gaps found", gaps)
	})
}

// A call to the store that never returns (here a handler that waits until
// its context ends, as a query on a connection that died without a word
// does) fails after StepTimeout and is retried as an outage: the consumer
// goes on, and the event, hung on more times than MaxAttempts, is applied
// once and never dead-lettered.
func TestHungStoreCallTimesOutAndIsRetried(t *testing.T) {
	db := sqldbtest.SQLite(t)
	effectsDB(t, db)
	l, _ := openLog(t)
	ctx := t.Context()
	id := newID()
	var mu sync.Mutex
	hangs := 0
	h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
		mu.Lock()
		hang := hangs < 6
		if hang {
			hangs++
		}
		mu.Unlock()
		if hang {
			<-ctx.Done()
			return ctx.Err()
		}
		return record(ctx, q, m)
	}
	if _, err := l.Append(ctx, submitted(t, id), 0); err != nil {
		t.Fatal(err)
	}
	consumeInBackground(t, l, db, eventlog.ConsumerConfig{Name: "hung", MaxAttempts: 2, RetryDelay: 10 * time.Millisecond,
		StepTimeout: 100 * time.Millisecond}, h)
	evatest.Await(t, 30*time.Second, "the event after six hung calls", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return effects(t, db)[id] == 1, fmt.Sprintf("%d hung calls", hangs)
	})
	var dead int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM dead_letters WHERE consumer = 'hung'`).Scan(&dead); err != nil || dead != 0 {
		t.Fatalf("dead letters %d (%v), want none", dead, err)
	}
}

// consumeInBackground runs a consumer of l with cfg and h until the test
// ends.
func consumeInBackground(t *testing.T, l *eventlog.Log, db sqldb.DB, cfg eventlog.ConsumerConfig, h eventlog.Handler) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.Consume(ctx, db, cfg, h, zaptest.NewLogger(t))
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// A batch records its events as seen with one statement: an event seen in
// an earlier batch is skipped, one delivered twice into the same batch is
// handled once, and a batch that fails records none as seen.
func TestBatchHandlesEachEventOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		effectsDB(t, db)
		fail := ""
		h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
			if m.CaseID == fail {
				return errors.New("fails")
			}
			return record(ctx, q, m)
		}
		cfg := eventlog.ConsumerConfig{Name: "once"}
		deliver := func(msgs ...eventlog.Msg) error {
			_, err := eventlog.Deliver(ctx, db, cfg, h, msgs)
			return err
		}
		a, b, c := eventlog.Msg{Seq: 1, CaseID: "a"}, eventlog.Msg{Seq: 2, CaseID: "b"}, eventlog.Msg{Seq: 3, CaseID: "c"}
		if err := deliver(a, b, a); err != nil {
			t.Fatal(err)
		}
		fail = "c"
		if err := deliver(b, c); err == nil {
			t.Fatal("the failing batch committed")
		}
		fail = ""
		if err := deliver(b, c, a); err != nil {
			t.Fatal(err)
		}
		if fx := effects(t, db); fx["a"] != 1 || fx["b"] != 1 || fx["c"] != 1 {
			t.Fatalf("effects %v, want each case once", fx)
		}
	})
}

type countKey struct{}

// TxLocal is shared by the handlers of one batch and starts anew in the
// next; BeforeCommit runs after the batch's last handler, in its
// transaction, and at once outside a batch.
func TestTxLocalAndBeforeCommit(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		effectsDB(t, db)
		var counts []int
		h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
			n := eventlog.TxLocal(ctx, countKey{}, func() *int { return new(int) })
			*n++
			if *n > 1 {
				return nil
			}
			return eventlog.BeforeCommit(ctx, q, func(ctx context.Context, q sqldb.Querier) error {
				counts = append(counts, *n)
				return record(ctx, q, m)
			})
		}
		cfg := eventlog.ConsumerConfig{Name: "local"}
		msgs := []eventlog.Msg{{Seq: 1, CaseID: "a"}, {Seq: 2, CaseID: "b"}, {Seq: 3, CaseID: "c"}}
		if _, err := eventlog.Deliver(ctx, db, cfg, h, msgs); err != nil {
			t.Fatal(err)
		}
		if _, err := eventlog.Deliver(ctx, db, cfg, h, []eventlog.Msg{{Seq: 4, CaseID: "d"}}); err != nil {
			t.Fatal(err)
		}
		if len(counts) != 2 || counts[0] != 3 || counts[1] != 1 {
			t.Fatalf("BeforeCommit saw counts %v, want [3 1]: the first batch's three handlers, then the next's one", counts)
		}
		if fx := effects(t, db); fx["a"] != 1 || fx["d"] != 1 || len(fx) != 2 {
			t.Fatalf("effects %v, want a and d", fx)
		}
		// Outside a batch: a new value each time, and fn at once.
		err := db.Tx(ctx, func(q sqldb.Querier) error {
			for range 2 {
				if err := h(ctx, q, eventlog.Msg{Seq: 9, CaseID: "e"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || len(counts) != 4 || counts[2] != 1 || counts[3] != 1 {
			t.Fatalf("outside a batch: %v, counts %v, want two more runs, each of count 1", err, counts)
		}
	})
}

// BatchCaseIDs: every handler of a batch gets its own case and then the
// batch's other cases, each once, in order, those of an event seen before
// included (a redelivery the handler is not called for) and those of
// events of other kinds left out; outside a batch, its own case alone.
func TestBatchCaseIDs(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		effectsDB(t, db)
		cfg := eventlog.ConsumerConfig{Name: "batch-case-ids"}
		var saw [][]string
		h := func(ctx context.Context, _ sqldb.Querier, m eventlog.Msg) error {
			saw = append(saw, eventlog.BatchCaseIDs(ctx, m.CaseID))
			return nil
		}
		ev := func(seq uint64, caseID string, kind assist.Kind) eventlog.Msg {
			return eventlog.Msg{Seq: seq, CaseID: caseID, Kind: kind}
		}
		if _, err := eventlog.Deliver(ctx, db, cfg, h, []eventlog.Msg{ev(1, "c", assist.KindCase)}); err != nil {
			t.Fatal(err)
		}
		saw = nil
		batch := []eventlog.Msg{ev(1, "c", assist.KindCase), ev(2, "a", assist.KindCase), ev(3, "b", assist.KindCase),
			ev(4, "a", assist.KindCase), ev(5, "w", assist.KindPayee)}
		if failed, err := eventlog.Deliver(ctx, db, cfg, h, batch); err != nil || failed != -1 {
			t.Fatalf("Deliver = %d, %v", failed, err)
		}
		want := [][]string{{"a", "c", "b"}, {"b", "c", "a"}, {"a", "c", "b"}, {"w", "c", "a", "b"}}
		if fmt.Sprint(saw) != fmt.Sprint(want) {
			t.Fatalf("handlers got %v, want %v (seq 1 was seen before)", saw, want)
		}
		if got := eventlog.BatchCaseIDs(ctx, "x"); !slices.Equal(got, []string{"x"}) {
			t.Fatalf("outside a batch: %v, want [x]", got)
		}
	})
}

// A consumer with Linger holds a batch open after its first event until
// the linger ends or the batch is full: the events that came meanwhile
// are applied in the same transaction. Without it a lone event is
// applied at once.
func TestLingerGathersABatch(t *testing.T) {
	db := sqldbtest.SQLite(t)
	effectsDB(t, db)
	l, _ := openLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	txs := 0 // transactions that applied events: TxLocal makes its value once in each
	type txKey struct{}
	h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
		eventlog.TxLocal(ctx, txKey{}, func() bool { mu.Lock(); txs++; mu.Unlock(); return true })
		return record(ctx, q, m)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.Consume(ctx, db, eventlog.ConsumerConfig{Name: "linger", Batch: 3, Linger: time.Hour}, h, zaptest.NewLogger(t))
	}()
	defer func() { cancel(); <-done }()
	appendOne := func() {
		if _, err := l.Append(ctx, submitted(t, newID()), 0); err != nil {
			t.Fatal(err)
		}
	}
	appendOne()
	// Without a linger the event would be applied within a millisecond
	// or two of its delivery; with an hour's, it waits for the batch.
	time.Sleep(300 * time.Millisecond)
	if fx := len(effects(t, db)); fx != 0 {
		t.Fatalf("a lone event with an hour's linger was applied (%d effects); want it held", fx)
	}
	appendOne()
	appendOne()
	evatest.Eventually(t, "the full batch", func() bool { return len(effects(t, db)) == 3 })
	mu.Lock()
	defer mu.Unlock()
	if txs != 1 {
		t.Fatalf("three events gathered by the linger took %d transactions, want 1", txs)
	}
}

// A write a handler deferred (sqldb.Defer) fails with the next statement,
// which may be another event's, or at the commit: the failure is still
// pinned on the event whose handler deferred it. That event is retried
// and dead-lettered on its own with the write's error, and the events
// batched with it, before and after, are applied once each.
func TestDeferredWriteFailureIsPinnedOnItsEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		effectsDB(t, db)
		l, _ := openLog(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		before, bad, after := newID(), newID(), newID()
		var mu sync.Mutex
		attempts := map[string]int{}
		h := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
			mu.Lock()
			attempts[m.CaseID]++
			mu.Unlock()
			caseID := any(m.CaseID)
			if m.CaseID == bad {
				caseID = nil // effects.case_id is NOT NULL
			}
			return sqldb.Defer(ctx, q, `INSERT INTO effects (seq, case_id) VALUES ($1, $2)`, int64(m.Seq), caseID)
		}
		for _, id := range []string{before, bad, after} {
			if _, err := l.Append(ctx, submitted(t, id), 0); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = l.Consume(ctx, db, eventlog.ConsumerConfig{Name: "deferred", Batch: 3, Linger: time.Second,
				MaxAttempts: 2, RetryDelay: 10 * time.Millisecond}, h, zaptest.NewLogger(t))
		}()
		defer func() { cancel(); <-done }()
		var reason string
		evatest.Eventually(t, "the bad event's dead letter", func() bool {
			return db.QueryRow(ctx, `SELECT reason FROM dead_letters WHERE consumer = 'deferred'`).Scan(&reason) == nil
		})
		if !strings.Contains(reason, "case_id") && !strings.Contains(strings.ToLower(reason), "null") {
			t.Errorf("dead letter reason %q does not name the failed write", reason)
		}
		evatest.Eventually(t, "the events around it", func() bool {
			fx := effects(t, db)
			return fx[before] == 1 && fx[after] == 1
		})
		if fx := effects(t, db); len(fx) != 2 {
			t.Errorf("effects %v, want the two good events once each", fx)
		}
		var letters int
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM dead_letters`).Scan(&letters); err != nil || letters != 1 {
			t.Errorf("%d dead letters (%v), want the bad event's alone", letters, err)
		}
	})
}
