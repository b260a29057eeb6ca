package approval_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/intake/intakeapi"
	"github.com/nats-io/nats.go"
)

// Approve with holds faked: unit-level cases of the hold-then-approve
// protocol, on the real log and database.

func approveRequest(caseID string, actor assist.Actor, amount int64) approvalapi.ApproveRequest {
	return approvalapi.ApproveRequest{CommandID: newID(), Actor: actor, CaseID: caseID, AmountCents: amount, FundID: "fund-1", Note: "ok"}
}

func TestApproveWithFakeHoldsRecordsHoldAndWhatApproverSaw(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		holds := &fakeHolds{}
		var asked []disbursementapi.PlaceHoldRequest
		holds.placeHold = func(ctx context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
			asked = append(asked, r)
			return heldAsAsked(77_700)(ctx, r)
		}
		h := newHarness(t, db, holds)
		c := h.file(ana)
		h.claim(c.ID, olu)
		r := approveRequest(c.ID, olu, 20_000) // less than the 25,000 asked
		got, err := h.svc.Approve(h.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != assist.StateApproved || got.ApprovedCents != 20_000 || got.ApprovedBy != "olu" ||
			got.FundID != "fund-1" || got.HoldID != r.CommandID || got.PayeeID != payee1 || got.ClaimedBy != "" {
			t.Fatalf("approved case = %+v", got)
		}
		want := disbursementapi.PlaceHoldRequest{HoldID: r.CommandID, FundID: "fund-1", CaseID: c.ID, PayeeID: payee1, AmountCents: 20_000}
		if len(asked) != 1 || asked[0] != want {
			t.Fatalf("PlaceHold calls = %+v, want one %+v", asked, want)
		}
		recs := h.events(c.ID)
		last := recs[len(recs)-1].Event
		b, ok := last.Body.(assist.RequestApproved)
		if !ok || last.ID != r.CommandID || b.FundAvailableCents != 77_700 || b.HoldID != r.CommandID ||
			b.Policy.Version != assist.DefaultPolicy().Version || last.Reason != "ok" {
			t.Fatalf("approval event = %+v, want the hold and the fund balance the approver saw", last)
		}
		if holds.released.Load() != 0 {
			t.Fatal("a recorded approval released its hold")
		}
		if !reflect.DeepEqual(h.get(c.ID), got) {
			t.Fatal("the log differs from what Approve answered")
		}
	})
}

func TestApproveWithFakeHoldsUsesPayeeOfDecision(t *testing.T) {
	holds := &fakeHolds{}
	var payee string
	holds.placeHold = func(ctx context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
		payee = r.PayeeID
		return heldAsAsked(1)(ctx, r)
	}
	h := newHarness(t, sqldbtest.SQLite(t), holds)
	c := h.file(ana)
	h.claim(c.ID, olu)
	r := approveRequest(c.ID, olu, 1000)
	r.PayeeID = "payee-9"
	got, err := h.svc.Approve(h.ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if payee != "payee-9" || got.PayeeID != "payee-9" {
		t.Fatalf("held for payee %q, approved for %q; want payee-9", payee, got.PayeeID)
	}
}

// A retried approval (the client did not get the answer) answers the same
// case and holds no money twice.
func TestApproveWithFakeHoldsRetryPlacesNoSecondHold(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		holds := &fakeHolds{placeHold: heldAsAsked(50_000)}
		h := newHarness(t, db, holds)
		c := h.file(ana)
		h.claim(c.ID, olu)
		r := approveRequest(c.ID, olu, 25_000)
		first, err := h.svc.Approve(h.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		seq := h.lastSeq()
		for range 3 {
			again, err := h.svc.Approve(h.ctx, r)
			if err != nil {
				t.Fatalf("retried Approve: %v", err)
			}
			if !reflect.DeepEqual(again, first) {
				t.Fatalf("retried Approve = %+v\nwant %+v", again, first)
			}
		}
		if n := holds.placed.Load(); n != 1 {
			t.Fatalf("PlaceHold called %d times, want 1", n)
		}
		h.requireNoNewEvent(seq)
		if n := countType(h.events(c.ID), "RequestApproved"); n != 1 {
			t.Fatalf("%d approvals, want 1", n)
		}
		// A retry after the case moved on still answers as approved then.
		if _, err := h.svc.Approve(h.ctx, approveRequest(c.ID, olu, 25_000)); !assist.IsCode(err, assist.CodeConflict) {
			t.Fatalf("a new approval of an approved case: %v, want conflict", err)
		}
	})
}

