package assist

import (
	"slices"
	"strings"
	"time"
)

// Limits on free text, in characters.
const (
	MaxJustification = 4000
	MaxReason        = 2000
	MaxNote          = 2000
	MaxPost          = 64
)

// Cmd is what every transition needs to know about the command that asks
// for it. ID becomes the event's id, so a retried command produces the same
// event and the log de-duplicates it.
type Cmd struct {
	ID    string
	Actor Actor
	At    time.Time
}

func (cmd Cmd) event(caseID, reason string, b Body) Event {
	return Event{ID: cmd.ID, CaseID: caseID, At: cmd.At, Actor: cmd.Actor, CommandID: cmd.ID, Reason: reason, Body: b}
}

// SubmitInput is a new request, already decoded; personal data arrives
// sealed.
type SubmitInput struct {
	Post               string
	Category           Category
	Urgency            Urgency
	AmountCents        int64
	Justification      string
	Beneficiary        Sealed
	BeneficiaryRefHash []byte
	PayeeID            string
	IdempotencyKeyHash []byte
}

// Submit files a new case whose id is the command id.
//
// Errors: CodeForbidden when the actor is not a requester at the post,
// CodeInvalid naming each bad field (a cap exceeded is named with the cap).
func Submit(cmd Cmd, in SubmitInput, p Policy) (Event, error) {
	if cmd.Actor.Role != RoleRequester {
		return Event{}, Errorf(CodeForbidden, "only a requester files requests")
	}
	var probs Problems
	checkPost(&probs, in.Post)
	if in.Post != "" && cmd.Actor.Post != in.Post {
		return Event{}, Errorf(CodeForbidden, "you do not file for post %q", in.Post)
	}
	checkCategory(&probs, "category", in.Category)
	checkUrgency(&probs, "urgency", in.Urgency)
	checkAmount(&probs, "amount_usd_cents", in.AmountCents, in.Category, p)
	checkText(&probs, "justification", in.Justification, MaxJustification, true)
	if len(in.BeneficiaryRefHash) == 0 {
		probs.Add("beneficiary.reference", "is required")
	}
	if err := probs.Err(); err != nil {
		return Event{}, err
	}
	return cmd.event(cmd.ID, "", RequestSubmitted{
		Post:               in.Post,
		Category:           in.Category,
		Urgency:            in.Urgency,
		AmountCents:        in.AmountCents,
		Justification:      in.Justification,
		Beneficiary:        in.Beneficiary,
		BeneficiaryRefHash: in.BeneficiaryRefHash,
		PayeeID:            in.PayeeID,
		Deadline:           p.Deadline(in.Urgency, cmd.At),
		Policy:             p.seen(in.Category),
		IdempotencyKeyHash: in.IdempotencyKeyHash,
	}), nil
}

// AmendInput holds the fields to change; nil leaves a field as it is.
type AmendInput struct {
	Category           *Category
	Urgency            *Urgency
	AmountCents        *int64
	Justification      *string
	Beneficiary        *Sealed
	BeneficiaryRefHash []byte
	PayeeID            *string
}

// Amend changes a request while it waits for review or for information.
//
// Errors: CodeForbidden for anyone but a requester at the case's post,
// CodeConflict in another state, CodeInvalid naming each bad field or when
// nothing changes.
func (c *Case) Amend(cmd Cmd, in AmendInput, p Policy) (Event, error) {
	if err := c.requesterOfPost(cmd); err != nil {
		return Event{}, err
	}
	if c.State != StateSubmitted && c.State != StateInfoRequested {
		return Event{}, conflict("a request can be amended only while submitted or info_requested; it is %s", c.State)
	}
	var probs Problems
	if in.Category == nil && in.Urgency == nil && in.AmountCents == nil && in.Justification == nil &&
		in.Beneficiary == nil && in.PayeeID == nil {
		probs.Add("body", "names no field to change")
	}
	cat, amount := c.Category, c.AmountCents
	if in.Category != nil {
		checkCategory(&probs, "category", *in.Category)
		cat = *in.Category
	}
	if in.Urgency != nil {
		checkUrgency(&probs, "urgency", *in.Urgency)
	}
	if in.AmountCents != nil {
		amount = *in.AmountCents
	}
	if in.Category != nil || in.AmountCents != nil {
		field := "amount_usd_cents"
		if in.AmountCents == nil {
			field = "category"
		}
		checkAmount(&probs, field, amount, cat, p)
	}
	if in.Justification != nil {
		checkText(&probs, "justification", *in.Justification, MaxJustification, true)
	}
	if in.Beneficiary != nil && len(in.BeneficiaryRefHash) == 0 {
		probs.Add("beneficiary.reference", "is required")
	}
	if err := probs.Err(); err != nil {
		return Event{}, err
	}
	b := RequestAmended{Category: in.Category, Urgency: in.Urgency, AmountCents: in.AmountCents,
		Justification: in.Justification, Beneficiary: in.Beneficiary, BeneficiaryRefHash: in.BeneficiaryRefHash,
		PayeeID: in.PayeeID, Policy: p.seen(cat)}
	if in.Urgency != nil {
		b.Deadline = p.Deadline(*in.Urgency, c.CreatedAt)
	}
	return cmd.event(c.ID, "", b), nil
}

