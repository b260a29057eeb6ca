package assist_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
)

// The people of the tests.
var (
	filer         = assist.Actor{Username: "alice", Role: assist.RoleRequester, Post: "KYIV"}
	colleague     = assist.Actor{Username: "anna", Role: assist.RoleRequester, Post: "KYIV"}
	outsider      = assist.Actor{Username: "mallory", Role: assist.RoleRequester, Post: "LIMA"}
	postless      = assist.Actor{Username: "nobody", Role: assist.RoleRequester}
	bob           = assist.Actor{Username: "bob", Role: assist.RoleApprover}
	carol         = assist.Actor{Username: "carol", Role: assist.RoleApprover}
	filerApprover = assist.Actor{Username: "alice", Role: assist.RoleApprover, Post: "KYIV"} // the filer, also an approver
	fred          = assist.Actor{Username: "fred", Role: assist.RoleFinance}
	ada           = assist.Actor{Username: "ada", Role: assist.RoleAdmin}
	audrey        = assist.Actor{Username: "audrey", Role: assist.RoleAuditor}
	system        = assist.Actor{Username: "eva", Role: assist.RoleSystem}
)

// The facts of the standard case.
const (
	caseID        = "0190f5a0-0000-7000-8000-00000000c0de"
	payee         = "payee-hospital"
	holdID        = "hold-1"
	fundID        = "fund-1"
	payoutID      = "payout-1"
	requested     = int64(120_000) // 1,200.00 USD, under the medical cap
	approvedCents = int64(100_000) // the approver grants less
	fundAvailable = int64(5_000_000)
)

var t0 = time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)

func validSubmit() assist.SubmitInput {
	return assist.SubmitInput{
		Post:               "KYIV",
		Category:           assist.Medical,
		Urgency:            assist.Urgent,
		AmountCents:        requested,
		Justification:      "Emergency surgery after rescue; no insurance.",
		Beneficiary:        assist.Sealed{KeyID: "key-1", Ciphertext: []byte{4, 5, 6}},
		BeneficiaryRefHash: []byte{0xaa, 0xbb},
		PayeeID:            payee,
		IdempotencyKeyHash: []byte{0x01},
	}
}

func validApprove() assist.ApproveInput {
	return assist.ApproveInput{AmountCents: approvedCents, FundID: fundID, HoldID: holdID,
		Note: "approved at the clinic's reduced rate", FundAvailableCents: fundAvailable}
}

// history drives one case through real transitions, applying each event it
// gets, as a service would. Every step happens one minute after the last.
type history struct {
	tb     testing.TB
	p      assist.Policy
	now    time.Time
	n      int
	c      *assist.Case
	events []assist.Recorded
}

func newHistory(tb testing.TB) *history {
	tb.Helper()
	return &history{tb: tb, p: assist.DefaultPolicy(), now: t0, c: &assist.Case{}}
}

// cmd returns the next command of actor a, one minute later.
func (h *history) cmd(a assist.Actor) assist.Cmd {
	h.n++
	h.now = h.now.Add(time.Minute)
	return assist.Cmd{ID: fmt.Sprintf("cmd-%02d", h.n), Actor: a, At: h.now}
}

// record applies the event a transition returned; the transition must
// have succeeded.
func (h *history) record(e assist.Event, err error) {
	h.tb.Helper()
	if err != nil {
		h.tb.Fatalf("step %d (%s): %v", h.n, e.Type(), err)
	}
	seq := uint64(len(h.events)+1) * 10 // log positions need not be dense
	h.events = append(h.events, assist.Recorded{Seq: seq, Event: e})
	h.c.Apply(e, seq)
}

func (h *history) submit(in assist.SubmitInput) *history {
	h.tb.Helper()
	cmd := h.cmd(filer)
	cmd.ID = caseID
	h.record(assist.Submit(cmd, in, h.p))
	return h
}

func (h *history) claim(a assist.Actor) *history {
	h.tb.Helper()
	h.record(h.c.Claim(h.cmd(a), h.p.ClaimTTL))
	return h
}

// approve has bob claim and approve with hold.
func (h *history) approve(hold string) *history {
	h.tb.Helper()
	in := validApprove()
	in.HoldID = hold
	h.record(h.c.Approve(h.cmd(bob), in, h.p))
	return h
}

// caseIn returns a fresh history whose case is in the named row: "new"
// (nothing filed yet), one of assist.States, or "approved_reserved"
// (approved, funds reserved for payout-1, nothing sent).
func caseIn(tb testing.TB, row string) *history {
	tb.Helper()
	h := newHistory(tb)
	switch assist.State(row) {
	case "new":
		return h
	case assist.StateSubmitted:
		return h.submit(validSubmit())
	case assist.StateUnderReview:
		return h.submit(validSubmit()).claim(bob)
	case assist.StateInfoRequested:
		h = caseIn(tb, string(assist.StateUnderReview))
		h.record(h.c.RequestInfo(h.cmd(bob), "Which hospital, and is the estimate in writing?"))
		return h
	case assist.StateAwaitingSecondApproval:
		// bob approves above a threshold lowered for this case.
		h = caseIn(tb, string(assist.StateUnderReview))
		h.p.SecondApprovalAboveUSDCents = approvedCents - 1
		h.approve(holdID)
		h.p = assist.DefaultPolicy()
		return h
	case assist.StateApproved:
		return caseIn(tb, string(assist.StateUnderReview)).approve(holdID)
	case "approved_reserved":
		h = caseIn(tb, string(assist.StateApproved))
		h.record(h.c.ReserveFunds(h.cmd(system), holdID, payoutID))
		return h
	case assist.StateDisbursing:
		h = caseIn(tb, "approved_reserved")
		h.record(h.c.SendPayout(h.cmd(system), payoutID, "prov-1", 1))
		return h
	case assist.StateDisbursed:
		h = caseIn(tb, string(assist.StateDisbursing))
		h.record(h.c.SettlePayout(h.cmd(system), payoutID, "prov-1"))
		return h
	case assist.StateDisbursementFailed:
		h = caseIn(tb, string(assist.StateDisbursing))
		h.record(h.c.FailPayout(h.cmd(system), payoutID, "provider timeout", 1))
		return h
	case assist.StateRejected:
		h = caseIn(tb, string(assist.StateUnderReview))
		h.record(h.c.Reject(h.cmd(bob), "not within the fund's mandate"))
		return h
	case assist.StateWithdrawn:
		h = caseIn(tb, string(assist.StateSubmitted))
		h.record(h.c.Withdraw(h.cmd(filer), "the beneficiary found other help"))
		return h
	case assist.StateClosed:
		h = caseIn(tb, string(assist.StateDisbursed))
		h.record(h.c.Close(h.cmd(fred), "paid and confirmed"))
		return h
	}
	tb.Fatalf("caseIn: unknown row %q", row)
	return nil
}

// rows lists "new", every state of assist.States and "approved_reserved".
func rows() []string {
	r := []string{"new"}
	for _, s := range assist.States {
		r = append(r, string(s))
	}
	return append(r, "approved_reserved")
}

// wantCode fails unless err is an *assist.Error with the code.
func wantCode(tb testing.TB, err error, code assist.Code) *assist.Error {
	tb.Helper()
	if err == nil {
		tb.Fatalf("got no error, want %s", code)
	}
	if got := assist.ErrorCode(err); got != code {
		tb.Fatalf("got %s (%v), want %s", got, err, code)
	}
	var e *assist.Error
	if !errors.As(err, &e) {
		tb.Fatalf("%v is not an *assist.Error", err)
	}
	return e
}

func ptr[T any](v T) *T { return &v }
