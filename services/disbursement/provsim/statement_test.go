package provsim

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/providerhttp"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

// The simulator serves its statement over HTTP from its own books: every
// payment settled by now once (a key paid twice is booked once), none
// declined, none not settled yet, in the JSON-lines format reconcile
// reads; and a ledger that posted those payouts reconciles with it.
func TestStatementServesTheSettledPaymentsOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, Migrations); err != nil {
			t.Fatal(err)
		}
		clock := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
		sim := New(Config{SettleAfter: time.Minute, FailEvery: 2}, db)
		sim.now = func() time.Time { return clock }
		pay := func(key, payee string, amount int64) disbursement.Receipt {
			t.Helper()
			rc, err := sim.Pay(ctx, disbursement.Payment{Key: key, PayeeID: payee, Account: "ACC-" + payee, AmountCents: amount})
			if err != nil {
				t.Fatal(err)
			}
			return rc
		}
		first := pay("payout-a-1", "payee-1", 25_000)
		if rc := pay("payout-b-1", "payee-2", 5_000); rc.Status != disbursement.ReceiptFailed {
			t.Fatalf("the second payment is declined (FailEvery 2), got %+v", rc)
		}
		clock = clock.Add(time.Second)
		third := pay("payout-c-2", "payee-1", 7_500)
		pay("payout-a-1", "payee-1", 25_000) // the same key again: booked once
		clock = clock.Add(time.Minute + time.Second)
		pay("payout-d-1", "payee-2", 1_000) // not settled yet

		srv := httptest.NewServer(sim.Handler())
		defer srv.Close()
		resp, err := http.Get(srv.URL + providerhttp.StatementPath)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := reconcile.Parse(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != providerhttp.StatementType {
			t.Fatalf("GET %s: %s %q, %v", providerhttp.StatementPath, resp.Status, resp.Header.Get("Content-Type"), err)
		}
		start := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
		want := []reconcile.Line{
			{ProviderRef: first.Ref, Key: "payout-a-1", PayoutID: "payout-a", PayeeID: "payee-1", Account: "ACC-payee-1",
				AmountCents: 25_000, Currency: "USD", SettledAt: start.Add(time.Minute)},
			{ProviderRef: third.Ref, Key: "payout-c-2", PayoutID: "payout-c", PayeeID: "payee-1", Account: "ACC-payee-1",
				AmountCents: 7_500, Currency: "USD", SettledAt: start.Add(time.Minute + time.Second)},
		}
		if !reflect.DeepEqual(raw, want) {
			t.Fatalf("statement\n got %+v\nwant %+v", raw, want)
		}

		// Through the adapter, against a ledger that posted both.
		client, err := providerhttp.New(providerhttp.Config{URL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		lines, err := client.Statement(ctx)
		if err != nil || !reflect.DeepEqual(lines, want) {
			t.Fatalf("Client.Statement = %+v, %v", lines, err)
		}
		ledger := []reconcile.Posted{
			{PayoutID: "payout-a", PayeeID: "payee-1", ProviderRef: first.Ref, AmountCents: 25_000, Settled: true},
			{PayoutID: "payout-c", PayeeID: "payee-1", ProviderRef: third.Ref, AmountCents: 7_500, Settled: true},
		}
		if rep := reconcile.Reconcile(ledger, lines); !rep.OK || rep.Matched != 2 {
			t.Fatalf("reconcile: %+v", rep)
		}
	})
}
