package disbursement

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// Apply applies one event of the log to the ledger, inside the consumer's
// transaction. The log is the truth: holds become reservations, payouts
// advance and money moves only here, each step at most once; the funds'
// and payees' rows are built from their events (ADR 24).
func (s *Service) Apply(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
	e, err := eventcodec.Decode(m.Type, m.Data)
	if err != nil {
		return eventlog.Poison(err)
	}
	// An allocation change moves the fund's row once, keyed by its
	// ledger entry; then the double-entry ledger (journal.go), which reads
	// only its own tables, which the effects below do not touch.
	if err := s.store.ApplyAllocation(ctx, q, m.Seq, e); err != nil {
		return err
	}
	if err := s.store.Journal(ctx, q, m.Seq, e); err != nil {
		return err
	}
	now := s.now()
	switch b := e.Body.(type) {
	case assist.RequestApproved:
		switch b.Step {
		case assist.ApprovalFirst:
			// The hold waits for the second approval.
			return s.store.KeepHold(ctx, q, b.HoldID, now)
		case assist.ApprovalSecond:
			if err := s.store.ShrinkHold(ctx, q, b.HoldID, b.AmountCents, now); err != nil {
				return err
			}
		}
		// With the worker running here, the new payout is leased to it
		// and handed to it once this transaction commits (handOff): its
		// first step needs no claim, and a hand-off lost is claimed when
		// its lease ends. Otherwise the worker is woken to claim it.
		var first *Work
		var leaseUntil time.Time
		if s.working.Load() && eventlog.AfterCommit(ctx, func() {
			if first != nil {
				s.handOff(*first)
			}
		}) {
			leaseUntil = now.Add(lease)
		} else {
			s.pokeAfter(ctx)
		}
		var err error
		first, err = s.store.ReserveHold(ctx, q, b.HoldID, disbursementapi.Payout{ID: newID(), PayeeID: b.PayeeID, CreatedAt: now}, newID(), leaseUntil)
		if assist.IsCode(err, assist.CodeNotFound) {
			return eventlog.Poison(fmt.Errorf("approval of %s uses hold %s, which the ledger does not know", e.CaseID, b.HoldID))
		}
		return err
	// A payout's step is tried first, as one statement that moves the
	// payout only from where followsStep lets it (its stage, and for an
	// event of an attempt, not from a later attempt); only when it moved
	// nothing does followsStep read the payout, to tell an event that
	// comes too early (a gap) from one applied before or stale. A stage
	// that no worker's lease holds is due now: the worker is woken to
	// claim it (one that holds it goes on by itself).
	case assist.FundsReserved:
		moved, leased, err := s.store.Advance(ctx, q, b.PayoutID, []string{stageReserve}, stagePay,
			Advance{CmdID: stepCmdID(b.PayoutID, stagePay, 1), Attempt: 1, Now: now})
		if moved && !leased {
			s.pokeAfter(ctx)
		}
		return s.unlessMoved(ctx, q, e, b.PayoutID, 0, moved, err)
	case assist.PayoutSent:
		moved, leased, err := s.store.Advance(ctx, q, b.PayoutID, []string{stagePay}, stageSent,
			Advance{CmdID: stepCmdID(b.PayoutID, stageSent, b.Attempt), ProviderRef: b.ProviderRef, Of: b.Attempt, Now: now})
		if moved && !leased {
			s.pokeAfter(ctx)
		}
		return passStale(s.unlessMoved(ctx, q, e, b.PayoutID, b.Attempt, moved, err))
	case assist.PayoutSettled:
		settled, err := s.store.Settle(ctx, q, b.PayoutID, now)
		return s.unlessMoved(ctx, q, e, b.PayoutID, 0, settled, err)
	case assist.PayoutFailed:
		moved, _, err := s.store.Advance(ctx, q, b.PayoutID, []string{stagePay, stageSent}, stageFailed,
			Advance{LastError: b.Error, Of: b.Attempt, Now: now})
		return passStale(s.unlessMoved(ctx, q, e, b.PayoutID, b.Attempt, moved, err))
	case assist.FundsReleased:
		return s.store.ReleaseHold(ctx, q, b.HoldID, now)
	case assist.RequestRejected:
		// A first approval's hold, rejected by the second approver: the
		// sweeper gives it back through the case's log.
		if b.HoldID != "" {
			return s.store.ExpireHoldNow(ctx, q, b.HoldID, now)
		}
	case assist.RequestWithdrawn:
		if b.HoldID != "" {
			return s.store.ExpireHoldNow(ctx, q, b.HoldID, now)
		}
	case assist.PayoutRetried:
		retried, err := s.store.RetryPayout(ctx, q, b.PayoutID, b.Attempt, newID(), now)
		if retried {
			s.pokeAfter(ctx)
		}
		return s.unlessMoved(ctx, q, e, b.PayoutID, b.Attempt, retried, err)
	case assist.FundCreated:
		return s.store.PutFund(ctx, q, assist.Fund{ID: e.CaseID, Name: b.Name, AllocatedCents: b.AllocatedCents,
			CreatedBy: e.Actor.Username, CreatedAt: e.At, Version: m.Seq})
	case assist.PayeeCreated:
		return s.store.PutPayee(ctx, q, assist.Payee{ID: e.CaseID, Name: b.Name, Country: b.Country, Account: b.Account,
			AccountSeq: m.Seq, CreatedBy: e.Actor.Username, CreatedAt: e.At})
	case assist.PayeeAccountChanged:
		return s.store.SetPayeeAccount(ctx, q, e.CaseID, b.Account, m.Seq)
	}
	return nil
}

