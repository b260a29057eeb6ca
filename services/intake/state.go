package intake

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/eva-org/eva/pkg/assist"
)

// storedCase is the whole state of a case as the read model keeps it
// (intake_cases.state). Its JSON names are the ones the state was first
// stored under, so that rows written before still read.
type storedCase struct {
	ID                 string           `json:"ID"`
	Requester          string           `json:"Requester"`
	Post               string           `json:"Post"`
	Category           string           `json:"Category"`
	Urgency            string           `json:"Urgency"`
	AmountCents        int64            `json:"AmountCents"`
	Justification      string           `json:"Justification"`
	Beneficiary        storedSealed     `json:"Beneficiary"`
	BeneficiaryRefHash []byte           `json:"BeneficiaryRefHash"`
	PayeeID            string           `json:"PayeeID"`
	Deadline           time.Time        `json:"Deadline"`
	Escalated          bool             `json:"Escalated"`
	PersonalDataErased bool             `json:"PersonalDataErased,omitempty"`
	State              string           `json:"State"`
	ClaimedBy          string           `json:"ClaimedBy"`
	ClaimExpiresAt     time.Time        `json:"ClaimExpiresAt"`
	Question           string           `json:"Question"`
	ApprovedCents      int64            `json:"ApprovedCents"`
	ApprovedBy         string           `json:"ApprovedBy"`
	FundID             string           `json:"FundID"`
	HoldID             string           `json:"HoldID"`
	PayoutID           string           `json:"PayoutID"`
	ReleasedHolds      []string         `json:"ReleasedHolds"`
	Approvals          []storedApproval `json:"Approvals,omitempty"`
	Amenders           []string         `json:"Amenders,omitempty"`
	Authors            []string         `json:"Authors,omitempty"`
	PolicyVersion      string           `json:"PolicyVersion,omitempty"`
	// PossibleDuplicateOf and PayoutAttempt came later too: rows without
	// them read as none.
	PossibleDuplicateOf []string  `json:"PossibleDuplicateOf,omitempty"`
	PayoutAttempt       int       `json:"PayoutAttempt,omitempty"`
	CreatedAt           time.Time `json:"CreatedAt"`
	UpdatedAt           time.Time `json:"UpdatedAt"`
	Version             uint64    `json:"Version"`
	Events              int       `json:"Events"`
}

type storedApproval struct {
	Approver      string    `json:"Approver"`
	AmountCents   int64     `json:"AmountCents"`
	At            time.Time `json:"At"`
	PolicyVersion string    `json:"PolicyVersion"`
}

type storedSealed struct {
	KeyID      string `json:"KeyID"`
	Ciphertext []byte `json:"Ciphertext"`
}

func toStored(c *assist.Case) storedCase {
	return storedCase{
		ID: c.ID, Requester: c.Requester, Authors: c.Authors, Post: c.Post, Category: string(c.Category), Urgency: string(c.Urgency),
		AmountCents: c.AmountCents, Justification: c.Justification,
		Beneficiary:        storedSealed{KeyID: c.Beneficiary.KeyID, Ciphertext: c.Beneficiary.Ciphertext},
		BeneficiaryRefHash: c.BeneficiaryRefHash, PossibleDuplicateOf: c.PossibleDuplicateOf, PayoutAttempt: c.PayoutAttempt, PayeeID: c.PayeeID, Deadline: c.Deadline, Escalated: c.Escalated,
		PersonalDataErased: c.PersonalDataErased,
		State:              string(c.State), ClaimedBy: c.ClaimedBy, ClaimExpiresAt: c.ClaimExpiresAt, Question: c.Question,
		ApprovedCents: c.ApprovedCents, ApprovedBy: c.ApprovedBy, FundID: c.FundID, HoldID: c.HoldID,
		PayoutID: c.PayoutID, ReleasedHolds: c.ReleasedHolds, Approvals: mapSlice(c.Approvals, toStoredApproval),
		Amenders: c.Amenders, PolicyVersion: c.PolicyVersion, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
		Version: c.Version, Events: c.Events,
	}
}

func toStoredApproval(a assist.Approval) storedApproval {
	return storedApproval{Approver: a.Approver, AmountCents: a.AmountCents, At: a.At, PolicyVersion: a.PolicyVersion}
}

func (a storedApproval) toApproval() assist.Approval {
	return assist.Approval{Approver: a.Approver, AmountCents: a.AmountCents, At: a.At, PolicyVersion: a.PolicyVersion}
}

// mapSlice maps a slice; nil stays nil.
func mapSlice[T, U any](ts []T, f func(T) U) []U {
	if ts == nil {
		return nil
	}
	out := make([]U, len(ts))
	for i, t := range ts {
		out[i] = f(t)
	}
	return out
}

func (s storedCase) toCase() *assist.Case {
	return &assist.Case{
		ID: s.ID, Requester: s.Requester, Authors: s.Authors, Post: s.Post, Category: assist.Category(s.Category),
		Urgency: assist.Urgency(s.Urgency), AmountCents: s.AmountCents, Justification: s.Justification,
		Beneficiary:        assist.Sealed{KeyID: s.Beneficiary.KeyID, Ciphertext: s.Beneficiary.Ciphertext},
		BeneficiaryRefHash: s.BeneficiaryRefHash, PossibleDuplicateOf: s.PossibleDuplicateOf, PayoutAttempt: s.PayoutAttempt, PayeeID: s.PayeeID, Deadline: s.Deadline, Escalated: s.Escalated,
		PersonalDataErased: s.PersonalDataErased,
		State:              assist.State(s.State), ClaimedBy: s.ClaimedBy, ClaimExpiresAt: s.ClaimExpiresAt, Question: s.Question,
		ApprovedCents: s.ApprovedCents, ApprovedBy: s.ApprovedBy, FundID: s.FundID, HoldID: s.HoldID,
		PayoutID: s.PayoutID, ReleasedHolds: s.ReleasedHolds,
		Approvals: mapSlice(s.Approvals, storedApproval.toApproval), Amenders: s.Amenders, PolicyVersion: s.PolicyVersion,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, Version: s.Version, Events: s.Events,
	}
}

// encodeState is the stored form of a case.
func encodeState(c *assist.Case) (string, error) {
	b, err := json.Marshal(toStored(c))
	return string(b), err
}

// decodeState reads a stored case.
func decodeState(id, state string) (*assist.Case, error) {
	var s storedCase
	if err := json.Unmarshal([]byte(state), &s); err != nil {
		return nil, fmt.Errorf("projected case %s: %w", id, err)
	}
	return s.toCase(), nil
}
