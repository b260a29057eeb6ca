package assist_test

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
)

// sampleBodies has one body of every event type, with every field set.
func sampleBodies() []assist.Body {
	return []assist.Body{
		assist.RequestSubmitted{Post: "LIMA", Category: assist.Shelter, Urgency: assist.Critical, AmountCents: 9_900,
			Justification: "j", Beneficiary: assist.Sealed{KeyID: "k9", Ciphertext: []byte{9}},
			BeneficiaryRefHash: []byte{9}, PayeeID: "payee-9", Deadline: t0.Add(time.Hour),
			Policy: assist.PolicySeen{Version: "v9"}, IdempotencyKeyHash: []byte{9}},
		assist.RequestAmended{Category: ptr(assist.FoodBasicNeeds), Urgency: ptr(assist.Routine), AmountCents: ptr(int64(77)),
			Justification: ptr("amended"), Beneficiary: &assist.Sealed{KeyID: "k8"}, BeneficiaryRefHash: []byte{8},
			PayeeID: ptr("payee-8"), Deadline: t0.Add(2 * time.Hour)},
		assist.RequestWithdrawn{},
		assist.InfoRequested{Question: "q?"},
		assist.InfoProvided{Answer: "a."},
		assist.ReviewClaimed{ExpiresAt: t0.Add(3 * time.Hour)},
		assist.ReviewReleased{Expired: true},
		assist.RequestApproved{AmountCents: 55, FundID: "fund-9", HoldID: "hold-9", PayeeID: "payee-7", Note: "n",
			FundAvailableCents: 1},
		assist.RequestRejected{},
		assist.FundsReserved{HoldID: "hold-9", FundID: "fund-9", AmountCents: 55, PayoutID: "payout-9"},
		assist.FundsReleased{HoldID: "hold-8", FundID: "fund-8", AmountCents: 5, Cause: assist.ReleaseHoldExpired},
		assist.PayoutSent{PayoutID: "payout-9", PayeeID: "payee-7", AmountCents: 55, ProviderRef: "r", Attempt: 4},
		assist.PayoutSettled{PayoutID: "payout-9", ProviderRef: "r"},
		assist.PayoutFailed{PayoutID: "payout-9", Error: "e", Attempt: 4},
		assist.RequestClosed{},
		assist.PayoutRetried{PayoutID: "payout-9", Attempt: 5},
		assist.DeadlineMissed{Deadline: t0.Add(4 * time.Hour)},
		assist.DeadlineWarning{Deadline: t0.Add(4 * time.Hour)},
		assist.ClaimExpired{ClaimedBy: "olu", ExpiresAt: t0.Add(3 * time.Hour)},
		assist.PolicyChanged{Policy: assist.DefaultPolicy()},
		assist.FundCreated{Name: "F", AllocatedCents: 100},
		assist.PayeeCreated{Name: "P", Account: "A-1"},
		assist.PayeeAccountChanged{Account: "A-2", Previous: "A-1"},
		assist.FundAllocationChanged{AllocatedCents: 80, PreviousCents: 100, HoldID: "hold-cut"},
		assist.PersonalDataErased{KeyID: "k9"},
		assist.UserCreated{Username: "nia", Roles: []string{"requester"}, Posts: []string{"KEN-NAIROBI"}},
		assist.UserChanged{Username: "nia", Roles: []string{"auditor"}, Disabled: true},
		assist.WebhookRegistered{URL: "https://example.org/hook", Events: []string{"RequestApproved"},
			Secret: assist.Sealed{KeyID: "wh-1", Ciphertext: []byte{7}}, SecretKey: []byte{6}},
		assist.WebhookRemoved{},
	}
}

func TestSampleBodiesCoverEveryEventType(t *testing.T) {
	var got []string
	for _, b := range sampleBodies() {
		got = append(got, b.Type())
		if (assist.Event{Body: b}).Type() != b.Type() {
			t.Errorf("Event.Type of %T", b)
		}
	}
	if !reflect.DeepEqual(got, assist.EventTypes) {
		t.Fatalf("types %v,\nEventTypes %v", got, assist.EventTypes)
	}
	if (assist.Event{}).Type() != "" {
		t.Fatalf("an event without body has type %q", (assist.Event{}).Type())
	}
}

