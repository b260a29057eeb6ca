package eventlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"go.uber.org/zap/zaptest"
)

// jsonProjection keeps whole cases as JSON, as the services' read models do.
type jsonProjection struct{}

func (jsonProjection) Projected(ctx context.Context, q sqldb.Querier, id string) (*assist.Case, error) {
	var state string
	err := q.QueryRow(ctx, `SELECT state FROM proj WHERE id = $1`, id).Scan(&state)
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c assist.Case
	return &c, json.Unmarshal([]byte(state), &c)
}

func (jsonProjection) Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error {
	state, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO proj (id, state) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET state = excluded.state`,
		c.ID, string(state))
	return err
}

// projDB migrates db for a consumer and makes jsonProjection's table.
func projDB(t *testing.T, db sqldb.DB) {
	t.Helper()
	ctx := context.Background()
	if err := db.Migrate(ctx, eventlog.Migrations); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `CREATE TABLE proj (id TEXT PRIMARY KEY, state TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
}

// poisonFirst is a projection that refuses, once, to store a case's first
// event, so that the consumer dead-letters it and the next event of the
// case arrives with its predecessor missing.
type poisonFirst struct {
	jsonProjection
	refused atomic.Bool
}

func (p *poisonFirst) Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error {
	if c.Events == 1 && p.refused.CompareAndSwap(false, true) {
		return eventlog.Poison(errors.New("refused once"))
	}
	return p.jsonProjection.Project(ctx, q, c)
}

// An event whose predecessor the projection never applied (here it was
// dead-lettered) is a gap: the consumer repairs it by folding the case
// from the log, outside its transaction, and the projection ends equal
// to the fold of the log.
func TestProjectRepairsAGap(t *testing.T) {
	db := sqldbtest.SQLite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	projDB(t, db)
	l, _ := openLog(t)
	id := newID()
	seq1, err := l.Append(ctx, submitted(t, id), 0)
	if err != nil {
		t.Fatal(err)
	}
	p := &poisonFirst{}
	done := make(chan error, 1)
	go func() {
		done <- l.Project(ctx, db, eventlog.ConsumerConfig{Name: "proj", MaxAttempts: 1, RetryDelay: time.Millisecond}, p, zaptest.NewLogger(t))
	}()
	evatest.Eventually(t, "the first event to be dead-lettered", p.refused.Load)
	c, _ := l.Case(ctx, id)
	seq2, err := l.Append(ctx, claimed(t, c, olu), seq1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := l.Case(ctx, id)
	evatest.Eventually(t, "the projection to catch up with the log", func() bool {
		got, err := p.Projected(ctx, db, id)
		return err == nil && got != nil && got.Version == seq2
	})
	got, _ := p.Projected(ctx, db, id)
	if got.State != assist.StateUnderReview || got.Events != want.Events || got.ClaimedBy != "olu" {
		t.Fatalf("projected %+v, want the fold of the log %+v", got, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The projection's consumer hands each event it applies to the held
// cases (ConsumerConfig.Held): they end holding the case's whole history,
// and a command on it decides without reading the case.
func TestProjectFeedsTheHeldCases(t *testing.T) {
	db := sqldbtest.SQLite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	projDB(t, db)
	l, _ := openLog(t)
	id := startCase(t, l)
	if _, err := l.Execute(ctx, claimCmd(id, newID(), olu)); err != nil {
		t.Fatal(err)
	}
	held := &eventlog.HeldCases{}
	done := make(chan error, 1)
	go func() {
		done <- l.Project(ctx, db, eventlog.ConsumerConfig{Name: "proj", Held: held}, jsonProjection{}, zaptest.NewLogger(t))
	}()
	evatest.Eventually(t, "the held cases to hold both events", func() bool { return len(held.HistoryForTest(id)) == 2 })
	checkPrefix(t, l, held, id)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// batchProjection is jsonProjection loading and storing many cases at a
// time (a BatchProjection); it counts its reads, and refuses the first
// writes it is told to (a fake failure of the store).
type batchProjection struct {
	jsonProjection
	one, all   atomic.Int64 // calls of Projected, ProjectedAll
	firstRead  atomic.Int64 // cases the first call of ProjectedAll was asked for
	writes     atomic.Int64 // calls of ProjectAll
	failWrites atomic.Int64 // calls of ProjectAll left to refuse
}

func (p *batchProjection) Projected(ctx context.Context, q sqldb.Querier, id string) (*assist.Case, error) {
	p.one.Add(1)
	return p.jsonProjection.Projected(ctx, q, id)
}

func (p *batchProjection) ProjectedAll(ctx context.Context, q sqldb.Querier, ids []string) (map[string]*assist.Case, error) {
	if p.all.Add(1) == 1 {
		p.firstRead.Store(int64(len(ids)))
	}
	out := make(map[string]*assist.Case)
	for _, id := range ids {
		c, err := p.jsonProjection.Projected(ctx, q, id)
		if err != nil {
			return nil, err
		}
		if c != nil {
			out[id] = c
		}
	}
	return out, nil
}

func (p *batchProjection) ProjectAll(ctx context.Context, q sqldb.Querier, cs []*assist.Case) error {
	p.writes.Add(1)
	if p.failWrites.Add(-1) >= 0 {
		return errors.New("write refused (fake store failure)")
	}
	for _, c := range cs {
		if err := p.jsonProjection.Project(ctx, q, c); err != nil {
			return err
		}
	}
	return nil
}

// A BatchProjection folds a batch's events in memory: several events of
// one case in one batch end as the fold of the log, without reading a
// case on its own, and a batch whose write fails is applied again (one
// event per transaction), from what the store holds, not from what the
// failed batch had folded.
//
// The six events must reach the consumer as one batch, and nothing
// promises that by default: a batch closes once 1 ms passes without an
// event, and a pause of the test's process (the race detector, GC, a
// busy machine) can close it after the first. The refused write then
// fails that event alone; it is retried after its back-off, its case's
// next event comes first, finds the gap and is repaired from the log,
// which reads the case on its own (Projected), as it should. So the
// consumer is told its batch is the six events: it closes when the
// sixth arrives, and its linger, which only bounds the wait, is never
// reached.
func TestBatchProjectionFoldsABatchInMemory(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		projDB(t, db)
		l, _ := openLog(t)
		var ids []string
		for range 3 {
			id := newID()
			seq, err := l.Append(ctx, submitted(t, id), 0)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := l.Case(ctx, id)
			if _, err := l.Append(ctx, claimed(t, c, olu), seq); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		p := &batchProjection{}
		p.failWrites.Store(1)
		done := make(chan error, 1)
		go func() {
			done <- l.Project(ctx, db, eventlog.ConsumerConfig{Name: "proj", Batch: 2 * len(ids), Linger: 10 * time.Second,
				RetryDelay: time.Millisecond}, p, zaptest.NewLogger(t))
		}()
		evatest.Eventually(t, "the projection to hold every case's fold", func() bool {
			for _, id := range ids {
				want, _ := l.Case(ctx, id)
				got, err := p.jsonProjection.Projected(ctx, db, id)
				if err != nil || got == nil || got.Version != want.Version {
					return false
				}
			}
			return true
		})
		if n := p.firstRead.Load(); n != 0 && n != int64(len(ids)) { // 0: ProjectedAll never ran, see below
			t.Fatalf("the first batch read %d cases, want all %d: its six events were not one batch", n, len(ids))
		}
		for _, id := range ids {
			want, _ := l.Case(ctx, id)
			got, _ := p.jsonProjection.Projected(ctx, db, id)
			if got.State != want.State || got.Events != want.Events || got.ClaimedBy != want.ClaimedBy {
				t.Fatalf("projected %+v, want the fold of the log %+v", got, want)
			}
		}
		if n := p.one.Load(); n != 0 {
			t.Fatalf("Projected read a case on its own %d times; a batch reads them with ProjectedAll", n)
		}
		if w := p.writes.Load(); w < 2 {
			t.Fatalf("ProjectAll ran %d times: the refused write was never applied again", w)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
