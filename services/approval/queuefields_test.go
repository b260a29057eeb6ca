package approval_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/approval"
)

// sampleBody is an event body of type typ with every field set from r.
func sampleBody(r *rand.Rand, typ string) assist.Body {
	str := func(prefix string) string { return fmt.Sprintf("%s-%d", prefix, r.IntN(1000)) }
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.Int64N(int64(90 * 24 * time.Hour))))
	cat := assist.Categories[r.IntN(len(assist.Categories))]
	urg := assist.Urgencies[r.IntN(len(assist.Urgencies))]
	cents := r.Int64N(1_000_000) + 1
	sealed := assist.Sealed{KeyID: str("key"), Ciphertext: []byte(str("ct"))}
	ref := []byte(str("ref"))
	switch typ {
	case "RequestSubmitted":
		return assist.RequestSubmitted{Post: str("POST"), Category: cat, Urgency: urg, AmountCents: cents,
			Justification: str("why"), Beneficiary: sealed, BeneficiaryRefHash: ref, PayeeID: str("payee"), Deadline: at}
	case "RequestAmended":
		j, p := str("why"), str("payee")
		return assist.RequestAmended{Category: &cat, Urgency: &urg, AmountCents: &cents, Justification: &j,
			Beneficiary: &sealed, BeneficiaryRefHash: ref, PayeeID: &p, Deadline: at}
	case "RequestWithdrawn":
		return assist.RequestWithdrawn{}
	case "InfoRequested":
		return assist.InfoRequested{Question: str("q")}
	case "InfoProvided":
		return assist.InfoProvided{Answer: str("a")}
	case "ReviewClaimed":
		return assist.ReviewClaimed{ExpiresAt: at}
	case "ReviewReleased":
		return assist.ReviewReleased{Expired: r.IntN(2) == 0}
	case "RequestApproved":
		return assist.RequestApproved{AmountCents: cents, FundID: str("fund"), HoldID: str("hold"), PayeeID: str("payee"),
			Note: str("n"), FundAvailableCents: cents}
	case "RequestRejected":
		return assist.RequestRejected{}
	case "FundsReserved":
		return assist.FundsReserved{HoldID: str("hold"), FundID: str("fund"), AmountCents: cents, PayoutID: str("payout")}
	case "FundsReleased":
		return assist.FundsReleased{HoldID: str("hold"), FundID: str("fund"), AmountCents: cents,
			Cause: assist.ReleaseCause(r.IntN(3))}
	case "PayoutSent":
		return assist.PayoutSent{PayoutID: str("payout"), PayeeID: str("payee"), AmountCents: cents, ProviderRef: str("ref"), Attempt: 1}
	case "PayoutSettled":
		return assist.PayoutSettled{PayoutID: str("payout"), ProviderRef: str("ref")}
	case "PayoutFailed":
		return assist.PayoutFailed{PayoutID: str("payout"), Error: str("e"), Attempt: 1}
	case "RequestClosed":
		return assist.RequestClosed{}
	case "PayoutRetried":
		return assist.PayoutRetried{PayoutID: str("payout"), Attempt: 2}
	case "DeadlineMissed":
		return assist.DeadlineMissed{Deadline: at}
	case "DeadlineWarning":
		return assist.DeadlineWarning{Deadline: at}
	case "ClaimExpired":
		return assist.ClaimExpired{ClaimedBy: str("olu"), ExpiresAt: at}
	case "PersonalDataErased":
		return assist.PersonalDataErased{KeyID: str("key")}
	}
	return nil
}

// The queue folds events into its part of a case alone: for any sequence
// of events of any types, folding each into QueueFields of the previous
// step gives QueueFields of the whole fold. Every event type of a case
// takes part (the policy's, funds', payees', users' and webhooks' are
// about other things).
func TestQueueFieldsFoldAlone(t *testing.T) {
	var types []string
	for _, typ := range assist.EventTypes {
		if assist.TypeKind(typ) == assist.KindCase {
			types = append(types, typ)
		}
	}
	for _, typ := range types {
		if b := sampleBody(rand.New(rand.NewPCG(1, 1)), typ); b == nil || b.Type() != typ {
			t.Fatalf("no sample body for event type %s: add one to sampleBody", typ)
		}
	}
	for seed := range uint64(500) {
		r := rand.New(rand.NewPCG(seed, 7))
		id := newID()
		full, part := &assist.Case{}, (*assist.Case)(nil)
		var seen []string
		for i := range 1 + r.IntN(25) {
			typ := types[r.IntN(len(types))]
			if i == 0 {
				typ = "RequestSubmitted"
			}
			seen = append(seen, typ)
			e := assist.Event{ID: newID(), CaseID: id, At: time.Unix(1_800_000_000+int64(i), int64(r.IntN(1e9))).UTC(),
				Actor: assist.Actor{Username: "u", Role: assist.RoleApprover}, Body: sampleBody(r, typ)}
			full.Apply(e, uint64(i+1))
			if part == nil {
				part = &assist.Case{}
			}
			part.Apply(e, uint64(i+1))
			part = approval.QueueFields(part)
		}
		if want := approval.QueueFields(full); !reflect.DeepEqual(part, want) {
			t.Fatalf("seed %d, events %v:\nqueue folded alone %+v\nwant the queue's part of the fold %+v", seed, slices.Compact(seen), part, want)
		}
	}
}