// Withdraw ends a request that is still open.
//
// Errors: CodeForbidden for anyone but a requester at the case's post,
// CodeInvalid without a reason, CodeConflict once decided.
func (c *Case) Withdraw(cmd Cmd, reason string) (Event, error) {
	if err := c.requesterOfPost(cmd); err != nil {
		return Event{}, err
	}
	if err := requireText("reason", reason, MaxReason); err != nil {
		return Event{}, err
	}
	if !c.State.Open() {
		return Event{}, conflict("a %s request can no longer be withdrawn", c.State)
	}
	return cmd.event(c.ID, reason, RequestWithdrawn{HoldID: c.pendingHold()}), nil
}

// ErasePersonalData erases the case's personal data, in any state: the
// event names the data key that its caller then destroys. The history and
// the money trail stay; a payout under way goes on.
//
// Errors: CodeForbidden for anyone but an admin, CodeInvalid without a
// reason, CodeConflict when it was erased before.
func (c *Case) ErasePersonalData(cmd Cmd, reason string) (Event, error) {
	if cmd.Actor.Role != RoleAdmin {
		return Event{}, Errorf(CodeForbidden, "only an admin erases personal data")
	}
	if err := requireText("reason", reason, MaxReason); err != nil {
		return Event{}, err
	}
	if c.State == StateNone {
		return Event{}, conflict("there is no request to erase")
	}
	if c.PersonalDataErased {
		return Event{}, conflict("the personal data of this request was erased before")
	}
	return cmd.event(c.ID, reason, PersonalDataErased{KeyID: c.Beneficiary.KeyID}), nil
}

// ProvideInfo answers an approver's question and puts the case back in the
// queue.
//
// Errors: CodeForbidden for anyone but a requester at the case's post,
// CodeInvalid without an answer, CodeConflict unless info_requested.
func (c *Case) ProvideInfo(cmd Cmd, answer string) (Event, error) {
	if err := c.requesterOfPost(cmd); err != nil {
		return Event{}, err
	}
	if err := requireText("answer", answer, MaxJustification); err != nil {
		return Event{}, err
	}
	if c.State != StateInfoRequested {
		return Event{}, conflict("no information was requested; the request is %s", c.State)
	}
	return cmd.event(c.ID, "", InfoProvided{Answer: answer}), nil
}

// Claim gives an approver the case for ttl. A claim that ran out may be
// taken by anyone.
//
// Errors: CodeForbidden for a non-approver or an author of the case, CodeConflict when
// another approver holds it or it is not waiting for review.
func (c *Case) Claim(cmd Cmd, ttl time.Duration) (Event, error) {
	if err := c.reviewer(cmd); err != nil {
		return Event{}, err
	}
	switch {
	case c.State == StateSubmitted:
	case c.State == StateUnderReview && c.claimExpired(cmd.At):
	case c.State == StateUnderReview && c.ClaimedBy == cmd.Actor.Username:
		return Event{}, conflict("you already hold this request until %s", c.ClaimExpiresAt.UTC().Format(time.RFC3339))
	case c.State == StateUnderReview:
		return Event{}, conflict("already claimed by %s until %s", c.ClaimedBy, c.ClaimExpiresAt.UTC().Format(time.RFC3339))
	default:
		return Event{}, conflict("a %s request cannot be claimed", c.State)
	}
	return cmd.event(c.ID, "", ReviewClaimed{ExpiresAt: cmd.At.Add(ttl)}), nil
}

