package assist_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
)

// move is one transition, asked for by the actor entitled to it with valid
// input, so that only the case's state decides whether it is allowed.
type move struct {
	name  string
	actor assist.Actor
	run   func(c *assist.Case, cmd assist.Cmd, p assist.Policy) (assist.Event, error)
	// ok maps each row where the move is allowed to the state it leads to.
	ok map[string]assist.State
	// onNew is the code refusing the move on a case never filed; elsewhere
	// a refusal is CodeConflict.
	onNew assist.Code
	// refused maps rows where the move is refused with another code than
	// CodeConflict to that code.
	refused map[string]assist.Code
	// want is the reason and body the move must produce in a row.
	want func(cmd assist.Cmd, row string) (reason string, body assist.Body)
}

var medicalSeen = assist.PolicySeen{Version: "default-1", CaseCapUSDCents: 2_000_000, CategoryCapUSDCents: 1_000_000,
	SecondApprovalAboveUSDCents: 500_000}

func moves() []move {
	allRows := map[string]assist.State{}
	for _, r := range rows() {
		s := assist.State(r)
		if r == "new" {
			s = assist.StateNone
		}
		if r == "approved_reserved" {
			s = assist.StateApproved
		}
		allRows[r] = s
	}
	filed := map[string]assist.State{}
	for r, s := range allRows {
		if r != "new" {
			filed[r] = s
		}
	}
	return []move{
		{
			// In every state, payout under way included: the state stays.
			name: "ErasePersonalData", actor: ada, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.ErasePersonalData(cmd, "the survivor asked")
			},
			ok: filed,
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "the survivor asked", assist.PersonalDataErased{KeyID: "key-1"}
			},
		},
		{
			name: "Amend", actor: filer, onNew: assist.CodeForbidden,
			run: func(c *assist.Case, cmd assist.Cmd, p assist.Policy) (assist.Event, error) {
				return c.Amend(cmd, assist.AmendInput{Justification: ptr("Surgery moved to tomorrow.")}, p)
			},
			ok: map[string]assist.State{"submitted": assist.StateSubmitted, "info_requested": assist.StateInfoRequested},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "", assist.RequestAmended{Justification: ptr("Surgery moved to tomorrow."), Policy: medicalSeen}
			},
		},
		{
			name: "Withdraw", actor: filer, onNew: assist.CodeForbidden,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.Withdraw(cmd, "the beneficiary found other help")
			},
			ok: map[string]assist.State{"submitted": assist.StateWithdrawn, "under_review": assist.StateWithdrawn,
				"info_requested": assist.StateWithdrawn, "awaiting_second_approval": assist.StateWithdrawn},
			want: func(_ assist.Cmd, row string) (string, assist.Body) {
				if row == string(assist.StateAwaitingSecondApproval) {
					// The first approval's hold goes back.
					return "the beneficiary found other help", assist.RequestWithdrawn{HoldID: holdID}
				}
				return "the beneficiary found other help", assist.RequestWithdrawn{}
			},
		},
		{
			name: "ProvideInfo", actor: filer, onNew: assist.CodeForbidden,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.ProvideInfo(cmd, "St. Luke's; the estimate is attached.")
			},
			ok: map[string]assist.State{"info_requested": assist.StateSubmitted},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "", assist.InfoProvided{Answer: "St. Luke's; the estimate is attached."}
			},
		},
		{
			// carol, so that under_review means "bob holds it".
			name: "Claim", actor: carol, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, p assist.Policy) (assist.Event, error) {
				return c.Claim(cmd, p.ClaimTTL)
			},
			ok: map[string]assist.State{"submitted": assist.StateUnderReview},
			want: func(cmd assist.Cmd, _ string) (string, assist.Body) {
				return "", assist.ReviewClaimed{ExpiresAt: cmd.At.Add(30 * time.Minute)}
			},
		},
		{
			name: "Release", actor: bob, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.Release(cmd)
			},
			ok:   map[string]assist.State{"under_review": assist.StateSubmitted},
			want: func(assist.Cmd, string) (string, assist.Body) { return "", assist.ReviewReleased{} },
		},
		{
			name: "Approve", actor: bob, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, p assist.Policy) (assist.Event, error) {
				return c.Approve(cmd, validApprove(), p)
			},
			ok: map[string]assist.State{"under_review": assist.StateApproved},
			// bob gave the first approval: not his to give the second.
			refused: map[string]assist.Code{"awaiting_second_approval": assist.CodeForbidden},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "approved at the clinic's reduced rate", assist.RequestApproved{AmountCents: approvedCents,
					FundID: fundID, HoldID: holdID, PayeeID: payee, Note: "approved at the clinic's reduced rate",
					FundAvailableCents: fundAvailable, Policy: medicalSeen}
			},
		},
		{
			name: "Reject", actor: bob, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.Reject(cmd, "not within the fund's mandate")
			},
			ok:      map[string]assist.State{"under_review": assist.StateRejected},
			refused: map[string]assist.Code{"awaiting_second_approval": assist.CodeForbidden},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "not within the fund's mandate", assist.RequestRejected{}
			},
		},
		{
			name: "RequestInfo", actor: bob, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.RequestInfo(cmd, "Which hospital?")
			},
			ok: map[string]assist.State{"under_review": assist.StateInfoRequested},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "", assist.InfoRequested{Question: "Which hospital?"}
			},
		},
		{
			name: "ReserveFunds", actor: system, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.ReserveFunds(cmd, holdID, payoutID)
			},
			ok: map[string]assist.State{"approved": assist.StateApproved},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "", assist.FundsReserved{HoldID: holdID, FundID: fundID, AmountCents: approvedCents, PayoutID: payoutID}
			},
		},
		{
			// A stale hold of an approval that was never recorded may come
			// back to its fund whatever the state of the filed case.
			name: "ExpireHold", actor: system, onNew: assist.CodeNotFound,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.ExpireHold(cmd, "hold-stale", "fund-2", 7_000)
			},
			ok: filed,
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "hold expired before the approval was recorded",
					assist.FundsReleased{HoldID: "hold-stale", FundID: "fund-2", AmountCents: 7_000, Cause: assist.ReleaseHoldExpired}
			},
		},
		{
			name: "SendPayout", actor: system, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.SendPayout(cmd, payoutID, "prov-2", 2)
			},
			ok: map[string]assist.State{"approved_reserved": assist.StateDisbursing, "disbursement_failed": assist.StateDisbursing},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "", assist.PayoutSent{PayoutID: payoutID, PayeeID: payee, AmountCents: approvedCents, ProviderRef: "prov-2", Attempt: 2}
			},
		},
		{
			name: "SettlePayout", actor: system, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.SettlePayout(cmd, payoutID, "prov-1")
			},
			ok: map[string]assist.State{"disbursing": assist.StateDisbursed},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "", assist.PayoutSettled{PayoutID: payoutID, ProviderRef: "prov-1"}
			},
		},
		{
			name: "FailPayout", actor: system, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.FailPayout(cmd, payoutID, "account closed", 1)
			},
			// A payout may fail before the provider accepts it, too.
			ok: map[string]assist.State{"approved_reserved": assist.StateDisbursementFailed,
				"disbursing": assist.StateDisbursementFailed, "disbursement_failed": assist.StateDisbursementFailed},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "account closed", assist.PayoutFailed{PayoutID: payoutID, Error: "account closed", Attempt: 1}
			},
		},
		{
			name: "RetryPayout", actor: fred, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.RetryPayout(cmd, payoutID, 2)
			},
			ok: map[string]assist.State{"disbursement_failed": assist.StateApproved},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "", assist.PayoutRetried{PayoutID: payoutID, Attempt: 2}
			},
		},
		{
			name: "CancelPayout", actor: fred, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.CancelPayout(cmd, "payee cannot be paid")
			},
			ok: map[string]assist.State{"disbursement_failed": assist.StateClosed},
			want: func(assist.Cmd, string) (string, assist.Body) {
				return "payee cannot be paid", assist.FundsReleased{HoldID: holdID, FundID: fundID, AmountCents: approvedCents,
					Cause: assist.ReleasePayoutCancelled}
			},
		},
		{
			name: "Close", actor: fred, onNew: assist.CodeConflict,
			run: func(c *assist.Case, cmd assist.Cmd, _ assist.Policy) (assist.Event, error) {
				return c.Close(cmd, "paid and confirmed")
			},
			ok:   map[string]assist.State{"disbursed": assist.StateClosed},
			want: func(assist.Cmd, string) (string, assist.Body) { return "paid and confirmed", assist.RequestClosed{} },
		},
	}
}

