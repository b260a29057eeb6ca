package disbursement

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// harness runs disbursement's consumer on a real embedded JetStream and a
// real database; the tests drive its worker by hand.
type harness struct {
	t      *testing.T
	log    *eventlog.Log
	js     jetstream.JetStream
	db     sqldb.DB
	svc    *Service
	fund   disbursementapi.Fund
	payee  disbursementapi.Payee
	ctx    context.Context
	cancel context.CancelFunc
}

var (
	ana = assist.Actor{Username: "ana", Role: assist.RoleRequester, Post: "BGD-DHAKA"}
	olu = assist.Actor{Username: "olu", Role: assist.RoleApprover}
	fin = assist.Actor{Username: "fin", Role: assist.RoleFinance}
)

func newHarness(t *testing.T, db sqldb.DB, p Provider) *harness {
	t.Helper()
	el := eventlogtest.Open(t)
	js, l := el.JS, el.Log
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := sqldb.MigrateAll(ctx, db, eventlog.Migrations, Migrations); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, log: l, js: js, db: db, ctx: ctx, cancel: cancel}
	h.svc = h.service(p)
	h.consume(h.svc)
	var err error
	if h.fund, err = h.svc.CreateFund(ctx, disbursementapi.CreateFundRequest{CommandID: newID(), Actor: fin, Name: "F", AllocatedCents: 100_000}); err != nil {
		t.Fatal(err)
	}
	if h.payee, err = h.svc.CreatePayee(ctx, disbursementapi.CreatePayeeRequest{CommandID: newID(), Actor: fin, Name: "Shelter", Account: "ACC-1"}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) service(p Provider) *Service {
	return New(Deps{Config: Config{HoldTTL: time.Hour}, Log: h.log, DB: h.db, Provider: p, Logger: zaptest.NewLogger(h.t)})
}

// consume runs the ledger consumer of svc until the test ends, as Run
// does.
func (h *harness) consume(svc *Service) {
	go h.log.Consume(h.ctx, h.db, eventlog.ConsumerConfig{Name: "disbursement", Filters: ledgerSubjects},
		svc.Apply, zaptest.NewLogger(h.t))
}

// approved files, claims and approves a case the way approval does: hold
// first, then the approval event.
func (h *harness) approved(amount int64) string {
	h.t.Helper()
	ctx := h.ctx
	caseID := newID()
	now := time.Now().UTC()
	mustExec := func(id string, decide func(*assist.Case) (assist.Event, error)) {
		h.t.Helper()
		var err error
		if id == caseID {
			var e assist.Event
			if e, err = decide(nil); err == nil {
				_, err = h.log.Start(ctx, e)
			}
		} else {
			_, err = h.log.Execute(ctx, eventlog.Command{CaseID: caseID, ID: id, Decide: decide})
		}
		if err != nil {
			h.t.Fatal(err)
		}
	}
	mustExec(caseID, func(*assist.Case) (assist.Event, error) {
		return assist.Submit(assist.Cmd{ID: caseID, Actor: ana, At: now}, assist.SubmitInput{Post: "BGD-DHAKA",
			Category: assist.Shelter, Urgency: assist.Urgent, AmountCents: amount, Justification: "shelter",
			BeneficiaryRefHash: []byte("r"), PayeeID: h.payee.ID}, assist.DefaultPolicy())
	})
	claim := newID()
	mustExec(claim, func(c *assist.Case) (assist.Event, error) {
		return c.Claim(assist.Cmd{ID: claim, Actor: olu, At: now}, time.Hour)
	})
	approve := newID()
	hold, err := h.svc.PlaceHold(ctx, disbursementapi.PlaceHoldRequest{HoldID: approve, FundID: h.fund.ID, CaseID: caseID, PayeeID: h.payee.ID, AmountCents: amount})
	if err != nil {
		h.t.Fatal(err)
	}
	mustExec(approve, func(c *assist.Case) (assist.Event, error) {
		return c.Approve(assist.Cmd{ID: approve, Actor: olu, At: now}, assist.ApproveInput{AmountCents: amount,
			FundID: h.fund.ID, HoldID: hold.ID, FundAvailableCents: hold.AvailableCents}, assist.DefaultPolicy())
	})
	return caseID
}

