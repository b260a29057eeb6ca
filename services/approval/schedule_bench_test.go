package approval_test

import (
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval"
)

// BenchmarkScheduleBatch is the scheduler setting the due timers of
// batches of 128 filings, as its consumer delivers them: timers/s.
func BenchmarkScheduleBatch(b *testing.B) {
	h := newHarness(b, sqldbtest.SQLite(b), &fakeHolds{})
	svc, _ := h.withTimers()
	cfg := eventlog.ConsumerConfig{Name: approval.SchedulerName, Stateless: true}
	now := time.Now()
	const size = 128
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		batch := make([]eventlog.Msg, size)
		for i := range batch {
			batch[i] = scheduled(b, i+1, assist.Event{ID: newID(), CaseID: newID(), At: now, Actor: olu,
				Body: assist.RequestSubmitted{Deadline: now.Add(24 * time.Hour)}})
		}
		b.StartTimer()
		if failed, err := eventlog.Deliver(h.ctx, h.db, cfg, svc.Schedule, batch); failed >= 0 || err != nil {
			b.Fatalf("deliver: event %d failed: %v", failed, err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "timers/s")
}