// Every transition in every state: allowed ones produce exactly the right
// event and lead to the right state when applied; refused ones return a
// zero event and the right code; neither changes the case.
func TestTransitionMatrix(t *testing.T) {
	known := map[string]bool{}
	for _, r := range rows() {
		known[r] = true
	}
	for _, m := range moves() {
		for r := range m.ok {
			if !known[r] {
				t.Fatalf("%s: unknown row %q", m.name, r)
			}
		}
		for _, row := range rows() {
			t.Run(m.name+"/"+row, func(t *testing.T) {
				h := caseIn(t, row)
				before := caseIn(t, row).c
				cmd := h.cmd(m.actor)
				e, err := m.run(h.c, cmd, h.p)
				if !reflect.DeepEqual(h.c, before) {
					t.Fatalf("the transition changed the case:\n got %+v\nwant %+v", h.c, before)
				}
				next, allowed := m.ok[row]
				if !allowed {
					code := assist.CodeConflict
					if row == "new" {
						code = m.onNew
					}
					if c, ok := m.refused[row]; ok {
						code = c
					}
					wantCode(t, err, code)
					if !reflect.DeepEqual(e, assist.Event{}) {
						t.Fatalf("refused with a non-zero event %+v", e)
					}
					return
				}
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				reason, body := m.want(cmd, row)
				want := assist.Event{ID: cmd.ID, CaseID: h.c.ID, At: cmd.At, Actor: m.actor, CommandID: cmd.ID,
					Reason: reason, Body: body}
				if !reflect.DeepEqual(e, want) {
					t.Fatalf("event\n got %+v\nwant %+v", e, want)
				}
				if row != "new" && e.CaseID != caseID {
					t.Fatalf("case id %q, want %q", e.CaseID, caseID)
				}
				h.record(e, nil)
				if h.c.State != next {
					t.Fatalf("state after %s: %s, want %s", m.name, h.c.State, next)
				}
			})
		}
	}
}

func TestSubmit(t *testing.T) {
	p := assist.DefaultPolicy()
	cmd := assist.Cmd{ID: caseID, Actor: filer, At: t0}
	in := validSubmit()
	e, err := assist.Submit(cmd, in, p)
	if err != nil {
		t.Fatal(err)
	}
	want := assist.Event{ID: caseID, CaseID: caseID, At: t0, Actor: filer, CommandID: caseID, Body: assist.RequestSubmitted{
		Post: "KYIV", Category: assist.Medical, Urgency: assist.Urgent, AmountCents: requested,
		Justification: in.Justification, Beneficiary: in.Beneficiary, BeneficiaryRefHash: in.BeneficiaryRefHash,
		PayeeID: payee, Deadline: t0.Add(24 * time.Hour), Policy: medicalSeen, IdempotencyKeyHash: []byte{0x01},
	}}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("event\n got %+v\nwant %+v", e, want)
	}
	c := assist.Fold([]assist.Recorded{{Seq: 7, Event: e}})
	wantCase := &assist.Case{ID: caseID, Requester: "alice", Authors: []string{"alice"}, Post: "KYIV", Category: assist.Medical, Urgency: assist.Urgent,
		AmountCents: requested, Justification: in.Justification, Beneficiary: in.Beneficiary,
		BeneficiaryRefHash: in.BeneficiaryRefHash, PayeeID: payee, Deadline: t0.Add(24 * time.Hour),
		State: assist.StateSubmitted, PolicyVersion: "default-1", CreatedAt: t0, UpdatedAt: t0, Version: 7, Events: 1}
	if !reflect.DeepEqual(c, wantCase) {
		t.Fatalf("case\n got %+v\nwant %+v", c, wantCase)
	}
}