// Release gives a claimed case back to the queue.
//
// Errors: CodeForbidden for a non-approver, CodeConflict unless the actor
// holds the claim.
func (c *Case) Release(cmd Cmd) (Event, error) {
	if cmd.Actor.Role != RoleApprover {
		return Event{}, Errorf(CodeForbidden, "only an approver releases a claim")
	}
	if err := c.holdsClaim(cmd); err != nil {
		return Event{}, err
	}
	return cmd.event(c.ID, "", ReviewReleased{}), nil
}

// ApproveInput is an approver's decision to pay. HoldID names the hold
// already placed on the fund for the amount.
type ApproveInput struct {
	AmountCents        int64
	FundID             string
	HoldID             string
	PayeeID            string
	Note               string
	FundAvailableCents int64
}

// Approve decides to pay AmountCents (at most what was requested) from a
// fund to a payee. Above the policy's second-approval threshold this is
// the first of two approvals (the case awaits a second approver); on a
// case awaiting its second approval it is the second: by another approver
// than the first (and than the filer and the amenders), without a claim,
// for at most the first approval's amount, from the same hold.
//
// Errors: CodeForbidden for a non-approver or an author of the case (four
// eyes), or on a second approval the first approver; CodeConflict unless
// the actor holds a live claim (first approval); CodeInvalid naming the
// bad field.
func (c *Case) Approve(cmd Cmd, in ApproveInput, p Policy) (Event, error) {
	if err := c.reviewer(cmd); err != nil {
		return Event{}, err
	}
	if c.State == StateAwaitingSecondApproval {
		return c.approveSecond(cmd, in, p)
	}
	if err := c.holdsClaim(cmd); err != nil {
		return Event{}, err
	}
	var probs Problems
	switch {
	case in.AmountCents <= 0 || in.AmountCents > MaxAmountCents:
		CheckAmount(&probs, "amount_usd_cents", in.AmountCents, MaxAmountCents)
	case in.AmountCents > c.AmountCents:
		probs.Add("amount_usd_cents", "must not exceed the requested %s", FormatUSD(c.AmountCents))
	default:
		checkAmount(&probs, "amount_usd_cents", in.AmountCents, c.Category, p)
	}
	if strings.TrimSpace(in.FundID) == "" {
		probs.Add("fund_id", "is required")
	}
	if in.PayeeID == "" && c.PayeeID == "" {
		probs.Add("payee_id", "is required: the request names no payee")
	}
	checkText(&probs, "note", in.Note, MaxNote, false)
	if in.HoldID == "" {
		probs.Add("hold_id", "is required")
	}
	if err := probs.Err(); err != nil {
		return Event{}, err
	}
	if slices.Contains(c.ReleasedHolds, in.HoldID) {
		return Event{}, conflict("the hold on the fund expired before the approval was recorded: approve again")
	}
	payee := in.PayeeID
	if payee == "" {
		payee = c.PayeeID
	}
	step := ApprovalOnly
	if p.needsSecond(in.AmountCents) {
		step = ApprovalFirst
	}
	return cmd.event(c.ID, in.Note, RequestApproved{AmountCents: in.AmountCents, FundID: in.FundID,
		HoldID: in.HoldID, PayeeID: payee, Note: in.Note, FundAvailableCents: in.FundAvailableCents,
		Policy: p.seen(c.Category), Step: step}), nil
}

