// Package assist is the domain of EVA: a case (one request for one
// beneficiary), its states and transitions, the policy it is decided under,
// and the error vocabulary. It does no I/O. A transition is a method that
// returns the event it causes or an error; applying an event is a separate,
// total function, so a case's state is always its events folded by Apply.
package assist

import (
	"time"
)

// State is where a case stands in its lifecycle.
type State string

// The states of docs/design.md §2.
const (
	StateNone                   State = ""
	StateSubmitted              State = "submitted"
	StateUnderReview            State = "under_review"
	StateInfoRequested          State = "info_requested"
	StateAwaitingSecondApproval State = "awaiting_second_approval"
	StateApproved               State = "approved"
	StateDisbursing             State = "disbursing"
	StateDisbursed              State = "disbursed"
	StateDisbursementFailed     State = "disbursement_failed"
	StateRejected               State = "rejected"
	StateWithdrawn              State = "withdrawn"
	StateClosed                 State = "closed"
)

// States lists every named state, for validation and documentation.
var States = []State{StateSubmitted, StateUnderReview, StateInfoRequested, StateAwaitingSecondApproval,
	StateApproved, StateDisbursing, StateDisbursed, StateDisbursementFailed, StateRejected, StateWithdrawn, StateClosed}

// Open reports whether a case in s still waits for a decision.
func (s State) Open() bool {
	return s == StateSubmitted || s == StateUnderReview || s == StateInfoRequested || s == StateAwaitingSecondApproval
}

// Finished lists the states a case never leaves: it is no longer open for
// anything, nor a possible duplicate of a new request.
var Finished = []State{StateRejected, StateWithdrawn, StateClosed, StateDisbursed}

// Category is a kind of assistance.
type Category string

// The assistance categories of the fund's practice.
const (
	Shelter            Category = "shelter"
	Medical            Category = "medical"
	Psychosocial       Category = "psychosocial"
	FoodBasicNeeds     Category = "food_basic_needs"
	LegalAid           Category = "legal_aid"
	TravelDocuments    Category = "travel_documents"
	RepatriationTravel Category = "repatriation_travel"
	ReintegrationGrant Category = "reintegration_grant"
	FamilyTracing      Category = "family_tracing"
	Other              Category = "other"
)

// Categories lists every category.
var Categories = []Category{Shelter, Medical, Psychosocial, FoodBasicNeeds, LegalAid, TravelDocuments,
	RepatriationTravel, ReintegrationGrant, FamilyTracing, Other}

// Urgency orders the queue and sets the decision deadline.
type Urgency string

// Urgencies.
const (
	Critical Urgency = "critical"
	Urgent   Urgency = "urgent"
	Routine  Urgency = "routine"
)

// Urgencies lists every urgency.
var Urgencies = []Urgency{Critical, Urgent, Routine}

// Roles.
const (
	RoleRequester = "requester"
	RoleApprover  = "approver"
	RoleFinance   = "finance"
	RoleAuditor   = "auditor"
	RoleAdmin     = "admin"
	RoleSystem    = "system" // EVA itself: expiries, payouts
)

// Roles lists the roles a user can hold.
var Roles = []string{RoleRequester, RoleApprover, RoleFinance, RoleAuditor, RoleAdmin}

// Actor is who caused an event. It crosses service boundaries unchanged
// (in commands and in the archive), so its JSON names are explicit.
type Actor struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Post     string `json:"post,omitempty"`
}

// Sealed is personal data encrypted under the case's data key. The domain
// never looks inside.
type Sealed struct {
	KeyID      string
	Ciphertext []byte
}

// Case is the state of one request, rebuilt from its events.
type Case struct {
	ID        string
	Requester string // username of the filer
	// Authors are the usernames of everyone who wrote the request: its
	// filer, every amender and everyone who answered a question on it, in
	// the order they first did. None of them may review it (four eyes).
	Authors            []string
	Post               string
	Category           Category
	Urgency            Urgency
	AmountCents        int64
	Justification      string
	Beneficiary        Sealed
	BeneficiaryRefHash []byte
	PayeeID            string
	Deadline           time.Time
	Escalated          bool
	// Warned: DeadlineWarning was recorded for the current deadline (an
	// amendment that moves the deadline clears it).
	Warned bool
	State  State
	// PersonalDataErased: an admin erased the case's personal data
	// (PersonalDataErased); Beneficiary keeps only its key id, which
	// opens nothing any more, and BeneficiaryRefHash is dropped.
	PersonalDataErased bool

	ClaimedBy      string
	ClaimExpiresAt time.Time
	Question       string // the open question while info_requested

	ApprovedCents int64
	ApprovedBy    string
	// Approvals are the approvals given, in order: one, or two above the
	// policy's second-approval threshold.
	Approvals []Approval
	// Amenders are the users who amended the request (a part of
	// Authors); like its filer, none of them may review it.
	Amenders []string
	// PolicyVersion is the version of the policy in force at filing.
	PolicyVersion string
	FundID        string
	HoldID        string
	PayoutID      string
	PayoutAttempt int
	// PayoutAccount is the account the payout pays, as its FundsReserved
	// recorded it (empty for one written before it was recorded).
	PayoutAccount string
	// PossibleDuplicateOf is the duplicate check at filing: other open or
	// recent cases for the same beneficiary and category.
	PossibleDuplicateOf []string // the payout's latest attempt: sent, failed or retried
	// ReleasedHolds lists holds that went back to their fund; an approval
	// can never use one of them.
	ReleasedHolds []string

	CreatedAt time.Time
	UpdatedAt time.Time
	// Version is the log position (stream sequence) of the last event
	// applied; appends expect it.
	Version uint64
	// Events counts the events applied.
	Events int
}

