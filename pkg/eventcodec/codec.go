// Package eventcodec converts domain events to and from their protobuf
// form, the bytes of the event log. It is the only place where generated
// types meet the domain.
package eventcodec

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/eva-org/eva/pkg/assist"
	evav1 "github.com/eva-org/eva/proto/eva/v1"
)

// Encode serializes an event.
func Encode(e assist.Event) ([]byte, error) {
	pe, err := toProto(e)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(pe)
}

// Decode parses an event read from the log. typ is the event type named by
// the subject; a body of another type is refused, as is any malformed input.
func Decode(typ string, data []byte) (assist.Event, error) {
	var pe evav1.Event
	if err := proto.Unmarshal(data, &pe); err != nil {
		return assist.Event{}, fmt.Errorf("decode %s: %w", typ, err)
	}
	e, err := fromProto(&pe)
	if err != nil {
		return assist.Event{}, fmt.Errorf("decode %s: %w", typ, err)
	}
	if e.Type() != typ {
		return assist.Event{}, fmt.Errorf("decode %s: body is %q", typ, e.Type())
	}
	return e, nil
}

func toProto(e assist.Event) (*evav1.Event, error) {
	if e.ID == "" || e.CaseID == "" {
		return nil, fmt.Errorf("encode: event without id or case id")
	}
	pe := &evav1.Event{
		Id:        e.ID,
		CaseId:    e.CaseID,
		At:        ts(e.At),
		Actor:     &evav1.Actor{Username: e.Actor.Username, Role: e.Actor.Role, Post: e.Actor.Post},
		CommandId: e.CommandID,
		Reason:    e.Reason,
	}
	switch b := e.Body.(type) {
	case assist.RequestSubmitted:
		pe.Body = &evav1.Event_RequestSubmitted{RequestSubmitted: &evav1.RequestSubmitted{
			Post: b.Post, Category: string(b.Category), Urgency: string(b.Urgency),
			AmountUsdCents: b.AmountCents, Justification: b.Justification,
			Beneficiary: sealedToProto(&b.Beneficiary), BeneficiaryRefHash: b.BeneficiaryRefHash,
			PayeeId: b.PayeeID, Deadline: ts(b.Deadline), Policy: policyToProto(b.Policy),
			IdempotencyKeyHash: b.IdempotencyKeyHash, PossibleDuplicateOf: b.PossibleDuplicateOf,
		}}
	case assist.RequestAmended:
		pe.Body = &evav1.Event_RequestAmended{RequestAmended: &evav1.RequestAmended{
			Category: (*string)(b.Category), Urgency: (*string)(b.Urgency),
			AmountUsdCents: b.AmountCents, Justification: b.Justification,
			Beneficiary: amendedSealedToProto(b.Beneficiary), BeneficiaryRefHash: b.BeneficiaryRefHash,
			PayeeId: b.PayeeID, Deadline: ts(b.Deadline), Policy: policyToProto(b.Policy),
		}}
	case assist.RequestWithdrawn:
		pe.Body = &evav1.Event_RequestWithdrawn{RequestWithdrawn: &evav1.RequestWithdrawn{HoldId: b.HoldID}}
	case assist.InfoRequested:
		pe.Body = &evav1.Event_InfoRequested{InfoRequested: &evav1.InfoRequested{Question: b.Question}}
	case assist.InfoProvided:
		pe.Body = &evav1.Event_InfoProvided{InfoProvided: &evav1.InfoProvided{Answer: b.Answer}}
	case assist.ReviewClaimed:
		pe.Body = &evav1.Event_ReviewClaimed{ReviewClaimed: &evav1.ReviewClaimed{ExpiresAt: ts(b.ExpiresAt)}}
	case assist.ReviewReleased:
		pe.Body = &evav1.Event_ReviewReleased{ReviewReleased: &evav1.ReviewReleased{Expired: b.Expired}}
	case assist.RequestApproved:
		pe.Body = &evav1.Event_RequestApproved{RequestApproved: &evav1.RequestApproved{
			AmountUsdCents: b.AmountCents, FundId: b.FundID, HoldId: b.HoldID, PayeeId: b.PayeeID,
			Note: b.Note, FundAvailableUsdCents: b.FundAvailableCents, Policy: policyToProto(b.Policy),
			Step: evav1.RequestApproved_Step(b.Step),
		}}
	case assist.RequestRejected:
		pe.Body = &evav1.Event_RequestRejected{RequestRejected: &evav1.RequestRejected{HoldId: b.HoldID}}
	case assist.FundsReserved:
		pe.Body = &evav1.Event_FundsReserved{FundsReserved: &evav1.FundsReserved{
			HoldId: b.HoldID, FundId: b.FundID, AmountUsdCents: b.AmountCents, PayoutId: b.PayoutID,
			PayeeId: b.PayeeID, PayeeAccount: b.PayeeAccount, PayeeAccountSeq: b.PayeeAccountSeq,
		}}
	case assist.FundsReleased:
		pe.Body = &evav1.Event_FundsReleased{FundsReleased: &evav1.FundsReleased{
			HoldId: b.HoldID, FundId: b.FundID, AmountUsdCents: b.AmountCents,
			Cause: evav1.FundsReleased_Cause(b.Cause),
		}}
	case assist.PayoutSent:
		pe.Body = &evav1.Event_PayoutSent{PayoutSent: &evav1.PayoutSent{
			PayoutId: b.PayoutID, PayeeId: b.PayeeID, AmountUsdCents: b.AmountCents,
			ProviderRef: b.ProviderRef, Attempt: int32(b.Attempt),
		}}
	case assist.PayoutSettled:
		pe.Body = &evav1.Event_PayoutSettled{PayoutSettled: &evav1.PayoutSettled{PayoutId: b.PayoutID, ProviderRef: b.ProviderRef}}
	case assist.PayoutFailed:
		pe.Body = &evav1.Event_PayoutFailed{PayoutFailed: &evav1.PayoutFailed{PayoutId: b.PayoutID, Error: b.Error, Attempt: int32(b.Attempt)}}
	case assist.RequestClosed:
		pe.Body = &evav1.Event_RequestClosed{RequestClosed: &evav1.RequestClosed{}}
	case assist.PayoutRetried:
		pe.Body = &evav1.Event_PayoutRetried{PayoutRetried: &evav1.PayoutRetried{PayoutId: b.PayoutID, Attempt: int32(b.Attempt)}}
	case assist.DeadlineMissed:
		pe.Body = &evav1.Event_DeadlineMissed{DeadlineMissed: &evav1.DeadlineMissed{Deadline: ts(b.Deadline)}}
	case assist.DeadlineWarning:
		pe.Body = &evav1.Event_DeadlineWarning{DeadlineWarning: &evav1.DeadlineWarning{Deadline: ts(b.Deadline)}}
	case assist.PolicyChanged:
		pe.Body = &evav1.Event_PolicyChanged{PolicyChanged: &evav1.PolicyChanged{Policy: wholePolicyToProto(b.Policy)}}
	case assist.FundCreated:
		pe.Body = &evav1.Event_FundCreated{FundCreated: &evav1.FundCreated{Name: b.Name, AllocatedUsdCents: b.AllocatedCents}}
	case assist.PayeeCreated:
		pe.Body = &evav1.Event_PayeeCreated{PayeeCreated: &evav1.PayeeCreated{Name: b.Name, Country: b.Country, Account: b.Account}}
	case assist.PayeeAccountChanged:
		pe.Body = &evav1.Event_PayeeAccountChanged{PayeeAccountChanged: &evav1.PayeeAccountChanged{Account: b.Account, Previous: b.Previous}}
	case assist.FundAllocationChanged:
		pe.Body = &evav1.Event_FundAllocationChanged{FundAllocationChanged: &evav1.FundAllocationChanged{
			AllocatedUsdCents: b.AllocatedCents, PreviousUsdCents: b.PreviousCents, HoldId: b.HoldID}}
	case assist.WebhookRegistered:
		pe.Body = &evav1.Event_WebhookRegistered{WebhookRegistered: &evav1.WebhookRegistered{Url: b.URL, Events: b.Events,
			Secret: sealedToProto(&b.Secret), SecretKey: b.SecretKey}}
	case assist.WebhookRemoved:
		pe.Body = &evav1.Event_WebhookRemoved{WebhookRemoved: &evav1.WebhookRemoved{}}
	case assist.ClaimExpired:
		pe.Body = &evav1.Event_ClaimExpired{ClaimExpired: &evav1.ClaimExpired{ClaimedBy: b.ClaimedBy, ExpiresAt: ts(b.ExpiresAt)}}
	case assist.PersonalDataErased:
		pe.Body = &evav1.Event_PersonalDataErased{PersonalDataErased: &evav1.PersonalDataErased{KeyId: b.KeyID}}
	case assist.UserCreated:
		pe.Body = &evav1.Event_UserCreated{UserCreated: &evav1.UserCreated{Username: b.Username, Roles: b.Roles, Posts: b.Posts,
			Email: b.Email}}
	case assist.UserChanged:
		pe.Body = &evav1.Event_UserChanged{UserChanged: &evav1.UserChanged{Username: b.Username, Roles: b.Roles,
			Posts: b.Posts, Disabled: b.Disabled, PasswordChanged: b.PasswordChanged, Email: b.Email}}
	default:
		return nil, fmt.Errorf("encode: unknown event body %T", e.Body)
	}
	return pe, nil
}

