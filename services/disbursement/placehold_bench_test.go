package disbursement

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// BenchmarkPlaceHold places holds from 16 callers at once on PostgreSQL,
// all on one fund and spread over 16: every hold updates its fund's row,
// which stays locked until the hold's commit is durable, so the holds of
// one fund take turns at the pace of the log's flushes, and those that
// wait meanwhile commit together (holdGroups, ADR 42). ns/op is per hold.
func BenchmarkPlaceHold(b *testing.B) {
	for _, funds := range []int{1, 16} {
		b.Run(fmt.Sprintf("funds-%d", funds), func(b *testing.B) {
			s, payee := newLedgerSim(b, sqldbtest.Postgres, 1)
			ids := make([]string, funds)
			for i := range ids {
				ids[i] = newID()
				s.emit(assist.KindFund, ids[i], fin, assist.FundCreated{Name: "bench fund " + ids[i], AllocatedCents: assist.MaxAmountCents})
			}
			var next atomic.Int64
			b.SetParallelism(8) // 16 callers on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					r := disbursementapi.PlaceHoldRequest{HoldID: newID(), FundID: ids[int(i)%funds], CaseID: newID(),
						PayeeID: payee, AmountCents: 1}
					if _, err := s.svc.store.PlaceHold(s.ctx, r, s.at.Add(24*time.Hour), s.at); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "holds/s")
		})
	}
}