// Approval is one approver's decision to pay, as the case records it.
type Approval struct {
	Approver      string
	AmountCents   int64
	At            time.Time
	PolicyVersion string
}

// ApprovalStep says which approval of a case an approval is.
type ApprovalStep int

// Approval steps.
const (
	// ApprovalOnly: at or below the two-approver threshold, the approval.
	ApprovalOnly ApprovalStep = iota
	// ApprovalFirst: above the threshold, the first of two: the money is
	// held and the case awaits a second approver.
	ApprovalFirst
	// ApprovalSecond: the second, different approver's; the case is
	// approved.
	ApprovalSecond
)

// Kind is what an event is about: a case, or one of the things around
// cases that the log also keeps the history of. It is the second token of
// the event's subject, eva.<kind>.<id>.<Type>.
type Kind string

// The kinds of the log.
const (
	KindCase    Kind = "case"
	KindFund    Kind = "fund"
	KindPayee   Kind = "payee"
	KindPolicy  Kind = "policy"
	KindUser    Kind = "user"
	KindWebhook Kind = "webhook"
)

// Kinds lists every kind the log keeps.
var Kinds = []Kind{KindCase, KindFund, KindPayee, KindPolicy, KindUser, KindWebhook}

// Event is one fact of the history of a case, or of another thing of a
// Kind (a fund, a payee, the policy, ...).
type Event struct {
	ID string // UUIDv7; the log's message id
	// CaseID is the id of what the event is about: the case, or — for
	// an event of another Kind — the fund, payee, policy, user or webhook.
	CaseID    string
	At        time.Time
	Actor     Actor
	CommandID string
	Reason    string
	Body      Body
}

// Type is the event's name, the last token of its subject.
func (e Event) Type() string {
	if e.Body == nil {
		return ""
	}
	return e.Body.Type()
}

// Kind is what the event is about; a body that names no kind is about a
// case.
func (e Event) Kind() Kind {
	if k, ok := e.Body.(interface{ Kind() Kind }); ok {
		return k.Kind()
	}
	return KindCase
}

// Body is the type-specific part of an event. The set is closed. A body
// about something other than a case also has a method Kind() Kind.
type Body interface {
	Type() string
	isBody()
}

// The event bodies.
type (
	RequestSubmitted struct {
		Post               string
		Category           Category
		Urgency            Urgency
		AmountCents        int64
		Justification      string
		Beneficiary        Sealed
		BeneficiaryRefHash []byte
		PayeeID            string
		Deadline           time.Time
		Policy             PolicySeen
		IdempotencyKeyHash []byte
		// PossibleDuplicateOf: open or recent cases for the same
		// beneficiary and category when this one was filed.
		PossibleDuplicateOf []string
	}
	// RequestAmended carries the changed fields only (nil: unchanged).
	RequestAmended struct {
		Category           *Category
		Urgency            *Urgency
		AmountCents        *int64
		Justification      *string
		Beneficiary        *Sealed
		BeneficiaryRefHash []byte
		PayeeID            *string
		Deadline           time.Time // zero: unchanged
		Policy             PolicySeen
	}
	// RequestWithdrawn names the hold of a first approval that the
	// withdrawal gives back, if there is one.
	RequestWithdrawn struct{ HoldID string }
	InfoRequested    struct{ Question string }
	InfoProvided     struct{ Answer string }
	ReviewClaimed    struct{ ExpiresAt time.Time }
	ReviewReleased   struct{ Expired bool }
	RequestApproved  struct {
		AmountCents        int64
		FundID             string
		HoldID             string
		PayeeID            string
		Note               string
		FundAvailableCents int64
		Policy             PolicySeen
		Step               ApprovalStep
	}
	// RequestRejected names the hold of a first approval that a second
	// approver's rejection gives back, if there is one.
	RequestRejected struct{ HoldID string }
	FundsReserved   struct {
		HoldID      string
		FundID      string
		AmountCents int64
		// PayeeID and PayeeAccount: whom the payout pays, the account
		// as the payee's events had it at the reservation, set by the
		// event of sequence PayeeAccountSeq (ADR 24); empty in events
		// written before.
		PayeeID         string
		PayeeAccount    string
		PayeeAccountSeq uint64
		PayoutID        string
	}
	FundsReleased struct {
		HoldID      string
		FundID      string
		AmountCents int64
		Cause       ReleaseCause
	}
	PayoutSent struct {
		PayoutID    string
		PayeeID     string
		AmountCents int64
		ProviderRef string
		Attempt     int
	}
	PayoutSettled struct {
		PayoutID    string
		ProviderRef string
	}
	PayoutFailed struct {
		PayoutID string
		Error    string
		Attempt  int
	}
	RequestClosed struct{}
	// PayoutRetried: finance sends a failed payout again as Attempt.
	PayoutRetried struct {
		PayoutID string
		Attempt  int
	}
	// DeadlineMissed: the decision deadline passed while the case was
	// open; the case is escalated.
	DeadlineMissed struct{ Deadline time.Time }
	// DeadlineWarning: three quarters of the time to the decision
	// deadline passed while the case was open and not escalated.
	DeadlineWarning struct{ Deadline time.Time }
	// ClaimExpired: a claim lease ran out before a decision; the case is
	// back in the queue.
	ClaimExpired struct {
		ClaimedBy string
		ExpiresAt time.Time
	}
	// PersonalDataErased: an admin erased the case's personal data; KeyID
	// names the data key destroyed (none when the case held no personal
	// data). The state and the money trail do not change.
	PersonalDataErased struct{ KeyID string }
)

