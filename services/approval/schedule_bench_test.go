package approval_test

import (
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/pkg/timers"
	"github.com/eva-org/eva/services/approval"
)

// BenchmarkScheduleBatch is the scheduler setting the due timers of
// batches of 128 filings, as its consumer delivers them: timers/s.
func BenchmarkScheduleBatch(b *testing.B) {
	h := newHarness(b, sqldbtest.SQLite(b), &fakeHolds{})
	tm, err := timers.Open(h.ctx, h.js, timers.Config{})
	if err != nil {
		b.Fatal(err)
	}
	svc := approval.New(approval.Deps{Config: approval.Config{Policy: assist.DefaultPolicy()}, NC: h.nc, Log: h.log,
		DB: h.db, Holds: &fakeHolds{}, Timers: tm, Logger: zap.NewNop()})
	cfg := eventlog.ConsumerConfig{Name: approval.SchedulerName, Stateless: true}
	now := time.Now()
	const size = 128
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		batch := make([]eventlog.Msg, size)
		for i := range batch {
			e := assist.Event{ID: newID(), CaseID: newID(), At: now, Actor: olu, Body: assist.RequestSubmitted{Deadline: now.Add(24 * time.Hour)}}
			data, err := eventcodec.Encode(e)
			if err != nil {
				b.Fatal(err)
			}
			batch[i] = eventlog.Msg{Seq: uint64(i + 1), Type: e.Type(), CaseID: e.CaseID, Data: data}
		}
		b.StartTimer()
		if failed, err := eventlog.Deliver(h.ctx, h.db, cfg, svc.Schedule, batch); failed >= 0 || err != nil {
			b.Fatalf("deliver: event %d failed: %v", failed, err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "timers/s")
}