func (h *harness) state(caseID string) assist.State {
	h.t.Helper()
	c, err := h.log.Case(h.ctx, caseID)
	if err != nil {
		h.t.Fatal(err)
	}
	return c.State
}

// drive runs svc's due payout steps until the case reaches want.
func (h *harness) drive(svc *Service, caseID string, want assist.State) {
	h.t.Helper()
	evatest.Await(h.t, evatest.Patience, fmt.Sprintf("case %s to be %s", caseID, want), func() (bool, string) {
		if st := h.state(caseID); st != want {
			svc.RunDue(h.ctx)
			return false, string(st)
		}
		return true, ""
	})
}

func (h *harness) fundNow() disbursementapi.Fund {
	h.t.Helper()
	f, err := h.svc.store.Fund(h.ctx, h.fund.ID)
	if err != nil {
		h.t.Fatal(err)
	}
	return f
}

func (h *harness) waitFund(what string, ok func(disbursementapi.Fund) bool) disbursementapi.Fund {
	h.t.Helper()
	var f disbursementapi.Fund
	evatest.Await(h.t, evatest.Patience, what, func() (bool, string) {
		f = h.fundNow()
		return ok(f), fmt.Sprintf("fund %+v", f)
	})
	return f
}

// countingProvider is a fake in-memory bank that counts payments per key
// and never pays a key twice.
type countingProvider struct {
	mu   sync.Mutex
	paid map[string]int
	// accounts: the account each key paid.
	accounts map[string]string
	calls    atomic.Int64
	// crashAfterPay, when set, is called after the payment is booked and
	// its error returned: the caller never learns the result, as if the
	// process died right after the bank accepted.
	crashAfterPay func() error
}

func newCountingProvider() *countingProvider {
	return &countingProvider{paid: map[string]int{}, accounts: map[string]string{}}
}

func (p *countingProvider) Pay(ctx context.Context, pm Payment) (Receipt, error) {
	p.calls.Add(1)
	p.mu.Lock()
	if _, ok := p.paid[pm.Key]; !ok {
		p.paid[pm.Key] = 1
		p.accounts[pm.Key] = pm.Account
	}
	p.mu.Unlock()
	if p.crashAfterPay != nil {
		if err := p.crashAfterPay(); err != nil {
			return Receipt{}, err
		}
	}
	return Receipt{Ref: "REF-" + pm.Key, Status: ReceiptSettled}, nil
}

func (p *countingProvider) Status(ctx context.Context, key string) (Receipt, error) {
	p.mu.Lock()
	_, ok := p.paid[key]
	p.mu.Unlock()
	if !ok {
		return Receipt{}, ErrUnknownPayment
	}
	return Receipt{Ref: "REF-" + key, Status: ReceiptSettled}, nil
}

// A payout whose provider call went through but whose result was never
// recorded (the process died in between) is reconciled after the restart
// and paid exactly once; the fund ends with the amount paid and nothing
// reserved.
func TestPayoutCrashAfterProviderCallIsPaidOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		bank := newCountingProvider()
		crashes := 0
		bank.crashAfterPay = func() error {
			if crashes < 2 {
				crashes++
				return errors.New("process killed after the provider accepted")
			}
			return nil
		}
		h := newHarness(t, db, bank)
		caseID := h.approved(7_000)
		// Two crashed attempts: each books the payment at the bank, the
		// worker never hears back.
		for crashes < 2 {
			h.svc.RunDue(h.ctx)
			// The crashed step is deferred; make it due again at once,
			// as a restarted process would find it after its lease.
			if _, err := db.Exec(h.ctx, `UPDATE disb_payouts SET next_at = 0, lease_until = 0`); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		// "Restart": a new service instance on the same database and log.
		restarted := h.service(bank)
		h.drive(restarted, caseID, assist.StateDisbursed)
		if len(bank.paid) != 1 {
			t.Fatalf("bank booked %d payments (%v), want exactly 1", len(bank.paid), bank.paid)
		}
		for key, n := range bank.paid {
			if n != 1 {
				t.Fatalf("key %s paid %d times", key, n)
			}
		}
		if bank.calls.Load() < 3 {
			t.Fatalf("provider called %d times; the test must retry after the crashes", bank.calls.Load())
		}
		f := h.waitFund("settlement in the ledger", func(f disbursementapi.Fund) bool { return f.PaidCents == 7_000 })
		if f.ReservedCents != 0 || f.AvailableCents != 100_000-7_000 {
			t.Fatalf("fund after payout %+v", f)
		}
		// The case's history shows one payout sent and one settled.
		recs, err := h.log.Load(h.ctx, caseID)
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		for _, r := range recs {
			counts[r.Event.Type()]++
		}
		if counts["FundsReserved"] != 1 || counts["PayoutSent"] != 1 || counts["PayoutSettled"] != 1 {
			t.Fatalf("history %v", counts)
		}
	})
}