// errStale is followsStep's word for an event of an attempt the payout
// has since moved past (a second PayoutFailed of attempt 1 that reaches
// the ledger after the retry of attempt 2): applied, it would move the
// newer attempt's row, and a payout the case retried would show failed
// for good.
var errStale = errors.New("an event of an earlier attempt")

// passStale makes errStale no error: the event changes nothing.
func passStale(err error) error {
	if errors.Is(err, errStale) {
		return nil
	}
	return err
}

// unlessMoved answers a payout's event (of attempt; 0 for FundsReserved
// and PayoutSettled) once its step was tried: nil when the step moved the
// payout, followsStep's answer when it did not. Each step's guard is
// followsStep's condition for nil and the stages the step moves from
// (Advance.Of is the attempt part), so a step that moved nothing changed
// nothing, and followsStep, reading the row the step left as it was,
// answers what it would have answered before it. An event in order costs
// one statement; a gap, a stale event or one applied before, two.
// TestPayoutStepsAnswersAndStatements holds every case's answer.
func (s *Service) unlessMoved(ctx context.Context, q sqldb.Querier, e assist.Event, payoutID string, attempt int, moved bool, err error) error {
	if err != nil || moved {
		return err
	}
	return s.followsStep(ctx, q, e, payoutID, attempt)
}

// followsStep returns eventlog.ErrGap when a payout's event (FundsReserved,
// PayoutSent, PayoutSettled, PayoutFailed or PayoutRetried of attempt)
// arrives before the step it follows was applied: the payout's row does
// not exist yet, is still to be reserved, failed an earlier attempt whose
// retry is not applied yet, or (a retry) has not failed the attempt
// before; errStale for a PayoutSent or PayoutFailed of an attempt before
// the payout's. The consumer then tries the event again after the one it
// follows, instead of finding the row at no stage it moves from and
// leaving it there for good (a batch whose one event failed for a
// database fault goes on with the events after it, and the payout worker
// appends a payout's steps in quick succession).
func (s *Service) followsStep(ctx context.Context, q sqldb.Querier, e assist.Event, payoutID string, attempt int) error {
	stage, at, found, err := s.store.PayoutStage(ctx, q, payoutID)
	switch {
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("%s of payout %s: the payout is not recorded yet: %w", e.Type(), payoutID, eventlog.ErrGap)
	case stage == stageReserve && e.Type() != "FundsReserved":
		return fmt.Errorf("%s of payout %s: its funds are not reserved yet: %w", e.Type(), payoutID, eventlog.ErrGap)
	case e.Type() == "PayoutRetried":
		// A retry of attempt follows the failure of the attempt before.
		if at < attempt-1 || at == attempt-1 && stage != stageFailed {
			return fmt.Errorf("PayoutRetried of payout %s attempt %d: attempt %d's failure is not recorded yet: %w", payoutID, attempt, attempt-1, eventlog.ErrGap)
		}
	case attempt > 0 && attempt < at:
		return fmt.Errorf("%s of payout %s attempt %d, which is at attempt %d: %w", e.Type(), payoutID, attempt, at, errStale)
	case stage == stageFailed && attempt > at:
		return fmt.Errorf("%s of payout %s attempt %d: the retry is not recorded yet (attempt %d failed): %w", e.Type(), payoutID, attempt, at, eventlog.ErrGap)
	}
	return nil
}
