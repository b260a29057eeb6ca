package approval_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/provsim"
)

var kai = assist.Actor{Username: "kai", Role: assist.RoleApprover}

// twoApprovers is a harness whose approval needs two approvers above
// 500.00 USD, with disbursement running (ledger, sweeper, payouts through
// the simulator) and one fund of 1,000.00 USD.
type twoApprovers struct {
	*harness
	d     *disbursement.Service
	fund  disbursementapi.Fund
	payee disbursementapi.Payee
}

func newTwoApprovers(t *testing.T, db sqldb.DB) *twoApprovers {
	t.Helper()
	h := newHarness(t, db, nil)
	migrate(t, db, provsim.Migrations)
	deps := disbursement.Deps{Config: disbursement.Config{HoldTTL: time.Hour}, NC: h.nc, Log: h.log, DB: db,
		Provider: provsim.New(provsim.Config{}, db), Logger: zaptest.NewLogger(t)}
	d := disbursement.New(deps)
	p := assist.DefaultPolicy()
	p.SecondApprovalAboveUSDCents = 50_000
	h.svc = approval.New(approval.Deps{Config: approval.Config{Policy: p}, NC: h.nc, Log: h.log, DB: db, Holds: d,
		Logger: zaptest.NewLogger(t)})
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- disbursement.Run(ctx, deps) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("disbursement.Run: %v", err)
		}
	})
	fin := assist.Actor{Username: "fin", Role: assist.RoleFinance}
	fund, err := d.CreateFund(h.ctx, disbursementapi.CreateFundRequest{CommandID: newID(), Actor: fin, Name: "Emergency", AllocatedCents: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	payee, err := d.CreatePayee(h.ctx, disbursementapi.CreatePayeeRequest{CommandID: newID(), Actor: fin, Name: "Shanti", Account: "ACC-1"})
	if err != nil {
		t.Fatal(err)
	}
	return &twoApprovers{harness: h, d: d, fund: fund, payee: payee}
}

// firstApproval files 800.00 USD and has olu claim and approve all of it.
func (h *twoApprovers) firstApproval() *assist.Case {
	h.t.Helper()
	r := fileRequest(ana)
	r.AmountCents, r.PayeeID = 80_000, h.payee.ID
	c := h.fileWith(h.intake, r)
	h.claim(c.ID, olu)
	got, err := h.svc.Approve(h.ctx, approvalapi.ApproveRequest{CommandID: newID(), Actor: olu, CaseID: c.ID, AmountCents: 80_000,
		FundID: h.fund.ID, Note: "first"})
	if err != nil {
		h.t.Fatal(err)
	}
	if got.State != assist.StateAwaitingSecondApproval {
		h.t.Fatalf("after the first approval: %s", got.State)
	}
	if f := h.fundNow(); f.ReservedCents != 80_000 {
		h.t.Fatalf("the first approval holds %d, want 80,000", f.ReservedCents)
	}
	return got
}

func (h *twoApprovers) fundNow() disbursementapi.Fund {
	h.t.Helper()
	f, err := h.d.Fund(h.ctx, disbursementapi.GetRequest{ID: h.fund.ID})
	if err != nil {
		h.t.Fatal(err)
	}
	return f
}

// race has each actor run f at once and returns their errors.
func race(actors []assist.Actor, f func(a assist.Actor) error) []error {
	errs := make([]error, len(actors))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, a := range actors {
		wg.Go(func() {
			<-start
			errs[i] = f(a)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func oneWins(t *testing.T, errs []error) {
	t.Helper()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case assist.IsCode(err, assist.CodeConflict):
		default:
			t.Fatalf("a racer got %v, want success or conflict", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d racers won (%v), want exactly one", wins, errs)
	}
}

func TestSecondApprovalByAnotherApprover(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newTwoApprovers(t, db)
		c := h.firstApproval()
		seq := h.lastSeq()
		for _, a := range []assist.Actor{olu, anaApprover} {
			_, err := h.svc.Approve(h.ctx, approvalapi.ApproveRequest{CommandID: newID(), Actor: a, CaseID: c.ID, AmountCents: 70_000})
			if !assist.IsCode(err, assist.CodeForbidden) {
				t.Fatalf("second approval by %s: %v, want forbidden", a.Username, err)
			}
		}
		_, err := h.svc.Approve(h.ctx, approvalapi.ApproveRequest{CommandID: newID(), Actor: pia, CaseID: c.ID, AmountCents: 80_001})
		requireField(t, err, "amount_usd_cents")
		h.requireNoNewEvent(seq)

		// pia and kai approve at once, no claim needed: one wins.
		oneWins(t, race([]assist.Actor{pia, kai}, func(a assist.Actor) error {
			_, err := h.svc.Approve(h.ctx, approvalapi.ApproveRequest{CommandID: newID(), Actor: a, CaseID: c.ID,
				AmountCents: 70_000, Note: "second"})
			return err
		}))
		got := h.get(c.ID)
		// Approved, and maybe already paid: disbursement runs beside.
		paying := []assist.State{assist.StateApproved, assist.StateDisbursing, assist.StateDisbursed}
		if !slices.Contains(paying, got.State) || got.ApprovedCents != 70_000 || len(got.Approvals) != 2 ||
			got.Approvals[0].Approver != "olu" || got.Approvals[1].Approver == "olu" {
			t.Fatalf("after the second approval: %s, %d, %+v", got.State, got.ApprovedCents, got.Approvals)
		}
		// The payout worker may already have appended after it: the
		// second approval is the last RequestApproved.
		var second assist.RequestApproved
		for _, r := range h.events(c.ID) {
			if b, ok := r.Event.Body.(assist.RequestApproved); ok {
				second = b
			}
		}
		if second.Step != assist.ApprovalSecond || second.HoldID != c.HoldID || second.FundAvailableCents != 20_000 ||
			second.Policy.SecondApprovalAboveUSDCents != 50_000 {
			t.Fatalf("second approval %+v: want the first's hold and what the approver saw (20,000 available, the threshold)", second)
		}
		// The fund pays the second amount, once; 100.00 USD went back.
		evatest.Eventually(t, "the payout of 700.00 USD", func() bool {
			f := h.fundNow()
			return f.PaidCents == 70_000 && f.ReservedCents == 0 && f.AvailableCents == 30_000
		})
		if n := countType(h.events(c.ID), "FundsReserved"); n != 1 {
			t.Fatalf("FundsReserved %d times", n)
		}
	})
}

func TestSecondRejectionReleasesTheHoldOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newTwoApprovers(t, db)
		c := h.firstApproval()
		_, err := h.svc.Reject(h.ctx, approvalapi.RejectRequest{CommandID: newID(), Actor: olu, CaseID: c.ID, Reason: "no"})
		if !assist.IsCode(err, assist.CodeForbidden) {
			t.Fatalf("rejection by the first approver: %v, want forbidden", err)
		}
		oneWins(t, race([]assist.Actor{pia, kai}, func(a assist.Actor) error {
			_, err := h.svc.Reject(h.ctx, approvalapi.RejectRequest{CommandID: newID(), Actor: a, CaseID: c.ID, Reason: "not credible"})
			return err
		}))
		evatest.Eventually(t, "the hold back on the fund", func() bool {
			f := h.fundNow()
			return f.ReservedCents == 0 && f.AvailableCents == 100_000
		})
		recs := h.events(c.ID)
		if n := countType(recs, "FundsReleased"); n != 1 {
			t.Fatalf("FundsReleased %d times, want once", n)
		}
		last := recs[len(recs)-1].Event.Body.(assist.FundsReleased)
		if last.HoldID != c.HoldID || last.Cause != assist.ReleaseNotApproved || last.AmountCents != 80_000 {
			t.Fatalf("release %+v", last)
		}
		if got := h.get(c.ID); got.State != assist.StateRejected {
			t.Fatalf("state %s", got.State)
		}
	})
}