// A worker that crashes between recording a step in the log and the
// ledger catching up repeats the step harmlessly: the log recognises the
// step's command id and nothing is appended or paid twice.
func TestRepeatedStepsAppendOnce(t *testing.T) {
	db := sqldbtest.SQLite(t)
	bank := newCountingProvider()
	h := newHarness(t, db, bank)
	caseID := h.approved(5_000)
	// Take the reserve step twice by hand before the consumer moves it on.
	var w []Work
	evatest.Eventually(t, "the reserve step to be due", func() bool {
		var err error
		if w, err = h.svc.store.ClaimWork(h.ctx, time.Now(), time.Millisecond, 10); err != nil {
			t.Fatal(err)
		}
		return len(w) > 0
	})
	if len(w) != 1 || w[0].Stage != stageReserve {
		t.Fatalf("work %+v, want one reserve step", w)
	}
	for range 3 {
		if err := h.svc.step(h.ctx, w[0]); err != nil {
			t.Fatal(err)
		}
	}
	h.drive(h.svc, caseID, assist.StateDisbursed)
	recs, err := h.log.Load(h.ctx, caseID)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Event.Type() == "FundsReserved" {
			n++
		}
	}
	if n != 1 || len(bank.paid) != 1 {
		t.Fatalf("FundsReserved %d times, %d payments; want 1 and 1", n, len(bank.paid))
	}
}

// One worker run takes a payout from its reservation to settled when
// nothing has to happen in between: the funds reserved, it pays at once,
// and records the settlement the provider reported, without waiting for
// the ledger to schedule each step. The ledger then catches up on the
// same command ids: nothing is paid or appended twice.
func TestOneRunGoesFromReservedToSettled(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		bank := newCountingProvider()
		h := newHarness(t, db, bank)
		caseID := h.approved(4_000)
		var w []Work
		evatest.Eventually(t, "the reserve step to be due", func() bool {
			var err error
			if w, err = h.svc.store.ClaimWork(h.ctx, time.Now(), lease, 10); err != nil {
				t.Fatal(err)
			}
			return len(w) > 0
		})
		if len(w) != 1 || w[0].Stage != stageReserve {
			t.Fatalf("work %+v, want one reserve step", w)
		}
		// The ledger's consumer stops: only this run can move the case.
		h.cancel()
		h.ctx, h.cancel = context.WithCancel(context.Background())
		t.Cleanup(h.cancel)
		if err := h.svc.step(h.ctx, w[0]); err != nil {
			t.Fatal(err)
		}
		if st := h.state(caseID); st != assist.StateDisbursed {
			t.Fatalf("case %s after one run, want %s", st, assist.StateDisbursed)
		}
		if bank.calls.Load() != 1 {
			t.Fatalf("provider called %d times, want 1", bank.calls.Load())
		}
		// The ledger catches up; the stages it schedules meanwhile are
		// the run's own (leased), so nothing runs again.
		h.consume(h.svc)
		h.waitFund("settlement in the ledger", func(f disbursementapi.Fund) bool { return f.PaidCents == 4_000 })
		h.svc.RunDue(h.ctx)
		p, err := h.svc.store.Payout(h.ctx, w[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if p.Status != disbursementapi.PayoutSettled || bank.calls.Load() != 1 || len(bank.paid) != 1 {
			t.Fatalf("payout %+v, provider calls %d, payments %v", p, bank.calls.Load(), bank.paid)
		}
		recs, err := h.log.Load(h.ctx, caseID)
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int{}
		for _, r := range recs {
			counts[r.Event.Type()]++
		}
		if counts["FundsReserved"] != 1 || counts["PayoutSent"] != 1 || counts["PayoutSettled"] != 1 {
			t.Fatalf("history %v", counts)
		}
		if f := h.fundNow(); f.ReservedCents != 0 || f.AvailableCents != 100_000-4_000 {
			t.Fatalf("fund after payout %+v", f)
		}
	})
}

