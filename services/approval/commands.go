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
	return s.execute(ctx, r.CaseID, r.CommandID, r.Actor, func(c *assist.Case, cmd assist.Cmd) (assist.Event, error) {
		return c.Claim(cmd, s.cfg.Policy.ClaimTTL)
	})
}

// Release gives a claimed case back to the queue.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict unless the actor holds
// the claim.
func (s *Service) Release(ctx context.Context, r approvalapi.CaseCommand) (*assist.Case, error) {
	return s.execute(ctx, r.CaseID, r.CommandID, r.Actor, func(c *assist.Case, cmd assist.Cmd) (assist.Event, error) {
		return c.Release(cmd)
	})
}

// Reject decides not to pay.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid.
func (s *Service) Reject(ctx context.Context, r approvalapi.RejectRequest) (*assist.Case, error) {
	return s.execute(ctx, r.CaseID, r.CommandID, r.Actor, func(c *assist.Case, cmd assist.Cmd) (assist.Event, error) {
		return c.Reject(cmd, r.Reason)
	})
}

// RequestInfo asks the requester a question.
//
// Errors: CodeNotFound, CodeForbidden, CodeConflict, CodeInvalid.
func (s *Service) RequestInfo(ctx context.Context, r approvalapi.RequestInfoRequest) (*assist.Case, error) {
	return s.execute(ctx, r.CaseID, r.CommandID, r.Actor, func(c *assist.Case, cmd assist.Cmd) (assist.Event, error) {
		return c.RequestInfo(cmd, r.Question)
	})
}

// Approve decides to pay. The amount is first held on the fund (the hold's
// id is the command id, so a retry finds its hold): a fund that cannot
// cover it refuses at once, naming what is available. Then the approval is
// appended, recording the hold and what the approver saw. If the approval
// cannot be recorded, the hold is given back — through the case's log, so
// that it can never be given back under a recorded approval; if even that
// fails, the hold expires and the sweeper gives it back.
//
// Errors: CodeNotFound, CodeForbidden (not an approver, or the filer),
// CodeConflict (no live claim, lost race), CodeInsufficientFunds with the
// available amount, CodeInvalid naming the field.
func (s *Service) Approve(ctx context.Context, r approvalapi.ApproveRequest) (*assist.Case, error) {
	if err := checkIDs(r.CaseID, r.CommandID); err != nil {
		return nil, err
	}
	recs, err := s.log.Load(ctx, r.CaseID)
	if err != nil {
		return nil, err
	}
	if c := assist.FoldThrough(recs, r.CommandID); c != nil {
		return c, nil // approved before: the same answer
	}
	c := assist.Fold(recs)
	if c == nil {
		return nil, assist.Errorf(assist.CodeNotFound, "no request %s", r.CaseID)
	}
	in := assist.ApproveInput{AmountCents: r.AmountCents, FundID: r.FundID, HoldID: r.CommandID, PayeeID: r.PayeeID, Note: r.Note}
	cmd := assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}
	// Decide first: a refused approval holds no money.
	if _, err := c.Approve(cmd, in, s.cfg.Policy); err != nil {
		return nil, err
	}
	payee := r.PayeeID
	if payee == "" {
		payee = c.PayeeID
	}
	hold, err := s.holds.PlaceHold(ctx, disbursementapi.PlaceHoldRequest{HoldID: r.CommandID, FundID: r.FundID,
		CaseID: r.CaseID, PayeeID: payee, AmountCents: r.AmountCents})
	if err != nil {
		return nil, err
	}
	if hold.FundID != r.FundID || hold.AmountCents != r.AmountCents || hold.CaseID != r.CaseID {
		return nil, assist.Errorf(assist.CodeConflict, "this command already held another amount or fund")
	}
	in.FundAvailableCents = hold.AvailableCents
	approved, err := s.log.Execute(ctx, r.CaseID, r.CommandID, func(c *assist.Case) (assist.Event, error) {
		return c.Approve(assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}, in, s.cfg.Policy)
	})
	if err != nil {
		if code := assist.ErrorCode(err); code != assist.CodeUnavailable && code != assist.CodeInternal {
			// Refused for sure: give the money back now rather than at
			// expiry.
			if _, rerr := s.holds.ReleaseHold(ctx, disbursementapi.ReleaseHoldRequest{HoldID: hold.ID}); rerr != nil {
				s.zl.Sugar().Warnf("release hold %s after a refused approval: %v (it will expire)", hold.ID, rerr)
			}
		}
		return nil, err
	}
	return approved, nil
}

func (s *Service) execute(ctx context.Context, caseID, commandID string, actor assist.Actor, decide func(*assist.Case, assist.Cmd) (assist.Event, error)) (*assist.Case, error) {
	if err := checkIDs(caseID, commandID); err != nil {
		return nil, err
	}
	return s.log.Execute(ctx, caseID, commandID, func(c *assist.Case) (assist.Event, error) {
		if c == nil {
			return assist.Event{}, assist.Errorf(assist.CodeNotFound, "no request %s", caseID)
		}
		return decide(c, assist.Cmd{ID: commandID, Actor: actor, At: s.now()})
	})
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