// ReleaseCause says why reserved funds went back to the fund.
type ReleaseCause int

// Release causes.
const (
	ReleaseUnspecified ReleaseCause = iota
	ReleaseHoldExpired
	ReleasePayoutCancelled
	// ReleaseNotApproved: a first approval's hold, after the second
	// approver rejected or the requester withdrew.
	ReleaseNotApproved
)

func (RequestSubmitted) Type() string   { return "RequestSubmitted" }
func (RequestAmended) Type() string     { return "RequestAmended" }
func (RequestWithdrawn) Type() string   { return "RequestWithdrawn" }
func (InfoRequested) Type() string      { return "InfoRequested" }
func (InfoProvided) Type() string       { return "InfoProvided" }
func (ReviewClaimed) Type() string      { return "ReviewClaimed" }
func (ReviewReleased) Type() string     { return "ReviewReleased" }
func (RequestApproved) Type() string    { return "RequestApproved" }
func (RequestRejected) Type() string    { return "RequestRejected" }
func (FundsReserved) Type() string      { return "FundsReserved" }
func (FundsReleased) Type() string      { return "FundsReleased" }
func (PayoutSent) Type() string         { return "PayoutSent" }
func (PayoutSettled) Type() string      { return "PayoutSettled" }
func (PayoutFailed) Type() string       { return "PayoutFailed" }
func (RequestClosed) Type() string      { return "RequestClosed" }
func (PayoutRetried) Type() string      { return "PayoutRetried" }
func (DeadlineMissed) Type() string     { return "DeadlineMissed" }
func (DeadlineWarning) Type() string    { return "DeadlineWarning" }
func (ClaimExpired) Type() string       { return "ClaimExpired" }
func (PersonalDataErased) Type() string { return "PersonalDataErased" }

func (RequestSubmitted) isBody()   {}
func (RequestAmended) isBody()     {}
func (RequestWithdrawn) isBody()   {}
func (InfoRequested) isBody()      {}
func (InfoProvided) isBody()       {}
func (ReviewClaimed) isBody()      {}
func (ReviewReleased) isBody()     {}
func (RequestApproved) isBody()    {}
func (RequestRejected) isBody()    {}
func (FundsReserved) isBody()      {}
func (FundsReleased) isBody()      {}
func (PayoutSent) isBody()         {}
func (PayoutSettled) isBody()      {}
func (PayoutFailed) isBody()       {}
func (RequestClosed) isBody()      {}
func (PayoutRetried) isBody()      {}
func (DeadlineMissed) isBody()     {}
func (DeadlineWarning) isBody()    {}
func (ClaimExpired) isBody()       {}
func (PersonalDataErased) isBody() {}

// EventTypes lists every event type name.
var EventTypes = []string{"RequestSubmitted", "RequestAmended", "RequestWithdrawn", "InfoRequested",
	"InfoProvided", "ReviewClaimed", "ReviewReleased", "RequestApproved", "RequestRejected",
	"FundsReserved", "FundsReleased", "PayoutSent", "PayoutSettled", "PayoutFailed", "RequestClosed",
	"PayoutRetried", "DeadlineMissed", "DeadlineWarning", "ClaimExpired", "PolicyChanged",
	"FundCreated", "PayeeCreated", "PayeeAccountChanged", "FundAllocationChanged", "PersonalDataErased", "UserCreated", "UserChanged",
	"WebhookRegistered", "WebhookRemoved"}