// Retrying a command yields the same event, so the log can de-duplicate it.
func TestTransitionsAreDeterministic(t *testing.T) {
	for _, m := range moves() {
		for row := range m.ok {
			t.Run(m.name+"/"+row, func(t *testing.T) {
				h := caseIn(t, row)
				cmd := h.cmd(m.actor)
				e1, err1 := m.run(h.c, cmd, h.p)
				e2, err2 := m.run(h.c, cmd, h.p)
				if err1 != nil || err2 != nil {
					t.Fatalf("errors %v, %v", err1, err2)
				}
				if !reflect.DeepEqual(e1, e2) {
					t.Fatalf("retry differs:\n%+v\n%+v", e1, e2)
				}
			})
		}
	}
}

func TestActorRules(t *testing.T) {
	type call func(h *history, a assist.Actor) error
	amend := func(h *history, a assist.Actor) error {
		_, err := h.c.Amend(h.cmd(a), assist.AmendInput{Justification: ptr("new text")}, h.p)
		return err
	}
	withdraw := func(h *history, a assist.Actor) error {
		_, err := h.c.Withdraw(h.cmd(a), "no longer needed")
		return err
	}
	provide := func(h *history, a assist.Actor) error {
		_, err := h.c.ProvideInfo(h.cmd(a), "here it is")
		return err
	}
	claim := func(h *history, a assist.Actor) error {
		_, err := h.c.Claim(h.cmd(a), h.p.ClaimTTL)
		return err
	}
	release := func(h *history, a assist.Actor) error {
		_, err := h.c.Release(h.cmd(a))
		return err
	}
	approve := func(h *history, a assist.Actor) error {
		_, err := h.c.Approve(h.cmd(a), validApprove(), h.p)
		return err
	}
	reject := func(h *history, a assist.Actor) error {
		_, err := h.c.Reject(h.cmd(a), "no")
		return err
	}
	requestInfo := func(h *history, a assist.Actor) error {
		_, err := h.c.RequestInfo(h.cmd(a), "why?")
		return err
	}
	cancel := func(h *history, a assist.Actor) error {
		_, err := h.c.CancelPayout(h.cmd(a), "give up")
		return err
	}
	closeCase := func(h *history, a assist.Actor) error {
		_, err := h.c.Close(h.cmd(a), "")
		return err
	}
	submit := func(h *history, a assist.Actor) error {
		cmd := h.cmd(a)
		_, err := assist.Submit(cmd, validSubmit(), h.p)
		return err
	}
	const ok = assist.Code("")
	tests := []struct {
		name  string
		row   string
		do    call
		actor assist.Actor
		want  assist.Code
	}{
		// Wrong role.
		{"approver submits", "new", submit, assist.Actor{Username: "bob", Role: assist.RoleApprover, Post: "KYIV"}, assist.CodeForbidden},
		{"finance submits", "new", submit, assist.Actor{Username: "fred", Role: assist.RoleFinance, Post: "KYIV"}, assist.CodeForbidden},
		{"approver amends", "submitted", amend, bob, assist.CodeForbidden},
		{"admin amends", "submitted", amend, ada, assist.CodeForbidden},
		{"auditor amends", "submitted", amend, audrey, assist.CodeForbidden},
		{"approver withdraws", "submitted", withdraw, bob, assist.CodeForbidden},
		{"finance withdraws", "submitted", withdraw, fred, assist.CodeForbidden},
		{"approver provides info", "info_requested", provide, bob, assist.CodeForbidden},
		{"requester claims", "submitted", claim, colleague, assist.CodeForbidden},
		{"finance claims", "submitted", claim, fred, assist.CodeForbidden},
		{"admin claims", "submitted", claim, ada, assist.CodeForbidden},
		{"requester releases", "under_review", release, filer, assist.CodeForbidden},
		{"finance approves", "under_review", approve, fred, assist.CodeForbidden},
		{"requester approves", "under_review", approve, colleague, assist.CodeForbidden},
		{"auditor rejects", "under_review", reject, audrey, assist.CodeForbidden},
		{"requester requests info", "under_review", requestInfo, filer, assist.CodeForbidden},
		{"approver cancels payout", "disbursement_failed", cancel, bob, assist.CodeForbidden},
		{"system cancels payout", "disbursement_failed", cancel, system, assist.CodeForbidden},
		{"admin cancels payout", "disbursement_failed", cancel, ada, assist.CodeForbidden},
		{"approver closes", "disbursed", closeCase, bob, assist.CodeForbidden},
		{"requester closes", "disbursed", closeCase, filer, assist.CodeForbidden},
		{"system closes", "disbursed", closeCase, system, assist.CodeForbidden},
		{"admin closes", "disbursed", closeCase, ada, ok},
		{"finance closes", "disbursed", closeCase, fred, ok},

		// Requesters of another post.
		{"outsider submits for the post", "new", submit, outsider, assist.CodeForbidden},
		{"outsider amends", "submitted", amend, outsider, assist.CodeForbidden},
		{"outsider withdraws", "submitted", withdraw, outsider, assist.CodeForbidden},
		{"outsider provides info", "info_requested", provide, outsider, assist.CodeForbidden},
		{"requester without post withdraws", "submitted", withdraw, postless, assist.CodeForbidden},
		{"colleague at the post withdraws", "submitted", withdraw, colleague, ok},
		{"colleague at the post amends", "info_requested", amend, colleague, ok},

		// Four eyes: the filer never reviews her own request.
		{"filer with approver role claims", "submitted", claim, filerApprover, assist.CodeForbidden},
		{"filer with approver role approves", "under_review", approve, filerApprover, assist.CodeForbidden},
		{"filer with approver role rejects", "under_review", reject, filerApprover, assist.CodeForbidden},
		{"filer with approver role requests info", "under_review", requestInfo, filerApprover, assist.CodeForbidden},

		// Only the claim holder decides (bob holds a live claim).
		{"other approver approves", "under_review", approve, carol, assist.CodeConflict},
		{"other approver rejects", "under_review", reject, carol, assist.CodeConflict},
		{"other approver requests info", "under_review", requestInfo, carol, assist.CodeConflict},
		{"other approver releases", "under_review", release, carol, assist.CodeConflict},
		{"other approver claims", "under_review", claim, carol, assist.CodeConflict},
		{"holder claims again", "under_review", claim, bob, assist.CodeConflict},
		{"holder approves", "under_review", approve, bob, ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(caseIn(t, tt.row), tt.actor)
			if tt.want == ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantCode(t, err, tt.want)
		})
	}
}

