package eventlog_test

import (
	"context"
	"slices"
	"testing"

	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// TestBatchMsgs: every handler of a batch sees the batch's events, in
// order, including one seen before (a redelivery the handler is not
// called for); outside a batch there are none.
func TestBatchMsgs(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		effectsDB(t, db)
		cfg := eventlog.ConsumerConfig{Name: "batch-msgs"}
		seqs := func(msgs []eventlog.Msg) []uint64 {
			var out []uint64
			for _, m := range msgs {
				out = append(out, m.Seq)
			}
			return out
		}
		var saw [][]uint64
		h := func(ctx context.Context, _ sqldb.Querier, m eventlog.Msg) error {
			saw = append(saw, seqs(eventlog.BatchMsgs(ctx)))
			return nil
		}
		if _, err := eventlog.Deliver(ctx, db, cfg, h, []eventlog.Msg{{Seq: 1, CaseID: "a"}}); err != nil {
			t.Fatal(err)
		}
		saw = nil
		batch := []eventlog.Msg{{Seq: 1, CaseID: "a"}, {Seq: 2, CaseID: "b"}, {Seq: 3, CaseID: "a"}}
		if failed, err := eventlog.Deliver(ctx, db, cfg, h, batch); err != nil || failed != -1 {
			t.Fatalf("Deliver = %d, %v", failed, err)
		}
		want := []uint64{1, 2, 3}
		if len(saw) != 2 || !slices.Equal(saw[0], want) || !slices.Equal(saw[1], want) {
			t.Fatalf("handlers saw %v, want %v twice (seq 1 was seen before)", saw, want)
		}
		if got := eventlog.BatchMsgs(ctx); got != nil {
			t.Fatalf("outside a batch: %v, want nil", got)
		}
	})
}
