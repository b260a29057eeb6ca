package gateway

import (
	"encoding/json"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/audit/auditapi"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// timestamp is a time as the API writes it: RFC 3339, UTC (the schema's
// format date-time).
type timestamp string

// formatTime writes times as RFC 3339 UTC, with the fraction of a second
// when there is one (so that a time read here can be given back to as-of).
func formatTime(t time.Time) timestamp { return timestamp(t.UTC().Format(time.RFC3339Nano)) }

// optTime is formatTime, nil for the zero time.
func optTime(t time.Time) *timestamp {
	if t.IsZero() {
		return nil
	}
	s := formatTime(t)
	return &s
}

// The JSON types below are the API's answers. Their schemas in the OpenAPI
// document are reflected from them (openapi.go): a field is required unless
// it is a pointer or omitempty, a pointer without omitempty may be null, and
// the tags jsonschema and jsonschema_description add formats and words.

// caseJSON is the API's representation of a case. Personal data, sealed
// or not, never appears in it.
type caseJSON struct {
	ID            string          `json:"id" jsonschema:"format=uuid"`
	Status        assist.State    `json:"status"`
	Post          string          `json:"post"`
	Category      assist.Category `json:"category"`
	Urgency       assist.Urgency  `json:"urgency"`
	AmountCents   int64           `json:"amount_usd_cents" jsonschema_description:"amount requested, in integer US cents"`
	ApprovedCents int64           `json:"approved_usd_cents" jsonschema_description:"amount approved, in integer US cents; 0 before"`
	Deadline      *timestamp      `json:"deadline" jsonschema_description:"when a decision is due: filing time plus the policy's deadline for the urgency"`
	Escalated     bool            `json:"escalated" jsonschema_description:"the deadline passed without a decision"`
	// PersonalDataErased is not personal: it says there is none any more.
	PersonalDataErased bool           `json:"personal_data_erased" jsonschema_description:"an admin erased the request's personal data (POST /v1/requests/{id}/erase): its beneficiary answers 410"`
	CreatedAt          timestamp      `json:"created_at"`
	UpdatedAt          timestamp      `json:"updated_at"`
	Version            uint64         `json:"version" jsonschema_description:"log position of the case's last event"`
	Requester          string         `json:"requester" jsonschema_description:"username of the filer"`
	Justification      string         `json:"justification"`
	PayeeID            string         `json:"payee_id,omitempty"`
	FundID             string         `json:"fund_id,omitempty"`
	PayoutID           string         `json:"payout_id,omitempty"`
	ClaimedBy          string         `json:"claimed_by,omitempty" jsonschema_description:"the approver holding the claim"`
	ClaimExpiresAt     *timestamp     `json:"claim_expires_at,omitempty"`
	Question           string         `json:"question,omitempty" jsonschema_description:"the open question while info_requested"`
	Approvals          []approvalJSON `json:"approvals" jsonschema_description:"the approvals given, in order: two above the policy's second-approval threshold"`
	PolicyVersion      string         `json:"policy_version" jsonschema_description:"the version of the policy in force when the request was filed"`
	// PossibleDuplicateOf is set for approvers, finance and auditors only.
	PossibleDuplicateOf *[]string `json:"possible_duplicate_of,omitempty" jsonschema_description:"open or recent cases (any post) for the same beneficiary reference and category when this one was filed; shown to approvers, finance and auditors, never to requesters"`
}

// approvalJSON is one approver's decision to pay.
type approvalJSON struct {
	Approver      string    `json:"approver"`
	AmountCents   int64     `json:"amount_usd_cents" jsonschema_description:"amount approved, in integer US cents"`
	At            timestamp `json:"at"`
	PolicyVersion string    `json:"policy_version" jsonschema_description:"the policy version the approval was taken under"`
}

// location is where a case is read.
func (c caseJSON) location() string { return "/v1/requests/" + c.ID }

func toCaseJSON(c caseview.Case) caseJSON {
	j := caseJSON{
		ID: c.ID, Status: assist.State(c.Status), Post: c.Post, Category: assist.Category(c.Category),
		Urgency: assist.Urgency(c.Urgency), AmountCents: c.AmountCents, ApprovedCents: c.ApprovedCents, Deadline: optTime(c.Deadline),
		Escalated: c.Escalated, PersonalDataErased: c.PersonalDataErased, CreatedAt: formatTime(c.CreatedAt), UpdatedAt: formatTime(c.UpdatedAt),
		Version: c.Version, Requester: c.Requester, Justification: c.Justification, PayeeID: c.PayeeID,
		FundID: c.FundID, PayoutID: c.PayoutID, ClaimedBy: c.ClaimedBy, ClaimExpiresAt: optTime(c.ClaimExpiresAt),
		Approvals: mapSlice(c.Approvals, func(a caseview.Approval) approvalJSON {
			return approvalJSON{Approver: a.Approver, AmountCents: a.AmountCents, At: formatTime(a.At), PolicyVersion: a.PolicyVersion}
		}),
		PolicyVersion: c.PolicyVersion,
	}
	if c.Status == string(assist.StateInfoRequested) {
		j.Question = c.Question
	}
	return j
}

func toCasesJSON(cs []caseview.Case) []caseJSON {
	return mapSlice(cs, toCaseJSON)
}

// page is a page of a list.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty" jsonschema_description:"the cursor of the next page; absent at the end"`
}