// Apply never fails: every event, even one that makes no sense in the
// case's state, applies, and the bookkeeping always moves.
func TestApplyIsTotal(t *testing.T) {
	bodies := append(sampleBodies(), nil, assist.FundsReleased{HoldID: "h", Cause: assist.ReleasePayoutCancelled},
		assist.FundsReleased{Cause: assist.ReleaseCause(99)})
	for _, row := range rows() {
		for _, b := range bodies {
			name := "nil"
			if b != nil {
				name = b.Type()
			}
			t.Run(row+"/"+name, func(t *testing.T) {
				h := caseIn(t, row)
				before := *h.c
				at := t0.Add(48 * time.Hour)
				e := assist.Event{ID: "ev-x", CaseID: "other-case", At: at, Actor: carol, CommandID: "ev-x", Body: b}
				h.c.Apply(e, 999)
				if h.c.Version != 999 || h.c.Events != before.Events+1 || !h.c.UpdatedAt.Equal(at) {
					t.Fatalf("version %d events %d updated %v; before: events %d",
						h.c.Version, h.c.Events, h.c.UpdatedAt, before.Events)
				}
				wantID := before.ID
				if wantID == "" {
					wantID = "other-case"
				}
				if h.c.ID != wantID {
					t.Fatalf("id %q, want %q", h.c.ID, wantID)
				}
			})
		}
	}
}