// A claim runs out at ClaimExpiresAt: from then on its holder can no longer
// decide, and any other approver may take the case.
func TestExpiredClaim(t *testing.T) {
	h := caseIn(t, "under_review")
	claimedAt := h.now
	expires := claimedAt.Add(h.p.ClaimTTL)
	if !h.c.ClaimExpiresAt.Equal(expires) || h.c.ClaimedBy != "bob" {
		t.Fatalf("claim %s until %s, want bob until %s", h.c.ClaimedBy, h.c.ClaimExpiresAt, expires)
	}
	at := func(a assist.Actor, d time.Duration) assist.Cmd {
		return assist.Cmd{ID: "cmd-at-" + d.String() + "-" + a.Username, Actor: a, At: claimedAt.Add(d)}
	}

	if _, err := h.c.Approve(at(bob, h.p.ClaimTTL-time.Second), validApprove(), h.p); err != nil {
		t.Fatalf("holder approves a second before expiry: %v", err)
	}
	if _, err := h.c.Claim(at(carol, h.p.ClaimTTL-time.Second), h.p.ClaimTTL); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("other approver claims a live claim: %v, want conflict", err)
	}
	if _, err := h.c.Approve(at(bob, h.p.ClaimTTL), validApprove(), h.p); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("holder approves at expiry: %v, want conflict", err)
	}
	if _, err := h.c.Claim(at(filerApprover, h.p.ClaimTTL+time.Minute), h.p.ClaimTTL); !assist.IsCode(err, assist.CodeForbidden) {
		t.Fatalf("filer claims an expired claim: %v, want forbidden", err)
	}
	if e, err := h.c.Claim(at(bob, h.p.ClaimTTL+time.Minute), h.p.ClaimTTL); err != nil {
		t.Fatalf("holder renews his expired claim: %v", err)
	} else if want := claimedAt.Add(h.p.ClaimTTL + time.Minute + h.p.ClaimTTL); !e.Body.(assist.ReviewClaimed).ExpiresAt.Equal(want) {
		t.Fatalf("renewed until %v, want %v", e.Body, want)
	}

	// carol takes it over.
	take := at(carol, h.p.ClaimTTL+time.Minute)
	h.record(h.c.Claim(take, h.p.ClaimTTL))
	if h.c.ClaimedBy != "carol" || !h.c.ClaimExpiresAt.Equal(take.At.Add(h.p.ClaimTTL)) || h.c.State != assist.StateUnderReview {
		t.Fatalf("after take-over: %s until %s in %s", h.c.ClaimedBy, h.c.ClaimExpiresAt, h.c.State)
	}
	later := h.p.ClaimTTL + 2*time.Minute
	if _, err := h.c.Approve(at(bob, later), validApprove(), h.p); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("old holder approves: %v, want conflict", err)
	}
	if _, err := h.c.Reject(at(bob, later), "no"); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("old holder rejects: %v, want conflict", err)
	}
	if _, err := h.c.RequestInfo(at(bob, later), "why?"); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("old holder requests info: %v, want conflict", err)
	}
	if _, err := h.c.Release(at(bob, later)); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("old holder releases: %v, want conflict", err)
	}
	if _, err := h.c.Claim(at(bob, later), h.p.ClaimTTL); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("old holder claims back a live claim: %v, want conflict", err)
	}
	e, err := h.c.Approve(at(carol, later), validApprove(), h.p)
	if err != nil {
		t.Fatalf("new holder approves: %v", err)
	}
	h.record(e, nil)
	if h.c.ApprovedBy != "carol" || h.c.State != assist.StateApproved || h.c.ClaimedBy != "" {
		t.Fatalf("approved by %q in %s, claim %q", h.c.ApprovedBy, h.c.State, h.c.ClaimedBy)
	}

	// A holder whose claim ran out cannot release it either; it just lapses.
	h2 := caseIn(t, "under_review")
	if _, err := h2.c.Release(assist.Cmd{ID: "x", Actor: bob, At: h2.c.ClaimExpiresAt}); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("release after expiry: %v, want conflict", err)
	}
}

// fieldCase is one invalid input and the field it must be blamed on.
type fieldCase struct {
	name  string
	row   string
	do    func(h *history) error
	field string
	// msg, when set, must appear in the field's message.
	msg string
}

func runFieldCases(t *testing.T, tests []fieldCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(caseIn(t, tt.row))
			e := wantCode(t, err, assist.CodeInvalid)
			if len(e.Fields) != 1 || e.Fields[0].Field != tt.field {
				t.Fatalf("fields %+v, want only %q", e.Fields, tt.field)
			}
			if !strings.Contains(e.Fields[0].Message, tt.msg) {
				t.Fatalf("message %q does not contain %q", e.Fields[0].Message, tt.msg)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %q does not name %q", err, tt.field)
			}
		})
	}
}