// The fund cannot cover the amount: the refusal passes through with what
// is available, and nothing is recorded.
func TestApproveWithFakeHoldsInsufficientFundsPassesThrough(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		avail := int64(12_34)
		holds := &fakeHolds{placeHold: func(context.Context, disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
			return disbursementapi.Hold{}, &assist.Error{Code: assist.CodeInsufficientFunds, Message: "fund F has 12.34 USD available", AvailableUSDCents: &avail}
		}}
		h := newHarness(t, db, holds)
		c := h.file(ana)
		h.claim(c.ID, olu)
		seq := h.lastSeq()
		_, err := h.svc.Approve(h.ctx, approveRequest(c.ID, olu, 20_000))
		var e *assist.Error
		if !errors.As(err, &e) || e.Code != assist.CodeInsufficientFunds || e.AvailableUSDCents == nil || *e.AvailableUSDCents != avail {
			t.Fatalf("err = %#v, want insufficient_funds with 1234 available", err)
		}
		h.requireNoNewEvent(seq)
		if got := h.get(c.ID); got.State != assist.StateUnderReview || got.ClaimedBy != "olu" {
			t.Fatalf("case after a refused approval = %+v, want still under review by olu", got)
		}
		if n := holds.released.Load(); n != 0 {
			t.Fatalf("ReleaseHold called %d times for a hold never placed", n)
		}
	})
}

// The approval is refused after the hold was placed (here the claim ended
// meanwhile): the hold is given back at once.
func TestApproveWithFakeHoldsRefusedAfterHoldReleasesIt(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		holds := &fakeHolds{}
		h := newHarness(t, db, holds)
		c := h.file(ana)
		h.claim(c.ID, olu)
		var releasedID string
		holds.placeHold = func(ctx context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
			// While the hold is placed, the approver's claim ends.
			if _, err := h.svc.Release(ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: olu, CaseID: c.ID}); err != nil {
				t.Errorf("release the claim: %v", err)
			}
			return heldAsAsked(5_000)(ctx, r)
		}
		holds.releaseHold = func(_ context.Context, r disbursementapi.ReleaseHoldRequest) (disbursementapi.Hold, error) {
			releasedID = r.HoldID
			return disbursementapi.Hold{ID: r.HoldID, Status: disbursementapi.HoldReleased}, nil
		}
		r := approveRequest(c.ID, olu, 20_000)
		_, err := h.svc.Approve(h.ctx, r)
		requireCode(t, err, assist.CodeConflict)
		if n := holds.released.Load(); n != 1 || releasedID != r.CommandID {
			t.Fatalf("ReleaseHold called %d times with %q, want once with the approval's hold %s", n, releasedID, r.CommandID)
		}
		if n := countType(h.events(c.ID), "RequestApproved"); n != 0 {
			t.Fatalf("%d approvals recorded", n)
		}
		if got := h.get(c.ID); got.State != assist.StateSubmitted {
			t.Fatalf("case = %s, want submitted (released)", got.State)
		}
	})
}

