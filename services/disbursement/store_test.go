package disbursement

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// The conformance suite of Store, run on every driver.
func TestStoreConformance(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, Migrations); err != nil {
			t.Fatal(err)
		}
		var s Store = NewSQLStore(db)
		now := time.Now().UTC().Truncate(time.Microsecond)

		t.Run("funds", func(t *testing.T) {
			f, err := s.CreateFund(ctx, disbursementapi.Fund{ID: newID(), Name: "Alpha", AllocatedCents: 500, CreatedAt: now}, "fin")
			if err != nil || f.AvailableCents != 500 || f.ReservedCents != 0 || !f.CreatedAt.Equal(now) {
				t.Fatalf("create: %+v %v", f, err)
			}
			again, err := s.CreateFund(ctx, disbursementapi.Fund{ID: f.ID, Name: "Alpha", AllocatedCents: 999, CreatedAt: now}, "fin")
			if err != nil || again != f {
				t.Fatalf("same id again: %+v %v, want the stored fund", again, err)
			}
			_, err = s.CreateFund(ctx, disbursementapi.Fund{ID: newID(), Name: "Alpha", AllocatedCents: 1, CreatedAt: now}, "fin")
			var ae *assist.Error
			if !errors.As(err, &ae) || ae.Code != assist.CodeConflict || len(ae.Fields) != 1 || ae.Fields[0].Field != "name" {
				t.Fatalf("name taken: %v", err)
			}
			if _, err := s.Fund(ctx, newID()); !assist.IsCode(err, assist.CodeNotFound) {
				t.Fatalf("unknown fund: %v", err)
			}
		})

		t.Run("list paging", func(t *testing.T) {
			for i := range 7 {
				if _, err := s.CreatePayee(ctx, disbursementapi.Payee{ID: newID(), Name: "P" + string(rune('a'+i)), Account: "X", CreatedAt: now}, "fin"); err != nil {
					t.Fatal(err)
				}
			}
			seen := map[string]bool{}
			cursor := ""
			for pages := 0; ; pages++ {
				page, err := s.Payees(ctx, disbursementapi.ListRequest{Limit: 3, Cursor: cursor})
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range page.Items {
					if seen[p.ID] {
						t.Fatalf("payee %s twice", p.ID)
					}
					seen[p.ID] = true
				}
				if page.NextCursor == "" {
					break
				}
				if pages > 5 {
					t.Fatal("paging does not end")
				}
				cursor = page.NextCursor
			}
			if len(seen) != 7 {
				t.Fatalf("paged through %d payees, want 7", len(seen))
			}
			if _, err := s.Payees(ctx, disbursementapi.ListRequest{Cursor: "garbage!"}); !assist.IsCode(err, assist.CodeInvalid) {
				t.Fatalf("bad cursor: %v", err)
			}
		})

		fund, err := s.CreateFund(ctx, disbursementapi.Fund{ID: newID(), Name: "Holds", AllocatedCents: 1_000, CreatedAt: now}, "fin")
		if err != nil {
			t.Fatal(err)
		}
		payee, err := s.CreatePayee(ctx, disbursementapi.Payee{ID: newID(), Name: "Clinic", Account: "ACC", CreatedAt: now}, "fin")
		if err != nil {
			t.Fatal(err)
		}
		hold := func(amount int64) (disbursementapi.Hold, error) {
			return s.PlaceHold(ctx, disbursementapi.PlaceHoldRequest{HoldID: newID(), FundID: fund.ID, CaseID: newID(), PayeeID: payee.ID,
				AmountCents: amount}, now.Add(time.Minute), now)
		}

		// Its hold expires after the other subtests look for expired ones.
		// On a fund of 400 the first attempt leaves too little for the
		// others, which must still answer with it.
		for _, allocated := range []int64{1_000, 400} {
			t.Run(fmt.Sprintf("the same hold placed concurrently on a fund of %d", allocated), func(t *testing.T) {
				f, err := s.CreateFund(ctx, disbursementapi.Fund{ID: newID(), Name: fmt.Sprintf("Retried %d", allocated),
					AllocatedCents: allocated, CreatedAt: now}, "fin")
				if err != nil {
					t.Fatal(err)
				}
				req := disbursementapi.PlaceHoldRequest{HoldID: newID(), FundID: f.ID, CaseID: newID(), PayeeID: payee.ID, AmountCents: 300}
				var wg sync.WaitGroup
				errs := make([]error, 8)
				for i := range errs {
					wg.Go(func() {
						var h disbursementapi.Hold
						if h, errs[i] = s.PlaceHold(ctx, req, now.Add(24*time.Hour), now); errs[i] == nil && h.ID != req.HoldID {
							errs[i] = fmt.Errorf("answered hold %s", h.ID)
						}
					})
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						t.Fatalf("a retried hold: %v", err)
					}
				}
				if got, err := s.Fund(ctx, f.ID); err != nil || got.ReservedCents != 300 {
					t.Fatalf("fund after 8 attempts of one hold: %+v %v, want 300 reserved", got, err)
				}
			})
		}

		t.Run("holds", func(t *testing.T) {
			h, err := hold(600)
			if err != nil || h.Status != disbursementapi.HoldHeld || h.AvailableCents != 400 {
				t.Fatalf("hold: %+v %v", h, err)
			}
			// The answer is the hold as stored.
			if stored, err := s.Hold(ctx, h.ID); err != nil || !reflect.DeepEqual(stored, h) {
				t.Fatalf("placed %+v, stored %+v %v", h, stored, err)
			}
			again, err := s.PlaceHold(ctx, disbursementapi.PlaceHoldRequest{HoldID: h.ID, FundID: fund.ID, CaseID: h.CaseID, PayeeID: payee.ID,
				AmountCents: 600}, now.Add(time.Minute), now)
			if err != nil || again.ID != h.ID || again.AvailableCents != 400 {
				t.Fatalf("same hold again: %+v %v", again, err)
			}
			_, err = hold(401)
			var ae *assist.Error
			if !errors.As(err, &ae) || ae.Code != assist.CodeInsufficientFunds || ae.AvailableUSDCents == nil || *ae.AvailableUSDCents != 400 {
				t.Fatalf("over the available amount: %v", err)
			}
			for _, tc := range []struct {
				req   disbursementapi.PlaceHoldRequest
				field string
			}{
				{disbursementapi.PlaceHoldRequest{HoldID: newID(), FundID: newID(), CaseID: newID(), PayeeID: payee.ID, AmountCents: 1}, "fund_id"},
				{disbursementapi.PlaceHoldRequest{HoldID: newID(), FundID: fund.ID, CaseID: newID(), PayeeID: newID(), AmountCents: 1}, "payee_id"},
			} {
				_, err := s.PlaceHold(ctx, tc.req, now, now)
				if !errors.As(err, &ae) || ae.Code != assist.CodeInvalid || ae.Fields[0].Field != tc.field {
					t.Fatalf("unknown %s: %v", tc.field, err)
				}
			}
			expired, err := s.ExpiredHolds(ctx, now.Add(2*time.Minute), 10)
			if err != nil || len(expired) != 1 || expired[0].ID != h.ID {
				t.Fatalf("expired holds: %+v %v", expired, err)
			}
			if expired, _ := s.ExpiredHolds(ctx, now, 10); len(expired) != 0 {
				t.Fatalf("not yet expired listed: %+v", expired)
			}
			// Releasing twice returns the money once.
			for range 2 {
				if err := db.Tx(ctx, func(q sqldb.Querier) error { return s.ReleaseHold(ctx, q, h.ID, now) }); err != nil {
					t.Fatal(err)
				}
			}
			if f, _ := s.Fund(ctx, fund.ID); f.AvailableCents != 1_000 || f.ReservedCents != 0 {
				t.Fatalf("after release: %+v", f)
			}
		})

		// A first approval's hold whose rejection the consumer applied
		// before the approval itself (a redelivery): keeping it then must
		// not hold the money for ever.
		t.Run("a hold given back stays due when its first approval comes after", func(t *testing.T) {
			h, err := hold(100)
			if err != nil {
				t.Fatal(err)
			}
			for _, apply := range []func(q sqldb.Querier) error{
				func(q sqldb.Querier) error { return s.ExpireHoldNow(ctx, q, h.ID, now) },
				func(q sqldb.Querier) error { return s.KeepHold(ctx, q, h.ID, now) },
			} {
				if err := db.Tx(ctx, apply); err != nil {
					t.Fatal(err)
				}
			}
			expired, err := s.ExpiredHolds(ctx, now, 10)
			if err != nil || !slices.ContainsFunc(expired, func(e disbursementapi.Hold) bool { return e.ID == h.ID }) {
				t.Fatalf("a hold given back, then kept, is not due: %+v %v", expired, err)
			}
			if err := db.Tx(ctx, func(q sqldb.Querier) error { return s.ReleaseHold(ctx, q, h.ID, now) }); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("payout lifecycle", func(t *testing.T) {
			h, err := hold(300)
			if err != nil {
				t.Fatal(err)
			}
			p := disbursementapi.Payout{ID: newID(), PayeeID: payee.ID, CreatedAt: now}
			inTx := func(f func(q sqldb.Querier) error) {
				t.Helper()
				if err := db.Tx(ctx, f); err != nil {
					t.Fatal(err)
				}
			}
			firsts := make([]*Work, 2)
			for i := range firsts { // applied twice: one payout
				inTx(func(q sqldb.Querier) (err error) {
					firsts[i], err = s.ReserveHold(ctx, q, h.ID, p, newID(), time.Time{})
					return err
				})
			}
			if f := firsts[0]; f == nil || firsts[1] != nil || f.ID != p.ID || f.Stage != stageReserve || f.HoldID != h.ID ||
				f.CaseID != h.CaseID || f.FundID != h.FundID || f.AmountCents != 300 || f.CmdID == "" {
				t.Fatalf("ReserveHold's first steps %+v, %+v; want the new payout's, then none", firsts[0], firsts[1])
			}
			got, err := s.Payout(ctx, p.ID)
			if err != nil || got.Status != disbursementapi.PayoutPending || got.AmountCents != 300 || got.HoldID != h.ID || got.CaseID != h.CaseID {
				t.Fatalf("payout %+v %v", got, err)
			}
			if err := db.Tx(ctx, func(q sqldb.Querier) error {
				_, err := s.ReserveHold(ctx, q, newID(), p, newID(), time.Time{})
				return err
			}); !assist.IsCode(err, assist.CodeNotFound) {
				t.Fatalf("unknown hold: %v", err)
			}
			// Two workers claim at once: each step goes to one of them.
			var wg sync.WaitGroup
			claimed := make([][]Work, 2)
			for i := range claimed {
				wg.Add(1)
				go func() {
					defer wg.Done()
					claimed[i], _ = s.ClaimWork(ctx, now, time.Minute, 10)
				}()
			}
			wg.Wait()
			if n := len(claimed[0]) + len(claimed[1]); n != 1 {
				t.Fatalf("the step was leased %d times", n)
			}
			w := append(claimed[0], claimed[1]...)[0]
			if w.Stage != stageReserve || w.ID != p.ID || w.AmountCents != 300 || w.CmdID == "" {
				t.Fatalf("work %+v", w)
			}
			if again, _ := s.ClaimWork(ctx, now, time.Minute, 10); len(again) != 0 {
				t.Fatalf("a leased step was leased again: %+v", again)
			}
			// moves applies f in a transaction of its own and checks
			// whether it said it moved the payout.
			moves := func(what string, want bool, f func(q sqldb.Querier) (bool, error)) {
				t.Helper()
				var moved bool
				inTx(func(q sqldb.Querier) (err error) {
					moved, err = f(q)
					return err
				})
				if moved != want {
					t.Fatalf("%s: moved %v, want %v", what, moved, want)
				}
			}
			moves("reserved", true, func(q sqldb.Querier) (bool, error) {
				moved, _, err := s.Advance(ctx, q, p.ID, []string{stageReserve}, stagePay, Advance{CmdID: newID(), Attempt: 1, Now: now})
				return moved, err
			})
			moves("reserved again", false, func(q sqldb.Querier) (bool, error) {
				moved, _, err := s.Advance(ctx, q, p.ID, []string{stageReserve}, stagePay, Advance{CmdID: newID(), Attempt: 1, Now: now})
				return moved, err
			})
			moves("failed", true, func(q sqldb.Querier) (bool, error) {
				moved, _, err := s.Advance(ctx, q, p.ID, []string{stagePay}, stageFailed, Advance{LastError: "declined", Of: 1, Now: now})
				return moved, err
			})
			if got, _ := s.Payout(ctx, p.ID); got.Status != disbursementapi.PayoutFailed || got.LastError != "declined" || got.Attempt != 1 {
				t.Fatalf("failed payout %+v", got)
			}
			// the retry applied twice (command and consumer): once
			moves("retried", true, func(q sqldb.Querier) (bool, error) { return s.RetryPayout(ctx, q, p.ID, 2, newID(), now) })
			moves("retried again", false, func(q sqldb.Querier) (bool, error) { return s.RetryPayout(ctx, q, p.ID, 2, newID(), now) })
			if got, _ := s.Payout(ctx, p.ID); got.Status != disbursementapi.PayoutPending || got.Attempt != 2 {
				t.Fatalf("retried payout %+v, want pending at attempt 2", got)
			}
			moves("sent by attempt 1, which is past", false, func(q sqldb.Querier) (bool, error) {
				moved, _, err := s.Advance(ctx, q, p.ID, []string{stagePay}, stageSent, Advance{ProviderRef: "R0", Of: 1, Now: now})
				return moved, err
			})
			moves("sent", true, func(q sqldb.Querier) (bool, error) {
				moved, _, err := s.Advance(ctx, q, p.ID, []string{stagePay}, stageSent, Advance{ProviderRef: "R1", Of: 2, Now: now})
				return moved, err
			})
			// settled twice: paid once
			moves("settled", true, func(q sqldb.Querier) (bool, error) { return s.Settle(ctx, q, p.ID, now) })
			moves("settled again", false, func(q sqldb.Querier) (bool, error) { return s.Settle(ctx, q, p.ID, now) })
			got, _ = s.Payout(ctx, p.ID)
			if got.Status != disbursementapi.PayoutSettled || got.Attempt != 2 || got.ProviderRef != "R1" {
				t.Fatalf("settled payout %+v", got)
			}
			if f, _ := s.Fund(ctx, fund.ID); f.PaidCents != 300 || f.ReservedCents != 0 || f.AvailableCents != 700 {
				t.Fatalf("fund after settlement %+v", f)
			}
			page, err := s.Payouts(ctx, disbursementapi.ListRequest{CaseID: h.CaseID})
			if err != nil || len(page.Items) != 1 || page.Items[0].ID != p.ID {
				t.Fatalf("payouts of the case: %+v %v", page, err)
			}
			if page, _ := s.Payouts(ctx, disbursementapi.ListRequest{Status: disbursementapi.PayoutPending}); len(page.Items) != 0 {
				t.Fatalf("pending payouts: %+v", page.Items)
			}
		})

		t.Run("the database refuses an overspend", func(t *testing.T) {
			_, err := db.Exec(ctx, `UPDATE disb_funds SET reserved = allocated + 1 WHERE id = $1`, fund.ID)
			if err == nil {
				t.Fatal("the CHECK constraint let a fund go below zero")
			}
		})

		// A payout created leased (to the worker of the consumer that
		// created it) is claimed by no other until its lease ends.
		t.Run("a payout created leased", func(t *testing.T) {
			h, err := hold(200)
			if err != nil {
				t.Fatal(err)
			}
			p := disbursementapi.Payout{ID: newID(), PayeeID: payee.ID, CreatedAt: now}
			var first *Work
			if err := db.Tx(ctx, func(q sqldb.Querier) (err error) {
				first, err = s.ReserveHold(ctx, q, h.ID, p, newID(), now.Add(time.Minute))
				return err
			}); err != nil || first == nil {
				t.Fatalf("reserve: %+v %v", first, err)
			}
			claimedAt := func(at time.Time) bool {
				t.Helper()
				ws, err := s.ClaimWork(ctx, at, time.Minute, 100)
				if err != nil {
					t.Fatal(err)
				}
				return slices.ContainsFunc(ws, func(w Work) bool { return w.ID == p.ID })
			}
			if claimedAt(now.Add(30 * time.Second)) {
				t.Fatal("a payout leased at its creation was claimed before its lease ended")
			}
			if !claimedAt(now.Add(time.Minute + time.Second)) {
				t.Fatal("a payout whose lease ended was not claimed")
			}
		})
	})
}

