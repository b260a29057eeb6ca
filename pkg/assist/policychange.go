package assist

import (
	"maps"
	"slices"
	"strconv"
	"time"
)

// PolicyID names the one policy of an installation: its events are on
// eva.policy.<PolicyID>.PolicyChanged.
const PolicyID = "00000000-0000-7000-8000-000000000001"

// MinPolicyDuration is the shortest deadline or claim lease a policy may
// set.
const MinPolicyDuration = time.Second

// PolicyChanged is a new version of the policy, whole. Decisions taken
// before it keep the version they record.
type PolicyChanged struct{ Policy Policy }

// Type implements Body.
func (PolicyChanged) Type() string { return "PolicyChanged" }

// Kind says the event is about the policy.
func (PolicyChanged) Kind() Kind { return KindPolicy }

func (PolicyChanged) isBody() {}

// TypeKind is the kind of the things an event type is about: the policy
// for PolicyChanged, a fund or a payee for theirs (money.go), a user for
// UserEventTypes, a webhook for theirs (webhook.go), a case for the others
// of EventTypes.
func TypeKind(typ string) Kind {
	for _, b := range []interface {
		Body
		Kind() Kind
	}{PolicyChanged{}, FundCreated{}, PayeeCreated{}, PayeeAccountChanged{}, FundAllocationChanged{}, UserCreated{}, UserChanged{},
		WebhookRegistered{}, WebhookRemoved{}} {
		if b.Type() == typ {
			return b.Kind()
		}
	}
	return KindCase
}

// PolicyVersion is one version of the policy as its history keeps it.
type PolicyVersion struct {
	Policy Policy
	// By and At: who changed it, when; zero for the initial policy.
	By Actor
	At time.Time
}

// PolicyHistory folds the policy's events: the initial policy, then one
// version per PolicyChanged. The last is the one in force.
func PolicyHistory(initial Policy, recs []Recorded) []PolicyVersion {
	out := []PolicyVersion{{Policy: initial}}
	for _, r := range recs {
		if b, ok := r.Event.Body.(PolicyChanged); ok {
			out = append(out, PolicyVersion{Policy: b.Policy, By: r.Event.Actor, At: r.Event.At})
		}
	}
	return out
}

// ChangePolicy makes in the policy's next version after current (the
// version in force, the last of its history, which has n versions).
//
// Errors: CodeForbidden for anyone but an admin, CodeInvalid naming each
// bad field: a negative or zero cap, a cap of an unknown category, a
// deadline for an unknown urgency or missing for one, a duration under
// MinPolicyDuration, a negative threshold.
func ChangePolicy(cmd Cmd, n int, in Policy) (Event, error) {
	if cmd.Actor.Role != RoleAdmin {
		return Event{}, Errorf(CodeForbidden, "only an admin changes the policy")
	}
	var probs Problems
	if in.CaseCapUSDCents <= 0 {
		probs.Add("case_cap_usd_cents", "must be a positive number of cents")
	}
	for _, c := range slices.Sorted(maps.Keys(in.CategoryCapsUSDCents)) {
		switch {
		case !slices.Contains(Categories, c):
			probs.Add("caps_usd_cents."+string(c), "is not a category; categories are %s", joinOf(Categories))
		case in.CategoryCapsUSDCents[c] <= 0:
			probs.Add("caps_usd_cents."+string(c), "must be a positive number of cents")
		}
	}
	for _, u := range slices.Sorted(maps.Keys(in.Deadlines)) {
		if !slices.Contains(Urgencies, u) {
			probs.Add("deadlines."+string(u), "is not an urgency; urgencies are %s", joinOf(Urgencies))
		}
	}
	for _, u := range Urgencies {
		d, ok := in.Deadlines[u]
		switch {
		case !ok:
			probs.Add("deadlines."+string(u), "is required")
		case d < MinPolicyDuration:
			probs.Add("deadlines."+string(u), "must be at least %s", MinPolicyDuration)
		}
	}
	if in.ClaimTTL < MinPolicyDuration {
		probs.Add("claim_ttl", "must be at least %s", MinPolicyDuration)
	}
	if in.SecondApprovalAboveUSDCents < 0 {
		probs.Add("second_approval_above_usd_cents", "must not be negative")
	}
	if err := probs.Err(); err != nil {
		return Event{}, err
	}
	in.Version = strconv.Itoa(n + 1)
	return cmd.event(PolicyID, "", PolicyChanged{Policy: in}), nil
}
