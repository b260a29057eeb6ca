package assist

import (
	"slices"
	"time"
)

// Apply folds one event into the case. It is total: every event applies to
// every state without failing, because events are facts that already
// happened; the transitions that produce them do the checking. seq is the
// event's log position and becomes the case's Version.
func (c *Case) Apply(e Event, seq uint64) {
	if c.ID == "" {
		c.ID = e.CaseID
	}
	c.Version = seq
	c.Events++
	c.UpdatedAt = e.At
	switch b := e.Body.(type) {
	case RequestSubmitted:
		c.Requester = e.Actor.Username
		c.addAuthor(e.Actor.Username)
		c.Post = b.Post
		c.Category = b.Category
		c.Urgency = b.Urgency
		c.AmountCents = b.AmountCents
		c.Justification = b.Justification
		c.Beneficiary = b.Beneficiary
		c.BeneficiaryRefHash = b.BeneficiaryRefHash
		c.PossibleDuplicateOf = b.PossibleDuplicateOf
		c.PayeeID = b.PayeeID
		c.Deadline = b.Deadline
		c.PolicyVersion = b.Policy.Version
		c.CreatedAt = e.At
		c.State = StateSubmitted
	case RequestAmended:
		c.addAuthor(e.Actor.Username)
		if b.Category != nil {
			c.Category = *b.Category
		}
		if b.Urgency != nil {
			c.Urgency = *b.Urgency
		}
		if b.AmountCents != nil {
			c.AmountCents = *b.AmountCents
		}
		if b.Justification != nil {
			c.Justification = *b.Justification
		}
		if b.Beneficiary != nil {
			c.Beneficiary = *b.Beneficiary
		}
		if len(b.BeneficiaryRefHash) > 0 {
			c.BeneficiaryRefHash = b.BeneficiaryRefHash
		}
		if b.PayeeID != nil {
			c.PayeeID = *b.PayeeID
		}
		if !b.Deadline.IsZero() {
			if !b.Deadline.Equal(c.Deadline) {
				c.Warned = false // a new deadline, its own warning
			}
			c.Deadline = b.Deadline
		}
		if e.Actor.Username != "" && !slices.Contains(c.Amenders, e.Actor.Username) {
			c.Amenders = append(c.Amenders, e.Actor.Username)
		}
	case RequestWithdrawn:
		c.State = StateWithdrawn
		c.clearClaim()
	case InfoRequested:
		c.State = StateInfoRequested
		c.Question = b.Question
		c.clearClaim()
	case InfoProvided:
		c.addAuthor(e.Actor.Username)
		c.State = StateSubmitted
		c.Question = ""
	case ReviewClaimed:
		c.State = StateUnderReview
		c.ClaimedBy = e.Actor.Username
		c.ClaimExpiresAt = b.ExpiresAt
	case ReviewReleased:
		c.State = StateSubmitted
		c.clearClaim()
	case RequestApproved:
		c.State = StateApproved
		if b.Step == ApprovalFirst {
			c.State = StateAwaitingSecondApproval
		}
		c.Approvals = append(c.Approvals, Approval{Approver: e.Actor.Username, AmountCents: b.AmountCents, At: e.At,
			PolicyVersion: b.Policy.Version})
		c.ApprovedCents = b.AmountCents
		c.ApprovedBy = e.Actor.Username
		c.FundID = b.FundID
		c.HoldID = b.HoldID
		if b.PayeeID != "" {
			c.PayeeID = b.PayeeID
		}
		c.clearClaim()
	case RequestRejected:
		c.State = StateRejected
		c.clearClaim()
	case FundsReserved:
		c.PayoutID, c.PayoutAccount = b.PayoutID, b.PayeeAccount
	case FundsReleased:
		c.ReleasedHolds = append(c.ReleasedHolds, b.HoldID)
		if b.Cause == ReleasePayoutCancelled {
			c.State = StateClosed
		}
	case PayoutSent:
		c.State = StateDisbursing
		c.PayoutID = b.PayoutID
		c.PayoutAttempt = b.Attempt
	case PayoutSettled:
		c.State = StateDisbursed
	case PayoutFailed:
		c.State = StateDisbursementFailed
		c.PayoutAttempt = b.Attempt
	case PayoutRetried:
		c.State = StateApproved // approved, its payout to be sent again
		c.PayoutAttempt = b.Attempt
	case RequestClosed:
		c.State = StateClosed
	case DeadlineMissed:
		c.Escalated = true
	case DeadlineWarning:
		c.Warned = true
	case ClaimExpired:
		c.State = StateSubmitted
		c.clearClaim()
	case PersonalDataErased:
		// Whatever was sealed no longer opens: the fold forgets it, so
		// that no read model rebuilt from the log keeps it either.
		c.PersonalDataErased = true
		c.Beneficiary = Sealed{KeyID: c.Beneficiary.KeyID}
		c.BeneficiaryRefHash = nil
	}
}

func (c *Case) addAuthor(username string) {
	if username != "" && !slices.Contains(c.Authors, username) {
		c.Authors = append(c.Authors, username)
	}
}

func (c *Case) clearClaim() {
	c.ClaimedBy = ""
	c.ClaimExpiresAt = time.Time{}
}

// Recorded is an event with its log position.
type Recorded struct {
	Seq   uint64
	Event Event
}

// Fold rebuilds a case from its events in log order. It returns nil for no
// events.
func Fold(events []Recorded) *Case {
	if len(events) == 0 {
		return nil
	}
	c := &Case{}
	for _, r := range events {
		c.Apply(r.Event, r.Seq)
	}
	return c
}

// FoldThrough rebuilds a case as it stood right after the event caused by
// commandID; nil when no event carries the command. A command retried
// after it happened answers with this.
func FoldThrough(events []Recorded, commandID string) *Case {
	if commandID == "" {
		return nil
	}
	for i, r := range events {
		if r.Event.CommandID == commandID {
			return Fold(events[:i+1])
		}
	}
	return nil
}