// The command that creates a fund or payee stores its row while the
// consumer may store the same row from the event: the two inserts of one
// id meet at the id and neither fails. Another id's row of the same name
// is stored too: the read model holds what the log holds (ADR 30), and
// the name stays with the first.
func TestTwinInsertsOfOneRowAreNoNameConflict(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, Migrations); err != nil {
			t.Fatal(err)
		}
		s := NewSQLStore(db)
		put := func(f assist.Fund) error {
			return db.Tx(ctx, func(q sqldb.Querier) error { return s.PutFund(ctx, q, f) })
		}
		now := time.Now().UTC().Truncate(time.Microsecond)
		for i := range 40 {
			f := assist.Fund{ID: newID(), Name: fmt.Sprintf("Twin %d", i), AllocatedCents: 100, CreatedBy: "fin", CreatedAt: now}
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for j := range errs {
				version := f
				version.Version = uint64(j) // the consumer's row carries the event's sequence
				wg.Go(func() { errs[j] = put(version) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatalf("twin insert %d of fund %s: %v", i, f.ID, err)
				}
			}
		}
		first, _ := s.ReserveName(ctx, assist.KindFund, "Twin 0", newID(), now)
		other := assist.Fund{ID: newID(), Name: "Twin 0", AllocatedCents: 1, CreatedBy: "fin", CreatedAt: now}
		if err := put(other); err != nil {
			t.Fatalf("another fund of a name in the log: %v", err)
		}
		if _, err := s.Fund(ctx, other.ID); err != nil {
			t.Fatalf("another fund of a name in the log is not stored: %v", err)
		}
		if h, _ := s.ReserveName(ctx, assist.KindFund, "Twin 0", newID(), now); h.ID != first.ID || !h.Stored {
			t.Fatalf("the name went from %+v to %+v", first, h)
		}
	})
}
