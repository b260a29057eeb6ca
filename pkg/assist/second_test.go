package assist_test

import (
	"testing"

	"github.com/eva-org/eva/pkg/assist"
)

// awaitingSecond is a case bob approved above the threshold; colleague
// amended it before.
func awaitingSecond(t *testing.T) *history {
	t.Helper()
	h := caseIn(t, string(assist.StateSubmitted))
	h.record(h.c.Amend(h.cmd(colleague), assist.AmendInput{Justification: ptr("Estimate attached.")}, h.p))
	h.claim(bob)
	h.p.SecondApprovalAboveUSDCents = approvedCents - 1
	h.approve(holdID)
	if h.c.State != assist.StateAwaitingSecondApproval {
		t.Fatalf("after the first approval above the threshold: %s", h.c.State)
	}
	return h
}

func TestFirstApprovalAboveThresholdAwaitsSecond(t *testing.T) {
	h := awaitingSecond(t)
	b := h.events[len(h.events)-1].Event.Body.(assist.RequestApproved)
	if b.Step != assist.ApprovalFirst || b.Policy.SecondApprovalAboveUSDCents != approvedCents-1 {
		t.Fatalf("first approval %+v: want step first and the threshold it saw", b)
	}
	if h.c.HoldID != holdID || h.c.ApprovedCents != approvedCents || h.c.ClaimedBy != "" || len(h.c.Approvals) != 1 {
		t.Fatalf("case after the first approval: %+v", h.c)
	}
	// At the threshold exactly: one approval is enough.
	h2 := caseIn(t, string(assist.StateUnderReview))
	h2.p.SecondApprovalAboveUSDCents = approvedCents
	h2.approve(holdID)
	if h2.c.State != assist.StateApproved {
		t.Fatalf("approval at the threshold: %s, want approved", h2.c.State)
	}
}

func TestSecondApproval(t *testing.T) {
	h := awaitingSecond(t)
	in := assist.ApproveInput{AmountCents: approvedCents - 5_000, Note: "agreed, a little less", FundAvailableCents: 7}
	cmd := h.cmd(carol)
	h.record(h.c.Approve(cmd, in, h.p))
	if h.c.State != assist.StateApproved || h.c.ApprovedCents != approvedCents-5_000 || h.c.ApprovedBy != carol.Username {
		t.Fatalf("after the second approval: %s, %d by %s", h.c.State, h.c.ApprovedCents, h.c.ApprovedBy)
	}
	b := h.events[len(h.events)-1].Event.Body.(assist.RequestApproved)
	if b.Step != assist.ApprovalSecond || b.HoldID != holdID || b.FundID != fundID || b.PayeeID != payee || b.FundAvailableCents != 7 {
		t.Fatalf("second approval %+v: want step second on the first's hold, fund and payee", b)
	}
	want := []assist.Approval{
		{Approver: bob.Username, AmountCents: approvedCents, At: h.events[len(h.events)-2].Event.At, PolicyVersion: "default-1"},
		{Approver: carol.Username, AmountCents: approvedCents - 5_000, At: cmd.At, PolicyVersion: "default-1"},
	}
	if len(h.c.Approvals) != 2 || h.c.Approvals[0] != want[0] || h.c.Approvals[1] != want[1] {
		t.Fatalf("approvals %+v, want %+v", h.c.Approvals, want)
	}
	// The money moves on as after one approval.
	h.record(h.c.ReserveFunds(h.cmd(system), holdID, payoutID))
}

func TestSecondApprovalRefusals(t *testing.T) {
	tests := []struct {
		name  string
		actor assist.Actor
		in    assist.ApproveInput
		code  assist.Code
		field string
	}{
		{"the first approver", bob, assist.ApproveInput{AmountCents: 1}, assist.CodeForbidden, ""},
		{"the filer", filerApprover, assist.ApproveInput{AmountCents: 1}, assist.CodeForbidden, ""},
		{"an amender", assist.Actor{Username: colleague.Username, Role: assist.RoleApprover}, assist.ApproveInput{AmountCents: 1},
			assist.CodeForbidden, ""},
		{"a requester", colleague, assist.ApproveInput{AmountCents: 1}, assist.CodeForbidden, ""},
		{"more than the first", carol, assist.ApproveInput{AmountCents: approvedCents + 1}, assist.CodeInvalid, "amount_usd_cents"},
		{"nothing", carol, assist.ApproveInput{}, assist.CodeInvalid, "amount_usd_cents"},
		{"another fund", carol, assist.ApproveInput{AmountCents: 1, FundID: "fund-2"}, assist.CodeInvalid, "fund_id"},
		{"another payee", carol, assist.ApproveInput{AmountCents: 1, PayeeID: "payee-2"}, assist.CodeInvalid, "payee_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := awaitingSecond(t)
			e, err := h.c.Approve(h.cmd(tt.actor), tt.in, h.p)
			ae := wantCode(t, err, tt.code)
			if tt.field != "" && (len(ae.Fields) == 0 || ae.Fields[0].Field != tt.field) {
				t.Fatalf("fields %+v, want %s", ae.Fields, tt.field)
			}
			if e.Body != nil {
				t.Fatalf("refused with an event %+v", e)
			}
		})
	}
}

func TestSecondRejectGivesTheHoldBack(t *testing.T) {
	h := awaitingSecond(t)
	_, err := h.c.Reject(h.cmd(bob), "changed my mind")
	wantCode(t, err, assist.CodeForbidden)
	h.record(h.c.Reject(h.cmd(carol), "the estimate is not credible"))
	if h.c.State != assist.StateRejected {
		t.Fatalf("state %s", h.c.State)
	}
	if b := h.events[len(h.events)-1].Event.Body.(assist.RequestRejected); b.HoldID != holdID {
		t.Fatalf("rejection names hold %q, want %q", b.HoldID, holdID)
	}
	// The hold goes back once, as not approved.
	h.record(h.c.ExpireHold(h.cmd(system), holdID, fundID, approvedCents))
	if b := h.events[len(h.events)-1].Event.Body.(assist.FundsReleased); b.Cause != assist.ReleaseNotApproved {
		t.Fatalf("release cause %v", b.Cause)
	}
	_, err = h.c.ExpireHold(h.cmd(system), holdID, fundID, approvedCents)
	wantCode(t, err, assist.CodeConflict)
}

func TestWithdrawAwaitingSecondGivesTheHoldBack(t *testing.T) {
	h := awaitingSecond(t)
	// Before the withdrawal the hold backs the approval.
	_, err := h.c.ExpireHold(h.cmd(system), holdID, fundID, approvedCents)
	wantCode(t, err, assist.CodeConflict)
	h.record(h.c.Withdraw(h.cmd(filer), "found other help"))
	if b := h.events[len(h.events)-1].Event.Body.(assist.RequestWithdrawn); b.HoldID != holdID {
		t.Fatalf("withdrawal names hold %q, want %q", b.HoldID, holdID)
	}
	h.record(h.c.ExpireHold(h.cmd(system), holdID, fundID, approvedCents))
}