// claimCounter counts the steps its store's ClaimWork leased.
type claimCounter struct {
	Store
	claimed atomic.Int64
}

func (c *claimCounter) ClaimWork(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Work, error) {
	ws, err := c.Store.ClaimWork(ctx, now, lease, limit)
	c.claimed.Add(int64(len(ws)))
	return ws, err
}

// takeOver stops the harness's consumer and returns a service to take
// its place, not consuming yet, whose store counts the steps claimed and
// whose worker, once run, polls only hourly: what moves it is what the
// consumer hands it or wakes it for.
func (h *harness) takeOver(p Provider) (*Service, *claimCounter) {
	h.cancel()
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.t.Cleanup(h.cancel)
	svc := h.service(p)
	counter := &claimCounter{Store: svc.store}
	svc.store, svc.cfg.Poll = counter, time.Hour
	return svc, counter
}

// With its worker running, the ledger consumer leases each payout it
// creates to that worker and hands the first step over once its
// transaction committed: the payout is paid and settled without a claim.
// (Poll is an hour: only the hand-off and the consumer's wake-ups move
// the worker.)
func TestAnApprovedPayoutIsHandedToTheWorkerWithoutAClaim(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		bank := newCountingProvider()
		h := newHarness(t, db, bank)
		svc, counter := h.takeOver(bank)
		go svc.work(h.ctx)
		evatest.Eventually(t, "the worker to run", svc.working.Load)
		h.consume(svc)
		for _, amount := range []int64{2_500, 1_500} {
			caseID := h.approved(amount)
			evatest.Eventually(t, "the case to be disbursed", func() bool { return h.state(caseID) == assist.StateDisbursed })
		}
		if n := counter.claimed.Load(); n != 0 {
			t.Errorf("%d steps were claimed; want each payout's first handed over and the rest run on from it", n)
		}
		if bank.calls.Load() != 2 || len(bank.paid) != 2 {
			t.Errorf("provider called %d times, payments %v; want one each", bank.calls.Load(), bank.paid)
		}
		h.waitFund("both settlements in the ledger", func(f disbursementapi.Fund) bool {
			return f.PaidCents == 4_000 && f.ReservedCents == 0
		})
	})
}

// A payout created while no worker ran here is not handed over: the
// consumer wakes the worker to claim it, which pays it without waiting
// for a poll (Poll is an hour).
func TestAPayoutNotHandedOverWakesTheWorker(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		bank := newCountingProvider()
		h := newHarness(t, db, bank)
		svc, counter := h.takeOver(bank)
		h.consume(svc)
		caseID := h.approved(1_000)
		evatest.Eventually(t, "the payout to be created", func() bool {
			page, err := svc.store.Payouts(h.ctx, disbursementapi.ListRequest{CaseID: caseID})
			return err == nil && len(page.Items) == 1
		})
		go svc.work(h.ctx) // starts after the wake-up, which waits for it
		evatest.Eventually(t, "the case to be disbursed", func() bool { return h.state(caseID) == assist.StateDisbursed })
		if n := counter.claimed.Load(); n != 1 || bank.calls.Load() != 1 {
			t.Errorf("%d steps claimed, provider called %d times; want the reserve step claimed, paid once", n, bank.calls.Load())
		}
	})
}

