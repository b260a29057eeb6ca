package approval

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/timers"
)

// The kinds of approval's timers, and the durable consumers that fire
// them.
const (
	// TimerSweep is the sweep of the cases due (ADR 45): one timer for
	// every case due in the same quarter second (a slot, sweep.go), whose
	// id is the slot's start in Unix milliseconds. A case no longer has
	// timers of its own.
	TimerSweep = "sweep"
	// TimerDue is the one timer a case had for its deadline (ADR 40),
	// TimerClaim the one for its claim's lease, TimerDeadline and
	// TimerWarning the two it had before TimerDue (ADR 12). Nothing sets
	// them any more; Fire still handles those set before the upgrade, for
	// as long as their cases were pending then.
	TimerDue      = "due"
	TimerClaim    = "claim"
	TimerDeadline = "deadline"
	TimerWarning  = "warning"

	// FirerName fires the claim timers and the former kinds; DueFirerName
	// fires TimerDue; SweeperName fires TimerSweep. Each kind added has a
	// consumer of its own so that no consumer's filter ever changes: a
	// replica of a former build, still running (or restarted) during a
	// rolling upgrade, would drop a timer of a new kind as unknown, or
	// narrow the shared filter back so that its timers were skipped.
	FirerName    = "approval-timers"
	DueFirerName = "approval-timers-due"
	SweeperName  = "approval-timers-sweep"
	// FormerSchedulerName is the log's consumer that set each case's
	// timers before ADR 45; Run deletes it.
	FormerSchedulerName = "approval-timers"
)

// system is the actor of the events approval appends on its own.
var system = assist.Actor{Username: "eva", Role: assist.RoleSystem}

// dueNext is what a case's due timer waits for at now: its warning, until
// it is given or the deadline passes first; then its deadline; nothing once
// the case is decided or escalated.
func dueNext(c *assist.Case, now time.Time) (time.Time, bool) {
	switch {
	case !c.State.Open() || c.Escalated:
		return time.Time{}, false
	case !c.Warned && now.Before(c.Deadline):
		return c.WarnAt(), true
	}
	return c.Deadline, true
}

// dueAt is when something of c falls due that a sweep must see to: its
// deadline's warning (or, once warned, the deadline) while it is open and
// not escalated, and its claim's lease while it is under review; the
// earlier of the two, zero when neither. The queue keeps it (due_at).
func dueAt(c *assist.Case) time.Time {
	var at time.Time
	if c.State.Open() && !c.Escalated {
		at = c.Deadline
		if !c.Warned {
			at = c.WarnAt()
		}
	}
	if lease, ok := claimDue(c); ok && (at.IsZero() || lease.Before(at)) {
		at = lease
	}
	return at
}

// claimDue is when c's claim lease runs out, while it is under review.
func claimDue(c *assist.Case) (time.Time, bool) {
	return c.ClaimExpiresAt, c.State == assist.StateUnderReview && !c.ClaimExpiresAt.IsZero()
}

// dueKinds are the timers of c, as the queue has it, that fall due by now.
func dueKinds(c *assist.Case, now time.Time) []string {
	var kinds []string
	if at, pending := dueNext(c, now); pending && !now.Before(at) {
		kinds = append(kinds, TimerDue)
	}
	if lease, ok := claimDue(c); ok && !now.Before(lease) {
		kinds = append(kinds, TimerClaim)
	}
	return kinds
}

// decideDue warns before the deadline and escalates after it.
func decideDue(c *assist.Case, cmd assist.Cmd) (assist.Event, error) {
	if cmd.At.Before(c.Deadline) {
		return c.WarnDeadline(cmd)
	}
	return c.MissDeadline(cmd)
}

// Fire handles a timer that fell due: a sweep (TimerSweep, sweep.go), or
// a timer of one case, which the timers set before ADR 45 still are
// (fireCase).
func (s *Service) Fire(ctx context.Context, f timers.Fired) error {
	if f.Kind == TimerSweep {
		return s.sweep(ctx)
	}
	return s.fireCase(ctx, f.Kind, f.ID)
}

// fireCase handles a case's timer of kind, due now. It re-checks the case:
// a case decided meanwhile, or already escalated (or, for a warning,
// already warned or past its deadline), needs nothing; one whose deadline,
// warning or claim moved later has a sweep wanted at the new time; else
// DeadlineMissed, DeadlineWarning or ClaimExpired is appended. Timers are
// delivered at least once and may race each other (and sweeps): the append
// expects the case unchanged, so the event is appended at most once. What
// falls due next (the deadline, once warned) is the queue's due time for
// the case: its projection asks for the sweep (dueAt).
func (s *Service) fireCase(ctx context.Context, kind, caseID string) error {
	if !eventlog.ValidCaseID(caseID) {
		return timers.Drop(fmt.Errorf("timer for %q, not a case id", caseID))
	}
	var (
		due    func(c *assist.Case, now time.Time) (time.Time, bool)
		decide func(c *assist.Case, cmd assist.Cmd) (assist.Event, error)
	)
	switch kind {
	case TimerDue:
		due, decide = dueNext, decideDue
	case TimerDeadline:
		due = func(c *assist.Case, _ time.Time) (time.Time, bool) { return c.Deadline, c.State.Open() && !c.Escalated }
		decide = (*assist.Case).MissDeadline
	case TimerWarning:
		due = func(c *assist.Case, now time.Time) (time.Time, bool) {
			return c.WarnAt(), c.State.Open() && !c.Escalated && !c.Warned && now.Before(c.Deadline)
		}
		decide = (*assist.Case).WarnDeadline
	case TimerClaim:
		due = func(c *assist.Case, _ time.Time) (time.Time, bool) {
			return c.ClaimExpiresAt, c.State == assist.StateUnderReview
		}
		decide = (*assist.Case).ExpireClaim
	default:
		return timers.Drop(fmt.Errorf("unknown timer kind %q", kind))
	}
	id := uuid.Must(uuid.NewV7()).String()
	var later time.Time // the timer's new time, when it moved
	_, err := s.log.Execute(ctx, eventlog.Command{CaseID: caseID, ID: id, Decide: func(c *assist.Case) (assist.Event, error) {
		later = time.Time{} // decided again after a lost race
		now := s.now()
		at, pending := due(c, now)
		switch {
		case !pending:
			return assist.Event{}, errNothingDue
		case now.Before(at):
			later = at
			return assist.Event{}, errNothingDue
		default:
			return decide(c, assist.Cmd{ID: id, Actor: system, At: now})
		}
	}})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNothingDue) && !later.IsZero():
		return s.sweeper.ensure(ctx, later)
	case errors.Is(err, errNothingDue), assist.IsCode(err, assist.CodeNotFound):
		return nil
	}
	return err
}

// errNothingDue says a fired timer found nothing to do.
var errNothingDue = assist.Errorf(assist.CodeConflict, "nothing due")