// A failing ReleaseHold does not hide the refusal: the hold expires later.
func TestApproveWithFakeHoldsReleaseFailureKeepsRefusal(t *testing.T) {
	holds := &fakeHolds{}
	h := newHarness(t, sqldbtest.SQLite(t), holds)
	c := h.file(ana)
	h.claim(c.ID, olu)
	holds.placeHold = func(ctx context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
		if _, err := h.intake.Withdraw(ctx, intakeWithdraw(c.ID)); err != nil {
			t.Errorf("withdraw: %v", err)
		}
		return heldAsAsked(5_000)(ctx, r)
	}
	holds.releaseHold = func(context.Context, disbursementapi.ReleaseHoldRequest) (disbursementapi.Hold, error) {
		return disbursementapi.Hold{}, assist.Errorf(assist.CodeUnavailable, "disbursement is down")
	}
	_, err := h.svc.Approve(h.ctx, approveRequest(c.ID, olu, 20_000))
	requireCode(t, err, assist.CodeConflict)
	if holds.released.Load() != 1 {
		t.Fatal("ReleaseHold was not tried")
	}
}

// A refusal decided before the hold holds no money.
func TestApproveWithFakeHoldsRefusedBeforeHoldPlacesNone(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		holds := &fakeHolds{} // PlaceHold unset: any call fails
		h := newHarness(t, db, holds)
		unclaimed := h.file(ana)
		claimed := h.file(ana)
		h.claim(claimed.ID, olu)
		noPayeeReq := fileRequest(ana)
		noPayeeReq.PayeeID = ""
		noPayee := h.fileWith(h.intake, noPayeeReq)
		h.claim(noPayee.ID, olu)
		for _, tc := range []struct {
			name  string
			edit  func(r *approvalapi.ApproveRequest)
			code  assist.Code
			field string
		}{
			{"without claim", func(r *approvalapi.ApproveRequest) { r.CaseID = unclaimed.ID }, assist.CodeConflict, ""},
			{"claimed by another", func(r *approvalapi.ApproveRequest) { r.Actor = pia }, assist.CodeConflict, ""},
			{"by the filer", func(r *approvalapi.ApproveRequest) { r.Actor = anaApprover }, assist.CodeForbidden, ""},
			{"by a requester", func(r *approvalapi.ApproveRequest) { r.Actor = ana }, assist.CodeForbidden, ""},
			{"by finance", func(r *approvalapi.ApproveRequest) { r.Actor = assist.Actor{Username: "fin", Role: assist.RoleFinance} }, assist.CodeForbidden, ""},
			{"more than requested", func(r *approvalapi.ApproveRequest) { r.AmountCents = 25_001 }, assist.CodeInvalid, "amount_usd_cents"},
			{"zero amount", func(r *approvalapi.ApproveRequest) { r.AmountCents = 0 }, assist.CodeInvalid, "amount_usd_cents"},
			{"no fund", func(r *approvalapi.ApproveRequest) { r.FundID = " " }, assist.CodeInvalid, "fund_id"},
			{"no payee anywhere", func(r *approvalapi.ApproveRequest) { r.CaseID = noPayee.ID }, assist.CodeInvalid, "payee_id"},
			{"note too long", func(r *approvalapi.ApproveRequest) { r.Note = strings.Repeat("n", assist.MaxNote+1) }, assist.CodeInvalid, "note"},
			{"unknown case", func(r *approvalapi.ApproveRequest) { r.CaseID = newID() }, assist.CodeNotFound, ""},
			{"malformed case id", func(r *approvalapi.ApproveRequest) { r.CaseID = "*" }, assist.CodeNotFound, ""},
			{"bad command id", func(r *approvalapi.ApproveRequest) { r.CommandID = "approve-1" }, assist.CodeInvalid, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := approveRequest(claimed.ID, olu, 20_000)
				tc.edit(&r)
				seq := h.lastSeq()
				_, err := h.svc.Approve(h.ctx, r)
				requireCode(t, err, tc.code)
				if tc.field != "" {
					requireField(t, err, tc.field)
				}
				h.requireNoNewEvent(seq)
			})
		}
		if n := holds.placed.Load(); n != 0 {
			t.Fatalf("PlaceHold called %d times for refused approvals", n)
		}
	})
}