// queueItemJSON is a case of the review queue.
type queueItemJSON struct {
	caseJSON
	Overdue            bool     `json:"overdue" jsonschema_description:"its deadline has passed"`
	DueSoon            bool     `json:"due_soon" jsonschema_description:"its deadline is near: three quarters of the time from filing to it passed without a decision (the event DeadlineWarning); false once escalated"`
	PossibleDuplicates []string `json:"possible_duplicates" jsonschema_description:"other open cases for the same beneficiary reference and category, at any post"`
}

// toQueueJSON joins a page of the queue with its cases, in the queue's
// order; a case intake does not know (yet) is left out.
func toQueueJSON(p approvalapi.QueuePage, cases []caseview.Case) page[queueItemJSON] {
	byID := make(map[string]caseview.Case, len(cases))
	for _, c := range cases {
		byID[c.ID] = c
	}
	out := page[queueItemJSON]{Items: make([]queueItemJSON, 0, len(p.Items)), NextCursor: p.NextCursor}
	for _, it := range p.Items {
		c, ok := byID[it.CaseID]
		if !ok {
			continue
		}
		out.Items = append(out.Items, queueItemJSON{caseJSON: toCaseJSON(c), Overdue: it.Overdue, DueSoon: it.DueSoon,
			PossibleDuplicates: nonNil(it.PossibleDuplicates)})
	}
	return out
}

type fundJSON struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	AllocatedCents int64     `json:"allocated_usd_cents" jsonschema_description:"allocated, in integer US cents"`
	ReservedCents  int64     `json:"reserved_usd_cents" jsonschema_description:"held for approvals, in integer US cents"`
	PaidCents      int64     `json:"paid_usd_cents" jsonschema_description:"paid out, in integer US cents"`
	AvailableCents int64     `json:"available_usd_cents" jsonschema_description:"allocated - reserved - paid, in integer US cents"`
	CreatedAt      timestamp `json:"created_at"`
}

// location is where a fund is read.
func (f fundJSON) location() string { return "/v1/funds/" + f.ID }

func toFundJSON(f disbursementapi.Fund) fundJSON {
	return fundJSON{ID: f.ID, Name: f.Name, AllocatedCents: f.AllocatedCents, ReservedCents: f.ReservedCents,
		PaidCents: f.PaidCents, AvailableCents: f.AvailableCents, CreatedAt: formatTime(f.CreatedAt)}
}

type payeeJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Country   string    `json:"country,omitempty"`
	Account   string    `json:"account,omitempty" jsonschema_description:"the provider account paid; shown to finance, approvers, auditors and admins, not to requesters"`
	CreatedAt timestamp `json:"created_at"`
}

// forViewer is the payee as u may see it: a requester picks a payee by
// name and country and never sees where its money goes.
func (p payeeJSON) forViewer(u Account) payeeJSON {
	if !(seesAllCases(u) || u.Has(admin)) {
		p.Account = ""
	}
	return p
}

// location is where a payee is read.
func (p payeeJSON) location() string { return "/v1/payees/" + p.ID }

func toPayeeJSON(p disbursementapi.Payee) payeeJSON {
	return payeeJSON{ID: p.ID, Name: p.Name, Country: p.Country, Account: p.Account, CreatedAt: formatTime(p.CreatedAt)}
}

type payoutJSON struct {
	ID          string       `json:"id"`
	RequestID   string       `json:"request_id"`
	FundID      string       `json:"fund_id"`
	PayeeID     string       `json:"payee_id"`
	AmountCents int64        `json:"amount_usd_cents" jsonschema_description:"in integer US cents"`
	Status      payoutStatus `json:"status"`
	Attempt     int          `json:"attempt"`
	ProviderRef string       `json:"provider_ref,omitempty"`
	LastError   string       `json:"last_error,omitempty"`
	CreatedAt   timestamp    `json:"created_at"`
	UpdatedAt   timestamp    `json:"updated_at"`
}