// approveSecond is the second approval of a case awaiting it. The fund,
// hold and payee are the first approval's; in.FundID, in.HoldID and
// in.PayeeID, when given, must name the same.
func (c *Case) approveSecond(cmd Cmd, in ApproveInput, p Policy) (Event, error) {
	if err := c.secondApprover(cmd); err != nil {
		return Event{}, err
	}
	var probs Problems
	switch {
	case in.AmountCents <= 0:
		probs.Add("amount_usd_cents", "must be a positive number of cents")
	case in.AmountCents > c.ApprovedCents:
		probs.Add("amount_usd_cents", "must not exceed the first approval's %s", FormatUSD(c.ApprovedCents))
	}
	if in.FundID != "" && in.FundID != c.FundID {
		probs.Add("fund_id", "must be the first approval's fund %s", c.FundID)
	}
	if in.PayeeID != "" && in.PayeeID != c.PayeeID {
		probs.Add("payee_id", "must be the first approval's payee %s", c.PayeeID)
	}
	checkText(&probs, "note", in.Note, MaxNote, false)
	if err := probs.Err(); err != nil {
		return Event{}, err
	}
	return cmd.event(c.ID, in.Note, RequestApproved{AmountCents: in.AmountCents, FundID: c.FundID,
		HoldID: c.HoldID, PayeeID: c.PayeeID, Note: in.Note, FundAvailableCents: in.FundAvailableCents,
		Policy: p.seen(c.Category), Step: ApprovalSecond}), nil
}

// secondApprover checks that the actor may give or refuse the second
// approval: not the first approver, nor anyone who filed or amended the
// case.
func (c *Case) secondApprover(cmd Cmd) error {
	for _, a := range c.Approvals {
		if a.Approver == cmd.Actor.Username {
			return Errorf(CodeForbidden, "you gave the first approval: a different approver must give the second")
		}
	}
	if slices.Contains(c.Amenders, cmd.Actor.Username) {
		return Errorf(CodeForbidden, "you amended this request: someone else must review it")
	}
	return nil
}

// pendingHold is the hold of a first approval still waiting for its
// second, which a rejection or withdrawal gives back.
func (c *Case) pendingHold() string {
	if c.State == StateAwaitingSecondApproval {
		return c.HoldID
	}
	return ""
}

// Reject decides not to pay. On a case awaiting its second approval, the
// second approver rejects without a claim, and the first approval's hold
// goes back to the fund.
//
// Errors: CodeForbidden for a non-approver or an author of the case (and,
// awaiting the second approval, the first approver), CodeInvalid without
// a reason, CodeConflict unless the actor holds a live claim.
func (c *Case) Reject(cmd Cmd, reason string) (Event, error) {
	if err := c.reviewer(cmd); err != nil {
		return Event{}, err
	}
	if err := requireText("reason", reason, MaxReason); err != nil {
		return Event{}, err
	}
	if c.State == StateAwaitingSecondApproval {
		if err := c.secondApprover(cmd); err != nil {
			return Event{}, err
		}
		return cmd.event(c.ID, reason, RequestRejected{HoldID: c.HoldID}), nil
	}
	if err := c.holdsClaim(cmd); err != nil {
		return Event{}, err
	}
	return cmd.event(c.ID, reason, RequestRejected{}), nil
}

// RequestInfo asks the requester a question; the claim ends.
//
// Errors: CodeForbidden for a non-approver or an author of the case, CodeInvalid
// without a question, CodeConflict unless the actor holds a live claim.
func (c *Case) RequestInfo(cmd Cmd, question string) (Event, error) {
	if err := c.reviewer(cmd); err != nil {
		return Event{}, err
	}
	if err := requireText("question", question, MaxReason); err != nil {
		return Event{}, err
	}
	if err := c.holdsClaim(cmd); err != nil {
		return Event{}, err
	}
	return cmd.event(c.ID, "", InfoRequested{Question: question}), nil
}

// ReserveFunds turns the approval's hold into a reservation for a payout.
//
// Errors: CodeConflict unless approved with this hold and not yet reserved.
func (c *Case) ReserveFunds(cmd Cmd, holdID, payoutID string) (Event, error) {
	if payoutID == "" || holdID == "" {
		return Event{}, Errorf(CodeInvalid, "a reservation needs a hold and a payout")
	}
	if c.State != StateApproved || c.HoldID != holdID {
		return Event{}, conflict("hold %s is not the approval's hold (state %s)", holdID, c.State)
	}
	if c.PayoutID != "" {
		return Event{}, conflict("funds already reserved for payout %s", c.PayoutID)
	}
	return cmd.event(c.ID, "", FundsReserved{HoldID: holdID, FundID: c.FundID, AmountCents: c.ApprovedCents, PayoutID: payoutID}), nil
}

