package providerhttp_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/rpc/rpctest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/providerhttp"
	"github.com/eva-org/eva/services/disbursement/provsim"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

func id() string { return uuid.Must(uuid.NewV7()).String() }

// Payouts over real HTTP to the simulator with latency, 30 % of calls
// failing (half of them after the payment was booked, so the adapter
// does not know the outcome), 20 % of payments declined, every
// settlement called back three times, late and out of order, and
// disbursement killed mid-payment and restarted: every approved case is
// paid exactly once, to the account the log recorded (the payee's row is
// edited in SQL), and the fund's totals are the provider's.
func TestPayoutsOverHTTPWithFaultsArePaidOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		signer, trust := rpctest.Keys(t)
		ctx, cancel := context.WithCancel(rpc.ActingAsRequested(context.Background(), signer))
		defer cancel()
		zl := zaptest.NewLogger(t)
		el := eventlogtest.Open(t)
		nc, log := el.NC, el.Log

		// The provider, with its own books in its own database.
		simDB := sqldbtest.SQLite(t)
		if err := simDB.Migrate(ctx, provsim.Migrations); err != nil {
			t.Fatal(err)
		}
		notices := make(chan string, 64)
		var called atomic.Int64
		callbacks := httptest.NewServer(providerhttp.CallbackHandler(func(ctx context.Context, key string) error {
			called.Add(1)
			return providerhttp.Notices(notices)(ctx, key)
		}, zl))
		defer callbacks.Close()
		sim := provsim.New(provsim.Config{Latency: 30 * time.Millisecond, SettleAfter: 100 * time.Millisecond,
			FailureRate: 0.3, DeclineRate: 0.2, CallbackURL: callbacks.URL + providerhttp.CallbackPath,
			Duplicates: 2, CallbackJitter: 300 * time.Millisecond, Seed: 7}, simDB)
		srv, err := provsim.Listen(ctx, sim, "127.0.0.1:0", zl)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		adapter, err := providerhttp.New(providerhttp.Config{URL: srv.URL(), Timeout: 2 * time.Second, Attempts: 3, Backoff: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}

		// Disbursement, which the test kills and restarts.
		start := func() (stop func()) {
			ctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				// SettlePoll is long: settlements arrive by callback.
				done <- disbursement.Run(ctx, disbursement.Deps{NC: nc, Trust: trust, Log: log, DB: db, Provider: adapter,
					Notices: notices, Logger: zl, Config: disbursement.Config{Poll: 20 * time.Millisecond, SettlePoll: 3 * time.Second}})
			}()
			return func() {
				cancel()
				if err := <-done; err != nil && ctx.Err() == nil {
					t.Errorf("disbursement: %v", err)
				}
			}
		}
		stop := start()
		defer func() { stop() }()

		money := disbursementapi.NewClient(nc)
		fin := assist.Actor{Username: "fin", Role: assist.RoleFinance}
		var fund disbursementapi.Fund
		evatest.Eventually(t, "disbursement to answer", func() bool {
			fund, err = money.CreateFund(ctx, disbursementapi.CreateFundRequest{CommandID: id(), Actor: fin, Name: "F", AllocatedCents: 1_000_000})
			return !assist.IsCode(err, assist.CodeUnavailable)
		})
		if err != nil {
			t.Fatal(err)
		}
		payee, err := money.CreatePayee(ctx, disbursementapi.CreatePayeeRequest{CommandID: id(), Actor: fin, Name: "Shelter", Account: "ACC-LOGGED"})
		if err != nil {
			t.Fatal(err)
		}
		// Not through the log: the payouts must not follow it.
		if _, err := db.Exec(ctx, `UPDATE disb_payees SET account = 'EVIL' WHERE id = $1`, payee.ID); err != nil {
			t.Fatal(err)
		}

		approvals := approval.New(approval.Deps{Config: approval.Config{Policy: assist.DefaultPolicy()}, Log: log, DB: db, Holds: money, Logger: zl})
		ana := assist.Actor{Username: "ana", Role: assist.RoleRequester, Post: "BGD-DHAKA"}
		olu := assist.Actor{Username: "olu", Role: assist.RoleApprover}
		const n = 24
		amounts := map[string]int64{}
		var total int64
		for i := range n {
			caseID, amount := id(), int64(1_000+100*i)
			ev, err := assist.Submit(assist.Cmd{ID: caseID, Actor: ana, At: time.Now().UTC()}, assist.SubmitInput{Post: "BGD-DHAKA",
				Category: assist.Shelter, Urgency: assist.Urgent, AmountCents: amount, Justification: "shelter",
				BeneficiaryRefHash: []byte{byte(i)}, PayeeID: payee.ID}, assist.DefaultPolicy())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := log.Start(ctx, ev); err != nil {
				t.Fatal(err)
			}
			if _, err := approvals.Claim(ctx, approvalapi.CaseCommand{CommandID: id(), Actor: olu, CaseID: caseID}); err != nil {
				t.Fatal(err)
			}
			if _, err := approvals.Approve(ctx, approvalapi.ApproveRequest{CommandID: id(), Actor: olu, CaseID: caseID,
				AmountCents: amount, FundID: fund.ID, Note: "ok"}); err != nil {
				t.Fatal(err)
			}
			amounts[caseID] = amount
			total += amount
		}

		// Kill disbursement while payments are in flight, and restart it;
		// the steps it held are taken again once their lease is over
		// (made over at once here, as time passing would).
		evatest.Eventually(t, "some payments booked", func() bool {
			b, _ := sim.Books(ctx)
			return len(b) >= n/3
		})
		stop()
		if _, err := db.Exec(ctx, `UPDATE disb_payouts SET lease_until = 0`); err != nil {
			t.Fatal(err)
		}
		stop = start()

		// Finance retries what the bank declined, until every case is paid.
		evatest.Await(t, 2*evatest.Patience, "every approved case disbursed", func() (bool, string) {
			failed, err := money.Payouts(ctx, disbursementapi.ListRequest{Status: "failed", Limit: 100})
			if err == nil {
				for _, p := range failed.Items {
					_, _ = money.RetryPayout(ctx, disbursementapi.PayoutCommand{CommandID: id(), Actor: fin, PayoutID: p.ID, Reason: "declined"})
				}
			}
			left := 0
			for caseID := range amounts {
				if c, err := log.Case(ctx, caseID); err != nil || c.State != assist.StateDisbursed {
					left++
				}
			}
			return left == 0, fmt.Sprintf("%d not disbursed", left)
		})

		// The provider's books: per payout, one payment that was not
		// declined, of the approved amount, to the logged account.
		books, err := sim.Books(ctx)
		if err != nil {
			t.Fatal(err)
		}
		payouts := map[string]disbursementapi.Payout{}
		page, err := money.Payouts(ctx, disbursementapi.ListRequest{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.Items {
			payouts[p.ID] = p
		}
		paid := map[string]int{}
		var sum int64
		declined := 0
		for _, b := range books {
			payoutID := b.Key[:strings.LastIndexByte(b.Key, '-')]
			p, ok := payouts[payoutID]
			if !ok {
				t.Errorf("the provider booked %s, which is no payout", b.Key)
				continue
			}
			if b.Status == disbursement.ReceiptFailed {
				declined++
				continue
			}
			paid[payoutID]++
			sum += b.AmountCents
			if b.AmountCents != amounts[p.CaseID] || b.Account != "ACC-LOGGED" {
				t.Errorf("payment %+v for case %s approved at %d", b, p.CaseID, amounts[p.CaseID])
			}
		}
		if len(paid) != n {
			t.Errorf("%d payouts paid, want %d", len(paid), n)
		}
		for p, k := range paid {
			if k != 1 {
				t.Errorf("payout %s paid %d times", p, k)
			}
		}
		if sum != total {
			t.Errorf("the provider paid %d in all, the approvals total %d", sum, total)
		}
		f := evatestFund(t, ctx, money, fund.ID, total)
		if f.ReservedCents != 0 || f.AvailableCents != f.AllocatedCents-total {
			t.Errorf("fund after the payouts %+v, want %d paid", f, total)
		}
		// The provider's statement, fetched over HTTP, reconciles with the
		// ledger: each payout once, declined attempts and duplicate
		// callbacks notwithstanding.
		statement, err := adapter.Statement(ctx)
		if err != nil {
			t.Fatal(err)
		}
		posted, err := disbursement.NewSQLStore(db).Posted(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep := reconcile.Reconcile(posted, statement); !rep.OK || rep.Matched != n || rep.Lines != n {
			t.Errorf("the statement does not reconcile: %+v", rep)
		}
		for caseID := range amounts {
			recs, err := log.Load(ctx, caseID)
			if err != nil {
				t.Fatal(err)
			}
			settled := 0
			for _, r := range recs {
				if r.Event.Type() == "PayoutSettled" {
					settled++
				}
			}
			if settled != 1 {
				t.Errorf("case %s settled %d times in its log", caseID, settled)
			}
		}
		// The faults did happen.
		if sim.Faults() == 0 || declined == 0 || called.Load() <= int64(n) {
			t.Errorf("faults %d, declined %d, callbacks %d (want duplicates beyond %d)", sim.Faults(), declined, called.Load(), n)
		}
		t.Logf("%d payouts: %d faults injected, %d declined, %d callbacks", n, sim.Faults(), declined, called.Load())
	})
}

func evatestFund(t *testing.T, ctx context.Context, money *disbursementapi.Client, id string, paid int64) disbursementapi.Fund {
	t.Helper()
	var f disbursementapi.Fund
	evatest.Await(t, evatest.Patience, "the payouts in the fund", func() (bool, string) {
		var err error
		f, err = money.Fund(ctx, id)
		return err == nil && f.PaidCents == paid, fmt.Sprintf("%+v %v", f, err)
	})
	return f
}