func toPayoutJSON(p disbursementapi.Payout) payoutJSON {
	return payoutJSON{ID: p.ID, RequestID: p.CaseID, FundID: p.FundID, PayeeID: p.PayeeID, AmountCents: p.AmountCents,
		Status: payoutStatus(p.Status), Attempt: p.Attempt, ProviderRef: p.ProviderRef, LastError: p.LastError,
		CreatedAt: formatTime(p.CreatedAt), UpdatedAt: formatTime(p.UpdatedAt)}
}

func mapSlice[A, B any](as []A, f func(A) B) []B {
	out := make([]B, 0, len(as))
	for _, a := range as {
		out = append(out, f(a))
	}
	return out
}

type actorJSON struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Post     string `json:"post,omitempty"`
}

// eventJSON is one archived event.
type eventJSON struct {
	Seq       uint64    `json:"seq" jsonschema_description:"log sequence"`
	ID        string    `json:"id"`
	RequestID string    `json:"request_id"`
	Type      string    `json:"type" jsonschema_description:"RequestSubmitted, ReviewClaimed, ..."`
	At        timestamp `json:"at"`
	Actor     actorJSON `json:"actor"`
	Reason    string    `json:"reason,omitempty"`
	// Data is the event body; null when it could not be rendered, and
	// DecodeError says why.
	Data        json.RawMessage `json:"data" jsonschema_description:"the event body (protobuf JSON names; personal data only sealed); null when it could not be rendered"`
	DecodeError string          `json:"decode_error,omitempty" jsonschema_description:"why data is null; the event is archived and hashed all the same"`
	Hash        string          `json:"hash" jsonschema_description:"SHA-256 of the stored event, hex"`
	Chain       string          `json:"chain" jsonschema_description:"hash chain up to this event, hex"`
}

func toEventJSON(e auditapi.ArchivedEvent) eventJSON {
	data := e.Data
	if len(data) == 0 || !json.Valid(data) {
		data = json.RawMessage("null")
	}
	return eventJSON{Seq: e.Seq, ID: e.ID, RequestID: e.CaseID, Type: e.Type, At: formatTime(e.At),
		Actor: actorJSON{Username: e.Actor.Username, Role: e.Actor.Role, Post: e.Actor.Post}, Reason: e.Reason,
		Data: data, DecodeError: e.DecodeError, Hash: e.Hash, Chain: e.Chain}
}

// eventsPageJSON is a page of the archive: next_after (and next_cursor,
// the same number as a string) is the after of the next page, absent at
// the end.
type eventsPageJSON struct {
	Items      []eventJSON `json:"items"`
	NextAfter  uint64      `json:"next_after,omitempty" jsonschema_description:"the after of the next page; absent at the end"`
	NextCursor string      `json:"next_cursor,omitempty" jsonschema_description:"next_after as a string"`
}

type proofJSON struct {
	Seq    *uint64  `json:"seq,omitempty" jsonschema_description:"inclusion: the event's sequence"`
	Size   *uint64  `json:"size,omitempty" jsonschema_description:"inclusion: the tree's size"`
	From   *uint64  `json:"from,omitempty" jsonschema_description:"consistency: the smaller tree's size"`
	To     *uint64  `json:"to,omitempty" jsonschema_description:"consistency: the larger tree's size"`
	Hashes []string `json:"hashes" jsonschema_description:"the proof's hashes, standard base64 with padding"`
}

type accessJSON struct {
	RequestID string    `json:"request_id"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	Post      string    `json:"post,omitempty"`
	At        timestamp `json:"at"`
	What      string    `json:"what"`
}

func toAccessJSON(a eventlog.Access) accessJSON {
	return accessJSON{RequestID: a.CaseID, Username: a.Username, Role: a.Role, Post: a.Post, At: formatTime(a.At), What: a.What}
}

type deadLetterJSON struct {
	Seq            uint64    `json:"seq" jsonschema_description:"sequence in the dead-letter stream"`
	Consumer       string    `json:"consumer"`
	Subject        string    `json:"subject"`
	EventSeq       uint64    `json:"event_seq"`
	EventID        string    `json:"event_id"`
	Reason         string    `json:"reason"`
	DeadLetteredAt timestamp `json:"dead_lettered_at"`
}

type deadLettersJSON struct {
	Items     []deadLetterJSON `json:"items"`
	NextAfter uint64           `json:"next_after,omitempty" jsonschema_description:"the after of the next page; absent at the end"`
}

func toDeadLetterJSON(d eventlog.DeadLetter) deadLetterJSON {
	return deadLetterJSON{Seq: d.Seq, Consumer: d.Consumer, Subject: d.Subject, EventSeq: d.EventSeq, EventID: d.EventID,
		Reason: d.Reason, DeadLetteredAt: formatTime(d.DeadLetteredAt)}
}