// The command's hold was placed before with another amount or fund (a
// reused command id): a conflict, and the other hold is left alone.
func TestApproveWithFakeHoldsMismatchedHoldIsConflict(t *testing.T) {
	holds := &fakeHolds{placeHold: func(_ context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
		return disbursementapi.Hold{ID: r.HoldID, FundID: r.FundID, CaseID: r.CaseID, AmountCents: r.AmountCents + 1, Status: disbursementapi.HoldHeld}, nil
	}}
	h := newHarness(t, sqldbtest.SQLite(t), holds)
	c := h.file(ana)
	h.claim(c.ID, olu)
	seq := h.lastSeq()
	_, err := h.svc.Approve(h.ctx, approveRequest(c.ID, olu, 20_000))
	requireCode(t, err, assist.CodeConflict)
	h.requireNoNewEvent(seq)
	if holds.released.Load() != 0 {
		t.Fatal("another command's hold was released")
	}
}

func TestApproveWithFakeHoldsUnavailablePassesThrough(t *testing.T) {
	holds := &fakeHolds{placeHold: func(context.Context, disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
		return disbursementapi.Hold{}, assist.Errorf(assist.CodeUnavailable, "disbursement: no service is answering")
	}}
	h := newHarness(t, sqldbtest.SQLite(t), holds)
	c := h.file(ana)
	h.claim(c.ID, olu)
	seq := h.lastSeq()
	_, err := h.svc.Approve(h.ctx, approveRequest(c.ID, olu, 20_000))
	requireCode(t, err, assist.CodeUnavailable)
	h.requireNoNewEvent(seq)
}

// Approve on the real disbursement ledger: the hold reserves money once,
// a retry reserves nothing more, and a fund that cannot cover an amount
// refuses naming what it has.
func TestApproveHoldsMoneyOnRealFund(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, nil)
		fin := assist.Actor{Username: "fin", Role: assist.RoleFinance}
		d := disbursement.New(disbursement.Deps{Config: disbursement.Config{HoldTTL: time.Hour}, Log: h.log, DB: db, Logger: zaptest.NewLogger(t)})
		h.svc = h.service(d, nil)
		fund, err := d.CreateFund(h.ctx, disbursementapi.CreateFundRequest{CommandID: newID(), Actor: fin, Name: "Emergency", AllocatedCents: 100_000})
		if err != nil {
			t.Fatal(err)
		}
		payee, err := d.CreatePayee(h.ctx, disbursementapi.CreatePayeeRequest{CommandID: newID(), Actor: fin, Name: "Shanti", Account: "ACC-1"})
		if err != nil {
			t.Fatal(err)
		}
		fileFor := func(amount int64) *assist.Case {
			r := fileRequest(ana)
			r.AmountCents, r.PayeeID = amount, payee.ID
			return h.fileWith(h.intake, r)
		}
		fundNow := func() disbursementapi.Fund {
			f, err := d.Fund(h.ctx, disbursementapi.GetRequest{ID: fund.ID})
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
		first, second := fileFor(60_000), fileFor(60_000)
		h.claim(first.ID, olu)
		h.claim(second.ID, pia)
		r := approvalapi.ApproveRequest{CommandID: newID(), Actor: olu, CaseID: first.ID, AmountCents: 60_000, FundID: fund.ID}
		got, err := h.svc.Approve(h.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != assist.StateApproved || got.HoldID != r.CommandID {
			t.Fatalf("approved = %+v", got)
		}
		if b := h.events(first.ID); b[len(b)-1].Event.Body.(assist.RequestApproved).FundAvailableCents != 40_000 {
			t.Fatalf("the approval records %+v, want 40,000 available after the hold", b[len(b)-1].Event.Body)
		}
		if f := fundNow(); f.ReservedCents != 60_000 || f.AvailableCents != 40_000 {
			t.Fatalf("fund after approval = %+v", f)
		}
		if again, err := h.svc.Approve(h.ctx, r); err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("retried Approve = %+v, %v", again, err)
		}
		if f := fundNow(); f.ReservedCents != 60_000 {
			t.Fatalf("a retried approval reserved again: %+v", f)
		}

		seq := h.lastSeq()
		_, err = h.svc.Approve(h.ctx, approvalapi.ApproveRequest{CommandID: newID(), Actor: pia, CaseID: second.ID, AmountCents: 60_000, FundID: fund.ID})
		var e *assist.Error
		if !errors.As(err, &e) || e.Code != assist.CodeInsufficientFunds || e.AvailableUSDCents == nil || *e.AvailableUSDCents != 40_000 {
			t.Fatalf("err = %v, want insufficient_funds with 40,000 available", err)
		}
		h.requireNoNewEvent(seq)
		_, err = h.svc.Approve(h.ctx, approvalapi.ApproveRequest{CommandID: newID(), Actor: pia, CaseID: second.ID, AmountCents: 1000, FundID: newID()})
		requireField(t, err, "fund_id")
		// A lower amount fits.
		if _, err := h.svc.Approve(h.ctx, approvalapi.ApproveRequest{CommandID: newID(), Actor: pia, CaseID: second.ID, AmountCents: 40_000, FundID: fund.ID}); err != nil {
			t.Fatal(err)
		}
		if f := fundNow(); f.ReservedCents != 100_000 || f.AvailableCents != 0 {
			t.Fatalf("fund = %+v, want fully reserved", f)
		}
	})
}

