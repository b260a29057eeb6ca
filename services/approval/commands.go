package approval

import (
	"context"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// Queue returns a page of open cases, missed deadlines first, then by
// deadline, each with the other open cases that may be its duplicates.
//
// Errors: CodeInvalid for a bad cursor.
func (s *Service) Queue(ctx context.Context, r approvalapi.QueueRequest) (approvalapi.QueuePage, error) {
	return s.store.Queue(ctx, s.now(), r)
}

// Claim gives the approver the case for the policy's claim time.
//
// Errors: CodeNotFound, CodeForbidden (not an approver, or the filer),
// CodeConflict (held by another, or not waiting for review).
func (s *Service) Claim(ctx context.Context, r approvalapi.CaseCommand) (*assist.Case, error) {
	p, err := s.policy.Current(ctx)
	if err != nil {
		return nil, err
	}
	return s.execute(ctx, r.CaseID, r.CommandID, func(c *assist.Case) (assist.Event, error) {
		return c.Claim(s.cmd(r.CommandID, r.Actor), p.ClaimTTL)
	})
}

// Release gives a claimed case back to the queue.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict unless the actor holds
// the claim.
func (s *Service) Release(ctx context.Context, r approvalapi.CaseCommand) (*assist.Case, error) {
	return s.execute(ctx, r.CaseID, r.CommandID, func(c *assist.Case) (assist.Event, error) {
		return c.Release(s.cmd(r.CommandID, r.Actor))
	})
}

// Reject decides not to pay.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid.
func (s *Service) Reject(ctx context.Context, r approvalapi.RejectRequest) (*assist.Case, error) {
	return s.execute(ctx, r.CaseID, r.CommandID, func(c *assist.Case) (assist.Event, error) {
		return c.Reject(s.cmd(r.CommandID, r.Actor), r.Reason)
	})
}

// RequestInfo asks the requester a question.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid.
func (s *Service) RequestInfo(ctx context.Context, r approvalapi.RequestInfoRequest) (*assist.Case, error) {
	return s.execute(ctx, r.CaseID, r.CommandID, func(c *assist.Case) (assist.Event, error) {
		return c.RequestInfo(s.cmd(r.CommandID, r.Actor), r.Question)
	})
}

// Approve decides to pay. Above the policy's second-approval threshold
// the first approval holds the money and the case awaits a second,
// different approver, whose approval (no claim needed, at most the first
// amount) uses the first's hold and places none. The case is loaded and
// the approval decided once; then, before it is recorded, the amount is held on the fund (the
// hold's id is the command id, so a retry finds its hold): a fund that
// cannot cover it refuses, naming what is available, and nothing is
// recorded. Then the approval is appended with the hold and what the
// approver saw. If the approval cannot be recorded, the hold is given back
// — through the case's log, so that it can never be given back under a
// recorded approval; if even that fails, the hold expires and the sweeper
// gives it back.
//
// Errors: CodeNotFound, CodeForbidden (not an approver, or the filer),
// CodeConflict (no live claim, lost race), CodeInsufficientFunds with the
// available amount, CodeInvalid naming the field.
func (s *Service) Approve(ctx context.Context, r approvalapi.ApproveRequest) (*assist.Case, error) {
	if err := checkIDs(r.CaseID, r.CommandID); err != nil {
		return nil, err
	}
	in := assist.ApproveInput{AmountCents: r.AmountCents, FundID: r.FundID, HoldID: r.CommandID, PayeeID: r.PayeeID, Note: r.Note}
	p, err := s.policy.Current(ctx)
	if err != nil {
		return nil, err
	}
	var held string // the hold placed for this approval, if any
	approved, err := s.log.ExecuteHeld(ctx, s.held, eventlog.Command{CaseID: r.CaseID, ID: r.CommandID,
		Decide: func(c *assist.Case) (assist.Event, error) {
			return c.Approve(s.cmd(r.CommandID, r.Actor), in, p)
		},
		Prepare: func(ctx context.Context, c *assist.Case, e *assist.Event) error {
			b := e.Body.(assist.RequestApproved)
			if b.Step == assist.ApprovalSecond {
				// The first approval's hold already holds the money; asking
				// for it again reads it, with what the fund has left.
				hold, err := s.holds.PlaceHold(ctx, disbursementapi.PlaceHoldRequest{HoldID: b.HoldID, FundID: b.FundID,
					CaseID: e.CaseID, PayeeID: b.PayeeID, AmountCents: c.ApprovedCents})
				if err != nil {
					return err
				}
				if hold.Status != disbursementapi.HoldHeld {
					return assist.Errorf(assist.CodeConflict, "the first approval's hold is %s", hold.Status)
				}
				b.FundAvailableCents = hold.AvailableCents
				e.Body = b
				return nil
			}
			hold, err := s.holds.PlaceHold(ctx, disbursementapi.PlaceHoldRequest{HoldID: b.HoldID, FundID: b.FundID,
				CaseID: e.CaseID, PayeeID: b.PayeeID, AmountCents: b.AmountCents})
			if err != nil {
				return err
			}
			if hold.FundID != b.FundID || hold.AmountCents != b.AmountCents || hold.CaseID != e.CaseID {
				// Another command's hold: not this approval's to give back.
				return assist.Errorf(assist.CodeConflict, "this command already held another amount or fund")
			}
			held = hold.ID
			b.FundAvailableCents = hold.AvailableCents
			e.Body = b
			return nil
		},
	})
	if err != nil && held != "" {
		if code := assist.ErrorCode(err); code != assist.CodeUnavailable && code != assist.CodeInternal {
			// Refused for sure: give the money back now rather than at
			// expiry.
			if _, rerr := s.holds.ReleaseHold(ctx, disbursementapi.ReleaseHoldRequest{HoldID: held}); rerr != nil {
				s.zl.Sugar().Warnf("release hold %s after a refused approval: %v (it will expire)", held, rerr)
			}
		}
	}
	return approved, err
}

func (s *Service) execute(ctx context.Context, caseID, commandID string, decide func(*assist.Case) (assist.Event, error)) (*assist.Case, error) {
	if err := checkIDs(caseID, commandID); err != nil {
		return nil, err
	}
	return s.log.ExecuteHeld(ctx, s.held, eventlog.Command{CaseID: caseID, ID: commandID, Decide: decide})
}

// cmd is what a transition knows of the command deciding it.
func (s *Service) cmd(id string, actor assist.Actor) assist.Cmd {
	return assist.Cmd{ID: id, Actor: actor, At: s.now()}
}

func checkIDs(caseID, commandID string) error {
	if !eventlog.ValidCaseID(caseID) {
		return assist.Errorf(assist.CodeNotFound, "no request %q", caseID)
	}
	if !eventlog.ValidCaseID(commandID) {
		return assist.Errorf(assist.CodeInvalid, "command id %q is not a UUID", commandID)
	}
	return nil
}