// ExpireHold records that a hold placed for an approval that never got
// recorded goes back to its fund.
//
// Errors: CodeConflict when the case's approval uses the hold.
func (c *Case) ExpireHold(cmd Cmd, holdID, fundID string, amount int64) (Event, error) {
	if c.ID == "" {
		return Event{}, Errorf(CodeNotFound, "no such request")
	}
	if slices.Contains(c.ReleasedHolds, holdID) {
		return Event{}, conflict("hold %s was already released", holdID)
	}
	if c.HoldID == holdID {
		if c.State != StateRejected && c.State != StateWithdrawn {
			return Event{}, conflict("hold %s backs the recorded approval", holdID)
		}
		// A first approval's hold, after the second approver rejected or
		// the requester withdrew.
		return cmd.event(c.ID, "the request was "+string(c.State)+" before its second approval",
			FundsReleased{HoldID: holdID, FundID: fundID, AmountCents: amount, Cause: ReleaseNotApproved}), nil
	}
	return cmd.event(c.ID, "hold expired before the approval was recorded",
		FundsReleased{HoldID: holdID, FundID: fundID, AmountCents: amount, Cause: ReleaseHoldExpired}), nil
}

// SendPayout records that the provider accepted a payout.
//
// Errors: CodeConflict unless funds are reserved for this payout and it is
// not already under way.
func (c *Case) SendPayout(cmd Cmd, payoutID, providerRef string, attempt int) (Event, error) {
	if payoutID == "" || c.PayoutID != payoutID || (c.State != StateApproved && c.State != StateDisbursementFailed) {
		return Event{}, conflict("payout %s cannot be sent while the request is %s", payoutID, c.State)
	}
	return cmd.event(c.ID, "", PayoutSent{PayoutID: payoutID, PayeeID: c.PayeeID, AmountCents: c.ApprovedCents,
		ProviderRef: providerRef, Attempt: attempt}), nil
}

// SettlePayout records that the money arrived.
//
// Errors: CodeConflict unless this payout is being disbursed.
func (c *Case) SettlePayout(cmd Cmd, payoutID, providerRef string) (Event, error) {
	if payoutID == "" || c.PayoutID != payoutID || c.State != StateDisbursing {
		return Event{}, conflict("payout %s cannot settle while the request is %s", payoutID, c.State)
	}
	return cmd.event(c.ID, "", PayoutSettled{PayoutID: payoutID, ProviderRef: providerRef}), nil
}

// FailPayout records that the provider refused or lost a payout, whether
// before accepting it (approved, or failed before and retried) or after.
//
// Errors: CodeConflict unless this payout is the case's and under way.
func (c *Case) FailPayout(cmd Cmd, payoutID, reason string, attempt int) (Event, error) {
	if payoutID == "" || c.PayoutID != payoutID || (c.State != StateDisbursing && c.State != StateApproved && c.State != StateDisbursementFailed) {
		return Event{}, conflict("payout %s cannot fail while the request is %s", payoutID, c.State)
	}
	return cmd.event(c.ID, reason, PayoutFailed{PayoutID: payoutID, Error: reason, Attempt: attempt}), nil
}

// RetryPayout sends a failed payout again as attempt. Recorded before the
// ledger moves, it orders a retry against a cancellation of the same
// failure: whichever is recorded first wins and the other is refused.
//
// Errors: CodeForbidden for anyone but finance, CodeConflict unless this
// payout failed.
func (c *Case) RetryPayout(cmd Cmd, payoutID string, attempt int) (Event, error) {
	if cmd.Actor.Role != RoleFinance {
		return Event{}, Errorf(CodeForbidden, "only finance retries a payout")
	}
	if payoutID == "" || c.PayoutID != payoutID || c.State != StateDisbursementFailed {
		return Event{}, conflict("only a failed payout can be retried; the request is %s", c.State)
	}
	return cmd.event(c.ID, "", PayoutRetried{PayoutID: payoutID, Attempt: attempt}), nil
}