func TestSubmitFields(t *testing.T) {
	submit := func(change func(in *assist.SubmitInput, a *assist.Actor), p assist.Policy) func(h *history) error {
		return func(h *history) error {
			in, a := validSubmit(), filer
			change(&in, &a)
			_, err := assist.Submit(assist.Cmd{ID: caseID, Actor: a, At: t0}, in, p)
			return err
		}
	}
	dp := assist.DefaultPolicy()
	generous := assist.DefaultPolicy()
	generous.CategoryCapsUSDCents[assist.Other] = 5_000_000 // above the case cap
	runFieldCases(t, []fieldCase{
		{"no post", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.Post = "" }, dp), "post", "required"},
		{"lower-case post", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.Post, a.Post = "kyiv", "kyiv" }, dp), "post", ""},
		{"post too long", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) {
			in.Post = strings.Repeat("A", assist.MaxPost+1)
			a.Post = in.Post
		}, dp), "post", "64"},
		{"no category", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.Category = "" }, dp), "category", "shelter"},
		{"unknown category", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.Category = "yacht" }, dp), "category", ""},
		{"no urgency", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.Urgency = "" }, dp), "urgency", "critical"},
		{"unknown urgency", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.Urgency = "whenever" }, dp), "urgency", ""},
		{"zero amount", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.AmountCents = 0 }, dp), "amount_usd_cents", "positive"},
		{"negative amount", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.AmountCents = -100 }, dp), "amount_usd_cents", "positive"},
		{"above the category cap", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) {
			in.Category, in.AmountCents = assist.Shelter, 500_001
		}, dp), "amount_usd_cents", "5,000.01 USD exceeds the category cap for shelter (5,000.00 USD)"},
		{"above the case cap", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) {
			in.Category, in.AmountCents = assist.Other, 2_000_001
		}, generous), "amount_usd_cents", "case cap (20,000.00 USD)"},
		{"blank justification", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.Justification = " \n\t" }, dp), "justification", "required"},
		{"justification too long", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) {
			in.Justification = strings.Repeat("é", assist.MaxJustification+1)
		}, dp), "justification", "4000"},
		{"justification not UTF-8", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.Justification = "ok \xff" }, dp), "justification", "UTF-8"},
		{"no beneficiary reference", "new", submit(func(in *assist.SubmitInput, a *assist.Actor) { in.BeneficiaryRefHash = nil }, dp), "beneficiary.reference", "required"},
	})
}

