// Package caseview is the case as EVA's services answer it to each other:
// a case's state rebuilt from its events, with explicit JSON names, and
// without its personal data, sealed or not. It is part of every service
// contract that answers with a case (intake, approval, audit); the
// gateway turns it into the API's representation for the caller's role.
package caseview

import (
	"context"
	"time"

	"github.com/eva-org/eva/pkg/assist"
)

// Case is one case as services answer it.
type Case struct {
	ID            string    `json:"id"`
	Status        string    `json:"status"`
	Post          string    `json:"post"`
	Requester     string    `json:"requester"`
	Category      string    `json:"category"`
	Urgency       string    `json:"urgency"`
	AmountCents   int64     `json:"amount_usd_cents"`
	Justification string    `json:"justification"`
	PayeeID       string    `json:"payee_id,omitempty"`
	Deadline      time.Time `json:"deadline"`
	Escalated     bool      `json:"escalated"`
	// PersonalDataErased: the case's personal data was erased.
	PersonalDataErased bool      `json:"personal_data_erased,omitempty"`
	ClaimedBy          string    `json:"claimed_by,omitempty"`
	ClaimExpiresAt     time.Time `json:"claim_expires_at"`
	Question           string    `json:"question,omitempty"`
	ApprovedCents      int64     `json:"approved_usd_cents"`
	ApprovedBy         string    `json:"approved_by,omitempty"`
	FundID             string    `json:"fund_id,omitempty"`
	HoldID             string    `json:"hold_id,omitempty"`
	PayoutID           string    `json:"payout_id,omitempty"`
	// Approvals are the approvals given, in order (two above the policy's
	// second-approval threshold).
	Approvals []Approval `json:"approvals"`
	// PolicyVersion is the policy in force when the case was filed.
	PolicyVersion string `json:"policy_version,omitempty"`
	// PossibleDuplicateOf is the duplicate check at filing; the gateway
	// shows it to approvers, finance and auditors, never to requesters.
	PossibleDuplicateOf []string  `json:"possible_duplicate_of,omitempty"`
	CreatedAt           time.Time `json:"created_at"`
	UpdatedAt           time.Time `json:"updated_at"`
	// Version is the log position of the case's last event.
	Version uint64 `json:"version"`
}

// Approval is one approver's decision to pay.
type Approval struct {
	Approver      string    `json:"approver"`
	AmountCents   int64     `json:"amount_usd_cents"`
	At            time.Time `json:"at"`
	PolicyVersion string    `json:"policy_version,omitempty"`
}

// From is the view of a domain case.
func From(c *assist.Case) Case {
	return Case{
		ID: c.ID, Status: string(c.State), Post: c.Post, Requester: c.Requester, Category: string(c.Category),
		Urgency: string(c.Urgency), AmountCents: c.AmountCents, Justification: c.Justification, PayeeID: c.PayeeID,
		Deadline: c.Deadline, Escalated: c.Escalated, PersonalDataErased: c.PersonalDataErased, ClaimedBy: c.ClaimedBy, ClaimExpiresAt: c.ClaimExpiresAt,
		Question: c.Question, ApprovedCents: c.ApprovedCents, ApprovedBy: c.ApprovedBy, FundID: c.FundID,
		HoldID: c.HoldID, PayoutID: c.PayoutID, Approvals: approvals(c.Approvals), PolicyVersion: c.PolicyVersion,
		PossibleDuplicateOf: c.PossibleDuplicateOf, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, Version: c.Version,
	}
}

func approvals(as []assist.Approval) []Approval {
	out := make([]Approval, len(as))
	for i, a := range as {
		out[i] = Approval{Approver: a.Approver, AmountCents: a.AmountCents, At: a.At, PolicyVersion: a.PolicyVersion}
	}
	return out
}

// Serve adapts a handler that answers with a domain case into one that
// answers with its view, for rpc.Handle.
func Serve[Req any](h func(context.Context, Req) (*assist.Case, error)) func(context.Context, Req) (Case, error) {
	return func(ctx context.Context, r Req) (Case, error) {
		c, err := h(ctx, r)
		if err != nil {
			return Case{}, err
		}
		return From(c), nil
	}
}
