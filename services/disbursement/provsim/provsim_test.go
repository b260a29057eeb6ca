package provsim

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement"
)

func newSim(t *testing.T, db sqldb.DB, cfg Config) *Sim {
	t.Helper()
	if err := db.Migrate(context.Background(), Migrations); err != nil {
		t.Fatal(err)
	}
	return New(cfg, db)
}

// A payment with a new key costs one round trip to PostgreSQL: the
// insert commits on its own and returns the row it booked. A key booked
// before costs a second, to read its receipt. A tick of the HTTP
// simulator's callbacks marks the settled payments in one.
func TestPaymentIsOneRoundTrip(t *testing.T) {
	db, trips := sqldbtest.TracedPostgres(t)
	sim := newSim(t, db, Config{})
	ctx := context.Background()
	pay := func(key string) (disbursement.Receipt, int64) {
		t.Helper()
		trips.Reset()
		r, err := sim.Pay(ctx, disbursement.Payment{Key: key, PayeeID: "payee-1", Account: "ACC-1", AmountCents: 100})
		if err != nil {
			t.Fatal(err)
		}
		return r, trips.N()
	}
	pay("warm-1") // prepares the statements on the connection
	pay("warm-1")
	first, n := pay("payout-1")
	if n != 1 || first.Status != disbursement.ReceiptSettled || first.Ref == "" {
		t.Errorf("a new key: %+v in %d round trips, want settled in 1", first, n)
	}
	again, n := pay("payout-1")
	if n != 2 || again != first {
		t.Errorf("the key again: %+v in %d round trips, want %+v in 2", again, n, first)
	}
	sim.settledUnnotified(ctx) // prepares
	trips.Reset()
	due, err := sim.settledUnnotified(ctx)
	if err != nil || len(due) != 0 || trips.N() != 1 {
		t.Errorf("callbacks' tick: %d due, %v, in %d round trips; want none in 1", len(due), err, trips.N())
	}
}

// A key is paid once, whatever the callers do: concurrent calls with the
// key, and calls after them (an answer lost), all get the first booking's
// receipt, a decline too (every third call is declined). On both
// stores.
func TestAKeyIsPaidOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		clock := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
		sim := newSim(t, db, Config{SettleAfter: time.Minute, FailEvery: 3})
		sim.now = func() time.Time { return clock }
		ctx := context.Background()
		const keys, callers = 3, 8
		receipts := make([][callers]disbursement.Receipt, keys)
		var wg sync.WaitGroup
		errs := make(chan error, keys*callers)
		for k := range keys {
			for c := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := sim.Pay(ctx, disbursement.Payment{Key: fmt.Sprintf("payout-%d-1", k), PayeeID: "payee-1",
						Account: "ACC-1", AmountCents: int64(100 + c)})
					receipts[k][c] = r
					if err != nil {
						errs <- err
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		books, err := sim.Books(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(books) != keys {
			t.Fatalf("%d payments booked for %d keys: %+v", len(books), keys, books)
		}
		for k, b := range books {
			for c, r := range receipts[k] {
				if r.Ref != b.Ref || r.Status != b.Status {
					t.Errorf("key %s, caller %d: %+v, want the booking %+v", b.Key, c, r, b)
				}
			}
			if r, err := sim.Pay(ctx, disbursement.Payment{Key: b.Key, PayeeID: "payee-2", Account: "ACC-2", AmountCents: 1}); err != nil || r.Ref != b.Ref {
				t.Errorf("key %s paid again later: %+v, %v; want the booking %s", b.Key, r, err, b.Ref)
			}
		}
	})
}