// What each event does to a case under review.
func TestApplyEffects(t *testing.T) {
	at := t0.Add(time.Hour)
	tests := []struct {
		body  assist.Body
		check func(t *testing.T, before, c assist.Case)
	}{
		{assist.RequestSubmitted{Post: "LIMA", Category: assist.Shelter, Urgency: assist.Critical, AmountCents: 1,
			Justification: "j", PayeeID: "p", Deadline: at}, func(t *testing.T, _, c assist.Case) {
			if c.State != assist.StateSubmitted || c.Requester != "carol" || c.Post != "LIMA" || c.Category != assist.Shelter ||
				c.AmountCents != 1 || !c.CreatedAt.Equal(at) || !c.Deadline.Equal(at) {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.RequestAmended{}, func(t *testing.T, before, c assist.Case) {
			// The amender is remembered as an amender and an author:
			// never their case to review.
			before.Amenders = []string{carol.Username}
			before.Authors = append(slices.Clone(before.Authors), carol.Username)
			sameExceptBookkeeping(t, before, c)
		}},
		{assist.RequestWithdrawn{}, func(t *testing.T, _, c assist.Case) {
			wantStateNoClaim(t, c, assist.StateWithdrawn)
		}},
		{assist.InfoRequested{Question: "q?"}, func(t *testing.T, _, c assist.Case) {
			wantStateNoClaim(t, c, assist.StateInfoRequested)
			if c.Question != "q?" {
				t.Fatalf("question %q", c.Question)
			}
		}},
		{assist.ReviewClaimed{ExpiresAt: at}, func(t *testing.T, _, c assist.Case) {
			if c.State != assist.StateUnderReview || c.ClaimedBy != "carol" || !c.ClaimExpiresAt.Equal(at) {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.ReviewReleased{Expired: true}, func(t *testing.T, _, c assist.Case) {
			wantStateNoClaim(t, c, assist.StateSubmitted)
		}},
		{assist.RequestApproved{AmountCents: 5, FundID: "f", HoldID: "h"}, func(t *testing.T, before, c assist.Case) {
			wantStateNoClaim(t, c, assist.StateApproved)
			if c.ApprovedCents != 5 || c.ApprovedBy != "carol" || c.FundID != "f" || c.HoldID != "h" || c.PayeeID != before.PayeeID {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.RequestRejected{}, func(t *testing.T, _, c assist.Case) {
			wantStateNoClaim(t, c, assist.StateRejected)
		}},
		{assist.FundsReserved{PayoutID: "po"}, func(t *testing.T, before, c assist.Case) {
			if c.PayoutID != "po" || c.State != before.State {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.FundsReleased{HoldID: "h1", Cause: assist.ReleaseHoldExpired}, func(t *testing.T, before, c assist.Case) {
			if c.State != before.State || c.ClaimedBy != before.ClaimedBy || !slices.Equal(c.ReleasedHolds, []string{"h1"}) {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.FundsReleased{HoldID: "h2", Cause: assist.ReleasePayoutCancelled}, func(t *testing.T, _, c assist.Case) {
			if c.State != assist.StateClosed || !slices.Equal(c.ReleasedHolds, []string{"h2"}) {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.PayoutSent{PayoutID: "po"}, func(t *testing.T, _, c assist.Case) {
			if c.State != assist.StateDisbursing || c.PayoutID != "po" {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.PayoutSettled{PayoutID: "po"}, func(t *testing.T, _, c assist.Case) {
			if c.State != assist.StateDisbursed {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.PayoutFailed{PayoutID: "po"}, func(t *testing.T, _, c assist.Case) {
			if c.State != assist.StateDisbursementFailed {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.PayoutRetried{PayoutID: "po", Attempt: 2}, func(t *testing.T, _, c assist.Case) {
			if c.State != assist.StateApproved || c.PayoutAttempt != 2 {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.RequestClosed{}, func(t *testing.T, _, c assist.Case) {
			if c.State != assist.StateClosed {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.DeadlineMissed{}, func(t *testing.T, before, c assist.Case) {
			if !c.Escalated || c.State != before.State || c.ClaimedBy != before.ClaimedBy {
				t.Fatalf("escalated %v, state %s (was %s): want escalated, nothing else changed", c.Escalated, c.State, before.State)
			}
		}},
		{assist.DeadlineWarning{}, func(t *testing.T, before, c assist.Case) {
			if !c.Warned || c.Escalated != before.Escalated || c.State != before.State || c.ClaimedBy != before.ClaimedBy {
				t.Fatalf("warned %v, state %s (was %s): want warned, nothing else changed", c.Warned, c.State, before.State)
			}
		}},
		{assist.ClaimExpired{}, func(t *testing.T, _, c assist.Case) {
			if c.State != assist.StateSubmitted || c.ClaimedBy != "" || !c.ClaimExpiresAt.IsZero() {
				t.Fatalf("%+v", c)
			}
		}},
		{assist.PersonalDataErased{KeyID: "key-1"}, func(t *testing.T, before, c assist.Case) {
			// The sealed data and the reference hash are forgotten; the
			// key id stays (it opens nothing); nothing else changes.
			if !c.PersonalDataErased || c.Beneficiary.KeyID != before.Beneficiary.KeyID || c.Beneficiary.Ciphertext != nil ||
				c.BeneficiaryRefHash != nil {
				t.Fatalf("%+v", c)
			}
			before.PersonalDataErased, before.Beneficiary.Ciphertext, before.BeneficiaryRefHash = true, nil, nil
			sameExceptBookkeeping(t, before, c)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.body.Type(), func(t *testing.T) {
			h := caseIn(t, "under_review")
			before := *h.c
			h.c.Apply(assist.Event{ID: "e", CaseID: caseID, At: at, Actor: carol, Body: tt.body}, 500)
			tt.check(t, before, *h.c)
		})
	}
}

func TestApplyInfoProvidedClearsQuestion(t *testing.T) {
	h := caseIn(t, "info_requested")
	if h.c.Question == "" {
		t.Fatal("no question recorded")
	}
	h.record(h.c.ProvideInfo(h.cmd(filer), "answer"))
	if h.c.Question != "" || h.c.State != assist.StateSubmitted {
		t.Fatalf("question %q in %s", h.c.Question, h.c.State)
	}
}

// An amendment changes the fields it names and nothing else.
func TestApplyAmendedChangesOnlyNamedFields(t *testing.T) {
	h := caseIn(t, "submitted")
	before := *h.c
	h.c.Apply(assist.Event{ID: "e", CaseID: caseID, At: before.UpdatedAt, Body: assist.RequestAmended{
		BeneficiaryRefHash: []byte{}, Policy: assist.PolicySeen{Version: "v2"}}}, before.Version+1)
	sameExceptBookkeeping(t, before, *h.c)

	h.c.Apply(assist.Event{ID: "e2", CaseID: caseID, At: before.UpdatedAt, Body: assist.RequestAmended{
		Justification: ptr("changed"), AmountCents: ptr(int64(42))}}, before.Version+2)
	want := before
	want.Justification, want.AmountCents = "changed", 42
	sameExceptBookkeeping(t, want, *h.c)
}

func sameExceptBookkeeping(tb testing.TB, want, got assist.Case) {
	tb.Helper()
	got.Version, got.Events, got.UpdatedAt = want.Version, want.Events, want.UpdatedAt
	if !reflect.DeepEqual(got, want) {
		tb.Fatalf("case\n got %+v\nwant %+v", got, want)
	}
}

func wantStateNoClaim(tb testing.TB, c assist.Case, s assist.State) {
	tb.Helper()
	if c.State != s || c.ClaimedBy != "" || !c.ClaimExpiresAt.IsZero() {
		tb.Fatalf("state %s, claim %q until %v; want %s and no claim", c.State, c.ClaimedBy, c.ClaimExpiresAt, s)
	}
}

func TestFoldEmpty(t *testing.T) {
	if c := assist.Fold(nil); c != nil {
		t.Fatalf("Fold(nil) = %+v", c)
	}
	if c := assist.Fold([]assist.Recorded{}); c != nil {
		t.Fatalf("Fold(empty) = %+v", c)
	}
}

// Folding a history gives the case its transitions built step by step, and
// every prefix gives the case as of that moment.
func TestFoldEqualsSequentialApply(t *testing.T) {
	for _, row := range rows() {
		if row == "new" || row == string(assist.StateAwaitingSecondApproval) {
			continue // no events, or not reachable by events
		}
		t.Run(row, func(t *testing.T) {
			h := caseIn(t, row)
			if got := assist.Fold(h.events); !reflect.DeepEqual(got, h.c) {
				t.Fatalf("fold\n got %+v\nwant %+v", got, h.c)
			}
			last := h.events[len(h.events)-1]
			if h.c.Version != last.Seq || h.c.Events != len(h.events) || !h.c.UpdatedAt.Equal(last.Event.At) {
				t.Fatalf("version %d events %d updated %v", h.c.Version, h.c.Events, h.c.UpdatedAt)
			}
			c := &assist.Case{}
			for i, r := range h.events {
				c.Apply(r.Event, r.Seq)
				if got := assist.Fold(h.events[:i+1]); !reflect.DeepEqual(got, c) {
					t.Fatalf("prefix %d\n got %+v\nwant %+v", i+1, got, c)
				}
			}
		})
	}
}

// Every state of States is reached by real events, except the one no
// transition leads to yet.
func TestEveryStateIsReachable(t *testing.T) {
	for _, s := range assist.States {
		h := caseIn(t, string(s))
		if h.c.State != s {
			t.Errorf("caseIn(%s) is %s", s, h.c.State)
		}
		if s == assist.StateAwaitingSecondApproval {
			continue
		}
		if got := assist.Fold(h.events); got.State != s {
			t.Errorf("fold of the %s history is %s", s, got.State)
		}
	}
}

func TestFoldThrough(t *testing.T) {
	h := caseIn(t, "under_review")
	recs := h.events
	claim := recs[len(recs)-1].Event.CommandID
	if c := assist.FoldThrough(recs, claim); c == nil || c.State != assist.StateUnderReview || c.Events != len(recs) {
		t.Fatalf("through the claim: %+v", c)
	}
	if c := assist.FoldThrough(recs, recs[0].Event.CommandID); c == nil || c.State != assist.StateSubmitted || c.Events != 1 {
		t.Fatalf("through the filing: %+v", c)
	}
	if c := assist.FoldThrough(recs, "no such command"); c != nil {
		t.Fatalf("unknown command: %+v", c)
	}
	if c := assist.FoldThrough(recs, ""); c != nil {
		t.Fatalf("empty command: %+v", c)
	}
}
