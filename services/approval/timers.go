package approval

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/timers"
)

// The kinds of approval's timers, and the durable consumers that set and
// fire them.
const (
	TimerDeadline = "deadline"
	TimerClaim    = "claim"
	// TimerWarning warns that a deadline is near, at three quarters of
	// the time from filing to it (assist.WarnAt).
	TimerWarning = "warning"

	SchedulerName = "approval-timers"
	FirerName     = "approval-timers"
)

// timedSubjects are the events that set or cancel a timer.
var timedSubjects = []string{
	eventlog.Subject("*", "RequestSubmitted"),
	eventlog.Subject("*", "RequestAmended"),
	eventlog.Subject("*", "ReviewClaimed"),
	eventlog.Subject("*", "RequestApproved"),
	eventlog.Subject("*", "RequestRejected"),
	eventlog.Subject("*", "RequestWithdrawn"),
}

// system is the actor of the events approval appends on its own.
var system = assist.Actor{Username: "eva", Role: assist.RoleSystem}

// Schedule sets or cancels the timers an event of the log calls for: a
// filed or amended case's deadline and its warning, a claim's lease; a
// decided case needs neither its deadline nor its warning any more. An
// amendment that moves the deadline sets the warning's timer for now: its
// handler, which knows the filing time from the case, sets it again for
// the new warning time (or warns, if that is past). It runs in a durable consumer, so a timer is set
// even when the command that caused the event crashed right after it; a
// redelivered event sets the same timer again.
func (s *Service) Schedule(ctx context.Context, _ sqldb.Querier, m eventlog.Msg) error {
	e, err := eventcodec.Decode(m.Type, m.Data)
	if err != nil {
		return eventlog.Poison(err)
	}
	switch b := e.Body.(type) {
	case assist.RequestSubmitted:
		return both(func() error { return s.timers.Set(ctx, TimerDeadline, e.CaseID, b.Deadline) },
			func() error { return s.timers.Set(ctx, TimerWarning, e.CaseID, assist.WarnAt(e.At, b.Deadline)) })
	case assist.RequestAmended:
		if !b.Deadline.IsZero() {
			return both(func() error { return s.timers.Set(ctx, TimerDeadline, e.CaseID, b.Deadline) },
				func() error { return s.timers.Set(ctx, TimerWarning, e.CaseID, e.At) })
		}
	case assist.ReviewClaimed:
		return s.timers.Set(ctx, TimerClaim, e.CaseID, b.ExpiresAt)
	case assist.RequestApproved, assist.RequestRejected, assist.RequestWithdrawn:
		return both(func() error { return s.timers.Cancel(ctx, TimerDeadline, e.CaseID) },
			func() error { return s.timers.Cancel(ctx, TimerWarning, e.CaseID) })
	}
	return nil
}

// both runs a and b at once (two fsynced publishes to the timers stream,
// each waiting for its ack) and returns the first error.
func both(a, b func() error) error {
	var g errgroup.Group
	g.Go(a)
	g.Go(b)
	return g.Wait()
}

// Fire handles a timer that fell due. It re-checks the case: a case
// decided meanwhile, or already escalated (or, for a warning, already
// warned or past its deadline), needs nothing; one whose deadline,
// warning or claim moved later is given a timer for the new time; else
// DeadlineMissed, DeadlineWarning or ClaimExpired is appended. Timers are delivered at
// least once and may race each other: the append expects the case
// unchanged, so the event is appended at most once.
func (s *Service) Fire(ctx context.Context, f timers.Fired) error {
	if !eventlog.ValidCaseID(f.ID) {
		return timers.Drop(fmt.Errorf("timer for %q, not a case id", f.ID))
	}
	var (
		due    func(c *assist.Case) (time.Time, bool)
		decide func(c *assist.Case, cmd assist.Cmd) (assist.Event, error)
	)
	switch f.Kind {
	case TimerDeadline:
		due = func(c *assist.Case) (time.Time, bool) { return c.Deadline, c.State.Open() && !c.Escalated }
		decide = (*assist.Case).MissDeadline
	case TimerWarning:
		due = func(c *assist.Case) (time.Time, bool) {
			return c.WarnAt(), c.State.Open() && !c.Escalated && !c.Warned && s.now().Before(c.Deadline)
		}
		decide = (*assist.Case).WarnDeadline
	case TimerClaim:
		due = func(c *assist.Case) (time.Time, bool) { return c.ClaimExpiresAt, c.State == assist.StateUnderReview }
		decide = (*assist.Case).ExpireClaim
	default:
		return timers.Drop(fmt.Errorf("unknown timer kind %q", f.Kind))
	}
	id := uuid.Must(uuid.NewV7()).String()
	var later time.Time // the timer's new time, when it moved
	_, err := s.log.Execute(ctx, eventlog.Command{CaseID: f.ID, ID: id, Decide: func(c *assist.Case) (assist.Event, error) {
		at, pending := due(c)
		switch now := s.now(); {
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
		return s.timers.Set(ctx, f.Kind, f.ID, later)
	case errors.Is(err, errNothingDue), assist.IsCode(err, assist.CodeNotFound):
		return nil
	}
	return err
}

// errNothingDue says a fired timer found nothing to do.
var errNothingDue = assist.Errorf(assist.CodeConflict, "nothing due")