func intakeWithdraw(caseID string) intakeapi.WithdrawRequest {
	return intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: caseID, Reason: "no longer needed"}
}

// countLoads runs f and counts the reads of cases from the log it made
// (reads of the policy aside):
// the direct-get and message-get requests on the event stream, as the
// server sees them (a plain subscription on the API subjects).
func (h *harness) countLoads(f func()) int {
	h.t.Helper()
	subs := make([]*nats.Subscription, 0, 2)
	for _, subject := range []string{"$JS.API.DIRECT.GET." + eventlog.Stream + ".>", "$JS.API.DIRECT.GET." + eventlog.Stream,
		"$JS.API.STREAM.MSG.GET." + eventlog.Stream} {
		sub, err := h.nc.SubscribeSync(subject)
		if err != nil {
			h.t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	if err := h.nc.Flush(); err != nil {
		h.t.Fatal(err)
	}
	f()
	if err := h.nc.Flush(); err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, sub := range subs {
		for {
			m, err := sub.NextMsg(0)
			if err != nil {
				break // none left
			}
			// The read of the policy in force (pkg/policy) is not a read
			// of a case.
			if !bytes.Contains(m.Data, []byte("eva.policy.")) {
				n++
			}
		}
		_ = sub.Unsubscribe()
	}
	return n
}

// One command path: filing reads nothing; a claim on a case the service
// does not hold reads it once, and the approval after it decides on the
// case the claim left held (eventlog.ExecuteHeld): it reads nothing,
// holds the money once, then appends once.
func TestFileAndApproveLoadTheCaseOnce(t *testing.T) {
	holds := &fakeHolds{placeHold: heldAsAsked(1_000_000)}
	h := newHarness(t, sqldbtest.SQLite(t), holds)
	var c *assist.Case
	if n := h.countLoads(func() { c = h.file(ana) }); n != 0 {
		t.Fatalf("filing read the log %d times, want 0", n)
	}
	if n := h.countLoads(func() { h.claim(c.ID, olu) }); n != 1 {
		t.Fatalf("claiming a case not held read it %d times, want 1", n)
	}
	seq := h.lastSeq()
	var approved *assist.Case
	n := h.countLoads(func() {
		var err error
		if approved, err = h.svc.Approve(h.ctx, approveRequest(c.ID, olu, 20_000)); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("approving the case the claim left held read it %d times, want 0", n)
	}
	if got := holds.placed.Load(); got != 1 {
		t.Fatalf("the approval held money %d times, want 1", got)
	}
	if approved.State != assist.StateApproved || approved.Version != seq+1 {
		t.Fatalf("approved %+v, want approved at %d", approved, seq+1)
	}
}