func TestSubmitLimitsAreInclusive(t *testing.T) {
	in := validSubmit()
	in.Category, in.AmountCents = assist.Shelter, 500_000
	in.Justification = strings.Repeat("é", assist.MaxJustification) // characters, not bytes
	in.Post = strings.Repeat("A", assist.MaxPost-2) + "-_"
	a := filer
	a.Post = in.Post
	e, err := assist.Submit(assist.Cmd{ID: caseID, Actor: a, At: t0}, in, assist.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Body.(assist.RequestSubmitted).Policy; got.CategoryCapUSDCents != 500_000 {
		t.Fatalf("policy seen %+v, want the shelter cap", got)
	}
}

func TestSubmitNamesEveryBadField(t *testing.T) {
	in := assist.SubmitInput{Post: "KYIV"}
	_, err := assist.Submit(assist.Cmd{ID: caseID, Actor: filer, At: t0}, in, assist.DefaultPolicy())
	e := wantCode(t, err, assist.CodeInvalid)
	var got []string
	for _, f := range e.Fields {
		got = append(got, f.Field)
	}
	want := []string{"category", "urgency", "amount_usd_cents", "justification", "beneficiary.reference"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fields %v, want %v", got, want)
	}
	if e.Message != "invalid "+strings.Join(want, ", ") {
		t.Fatalf("message %q", e.Message)
	}
}

func TestSubmitDeadlinePerUrgency(t *testing.T) {
	for _, tt := range []struct {
		u    assist.Urgency
		want time.Duration
	}{{assist.Critical, 4 * time.Hour}, {assist.Urgent, 24 * time.Hour}, {assist.Routine, 72 * time.Hour}} {
		in := validSubmit()
		in.Urgency = tt.u
		e, err := assist.Submit(assist.Cmd{ID: caseID, Actor: filer, At: t0}, in, assist.DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Body.(assist.RequestSubmitted).Deadline; !got.Equal(t0.Add(tt.want)) {
			t.Errorf("%s: deadline %v, want %v", tt.u, got, t0.Add(tt.want))
		}
	}
}

func TestAmendFields(t *testing.T) {
	amend := func(in assist.AmendInput) func(h *history) error {
		return func(h *history) error {
			_, err := h.c.Amend(h.cmd(filer), in, h.p)
			return err
		}
	}
	runFieldCases(t, []fieldCase{
		{"nothing to change", "submitted", amend(assist.AmendInput{}), "body", ""},
		{"only a reference hash", "submitted", amend(assist.AmendInput{BeneficiaryRefHash: []byte{1}}), "body", ""},
		{"amount above the cap", "submitted", amend(assist.AmendInput{AmountCents: ptr(int64(1_000_001))}),
			"amount_usd_cents", "category cap for medical (10,000.00 USD)"},
		{"zero amount", "info_requested", amend(assist.AmendInput{AmountCents: ptr(int64(0))}), "amount_usd_cents", "positive"},
		{"category whose cap the amount exceeds", "submitted", amend(assist.AmendInput{Category: ptr(assist.TravelDocuments)}),
			"category", "category cap for travel_documents (1,000.00 USD)"},
		{"unknown category", "submitted", amend(assist.AmendInput{Category: ptr(assist.Category("yacht"))}), "category", "must be one of"},
		{"unknown urgency", "submitted", amend(assist.AmendInput{Urgency: ptr(assist.Urgency("soonish"))}), "urgency", "must be one of"},
		{"blank justification", "submitted", amend(assist.AmendInput{Justification: ptr("  ")}), "justification", "required"},
		{"beneficiary without reference", "submitted", amend(assist.AmendInput{Beneficiary: &assist.Sealed{KeyID: "k2"}}),
			"beneficiary.reference", "required"},
	})
}

func TestAmendApplies(t *testing.T) {
	h := caseIn(t, "submitted")
	created := h.c.CreatedAt
	in := assist.AmendInput{
		Category:           ptr(assist.Shelter),
		Urgency:            ptr(assist.Critical),
		AmountCents:        ptr(int64(450_000)),
		Beneficiary:        &assist.Sealed{KeyID: "key-2", Ciphertext: []byte{8}},
		BeneficiaryRefHash: []byte{0xcc},
		PayeeID:            ptr("payee-shelter"),
	}
	cmd := h.cmd(colleague)
	e, err := h.c.Amend(cmd, in, h.p)
	if err != nil {
		t.Fatal(err)
	}
	want := assist.RequestAmended{Category: in.Category, Urgency: in.Urgency, AmountCents: in.AmountCents,
		Beneficiary: in.Beneficiary, BeneficiaryRefHash: in.BeneficiaryRefHash, PayeeID: in.PayeeID,
		Deadline: created.Add(4 * time.Hour), // from filing, not from the amendment
		Policy: assist.PolicySeen{Version: "default-1", CaseCapUSDCents: 2_000_000, CategoryCapUSDCents: 500_000,
			SecondApprovalAboveUSDCents: 500_000}}
	if !reflect.DeepEqual(e.Body, want) {
		t.Fatalf("body\n got %+v\nwant %+v", e.Body, want)
	}
	justification := h.c.Justification
	h.record(e, nil)
	c := h.c
	if c.Category != assist.Shelter || c.Urgency != assist.Critical || c.AmountCents != 450_000 ||
		c.Beneficiary.KeyID != "key-2" || !reflect.DeepEqual(c.BeneficiaryRefHash, []byte{0xcc}) ||
		c.PayeeID != "payee-shelter" || !c.Deadline.Equal(created.Add(4*time.Hour)) ||
		c.Justification != justification || c.State != assist.StateSubmitted || c.Requester != "alice" {
		t.Fatalf("amended case %+v", c)
	}
}

func TestReasonFields(t *testing.T) {
	long := strings.Repeat("x", assist.MaxReason+1)
	runFieldCases(t, []fieldCase{
		{"withdraw without reason", "submitted", func(h *history) error {
			_, err := h.c.Withdraw(h.cmd(filer), " ")
			return err
		}, "reason", "required"},
		{"withdraw with a too long reason", "submitted", func(h *history) error {
			_, err := h.c.Withdraw(h.cmd(filer), long)
			return err
		}, "reason", "2000"},
		{"withdraw with a reason not UTF-8", "submitted", func(h *history) error {
			_, err := h.c.Withdraw(h.cmd(filer), "\xc3\x28")
			return err
		}, "reason", "UTF-8"},
		{"provide no answer", "info_requested", func(h *history) error {
			_, err := h.c.ProvideInfo(h.cmd(filer), "")
			return err
		}, "answer", "required"},
		{"request info without question", "under_review", func(h *history) error {
			_, err := h.c.RequestInfo(h.cmd(bob), "")
			return err
		}, "question", "required"},
		{"reject without reason", "under_review", func(h *history) error {
			_, err := h.c.Reject(h.cmd(bob), "")
			return err
		}, "reason", "required"},
		{"cancel payout without reason", "disbursement_failed", func(h *history) error {
			_, err := h.c.CancelPayout(h.cmd(fred), "")
			return err
		}, "reason", "required"},
		{"close with a too long reason", "disbursed", func(h *history) error {
			_, err := h.c.Close(h.cmd(fred), long)
			return err
		}, "reason", "2000"},
	})
}

func TestApproveFields(t *testing.T) {
	approve := func(change func(in *assist.ApproveInput), p func(assist.Policy) assist.Policy) func(h *history) error {
		return func(h *history) error {
			in := validApprove()
			change(&in)
			pol := h.p
			if p != nil {
				pol = p(assist.DefaultPolicy())
			}
			_, err := h.c.Approve(h.cmd(bob), in, pol)
			return err
		}
	}
	lowerMedicalCap := func(p assist.Policy) assist.Policy {
		p.CategoryCapsUSDCents[assist.Medical] = 50_000
		return p
	}
	noPayee := func(h *history) error {
		in := validSubmit()
		in.PayeeID = ""
		h = newHistory(h.tb).submit(in).claim(bob)
		_, err := h.c.Approve(h.cmd(bob), validApprove(), h.p)
		return err
	}
	runFieldCases(t, []fieldCase{
		{"zero amount", "under_review", approve(func(in *assist.ApproveInput) { in.AmountCents = 0 }, nil), "amount_usd_cents", "positive"},
		{"negative amount", "under_review", approve(func(in *assist.ApproveInput) { in.AmountCents = -1 }, nil), "amount_usd_cents", "positive"},
		{"more than requested", "under_review", approve(func(in *assist.ApproveInput) { in.AmountCents = requested + 1 }, nil),
			"amount_usd_cents", "requested 1,200.00 USD"},
		{"above a cap lowered since filing", "under_review", approve(func(in *assist.ApproveInput) {}, lowerMedicalCap),
			"amount_usd_cents", "category cap for medical (500.00 USD)"},
		{"no fund", "under_review", approve(func(in *assist.ApproveInput) { in.FundID = "" }, nil), "fund_id", "required"},
		{"blank fund", "under_review", approve(func(in *assist.ApproveInput) { in.FundID = "  " }, nil), "fund_id", "required"},
		{"no hold", "under_review", approve(func(in *assist.ApproveInput) { in.HoldID = "" }, nil), "hold_id", "required"},
		{"note too long", "under_review", approve(func(in *assist.ApproveInput) { in.Note = strings.Repeat("n", assist.MaxNote+1) }, nil),
			"note", "2000"},
		{"no payee anywhere", "under_review", noPayee, "payee_id", "required"},
	})
}

func TestApproveAmountAndPayee(t *testing.T) {
	t.Run("the full amount", func(t *testing.T) {
		h := caseIn(t, "under_review")
		in := validApprove()
		in.AmountCents, in.Note = requested, ""
		h.record(h.c.Approve(h.cmd(bob), in, h.p))
		if h.c.ApprovedCents != requested || h.c.ApprovedBy != "bob" || h.c.FundID != fundID || h.c.HoldID != holdID {
			t.Fatalf("approved %+v", h.c)
		}
		if h.c.PayeeID != payee {
			t.Fatalf("payee %q, want the request's %q", h.c.PayeeID, payee)
		}
	})
	t.Run("a payee the request did not name", func(t *testing.T) {
		in := validSubmit()
		in.PayeeID = ""
		h := newHistory(t).submit(in).claim(bob)
		ap := validApprove()
		ap.PayeeID = "payee-chosen"
		e, err := h.c.Approve(h.cmd(bob), ap, h.p)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Body.(assist.RequestApproved).PayeeID; got != "payee-chosen" {
			t.Fatalf("event payee %q", got)
		}
		h.record(e, nil)
		if h.c.PayeeID != "payee-chosen" {
			t.Fatalf("case payee %q", h.c.PayeeID)
		}
	})
	t.Run("the approver overrides the payee", func(t *testing.T) {
		h := caseIn(t, "under_review")
		ap := validApprove()
		ap.PayeeID = "payee-other"
		h.record(h.c.Approve(h.cmd(bob), ap, h.p))
		if h.c.PayeeID != "payee-other" {
			t.Fatalf("case payee %q", h.c.PayeeID)
		}
		h.record(h.c.ReserveFunds(h.cmd(system), holdID, payoutID))
		e, err := h.c.SendPayout(h.cmd(system), payoutID, "p", 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Body.(assist.PayoutSent).PayeeID; got != "payee-other" {
			t.Fatalf("paid to %q, want the approved payee", got)
		}
	})
}

// A hold that expired went back to the fund: an approval can never use it.
func TestApproveRefusesReleasedHold(t *testing.T) {
	h := caseIn(t, "under_review")
	h.record(h.c.ExpireHold(h.cmd(system), holdID, fundID, approvedCents))
	if !reflect.DeepEqual(h.c.ReleasedHolds, []string{holdID}) {
		t.Fatalf("released holds %v", h.c.ReleasedHolds)
	}
	if h.c.State != assist.StateUnderReview || h.c.ClaimedBy != "bob" {
		t.Fatalf("an expired hold changed the review: %s by %s", h.c.State, h.c.ClaimedBy)
	}
	_, err := h.c.Approve(h.cmd(bob), validApprove(), h.p)
	wantCode(t, err, assist.CodeConflict)

	in := validApprove()
	in.HoldID = "hold-2"
	h.record(h.c.Approve(h.cmd(bob), in, h.p))
	if h.c.HoldID != "hold-2" || h.c.State != assist.StateApproved {
		t.Fatalf("approved with hold %q in %s", h.c.HoldID, h.c.State)
	}
}

// A hold goes back to its fund once only.
func TestExpireHoldTwice(t *testing.T) {
	h := caseIn(t, "under_review")
	h.record(h.c.ExpireHold(h.cmd(system), "hold-stale", fundID, 7_000))
	e, err := h.c.ExpireHold(h.cmd(system), "hold-stale", fundID, 7_000)
	wantCode(t, err, assist.CodeConflict)
	if e.Body != nil {
		t.Fatalf("event %+v", e)
	}
	h.record(h.c.ExpireHold(h.cmd(system), "hold-other", fundID, 7_000))
	if !reflect.DeepEqual(h.c.ReleasedHolds, []string{"hold-stale", "hold-other"}) {
		t.Fatalf("released holds %v", h.c.ReleasedHolds)
	}
}

// The hold backing the recorded approval cannot be expired.
func TestExpireHoldOfTheApproval(t *testing.T) {
	for _, row := range []string{"approved", "approved_reserved", "disbursing", "disbursed", "disbursement_failed", "closed"} {
		t.Run(row, func(t *testing.T) {
			h := caseIn(t, row)
			e, err := h.c.ExpireHold(h.cmd(system), holdID, fundID, approvedCents)
			wantCode(t, err, assist.CodeConflict)
			if e.Body != nil {
				t.Fatalf("event %+v", e)
			}
		})
	}
}

func TestPayoutIdentity(t *testing.T) {
	t.Run("reserve another hold", func(t *testing.T) {
		h := caseIn(t, "approved")
		_, err := h.c.ReserveFunds(h.cmd(system), "hold-9", payoutID)
		wantCode(t, err, assist.CodeConflict)
	})
	t.Run("reserve twice", func(t *testing.T) {
		h := caseIn(t, "approved_reserved")
		_, err := h.c.ReserveFunds(h.cmd(system), holdID, "payout-2")
		wantCode(t, err, assist.CodeConflict)
	})
	t.Run("send another payout", func(t *testing.T) {
		h := caseIn(t, "approved_reserved")
		_, err := h.c.SendPayout(h.cmd(system), "payout-2", "p", 1)
		wantCode(t, err, assist.CodeConflict)
	})
	t.Run("send before reserving", func(t *testing.T) {
		h := caseIn(t, "approved")
		_, err := h.c.SendPayout(h.cmd(system), payoutID, "p", 1)
		wantCode(t, err, assist.CodeConflict)
	})
	t.Run("send with no payout id before reserving", func(t *testing.T) {
		// SendPayout documents "CodeConflict unless funds are reserved for
		// this payout". Before ReserveFunds the case's PayoutID is "", so a
		// payout id of "" matches it.
		h := caseIn(t, "approved")
		_, err := h.c.SendPayout(h.cmd(system), "", "p", 1)
		wantCode(t, err, assist.CodeConflict)
	})
	t.Run("settle another payout", func(t *testing.T) {
		h := caseIn(t, "disbursing")
		_, err := h.c.SettlePayout(h.cmd(system), "payout-2", "p")
		wantCode(t, err, assist.CodeConflict)
	})
	t.Run("fail another payout", func(t *testing.T) {
		h := caseIn(t, "disbursing")
		_, err := h.c.FailPayout(h.cmd(system), "payout-2", "x", 1)
		wantCode(t, err, assist.CodeConflict)
	})
}

// A failed payout is retried until it settles, and the case then closes.
func TestPayoutRetry(t *testing.T) {
	h := caseIn(t, "disbursement_failed")
	h.record(h.c.SendPayout(h.cmd(system), payoutID, "prov-2", 2))
	h.record(h.c.FailPayout(h.cmd(system), payoutID, "again", 2))
	h.record(h.c.SendPayout(h.cmd(system), payoutID, "prov-3", 3))
	h.record(h.c.SettlePayout(h.cmd(system), payoutID, "prov-3"))
	h.record(h.c.Close(h.cmd(ada), ""))
	if h.c.State != assist.StateClosed || h.c.PayoutID != payoutID || h.c.ApprovedCents != approvedCents {
		t.Fatalf("case %+v", h.c)
	}
	if len(h.c.ReleasedHolds) != 0 {
		t.Fatalf("a paid case released holds %v", h.c.ReleasedHolds)
	}
}

// Cancelling a failed payout returns the approval's hold and closes the case.
func TestCancelPayout(t *testing.T) {
	h := caseIn(t, "disbursement_failed")
	h.record(h.c.CancelPayout(h.cmd(fred), "payee cannot be paid"))
	if h.c.State != assist.StateClosed || !reflect.DeepEqual(h.c.ReleasedHolds, []string{holdID}) {
		t.Fatalf("after cancel: %s, released %v", h.c.State, h.c.ReleasedHolds)
	}
	_, err := h.c.SendPayout(h.cmd(system), payoutID, "p", 3)
	wantCode(t, err, assist.CodeConflict)
}

func TestStateOpen(t *testing.T) {
	open := map[assist.State]bool{assist.StateSubmitted: true, assist.StateUnderReview: true,
		assist.StateInfoRequested: true, assist.StateAwaitingSecondApproval: true}
	for _, s := range append([]assist.State{assist.StateNone}, assist.States...) {
		if s.Open() != open[s] {
			t.Errorf("%q.Open() = %v", s, s.Open())
		}
	}
}

// Four eyes over the whole case (issue 7's bypass): a user who is both
// requester and approver at a post amends a colleague's request upwards,
// then tries to claim and approve it. Neither is allowed, and the problem
// names the rule. Answering a question on a request counts as writing it
// too; an approver who never wrote it reviews as before.
func TestFourEyesCoverEveryAuthor(t *testing.T) {
	// dual is colleague anna, who is also an approver at KYIV.
	dualRequester := colleague
	dualApprover := assist.Actor{Username: colleague.Username, Role: assist.RoleApprover, Post: colleague.Post}

	h := newHistory(t).submit(validSubmit())
	more := requested + 50_000
	h.record(h.c.Amend(h.cmd(dualRequester), assist.AmendInput{AmountCents: &more}, h.p))
	if want := []string{filer.Username, dualRequester.Username}; !slices.Equal(h.c.Authors, want) {
		t.Fatalf("authors %v, want %v", h.c.Authors, want)
	}

	_, err := h.c.Claim(h.cmd(dualApprover), h.p.ClaimTTL)
	e := wantCode(t, err, assist.CodeForbidden)
	if !strings.Contains(e.Message, "four-eyes rule") || !strings.Contains(e.Message, "amended") {
		t.Fatalf("claim refused with %q, want the four-eyes rule and what the user did", e.Message)
	}

	// Even holding a claim (taken before the amendment, say), the amender
	// cannot decide: the rule is checked at every review step.
	h.c.State, h.c.ClaimedBy, h.c.ClaimExpiresAt = assist.StateUnderReview, dualApprover.Username, h.now.Add(time.Hour)
	_, err = h.c.Approve(h.cmd(dualApprover), validApprove(), h.p)
	if e := wantCode(t, err, assist.CodeForbidden); !strings.Contains(e.Message, "four-eyes rule") {
		t.Fatalf("approve refused with %q, want the four-eyes rule", e.Message)
	}
	for name, do := range map[string]func(assist.Cmd) (assist.Event, error){
		"reject":       func(c assist.Cmd) (assist.Event, error) { return h.c.Reject(c, "no") },
		"request info": func(c assist.Cmd) (assist.Event, error) { return h.c.RequestInfo(c, "why?") },
	} {
		if _, err := do(h.cmd(dualApprover)); !assist.IsCode(err, assist.CodeForbidden) {
			t.Errorf("%s by the amender: %v, want forbidden", name, err)
		}
	}

	// Someone who answered a question wrote the case as well.
	q := caseIn(t, "info_requested")
	q.record(q.c.ProvideInfo(q.cmd(dualRequester), "St. Luke's; the estimate is attached."))
	if _, err := q.c.Claim(q.cmd(dualApprover), q.p.ClaimTTL); !assist.IsCode(err, assist.CodeForbidden) {
		t.Fatalf("claim by the user who answered: %v, want forbidden", err)
	}
	if _, err := q.c.Claim(q.cmd(carol), q.p.ClaimTTL); err != nil {
		t.Fatalf("claim by an approver who never wrote the case: %v", err)
	}
}