// CancelPayout gives up a failed payout: its funds return to the fund and
// the case closes.
//
// Errors: CodeForbidden for anyone but finance, CodeInvalid without a
// reason, CodeConflict unless the payout failed.
func (c *Case) CancelPayout(cmd Cmd, reason string) (Event, error) {
	if cmd.Actor.Role != RoleFinance {
		return Event{}, Errorf(CodeForbidden, "only finance cancels a payout")
	}
	if err := requireText("reason", reason, MaxReason); err != nil {
		return Event{}, err
	}
	if c.State != StateDisbursementFailed {
		return Event{}, conflict("only a failed payout can be cancelled; the request is %s", c.State)
	}
	return cmd.event(c.ID, reason, FundsReleased{HoldID: c.HoldID, FundID: c.FundID, AmountCents: c.ApprovedCents,
		Cause: ReleasePayoutCancelled}), nil
}

// Close ends a disbursed case.
//
// Errors: CodeForbidden for anyone but finance or admin, CodeConflict
// unless disbursed.
func (c *Case) Close(cmd Cmd, reason string) (Event, error) {
	if cmd.Actor.Role != RoleFinance && cmd.Actor.Role != RoleAdmin {
		return Event{}, Errorf(CodeForbidden, "only finance or an admin closes a request")
	}
	if err := optionalText("reason", reason, MaxReason); err != nil {
		return Event{}, err
	}
	if c.State != StateDisbursed {
		return Event{}, conflict("only a disbursed request can be closed; it is %s", c.State)
	}
	return cmd.event(c.ID, reason, RequestClosed{}), nil
}

// MissDeadline records that the decision deadline passed while the case
// was still open, which escalates it. It is EVA's own doing (a timer), and
// happens at most once per case.
//
// Errors: CodeConflict when the case is decided, already escalated, or
// its deadline is still ahead.
func (c *Case) MissDeadline(cmd Cmd) (Event, error) {
	switch {
	case !c.State.Open():
		return Event{}, conflict("a %s request has no deadline to miss", c.State)
	case c.Escalated:
		return Event{}, conflict("the deadline was already missed")
	case cmd.At.Before(c.Deadline):
		return Event{}, conflict("the deadline %s is still ahead", c.Deadline.UTC().Format(time.RFC3339))
	}
	return cmd.event(c.ID, "", DeadlineMissed{Deadline: c.Deadline}), nil
}

// deadlineWarnNum/deadlineWarnDen is the part of the time from filing to the
// decision deadline after which an undecided case is warned about:
// three quarters.
const (
	deadlineWarnNum = 3
	deadlineWarnDen = 4
)

// WarnAt is when a case filed at filed with a decision deadline warns
// that the deadline is near: three quarters of the way from filing to
// the deadline.
func WarnAt(filed, deadline time.Time) time.Time {
	return filed.Add(deadline.Sub(filed) / deadlineWarnDen * deadlineWarnNum)
}

// WarnAt is when the case warns that its deadline is near.
func (c *Case) WarnAt() time.Time { return WarnAt(c.CreatedAt, c.Deadline) }

// WarnDeadline records that three quarters of the time to the decision
// deadline passed while the case was still open and not escalated: the
// deadline is near. It is EVA's own doing (a timer), at most once per
// deadline; past the deadline it is DeadlineMissed's turn.
//
// Errors: CodeConflict when the case is decided, escalated, already
// warned about this deadline, not yet at its warning time, or past its
// deadline.
func (c *Case) WarnDeadline(cmd Cmd) (Event, error) {
	switch {
	case !c.State.Open():
		return Event{}, conflict("a %s request has no deadline to warn about", c.State)
	case c.Escalated:
		return Event{}, conflict("the deadline was already missed")
	case c.Warned:
		return Event{}, conflict("the deadline was already warned about")
	case cmd.At.Before(c.WarnAt()):
		return Event{}, conflict("the warning is due at %s", c.WarnAt().UTC().Format(time.RFC3339))
	case !cmd.At.Before(c.Deadline):
		return Event{}, conflict("the deadline %s has passed", c.Deadline.UTC().Format(time.RFC3339))
	}
	return cmd.event(c.ID, "", DeadlineWarning{Deadline: c.Deadline}), nil
}

