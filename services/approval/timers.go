package approval

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/timers"
)

// The kinds of approval's timers, and the durable consumers that set and
// fire them.
const (
	// TimerDue is a case's one deadline timer: it fires first at the
	// warning time, three quarters of the way from filing to the deadline
	// (assist.WarnAt), and is set again for the deadline once the warning
	// is given. One timer instead of two halves the fsynced appends and
	// the purges a case's deadline costs the timers stream (ADR 40).
	TimerDue   = "due"
	TimerClaim = "claim"
	// TimerDeadline and TimerWarning are the two timers a case had before
	// TimerDue (ADR 12). Schedule sets them no more; Fire still handles
	// them as before (and sets one again when its time moved later), for
	// the timers set before the upgrade, which fire for as long as their
	// cases were pending then.
	TimerDeadline = "deadline"
	TimerWarning  = "warning"

	SchedulerName = "approval-timers"
	// FirerName fires the claim timers and the former kinds; DueFirerName
	// fires TimerDue. The due timers have a consumer of their own so that
	// the former consumer's filter never changes: a replica of a former
	// build, still running (or restarted) during a rolling upgrade, would
	// drop a due timer as an unknown kind, or narrow the shared filter back
	// so that due timers were skipped.
	FirerName    = "approval-timers"
	DueFirerName = "approval-timers-due"
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
// filed case's due timer, for its warning time; a claim's lease; a decided
// case needs its due timer no more (one purge). An amendment that moves
// the deadline sets the due timer for now rather than for the new warning
// or deadline: the event does not tell the filing time, nor whether the
// case was warned, and the timer's handler, which reads the case, does
// what is due then and sets the timer again for what comes next. It runs
// in a durable consumer, so a timer is set even when the command that
// caused the event crashed right after it. The consumer is stateless
// (eventlog.ConsumerConfig.Stateless): it writes nothing to the database,
// and a redelivered event sets its timer again, which Fire makes harmless:
// a timer that fires early, for a case decided, released or moved since,
// re-checks the case and does nothing or waits for the new time.
//
// In a batch, the timers are sent without waiting (timers.SetAsync) and
// the batch waits for the stream once, at its end, before its events are
// acked; a purge first waits for the timers sent before it, so that it
// never overtakes the timer it cancels.
func (s *Service) Schedule(ctx context.Context, _ sqldb.Querier, m eventlog.Msg) error {
	e, err := eventcodec.Decode(m.Type, m.Data)
	if err != nil {
		return eventlog.Poison(err)
	}
	switch b := e.Body.(type) {
	case assist.RequestSubmitted:
		return s.setTimer(ctx, TimerDue, e.CaseID, assist.WarnAt(e.At, b.Deadline))
	case assist.RequestAmended:
		if !b.Deadline.IsZero() {
			return s.setTimer(ctx, TimerDue, e.CaseID, e.At)
		}
	case assist.ReviewClaimed:
		return s.setTimer(ctx, TimerClaim, e.CaseID, b.ExpiresAt)
	case assist.RequestApproved, assist.RequestRejected, assist.RequestWithdrawn:
		// A case filed before the due timer may still have a deadline
		// and a warning timer: they fire and find it decided.
		if err := sentTimers(ctx).wait(ctx); err != nil {
			return err
		}
		return s.timers.Cancel(ctx, TimerDue, e.CaseID)
	}
	return nil
}

// setTimer sends a timer and has the batch wait for it before its end; on
// its own (outside a consumer's batch) it waits for it now.
func (s *Service) setTimer(ctx context.Context, kind, id string, at time.Time) error {
	sent := sentTimers(ctx)
	sent.waits = append(sent.waits, s.timers.SetAsync(kind, id, at))
	if sent.awaited {
		return nil
	}
	sent.awaited = true
	return eventlog.BeforeCommit(ctx, nil, func(ctx context.Context, _ sqldb.Querier) error { return sent.wait(ctx) })
}

// sent is the timers a batch sent and has yet to see stored.
type sent struct {
	waits   []func(context.Context) error
	awaited bool // the batch waits for them at its end
}

type sentKey struct{}

// sentTimers is the batch's sent timers (a new list outside a batch).
func sentTimers(ctx context.Context) *sent {
	return eventlog.TxLocal(ctx, sentKey{}, func() *sent { return &sent{} })
}

// wait waits for each timer sent, in the order sent.
func (t *sent) wait(ctx context.Context) error {
	for len(t.waits) > 0 {
		if err := t.waits[0](ctx); err != nil {
			return err
		}
		t.waits = t.waits[1:]
	}
	return nil
}

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

// decideDue warns before the deadline and escalates after it.
func decideDue(c *assist.Case, cmd assist.Cmd) (assist.Event, error) {
	if cmd.At.Before(c.Deadline) {
		return c.WarnDeadline(cmd)
	}
	return c.MissDeadline(cmd)
}

// Fire handles a timer that fell due. It re-checks the case: a case
// decided meanwhile, or already escalated (or, for a warning, already
// warned or past its deadline), needs nothing; one whose deadline,
// warning or claim moved later is given a timer for the new time; else
// DeadlineMissed, DeadlineWarning or ClaimExpired is appended. A due timer
// that appended DeadlineWarning is set again for the deadline. Timers are
// delivered at least once and may race each other: the append expects the
// case unchanged, so the event is appended at most once. A due timer is
// set again with Rearm, which keeps a due timer that Schedule set
// meanwhile for a newer event (an amendment that moved the deadline
// earlier must not be pushed back to the deadline this handler read).
func (s *Service) Fire(ctx context.Context, f timers.Fired) error {
	if !eventlog.ValidCaseID(f.ID) {
		return timers.Drop(fmt.Errorf("timer for %q, not a case id", f.ID))
	}
	var (
		due    func(c *assist.Case, now time.Time) (time.Time, bool)
		decide func(c *assist.Case, cmd assist.Cmd) (assist.Event, error)
		rearm  = s.timers.Set
	)
	switch f.Kind {
	case TimerDue:
		due, decide, rearm = dueNext, decideDue, s.timers.Rearm
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
		return timers.Drop(fmt.Errorf("unknown timer kind %q", f.Kind))
	}
	id := uuid.Must(uuid.NewV7()).String()
	var later time.Time // the timer's new time, when it moved
	c, err := s.log.Execute(ctx, eventlog.Command{CaseID: f.ID, ID: id, Decide: func(c *assist.Case) (assist.Event, error) {
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
		if f.Kind == TimerDue {
			// Warned: the deadline is next.
			if at, pending := dueNext(c, s.now()); pending {
				return rearm(ctx, f.Kind, f.ID, at)
			}
		}
		return nil
	case errors.Is(err, errNothingDue) && !later.IsZero():
		return rearm(ctx, f.Kind, f.ID, later)
	case errors.Is(err, errNothingDue), assist.IsCode(err, assist.CodeNotFound):
		return nil
	}
	return err
}

// errNothingDue says a fired timer found nothing to do.
var errNothingDue = assist.Errorf(assist.CodeConflict, "nothing due")
