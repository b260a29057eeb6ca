package eventlog_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// recordingProjectionFake keeps the cases RebuildAll writes, in memory.
type recordingProjectionFake struct {
	mu    sync.Mutex
	cases map[string]*assist.Case
}

func (p *recordingProjectionFake) Projected(_ context.Context, _ sqldb.Querier, id string) (*assist.Case, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cases[id], nil
}

func (p *recordingProjectionFake) Project(_ context.Context, _ sqldb.Querier, c *assist.Case) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cases[c.ID] = c
	return nil
}

// RebuildAll folds the cases on every CPU (each case's events by one
// worker, in log order): the cases it writes are those one goroutine
// folding the log in order makes, and an event that does not fold stops
// it naming the first such event of the log, as the one goroutine would.
// A StagedProjection's batches are made on another goroutine than the one
// that writes them: all are written, and a failure of either half stops
// the rebuild.
func TestRebuildAllFoldsAsOneReaderWould(t *testing.T) {
	ctx := context.Background()
	s := natsxtest.Server(t)
	_, js := natsxtest.Connect(t, s)
	l, err := eventlog.Open(ctx, js, eventlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eventlogtest.Synthesize(ctx, js, 1100, 2); err != nil {
		t.Fatal(err)
	}
	oneReader := func() map[string]*assist.Case {
		t.Helper()
		want := map[string]*assist.Case{}
		if _, err := l.Scan(ctx, 1, 0, func(m eventlog.Msg) error {
			if m.CaseID == "" {
				return nil
			}
			next, _, err := eventlog.Fold(want[m.CaseID], m)
			want[m.CaseID] = next
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return want
	}
	want := oneReader()
	db := sqldbtest.SQLite(t)
	rebuild := func() (*recordingProjectionFake, error) {
		p := &recordingProjectionFake{cases: map[string]*assist.Case{}}
		_, err := l.RebuildAll(ctx, []eventlog.RebuildTarget{{DB: db, Projection: p}}, nil)
		return p, err
	}
	got, err := rebuild()
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 1100 || !reflect.DeepEqual(got.cases, want) {
		t.Fatalf("RebuildAll folded %d cases, one reader %d, or they differ", len(got.cases), len(want))
	}
	// A StagedProjection: every case written, the batches in order of
	// their ids; a batch that fails to be made or written stops the
	// rebuild, naming its cases.
	for _, fail := range []string{"", "prepare", "write"} {
		p := &stagedProjectionFake{recordingProjectionFake: recordingProjectionFake{cases: map[string]*assist.Case{}}, fail: fail}
		_, err := l.RebuildAll(ctx, []eventlog.RebuildTarget{{DB: db, Projection: p}}, nil)
		switch {
		case fail == "" && (err != nil || !reflect.DeepEqual(p.cases, want) || len(p.firsts) != 2 || p.firsts[0] >= p.firsts[1]):
			t.Fatalf("staged: %d cases in batches from %q, %v", len(p.cases), p.firsts, err)
		case fail != "" && (err == nil || !strings.Contains(err.Error(), fail+" fails") || !strings.Contains(err.Error(), "rebuild: cases ")):
			t.Fatalf("staged, failing to %s the second batch: %v", fail, err)
		}
	}
	// Events that do not decode, for cases taken far apart in the log
	// (so, very likely, of different workers): the first is named.
	var ids []string
	for id := range want {
		ids = append(ids, id)
	}
	var bad []uint64
	for _, id := range ids[:6] {
		ack, err := js.Publish(ctx, eventlog.Subject(id, "Claimed"), []byte("not an event"))
		if err != nil {
			t.Fatal(err)
		}
		bad = append(bad, ack.Sequence)
	}
	_, err = rebuild()
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("event %d of case %s", bad[0], ids[0])) {
		t.Fatalf("RebuildAll over events %v that do not decode: %v", bad, err)
	}
}

// stagedProjectionFake is recordingProjectionFake with PrepareAll; fail
// ("prepare" or "write") makes the second batch fail there.
type stagedProjectionFake struct {
	recordingProjectionFake
	fail   string
	firsts []string
}

func (p *stagedProjectionFake) ProjectAll(ctx context.Context, q sqldb.Querier, cs []*assist.Case) error {
	write, err := p.PrepareAll(cs)
	if err != nil {
		return err
	}
	return write(ctx, q)
}

func (p *stagedProjectionFake) PrepareAll(cs []*assist.Case) (func(context.Context, sqldb.Querier) error, error) {
	p.mu.Lock()
	p.firsts = append(p.firsts, cs[0].ID)
	second := len(p.firsts) == 2
	p.mu.Unlock()
	if second && p.fail == "prepare" {
		return nil, fmt.Errorf("prepare fails")
	}
	return func(ctx context.Context, q sqldb.Querier) error {
		if second && p.fail == "write" {
			return fmt.Errorf("write fails")
		}
		for _, c := range cs {
			if err := p.Project(ctx, q, c); err != nil {
				return err
			}
		}
		return nil
	}, nil
}