func fromProto(pe *evav1.Event) (assist.Event, error) {
	e := assist.Event{
		ID:        pe.GetId(),
		CaseID:    pe.GetCaseId(),
		At:        tm(pe.GetAt()),
		Actor:     assist.Actor{Username: pe.GetActor().GetUsername(), Role: pe.GetActor().GetRole(), Post: pe.GetActor().GetPost()},
		CommandID: pe.GetCommandId(),
		Reason:    pe.GetReason(),
	}
	if e.ID == "" || e.CaseID == "" {
		return assist.Event{}, fmt.Errorf("event without id or case id")
	}
	switch b := pe.GetBody().(type) {
	case *evav1.Event_RequestSubmitted:
		s := b.RequestSubmitted
		e.Body = assist.RequestSubmitted{
			Post: s.GetPost(), Category: assist.Category(s.GetCategory()), Urgency: assist.Urgency(s.GetUrgency()),
			AmountCents: s.GetAmountUsdCents(), Justification: s.GetJustification(),
			Beneficiary: sealedFromProto(s.GetBeneficiary()), BeneficiaryRefHash: s.GetBeneficiaryRefHash(),
			PayeeID: s.GetPayeeId(), Deadline: tm(s.GetDeadline()), Policy: policyFromProto(s.GetPolicy()),
			IdempotencyKeyHash: s.GetIdempotencyKeyHash(), PossibleDuplicateOf: s.GetPossibleDuplicateOf(),
		}
	case *evav1.Event_RequestAmended:
		a := b.RequestAmended
		am := assist.RequestAmended{
			Category: (*assist.Category)(a.Category), Urgency: (*assist.Urgency)(a.Urgency),
			AmountCents: a.AmountUsdCents, Justification: a.Justification,
			BeneficiaryRefHash: a.GetBeneficiaryRefHash(), PayeeID: a.PayeeId,
			Deadline: tm(a.GetDeadline()), Policy: policyFromProto(a.GetPolicy()),
		}
		if a.GetBeneficiary() != nil {
			s := sealedFromProto(a.GetBeneficiary())
			am.Beneficiary = &s
		}
		e.Body = am
	case *evav1.Event_RequestWithdrawn:
		e.Body = assist.RequestWithdrawn{HoldID: b.RequestWithdrawn.GetHoldId()}
	case *evav1.Event_InfoRequested:
		e.Body = assist.InfoRequested{Question: b.InfoRequested.GetQuestion()}
	case *evav1.Event_InfoProvided:
		e.Body = assist.InfoProvided{Answer: b.InfoProvided.GetAnswer()}
	case *evav1.Event_ReviewClaimed:
		e.Body = assist.ReviewClaimed{ExpiresAt: tm(b.ReviewClaimed.GetExpiresAt())}
	case *evav1.Event_ReviewReleased:
		e.Body = assist.ReviewReleased{Expired: b.ReviewReleased.GetExpired()}
	case *evav1.Event_RequestApproved:
		a := b.RequestApproved
		e.Body = assist.RequestApproved{
			AmountCents: a.GetAmountUsdCents(), FundID: a.GetFundId(), HoldID: a.GetHoldId(), PayeeID: a.GetPayeeId(),
			Note: a.GetNote(), FundAvailableCents: a.GetFundAvailableUsdCents(), Policy: policyFromProto(a.GetPolicy()),
			Step: assist.ApprovalStep(a.GetStep()),
		}
	case *evav1.Event_RequestRejected:
		e.Body = assist.RequestRejected{HoldID: b.RequestRejected.GetHoldId()}
	case *evav1.Event_FundsReserved:
		r := b.FundsReserved
		e.Body = assist.FundsReserved{HoldID: r.GetHoldId(), FundID: r.GetFundId(), AmountCents: r.GetAmountUsdCents(), PayoutID: r.GetPayoutId(),
			PayeeID: r.GetPayeeId(), PayeeAccount: r.GetPayeeAccount(), PayeeAccountSeq: r.GetPayeeAccountSeq()}
	case *evav1.Event_FundsReleased:
		r := b.FundsReleased
		e.Body = assist.FundsReleased{HoldID: r.GetHoldId(), FundID: r.GetFundId(), AmountCents: r.GetAmountUsdCents(),
			Cause: assist.ReleaseCause(r.GetCause())}
	case *evav1.Event_PayoutSent:
		p := b.PayoutSent
		e.Body = assist.PayoutSent{PayoutID: p.GetPayoutId(), PayeeID: p.GetPayeeId(), AmountCents: p.GetAmountUsdCents(),
			ProviderRef: p.GetProviderRef(), Attempt: int(p.GetAttempt())}
	case *evav1.Event_PayoutSettled:
		e.Body = assist.PayoutSettled{PayoutID: b.PayoutSettled.GetPayoutId(), ProviderRef: b.PayoutSettled.GetProviderRef()}
	case *evav1.Event_PayoutFailed:
		p := b.PayoutFailed
		e.Body = assist.PayoutFailed{PayoutID: p.GetPayoutId(), Error: p.GetError(), Attempt: int(p.GetAttempt())}
	case *evav1.Event_RequestClosed:
		e.Body = assist.RequestClosed{}
	case *evav1.Event_PayoutRetried:
		e.Body = assist.PayoutRetried{PayoutID: b.PayoutRetried.GetPayoutId(), Attempt: int(b.PayoutRetried.GetAttempt())}
	case *evav1.Event_DeadlineMissed:
		e.Body = assist.DeadlineMissed{Deadline: tm(b.DeadlineMissed.GetDeadline())}
	case *evav1.Event_DeadlineWarning:
		e.Body = assist.DeadlineWarning{Deadline: tm(b.DeadlineWarning.GetDeadline())}
	case *evav1.Event_PolicyChanged:
		e.Body = assist.PolicyChanged{Policy: wholePolicyFromProto(b.PolicyChanged.GetPolicy())}
	case *evav1.Event_FundCreated:
		r := b.FundCreated
		e.Body = assist.FundCreated{Name: r.GetName(), AllocatedCents: r.GetAllocatedUsdCents()}
	case *evav1.Event_PayeeCreated:
		r := b.PayeeCreated
		e.Body = assist.PayeeCreated{Name: r.GetName(), Country: r.GetCountry(), Account: r.GetAccount()}
	case *evav1.Event_PayeeAccountChanged:
		r := b.PayeeAccountChanged
		e.Body = assist.PayeeAccountChanged{Account: r.GetAccount(), Previous: r.GetPrevious()}
	case *evav1.Event_FundAllocationChanged:
		r := b.FundAllocationChanged
		e.Body = assist.FundAllocationChanged{AllocatedCents: r.GetAllocatedUsdCents(), PreviousCents: r.GetPreviousUsdCents(),
			HoldID: r.GetHoldId()}
	case *evav1.Event_WebhookRegistered:
		w := b.WebhookRegistered
		e.Body = assist.WebhookRegistered{URL: w.GetUrl(), Events: w.GetEvents(), Secret: sealedFromProto(w.GetSecret()),
			SecretKey: w.GetSecretKey()}
	case *evav1.Event_WebhookRemoved:
		e.Body = assist.WebhookRemoved{}
	case *evav1.Event_ClaimExpired:
		e.Body = assist.ClaimExpired{ClaimedBy: b.ClaimExpired.GetClaimedBy(), ExpiresAt: tm(b.ClaimExpired.GetExpiresAt())}
	case *evav1.Event_PersonalDataErased:
		e.Body = assist.PersonalDataErased{KeyID: b.PersonalDataErased.GetKeyId()}
	case *evav1.Event_UserCreated:
		u := b.UserCreated
		e.Body = assist.UserCreated{Username: u.GetUsername(), Roles: u.GetRoles(), Posts: u.GetPosts(), Email: u.GetEmail()}
	case *evav1.Event_UserChanged:
		u := b.UserChanged
		e.Body = assist.UserChanged{Username: u.GetUsername(), Roles: u.GetRoles(), Posts: u.GetPosts(),
			Disabled: u.GetDisabled(), PasswordChanged: u.GetPasswordChanged(), Email: u.GetEmail()}
	default:
		// A body this version does not know, or none at all.
		return assist.Event{}, fmt.Errorf("event %s has no known body", e.ID)
	}
	return e, nil
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func tm(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func sealedToProto(s *assist.Sealed) *evav1.Sealed {
	if s == nil || (s.KeyID == "" && len(s.Ciphertext) == 0) {
		return nil
	}
	return &evav1.Sealed{KeyId: s.KeyID, Ciphertext: s.Ciphertext}
}

// amendedSealedToProto keeps a set but empty beneficiary, which clears it,
// apart from an unchanged one (nil).
func amendedSealedToProto(s *assist.Sealed) *evav1.Sealed {
	if s == nil {
		return nil
	}
	return &evav1.Sealed{KeyId: s.KeyID, Ciphertext: s.Ciphertext}
}

func sealedFromProto(s *evav1.Sealed) assist.Sealed {
	if s == nil {
		return assist.Sealed{}
	}
	return assist.Sealed{KeyID: s.GetKeyId(), Ciphertext: s.GetCiphertext()}
}

func policyToProto(p assist.PolicySeen) *evav1.PolicySeen {
	return &evav1.PolicySeen{Version: p.Version, CaseCapUsdCents: p.CaseCapUSDCents, CategoryCapUsdCents: p.CategoryCapUSDCents,
		SecondApprovalAboveUsdCents: p.SecondApprovalAboveUSDCents}
}

func policyFromProto(p *evav1.PolicySeen) assist.PolicySeen {
	return assist.PolicySeen{Version: p.GetVersion(), CaseCapUSDCents: p.GetCaseCapUsdCents(), CategoryCapUSDCents: p.GetCategoryCapUsdCents(),
		SecondApprovalAboveUSDCents: p.GetSecondApprovalAboveUsdCents()}
}

func wholePolicyToProto(p assist.Policy) *evav1.Policy {
	out := &evav1.Policy{Version: p.Version, CaseCapUsdCents: p.CaseCapUSDCents,
		CategoryCapsUsdCents: map[string]int64{}, Deadlines: map[string]*durationpb.Duration{},
		ClaimTtl: durationpb.New(p.ClaimTTL), SecondApprovalAboveUsdCents: p.SecondApprovalAboveUSDCents}
	for c, v := range p.CategoryCapsUSDCents {
		out.CategoryCapsUsdCents[string(c)] = v
	}
	for u, d := range p.Deadlines {
		out.Deadlines[string(u)] = durationpb.New(d)
	}
	return out
}

func wholePolicyFromProto(p *evav1.Policy) assist.Policy {
	out := assist.Policy{Version: p.GetVersion(), CaseCapUSDCents: p.GetCaseCapUsdCents(),
		CategoryCapsUSDCents: map[assist.Category]int64{}, Deadlines: map[assist.Urgency]time.Duration{},
		ClaimTTL: p.GetClaimTtl().AsDuration(), SecondApprovalAboveUSDCents: p.GetSecondApprovalAboveUsdCents()}
	for c, v := range p.GetCategoryCapsUsdCents() {
		out.CategoryCapsUSDCents[assist.Category(c)] = v
	}
	for u, d := range p.GetDeadlines() {
		out.Deadlines[assist.Urgency(u)] = d.AsDuration()
	}
	return out
}
