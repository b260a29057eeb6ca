package approval

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/approval/approvalapi"
)

// Policy is the policy in force.
//
// Errors: CodeUnavailable, CodeInternal.
func (s *Service) Policy(ctx context.Context, _ approvalapi.PolicyRequest) (approvalapi.PolicyVersion, error) {
	h, err := s.policy.History(ctx)
	if err != nil {
		return approvalapi.PolicyVersion{}, err
	}
	return toPolicyVersion(h[len(h)-1]), nil
}

// PolicyHistory is every version of the policy, the initial one first.
//
// Errors: CodeUnavailable, CodeInternal.
func (s *Service) PolicyHistory(ctx context.Context, _ approvalapi.PolicyRequest) (approvalapi.PolicyHistoryPage, error) {
	h, err := s.policy.History(ctx)
	if err != nil {
		return approvalapi.PolicyHistoryPage{}, err
	}
	page := approvalapi.PolicyHistoryPage{Items: make([]approvalapi.PolicyVersion, len(h))}
	for i, v := range h {
		page.Items[i] = toPolicyVersion(v)
	}
	return page, nil
}

// ChangePolicy sets the next version of the policy: the event
// PolicyChanged, with its actor. Cases already filed and decisions already
// taken keep the version they record.
//
// Errors: CodeForbidden unless an admin, CodeInvalid naming each bad field
// (a duration that does not parse among them), CodeConflict after losing
// races, CodeUnavailable.
func (s *Service) ChangePolicy(ctx context.Context, r approvalapi.ChangePolicyRequest) (approvalapi.PolicyVersion, error) {
	if r.Actor.Role != assist.RoleAdmin {
		return approvalapi.PolicyVersion{}, assist.Errorf(assist.CodeForbidden, "only an admin changes the policy")
	}
	p, err := fromPolicyDoc(r.Policy)
	if err != nil {
		return approvalapi.PolicyVersion{}, err
	}
	v, err := s.policy.Change(ctx, r.CommandID, r.Actor, s.now(), p)
	if err != nil {
		return approvalapi.PolicyVersion{}, err
	}
	return toPolicyVersion(v), nil
}

func toPolicyVersion(v assist.PolicyVersion) approvalapi.PolicyVersion {
	return approvalapi.PolicyVersion{Policy: toPolicyDoc(v.Policy), ChangedBy: v.By.Username, ChangedAt: v.At}
}

func toPolicyDoc(p assist.Policy) approvalapi.PolicyDoc {
	d := approvalapi.PolicyDoc{Version: p.Version, CapsUSDCents: map[string]int64{}, CaseCapUSDCents: p.CaseCapUSDCents,
		SecondApprovalAboveUSDCents: p.SecondApprovalAboveUSDCents, Deadlines: map[string]string{}, ClaimTTL: p.ClaimTTL.String()}
	for c, v := range p.CategoryCapsUSDCents {
		d.CapsUSDCents[string(c)] = v
	}
	for u, v := range p.Deadlines {
		d.Deadlines[string(u)] = v.String()
	}
	return d
}

// fromPolicyDoc reads the durations of a policy; the domain checks the
// rest.
func fromPolicyDoc(d approvalapi.PolicyDoc) (assist.Policy, error) {
	p := assist.Policy{CaseCapUSDCents: d.CaseCapUSDCents, SecondApprovalAboveUSDCents: d.SecondApprovalAboveUSDCents,
		CategoryCapsUSDCents: map[assist.Category]int64{}, Deadlines: map[assist.Urgency]time.Duration{}}
	var probs assist.Problems
	for c, v := range d.CapsUSDCents {
		p.CategoryCapsUSDCents[assist.Category(c)] = v
	}
	for _, u := range slices.Sorted(maps.Keys(d.Deadlines)) {
		v, err := time.ParseDuration(d.Deadlines[u])
		if err != nil {
			probs.Add("deadlines."+u, "must be a duration such as 4h or 90s")
			continue
		}
		p.Deadlines[assist.Urgency(u)] = v
	}
	if v, err := time.ParseDuration(d.ClaimTTL); err != nil {
		probs.Add("claim_ttl", "must be a duration such as 30m or 90s")
	} else {
		p.ClaimTTL = v
	}
	return p, probs.Err()
}