// A step handed over that the worker did not take (it stopped, or had
// too many waiting) is claimed when its lease ends, as any other: the
// payout is paid once.
func TestAHandedStepLostIsClaimedWhenItsLeaseEnds(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		bank := newCountingProvider()
		h := newHarness(t, db, bank)
		svc, _ := h.takeOver(bank)
		svc.working.Store(true) // as if its worker ran: steps are handed over, and never taken
		h.consume(svc)
		caseID := h.approved(3_000)
		var payout disbursementapi.Payout
		evatest.Eventually(t, "the payout to be created", func() bool {
			page, err := svc.store.Payouts(h.ctx, disbursementapi.ListRequest{CaseID: caseID})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Items) == 1 {
				payout = page.Items[0]
			}
			return len(page.Items) == 1
		})
		if w, err := svc.store.ClaimWork(h.ctx, time.Now(), lease, 10); err != nil || len(w) != 0 {
			t.Fatalf("claimed %+v (%v) while the hand-off's lease runs", w, err)
		}
		w, err := svc.store.ClaimWork(h.ctx, time.Now().Add(lease+time.Second), lease, 10)
		if err != nil || len(w) != 1 || w[0].ID != payout.ID || w[0].Stage != stageReserve {
			t.Fatalf("after the lease: claimed %+v (%v), want the payout's reserve step", w, err)
		}
		if err := svc.step(h.ctx, w[0]); err != nil {
			t.Fatal(err)
		}
		if st := h.state(caseID); st != assist.StateDisbursed || bank.calls.Load() != 1 {
			t.Fatalf("case %s, provider called %d times; want disbursed, once", st, bank.calls.Load())
		}
	})
}

// Replaying the log into the ledger again (the consumer forgot its
// position) changes no balance.
func TestLedgerRedeliveryIsHarmless(t *testing.T) {
	db := sqldbtest.SQLite(t)
	h := newHarness(t, db, newCountingProvider())
	for range 3 {
		h.drive(h.svc, h.approved(1_000), assist.StateDisbursed)
	}
	before := h.waitFund("three settlements", func(f disbursementapi.Fund) bool { return f.PaidCents == 3_000 })
	h.cancel() // stop the consumer
	if err := h.js.DeleteConsumer(context.Background(), eventlog.Stream, "disbursement"); err != nil {
		t.Fatal(err)
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	t.Cleanup(h.cancel)
	h.consume(h.svc)
	// Wait until the new consumer has seen the whole log again.
	evatest.Eventually(t, "the replaying consumer to catch up", func() bool {
		c, err := h.js.Consumer(h.ctx, eventlog.Stream, "disbursement")
		if err != nil {
			return false
		}
		info, err := c.Info(h.ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Stream > 0
	})
	if after := h.fundNow(); after != before {
		t.Fatalf("fund changed on replay:\n before %+v\n after  %+v", before, after)
	}
}

// A hold whose approval was never recorded goes back to the fund when it
// expires; the release is in the case's history, and an approval can no
// longer use it.
func TestUnrecordedHoldExpires(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, newCountingProvider())
		h.svc.cfg.HoldTTL = time.Millisecond
		caseID := newID()
		now := time.Now().UTC()
		ev, err := assist.Submit(assist.Cmd{ID: caseID, Actor: ana, At: now}, assist.SubmitInput{Post: "BGD-DHAKA",
			Category: assist.Shelter, Urgency: assist.Urgent, AmountCents: 4_000, Justification: "x",
			BeneficiaryRefHash: []byte("r")}, assist.DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.log.Start(h.ctx, ev); err != nil {
			t.Fatal(err)
		}
		holdID := newID()
		if _, err := h.svc.PlaceHold(h.ctx, disbursementapi.PlaceHoldRequest{HoldID: holdID, FundID: h.fund.ID, CaseID: caseID,
			PayeeID: h.payee.ID, AmountCents: 4_000}); err != nil {
			t.Fatal(err)
		}
		if f := h.fundNow(); f.ReservedCents != 4_000 {
			t.Fatalf("after the hold: %+v", f)
		}
		// (The approval service "crashed" here: nothing is appended.)
		time.Sleep(2 * time.Millisecond)
		h.svc.SweepHolds(h.ctx)
		h.waitFund("the hold's release", func(f disbursementapi.Fund) bool { return f.ReservedCents == 0 && f.AvailableCents == 100_000 })
		c, err := h.log.Case(h.ctx, caseID)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.ReleasedHolds) != 1 || c.ReleasedHolds[0] != holdID {
			t.Fatalf("released holds %v", c.ReleasedHolds)
		}
		hold, err := h.svc.store.Hold(h.ctx, holdID)
		if err != nil || hold.Status != disbursementapi.HoldReleased {
			t.Fatalf("hold %+v %v", hold, err)
		}
		// Sweeping again releases nothing twice.
		h.svc.SweepHolds(h.ctx)
		if f := h.fundNow(); f.ReservedCents != 0 || f.AvailableCents != 100_000 {
			t.Fatalf("after a second sweep: %+v", f)
		}
	})
}

