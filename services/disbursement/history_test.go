package disbursement

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// TestFundHistory: a fund's burn-down follows its holds — placed,
// settled into paid, released — and its allocation changes (a raise, and
// a cut whose own hold reserves nothing), one point per change, on every
// driver.
func TestFundHistory(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, Migrations); err != nil {
			t.Fatal(err)
		}
		s := NewSQLStore(db)
		t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
		at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
		f, err := s.CreateFund(ctx, disbursementapi.Fund{ID: newID(), Name: "Burn", AllocatedCents: 1000, CreatedAt: t0}, "fin")
		if err != nil {
			t.Fatal(err)
		}
		pe, err := s.CreatePayee(ctx, disbursementapi.Payee{ID: newID(), Name: "Shelter", Account: "X", CreatedAt: t0}, "fin")
		if err != nil {
			t.Fatal(err)
		}
		other, err := s.CreateFund(ctx, disbursementapi.Fund{ID: newID(), Name: "Other", AllocatedCents: 1000, CreatedAt: t0}, "fin")
		if err != nil {
			t.Fatal(err)
		}
		place := func(fund string, cents int64, m int) string {
			t.Helper()
			h, err := s.PlaceHold(ctx, disbursementapi.PlaceHoldRequest{HoldID: newID(), FundID: fund, CaseID: newID(),
				PayeeID: pe.ID, AmountCents: cents}, at(m).Add(time.Hour), at(m))
			if err != nil {
				t.Fatal(err)
			}
			return h.ID
		}
		tx := func(f func(q sqldb.Querier) error) {
			t.Helper()
			if err := db.Tx(ctx, f); err != nil {
				t.Fatal(err)
			}
		}
		a := place(f.ID, 300, 1)
		b := place(f.ID, 200, 2)
		place(other.ID, 999, 2) // another fund's hold changes nothing here
		payout := newID()
		tx(func(q sqldb.Querier) error {
			_, err := s.ReserveHold(ctx, q, a, disbursementapi.Payout{ID: payout, PayeeID: pe.ID, CreatedAt: at(3)}, newID(), time.Time{})
			return err
		})
		tx(func(q sqldb.Querier) error {
			_, _, err := s.Advance(ctx, q, payout, []string{stageReserve}, stagePay, Advance{CmdID: newID(), Attempt: 1, Now: at(3)})
			return err
		})
		tx(func(q sqldb.Querier) error {
			_, err := s.Settle(ctx, q, payout, at(4))
			return err
		})
		tx(func(q sqldb.Querier) error { return s.ReleaseHold(ctx, q, b, at(5)) })
		change := func(seq uint64, m int, from, to int64, hold string) {
			t.Helper()
			e := assist.Event{ID: newID(), CaseID: f.ID, At: at(m), Actor: fin, CommandID: newID(),
				Body: assist.FundAllocationChanged{AllocatedCents: to, PreviousCents: from, HoldID: hold}}
			tx(func(q sqldb.Querier) error { return s.ApplyAllocation(ctx, q, seq, e) })
		}
		change(100, 6, 1000, 1500, "")
		cut := newID()
		if _, err := s.PlaceCut(ctx, f.ID, cut, 700, at(7).Add(time.Hour), at(7)); err != nil {
			t.Fatal(err)
		}
		change(101, 8, 1500, 800, cut)

		got, err := s.FundHistory(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := []struct {
			m                         int
			allocated, reserved, paid int64
		}{{0, 1000, 0, 0}, {1, 1000, 300, 0}, {2, 1000, 500, 0}, {4, 1000, 200, 300}, {5, 1000, 0, 300}, {6, 1500, 0, 300}, {8, 800, 0, 300}}
		if len(got) != len(want) {
			t.Fatalf("history %+v, want %d points", got, len(want))
		}
		for i, w := range want {
			g := got[i]
			if !g.At.Equal(at(w.m)) || g.ReservedCents != w.reserved || g.PaidCents != w.paid ||
				g.AllocatedCents != w.allocated || g.AvailableCents != w.allocated-w.reserved-w.paid {
				t.Errorf("point %d: %+v, want at +%dm allocated %d reserved %d paid %d", i, g, w.m, w.allocated, w.reserved, w.paid)
			}
		}
		// The last point is the fund as it is.
		now, err := s.Fund(ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		if last := got[len(got)-1]; last.ReservedCents != now.ReservedCents || last.PaidCents != now.PaidCents ||
			last.AllocatedCents != now.AllocatedCents {
			t.Errorf("last point %+v, fund %+v", last, now)
		}
		if _, err := s.FundHistory(ctx, newID()); !assist.IsCode(err, assist.CodeNotFound) {
			t.Errorf("unknown fund: %v", err)
		}
	})
}

// TestSamplePoints: a long history is cut to n points that keep its first
// and last state and stay in time order.
func TestSamplePoints(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var pts []disbursementapi.FundPoint
	for i := range 2000 {
		pts = append(pts, disbursementapi.FundPoint{At: t0.Add(time.Duration(i) * time.Second), PaidCents: int64(i)})
	}
	for _, n := range []int{2, 10, 500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			got := samplePoints(pts, n)
			if len(got) > n || len(got) < 2 {
				t.Fatalf("%d points, want 2..%d", len(got), n)
			}
			if got[0] != pts[0] || got[len(got)-1] != pts[len(pts)-1] {
				t.Fatalf("first %+v last %+v", got[0], got[len(got)-1])
			}
			for i := 1; i < len(got); i++ {
				if !got[i].At.After(got[i-1].At) {
					t.Fatalf("out of order at %d", i)
				}
			}
		})
	}
	if got := samplePoints(pts[:3], 500); len(got) != 3 {
		t.Fatalf("a short history is kept whole: %d", len(got))
	}
}