// ExpireClaim records that a claim lease ran out before a decision: the
// case goes back to the queue. It is EVA's own doing (a timer).
//
// Errors: CodeConflict unless the case is under review with a claim that
// has run out.
func (c *Case) ExpireClaim(cmd Cmd) (Event, error) {
	if c.State != StateUnderReview {
		return Event{}, conflict("the request is %s, not under review", c.State)
	}
	if !c.claimExpired(cmd.At) {
		return Event{}, conflict("the claim runs until %s", c.ClaimExpiresAt.UTC().Format(time.RFC3339))
	}
	return cmd.event(c.ID, "", ClaimExpired{ClaimedBy: c.ClaimedBy, ExpiresAt: c.ClaimExpiresAt}), nil
}

func (c *Case) requesterOfPost(cmd Cmd) error {
	if cmd.Actor.Role != RoleRequester || cmd.Actor.Post != c.Post {
		return Errorf(CodeForbidden, "only a requester at %s may change this request", c.Post)
	}
	return nil
}

// reviewer checks that the actor may review the case: an approver who is
// none of its authors. The four-eyes rule covers the whole case: whoever
// filed it, amended it or answered a question on it — also a user who is
// both requester and approver, amending a colleague's request — never
// claims, approves, rejects or questions it.
func (c *Case) reviewer(cmd Cmd) error {
	if cmd.Actor.Role != RoleApprover {
		return Errorf(CodeForbidden, "only an approver reviews requests")
	}
	if slices.Contains(c.Authors, cmd.Actor.Username) || cmd.Actor.Username == c.Requester {
		return Errorf(CodeForbidden, "four-eyes rule: you %s this request, so someone else must review it; "+
			"nobody who filed, amended or answered for a request reviews it", c.authorship(cmd.Actor.Username))
	}
	return nil
}

// authorship says how username wrote the case, in words.
func (c *Case) authorship(username string) string {
	if username == c.Requester {
		return "filed"
	}
	return "amended or answered a question on"
}

func (c *Case) holdsClaim(cmd Cmd) error {
	if c.State != StateUnderReview {
		return conflict("the request is %s, not under review", c.State)
	}
	if c.ClaimedBy != cmd.Actor.Username {
		return conflict("claim the request first: it is held by %s", c.ClaimedBy)
	}
	if c.claimExpired(cmd.At) {
		return conflict("your claim ran out at %s: claim it again", c.ClaimExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

func (c *Case) claimExpired(now time.Time) bool { return !now.Before(c.ClaimExpiresAt) }

func checkPost(probs *Problems, post string) {
	switch {
	case post == "":
		probs.Add("post", "is required")
	case !ValidPost(post):
		probs.Add("post", "must be up to %d characters A-Z, 0-9, '-' or '_'", MaxPost)
	}
}

// ValidPost reports whether post is a post code: up to MaxPost characters
// A-Z, 0-9, '-' or '_'.
func ValidPost(post string) bool {
	return post != "" && len(post) <= MaxPost && !strings.ContainsFunc(post, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	})
}

func checkCategory(probs *Problems, field string, c Category) {
	if !slices.Contains(Categories, c) {
		probs.Add(field, "must be one of %s", joinOf(Categories))
	}
}

func checkUrgency(probs *Problems, field string, u Urgency) {
	if !slices.Contains(Urgencies, u) {
		probs.Add(field, "must be one of %s", joinOf(Urgencies))
	}
}

func checkAmount(probs *Problems, field string, cents int64, c Category, p Policy) {
	if cents <= 0 || cents > MaxAmountCents {
		CheckAmount(probs, field, cents, MaxAmountCents)
		return
	}
	if capCents, name := p.Cap(c); cents > capCents {
		probs.Add(field, "%s exceeds the %s", FormatUSD(cents), name)
	}
}

// checkText checks multi-line free text (TextFault).
func checkText(probs *Problems, field, s string, maxChars int, required bool) {
	if required && strings.TrimSpace(s) == "" {
		probs.Add(field, "is required")
		return
	}
	checkFree(probs, field, s, maxChars, true)
}

func requireText(field, s string, maxChars int) error {
	var probs Problems
	checkText(&probs, field, s, maxChars, true)
	return probs.Err()
}

func optionalText(field, s string, maxChars int) error {
	var probs Problems
	checkText(&probs, field, s, maxChars, false)
	return probs.Err()
}

func joinOf[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