// Holds that expire before the consumer sees their recorded approval are
// never released: the log shows the approval uses them, and they are paid
// exactly once.
func TestExpiredHoldBackingARecordedApprovalIsPaid(t *testing.T) {
	db := sqldbtest.SQLite(t)
	bank := newCountingProvider()
	h := newHarness(t, db, bank)
	h.svc.cfg.HoldTTL = time.Nanosecond
	var ids []string
	for range 5 {
		ids = append(ids, h.approved(1_000))
		h.svc.SweepHolds(h.ctx) // races the consumer on purpose
	}
	for _, id := range ids {
		h.drive(h.svc, id, assist.StateDisbursed)
	}
	f := h.waitFund("five settlements", func(f disbursementapi.Fund) bool { return f.PaidCents == 5_000 })
	if f.ReservedCents != 0 || len(bank.paid) != 5 {
		t.Fatalf("fund %+v, %d payments", f, len(bank.paid))
	}
	for _, id := range ids {
		c, err := h.log.Case(h.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.ReleasedHolds) != 0 {
			t.Fatalf("case %s: a hold backing its approval was released", id)
		}
	}
}

// decliningProvider is a fake bank that declines the first declines
// payments it is asked for and pays the rest once per key.
type decliningProvider struct {
	*countingProvider
	declines atomic.Int64
}

func (p *decliningProvider) Pay(ctx context.Context, pm Payment) (Receipt, error) {
	if p.declines.Add(-1) >= 0 {
		p.calls.Add(1)
		return Receipt{Status: ReceiptFailed, Error: "declined"}, nil
	}
	return p.countingProvider.Pay(ctx, pm)
}

// failedPayout drives a new case until its payout failed (the provider
// declines it) and the ledger knows, and returns the case and the payout.
func (h *harness) failedPayout() (string, disbursementapi.Payout) {
	h.t.Helper()
	caseID := h.approved(1_000)
	h.drive(h.svc, caseID, assist.StateDisbursementFailed)
	var p disbursementapi.Payout
	evatest.Await(h.t, evatest.Patience, "the ledger to see the failure", func() (bool, string) {
		c, err := h.log.Case(h.ctx, caseID)
		if err != nil {
			h.t.Fatal(err)
		}
		p, err = h.svc.store.Payout(h.ctx, c.PayoutID)
		return err == nil && p.Status == disbursementapi.PayoutFailed, fmt.Sprintf("%+v %v", p, err)
	})
	return caseID, p
}

