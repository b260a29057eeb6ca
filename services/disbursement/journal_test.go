package disbursement

import (
	"errors"
	"fmt"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

// The ledger of a real payout, end to end on embedded JetStream: the
// fund's creation, the approval's hold, the settlement's post, an
// allocation raise and a cut, each an entry with the event that caused it,
// and the fund's figures equal the ledger's balances.
func TestLedgerFollowsThePayoutAndAllocationChanges(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		p := newCountingProvider()
		h := newHarness(t, db, p)
		caseID := h.approved(30_000)
		h.drive(h.svc, caseID, assist.StateDisbursed)

		raised, err := h.svc.ChangeAllocation(h.ctx, disbursementapi.ChangeAllocationRequest{CommandID: newID(), Actor: fin,
			ID: h.fund.ID, AllocatedCents: 150_000, Reason: "the donor added a grant"})
		if err != nil || raised.AllocatedCents != 150_000 || raised.AvailableCents != 120_000 {
			t.Fatalf("raise: %+v %v", raised, err)
		}
		// The fund's row follows the log through the consumer: wait until
		// it shows the raise and the settlement, then check that a refused
		// cut leaves it as it is.
		before := h.waitFund("the fund's row to show the raise and the payment", func(f disbursementapi.Fund) bool {
			return f.AllocatedCents == 150_000 && f.ReservedCents == 0 && f.PaidCents == 30_000
		})
		// Available is 120,000 now: the allocation cannot drop below the
		// 30,000 paid.
		_, err = h.svc.ChangeAllocation(h.ctx, disbursementapi.ChangeAllocationRequest{CommandID: newID(), Actor: fin,
			ID: h.fund.ID, AllocatedCents: 20_000, Reason: "cut too far"})
		var ae *assist.Error
		if !errors.As(err, &ae) || ae.Code != assist.CodeInsufficientFunds || ae.AvailableUSDCents == nil || *ae.AvailableUSDCents != 120_000 ||
			len(ae.Fields) != 1 || ae.Fields[0].Field != "allocated_usd_cents" {
			t.Fatalf("a cut below reserved and paid: %v, want insufficient funds naming 120,000 available", err)
		}
		if f := h.fundNow(); f != before {
			t.Fatalf("a refused cut changed the fund: %+v, was %+v", f, before)
		}
		cmd := newID()
		cut, err := h.svc.ChangeAllocation(h.ctx, disbursementapi.ChangeAllocationRequest{CommandID: cmd, Actor: fin,
			ID: h.fund.ID, AllocatedCents: 100_000, Reason: "the donor withdrew part"})
		if err != nil || cut.AllocatedCents != 100_000 || cut.ReservedCents != 0 || cut.PaidCents != 30_000 || cut.AvailableCents != 70_000 {
			t.Fatalf("cut: %+v %v", cut, err)
		}
		again, err := h.svc.ChangeAllocation(h.ctx, disbursementapi.ChangeAllocationRequest{CommandID: cmd, Actor: fin,
			ID: h.fund.ID, AllocatedCents: 100_000, Reason: "the donor withdrew part"})
		if err != nil || again != cut {
			t.Fatalf("the same command again: %+v %v, want %+v", again, err, cut)
		}
		for _, bad := range []struct {
			r     disbursementapi.ChangeAllocationRequest
			code  assist.Code
			field string
		}{
			{disbursementapi.ChangeAllocationRequest{ID: h.fund.ID, AllocatedCents: 100_000, Reason: "same"}, assist.CodeInvalid, "allocated_usd_cents"},
			{disbursementapi.ChangeAllocationRequest{ID: h.fund.ID, AllocatedCents: 0, Reason: "zero"}, assist.CodeInvalid, "allocated_usd_cents"},
			{disbursementapi.ChangeAllocationRequest{ID: h.fund.ID, AllocatedCents: 90_000}, assist.CodeInvalid, "reason"},
			{disbursementapi.ChangeAllocationRequest{ID: newID(), AllocatedCents: 90_000, Reason: "no fund"}, assist.CodeNotFound, ""},
		} {
			bad.r.CommandID, bad.r.Actor = newID(), fin
			_, err := h.svc.ChangeAllocation(h.ctx, bad.r)
			if !assist.IsCode(err, bad.code) || (bad.field != "" && (!errors.As(err, &ae) || len(ae.Fields) == 0 || ae.Fields[0].Field != bad.field)) {
				t.Fatalf("%+v: %v, want %s naming %q", bad.r, err, bad.code, bad.field)
			}
		}
		if _, err := h.svc.ChangeAllocation(h.ctx, disbursementapi.ChangeAllocationRequest{CommandID: newID(), Actor: olu,
			ID: h.fund.ID, AllocatedCents: 90_000, Reason: "not mine to change"}); !assist.IsCode(err, assist.CodeForbidden) {
			t.Fatalf("an approver changes an allocation: %v", err)
		}

		var l disbursementapi.Ledger
		evatest.Await(t, evatest.Patience, "the ledger to have five entries", func() (bool, string) {
			l, err = h.svc.Ledger(h.ctx, disbursementapi.LedgerRequest{ID: h.fund.ID})
			return err == nil && len(l.Entries) == 5, fmt.Sprintf("%+v %v", l, err)
		})
		want := []struct {
			typ, kind, debit, credit string
			amount                   int64
		}{
			{"FundCreated", disbursementapi.EntryAllocate, disbursementapi.AccountAvailable(h.fund.ID), disbursementapi.AccountAllocation(h.fund.ID), 100_000},
			{"RequestApproved", disbursementapi.EntryHold, disbursementapi.AccountReserved(h.fund.ID), disbursementapi.AccountAvailable(h.fund.ID), 30_000},
			{"PayoutSettled", disbursementapi.EntryPost, disbursementapi.AccountPaid(h.fund.ID), disbursementapi.AccountReserved(h.fund.ID), 30_000},
			{"FundAllocationChanged", disbursementapi.EntryAllocate, disbursementapi.AccountAvailable(h.fund.ID), disbursementapi.AccountAllocation(h.fund.ID), 50_000},
			{"FundAllocationChanged", disbursementapi.EntryAllocate, disbursementapi.AccountAllocation(h.fund.ID), disbursementapi.AccountAvailable(h.fund.ID), 50_000},
		}
		for i, w := range want {
			e := l.Entries[i]
			if e.EventType != w.typ || e.Kind != w.kind || e.Debit != w.debit || e.Credit != w.credit || e.AmountCents != w.amount || e.EventID == "" || e.Seq == 0 {
				t.Fatalf("entry %d: %+v, want %+v", i, e, w)
			}
			if i > 0 && e.Seq <= l.Entries[i-1].Seq {
				t.Fatalf("entries out of log order: %+v", l.Entries)
			}
		}
		if l.Entries[1].CaseID != caseID || l.Entries[2].PayoutID == "" || l.Entries[2].PayeeID != h.payee.ID || l.Entries[2].ProviderRef == "" {
			t.Fatalf("the hold and post do not name their request, payout, payee and provider reference: %+v", l.Entries[1:3])
		}
		wantBal := disbursementapi.Balances{AllocatedCents: 100_000, PaidCents: 30_000, AvailableCents: 70_000}
		if l.Balances != wantBal || l.Entries[4].Balances != wantBal || l.UnrecordedHoldsCents != 0 {
			t.Fatalf("balances %+v (last entry %+v, unrecorded %d), want %+v", l.Balances, l.Entries[4].Balances, l.UnrecordedHoldsCents, wantBal)
		}
		f := l.Fund
		if f.AllocatedCents != l.Balances.AllocatedCents || f.ReservedCents != l.Balances.ReservedCents || f.PaidCents != l.Balances.PaidCents ||
			f.AvailableCents != l.Balances.AvailableCents {
			t.Fatalf("fund %+v differs from its ledger %+v", f, l.Balances)
		}
		// Paging: two entries after the first two, with running balances
		// that continue from the entries before.
		page, err := h.svc.Ledger(h.ctx, disbursementapi.LedgerRequest{ID: h.fund.ID, After: l.Entries[1].Seq, Limit: 2})
		if err != nil || len(page.Entries) != 2 || page.Entries[0].Seq != l.Entries[2].Seq || page.NextAfter != l.Entries[3].Seq ||
			page.Entries[1].Balances != l.Entries[3].Balances {
			t.Fatalf("page after %d: %+v %v", l.Entries[1].Seq, page, err)
		}
		if _, err := h.svc.Ledger(h.ctx, disbursementapi.LedgerRequest{ID: newID()}); !assist.IsCode(err, assist.CodeNotFound) {
			t.Fatalf("ledger of no fund: %v", err)
		}

		// The provider's statement of this payout reconciles; altered,
		// it does not, and the finding names the payout.
		post := l.Entries[2]
		line := reconcile.Line{ProviderRef: post.ProviderRef, Key: post.PayoutID + "-1", PayeeID: h.payee.ID, Account: "ACC-1",
			AmountCents: 30_000, Currency: "USD", SettledAt: post.At}
		rep, err := h.svc.Reconcile(h.ctx, disbursementapi.ReconcileRequest{Lines: []reconcile.Line{line}})
		if err != nil || !rep.OK || rep.Matched != 1 || rep.Payouts != 1 {
			t.Fatalf("the matching statement: %+v %v", rep, err)
		}
		line.AmountCents = 300_000
		rep, err = h.svc.Reconcile(h.ctx, disbursementapi.ReconcileRequest{Lines: []reconcile.Line{line, line}})
		if err != nil || rep.OK || len(rep.Findings) != 2 || rep.Findings[0].Kind != reconcile.AmountDiffers ||
			rep.Findings[0].PayoutID != post.PayoutID || rep.Findings[1].Kind != reconcile.DuplicateLine {
			t.Fatalf("an altered, duplicated statement: %+v %v", rep, err)
		}
		rep, err = h.svc.Reconcile(h.ctx, disbursementapi.ReconcileRequest{Lines: []reconcile.Line{}})
		if err != nil || rep.OK || len(rep.Findings) != 1 || rep.Findings[0].Kind != reconcile.MissingFromStatement {
			t.Fatalf("an empty statement: %+v %v", rep, err)
		}
		line.AmountCents = 0
		_, err = h.svc.Reconcile(h.ctx, disbursementapi.ReconcileRequest{Lines: []reconcile.Line{line}})
		if !errors.As(err, &ae) || ae.Code != assist.CodeInvalid || len(ae.Fields) != 1 || ae.Fields[0].Field != "lines[0].amount_usd_cents" {
			t.Fatalf("a bad line: %v, want invalid naming lines[0].amount_usd_cents", err)
		}
	})
}