// Finance cancels a failed payout and then retries it (two officers, or
// one who changed her mind) before the ledger applied the cancellation:
// the retry is refused, because both are decided on the case's log, and
// the bank is never paid for a hold given back to the fund. The opposite
// order refuses the cancellation and pays once. Found by the simulator
// (seed 89), when a retry was recorded in the ledger only.
func TestRetryAndCancelOfAFailedPayoutAreOrdered(t *testing.T) {
	t.Run("cancel, then retry before the ledger applied it", func(t *testing.T) {
		bank := &decliningProvider{countingProvider: newCountingProvider()}
		bank.declines.Store(1)
		h := newHarness(t, sqldbtest.SQLite(t), bank)
		caseID, p := h.failedPayout()
		h.cancel() // the ledger's consumer stops: it will not see the cancellation yet
		h.ctx, h.cancel = context.WithCancel(context.Background())
		t.Cleanup(h.cancel)
		cancelled := disbursementapi.PayoutCommand{CommandID: newID(), Actor: fin, PayoutID: p.ID, Reason: "payee closed"}
		if _, err := h.svc.CancelPayout(h.ctx, cancelled); err != nil {
			t.Fatal(err)
		}
		_, err := h.svc.RetryPayout(h.ctx, disbursementapi.PayoutCommand{CommandID: newID(), Actor: fin, PayoutID: p.ID})
		if !assist.IsCode(err, assist.CodeConflict) {
			t.Fatalf("retry after a cancellation: %v, want a conflict", err)
		}
		h.consume(h.svc)
		f := h.waitFund("the hold back in the fund", func(f disbursementapi.Fund) bool { return f.AvailableCents == 100_000 })
		h.svc.RunDue(h.ctx)
		if f.PaidCents != 0 || f.ReservedCents != 0 || len(bank.paid) != 0 || h.state(caseID) != assist.StateClosed {
			t.Fatalf("after cancel then retry: fund %+v, bank paid %v, case %s", f, bank.paid, h.state(caseID))
		}
	})
	t.Run("retry, then cancel", func(t *testing.T) {
		bank := &decliningProvider{countingProvider: newCountingProvider()}
		bank.declines.Store(1)
		h := newHarness(t, sqldbtest.SQLite(t), bank)
		caseID, p := h.failedPayout()
		retry := disbursementapi.PayoutCommand{CommandID: newID(), Actor: fin, PayoutID: p.ID}
		got, err := h.svc.RetryPayout(h.ctx, retry)
		if err != nil || got.Status != disbursementapi.PayoutPending || got.Attempt != 2 {
			t.Fatalf("retry: %+v, %v; want pending at attempt 2", got, err)
		}
		_, err = h.svc.CancelPayout(h.ctx, disbursementapi.PayoutCommand{CommandID: newID(), Actor: fin, PayoutID: p.ID, Reason: "too late"})
		if !assist.IsCode(err, assist.CodeConflict) {
			t.Fatalf("cancel after a retry: %v, want a conflict", err)
		}
		// The same retry sent again by its client changes nothing more.
		if again, err := h.svc.RetryPayout(h.ctx, retry); err != nil || again.Attempt != 2 {
			t.Fatalf("retry repeated: %+v, %v", again, err)
		}
		h.drive(h.svc, caseID, assist.StateDisbursed)
		f := h.waitFund("the payout settled", func(f disbursementapi.Fund) bool { return f.PaidCents == 1_000 })
		if f.ReservedCents != 0 || len(bank.paid) != 1 || bank.paid[p.ID+"-2"] != 1 {
			t.Fatalf("after retry then cancel: fund %+v, bank paid %v", f, bank.paid)
		}
	})
}

// A step that failed because a dependency was out of reach is due again
// one Poll later, not after the long back-off of a failing step: payouts
// resume as soon as the dependency is back.
func TestStepMetAnOutageIsDueAgainSoon(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		bank := newCountingProvider()
		var outage atomic.Bool
		bank.crashAfterPay = func() error {
			if outage.Load() {
				return assist.Errorf(assist.CodeUnavailable, "the provider is restarting")
			}
			return errors.New("the provider refused")
		}
		h := newHarness(t, db, bank)
		poll := h.svc.cfg.Poll
		nextWait := func() time.Duration {
			t.Helper()
			var next int64
			if err := db.QueryRow(h.ctx, `SELECT next_at FROM disb_payouts WHERE stage = $1`, stagePay).Scan(&next); err != nil {
				t.Fatal(err)
			}
			return time.Until(sqldb.Time(next))
		}
		h.approved(3_000)
		evatest.Eventually(t, "the payout to reach its pay step", func() bool {
			h.svc.RunDue(h.ctx)
			var n int
			err := db.QueryRow(h.ctx, `SELECT count(*) FROM disb_payouts WHERE stage = $1`, stagePay).Scan(&n)
			return err == nil && n == 1
		})
		for _, tc := range []struct {
			outage   bool
			min, max time.Duration
		}{{false, 4 * poll, 8 * poll}, {true, 0, poll}} {
			outage.Store(tc.outage)
			if _, err := db.Exec(h.ctx, `UPDATE disb_payouts SET next_at = 0, lease_until = 0`); err != nil {
				t.Fatal(err)
			}
			h.svc.RunDue(h.ctx)
			if wait := nextWait(); wait < tc.min || wait > tc.max {
				t.Errorf("outage %v: the failed step is due again in %s, want %s–%s", tc.outage, wait, tc.min, tc.max)
			}
		}
	})
}
