package approval_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/pkg/timers"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/intake"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// Tests of the due timer (ADR 40): one timer per case carries its
// deadline's warning, then the deadline.

// runApprovalAt runs approval as Run does with policy p, holds and the
// clock now (nil: the real one) until the test ends; it returns the
// service and its timers.
func (h *harness) runApprovalAt(p assist.Policy, holds approval.Holds, now func() time.Time) (*approval.Service, *timers.Timers) {
	h.t.Helper()
	tm, err := timers.Open(h.ctx, h.js, timers.Config{})
	if err != nil {
		h.t.Fatal(err)
	}
	d := approval.Deps{Config: approval.Config{Policy: p}, NC: h.nc, Log: h.log, DB: h.db, Holds: holds,
		Timers: tm, Logger: zaptest.NewLogger(h.t), Now: now}
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- approval.Run(ctx, d) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("approval.Run: %v", err)
		}
	})
	return approval.New(d), tm
}

// withTimers is an approval with a timers stream of its own, on the
// harness's log, not running: a test calls its Schedule and Fire itself.
func (h *harness) withTimers() (*approval.Service, *timers.Timers) {
	h.t.Helper()
	tm, err := timers.Open(h.ctx, h.js, timers.Config{})
	if err != nil {
		h.t.Fatal(err)
	}
	return approval.New(approval.Deps{Config: approval.Config{Policy: assist.DefaultPolicy()}, NC: h.nc, Log: h.log,
		DB: h.db, Holds: &fakeHolds{}, Timers: tm, Logger: zaptest.NewLogger(h.t)}), tm
}

// pendingTimers are the timers pending for a case: the subjects of its
// schedules in the timers stream, each with its due time.
func pendingTimers(t testing.TB, ctx context.Context, tm *timers.Timers, caseID string) map[string]time.Time {
	t.Helper()
	info, err := tm.Stream().Info(ctx, jetstream.WithSubjectFilter("eva.timer.set.*."+caseID))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for subj := range info.State.Subjects {
		m, err := tm.Stream().GetLastMsgForSubject(ctx, subj)
		if err != nil {
			t.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339Nano, string(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		kind := strings.TrimSuffix(strings.TrimPrefix(subj, "eva.timer.set."), "."+caseID)
		out[kind] = at
	}
	return out
}

// timerWrites counts what reaches the timers stream on the bus: the
// schedules set (eva.timer.set.<kind>.<case>) and the purge requests, by
// the case they name.
type timerWrites struct {
	nc         *nats.Conn
	sets, purs *nats.Subscription
}

func countTimerWrites(t *testing.T, nc *nats.Conn) *timerWrites {
	t.Helper()
	sets, err := nc.SubscribeSync("eva.timer.set.>")
	if err != nil {
		t.Fatal(err)
	}
	purs, err := nc.SubscribeSync("$JS.API.STREAM.PURGE." + timers.Stream)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*nats.Subscription{sets, purs} {
		if err := s.SetPendingLimits(-1, -1); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = sets.Unsubscribe(); _ = purs.Unsubscribe() })
	return &timerWrites{nc: nc, sets: sets, purs: purs}
}

// take returns, per case, the kinds of timer set (one entry per set) and
// the number of purges, since the last take.
func (w *timerWrites) take(t *testing.T) (sets map[string][]string, purges map[string]int) {
	t.Helper()
	if err := w.nc.Flush(); err != nil { // what the server routed so far is queued
		t.Fatal(err)
	}
	sets, purges = map[string][]string{}, map[string]int{}
	for {
		m, err := w.sets.NextMsg(0)
		if err != nil {
			break
		}
		kind, id, _ := strings.Cut(strings.TrimPrefix(m.Subject, "eva.timer.set."), ".")
		sets[id] = append(sets[id], kind)
	}
	for {
		m, err := w.purs.NextMsg(0)
		if err != nil {
			break
		}
		var req struct {
			Filter string `json:"filter"`
		}
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Fatal(err)
		}
		purges[req.Filter[strings.LastIndex(req.Filter, ".")+1:]]++
	}
	return sets, purges
}

// A case filed, claimed and approved sets no timer of its own and purges
// none (ADR 45): the former layout set its deadline's and its claim's
// timers and purged one (ADR 40). The sweeps its due times ask for are
// shared: one a quarter second, whatever the number of cases due in it.
func TestALifecycleSetsNoTimerOfItsCase(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		holds := &fakeHolds{placeHold: heldAsAsked(1_000_000)}
		h := newHarness(t, db, holds)
		h.consumeIntake()
		writes := countTimerWrites(t, h.nc)
		_, tm := h.runApprovalAt(assist.DefaultPolicy(), holds, nil)
		const n = 40
		ids := make([]string, n)
		start := time.Now()
		for i := range ids {
			c := h.file(ana)
			ids[i] = c.ID
			h.claim(c.ID, olu)
			if _, err := h.svc.Approve(h.ctx, approveRequest(c.ID, olu, 25_000)); err != nil {
				t.Fatal(err)
			}
		}
		h.waitCaughtUp()
		took := time.Since(start)
		sets, purges := writes.take(t)
		for _, id := range ids {
			if len(sets[id]) > 0 || purges[id] > 0 {
				t.Errorf("case %s: timers set %v, purged %d times; want none", id, sets[id], purges[id])
			}
			if got := pendingTimers(t, h.ctx, tm, id); len(got) > 0 {
				t.Errorf("case %s: pending timers %v, want none", id, got)
			}
		}
		// Each case was due twice (its warning, its claim's lease): at
		// most a sweep for each quarter second the filings' time touches
		// for each (an interval touches one more than it spans whole,
		// and one more again when it starts late in one), and the first
		// sweep and the next it asks for, where one a case would be 2n.
		var sweeps int
		for _, kinds := range sets {
			for _, kind := range kinds {
				if kind == approval.TimerSweep {
					sweeps++
				}
			}
		}
		bound := 2*(int(took/(250*time.Millisecond))+2) + 2
		if sweeps == 0 || sweeps > bound || sweeps >= 2*n {
			t.Errorf("%d sweeps asked for %d cases in %s, want 1 to %d", sweeps, n, took, min(bound, 2*n-1))
		}
		t.Logf("%d filed, claimed and approved cases in %s: %d sweeps asked for, no timer of a case", n, took.Round(time.Millisecond), sweeps)
	})
}

// fakeClock is a clock that a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// dueRig runs approval and intake on a fake clock a day ahead of the real
// one, so that no sweep they ask for falls due on the server during the
// test: the test sweeps by hand, as the server would fire a sweep, at the
// fake times it chooses.
type dueRig struct {
	h     *harness
	clock *fakeClock
	in    *intake.Service
	svc   *approval.Service
	tm    *timers.Timers
	t0    time.Time
}

func newDueRig(t *testing.T, p assist.Policy) *dueRig {
	h := newHarness(t, sqldbtest.SQLite(t), &fakeHolds{})
	t0 := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	clock := &fakeClock{t: t0}
	in := intake.New(intake.Deps{Config: intake.Config{Policy: p}, NC: h.nc, Log: h.log, DB: h.db, Keys: h.keys,
		Logger: zaptest.NewLogger(t), Now: clock.now})
	h.consumeIntake()
	svc, tm := h.runApprovalAt(p, &fakeHolds{}, clock.now)
	return &dueRig{h: h, clock: clock, in: in, svc: svc, tm: tm, t0: t0}
}

// file files an urgency's request at t0.
func (r *dueRig) file(u assist.Urgency) *assist.Case {
	req := fileRequest(ana)
	req.Urgency = string(u)
	r.clock.set(r.t0)
	c := r.h.fileWith(r.in, req)
	r.h.waitCaughtUp()
	return c
}

// amend changes the case's urgency at t0+after.
func (r *dueRig) amend(id string, after time.Duration, u assist.Urgency) {
	r.h.t.Helper()
	r.clock.set(r.t0.Add(after))
	urgency := string(u)
	if _, err := r.in.Amend(r.h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: id, Urgency: &urgency}); err != nil {
		r.h.t.Fatal(err)
	}
	r.h.waitCaughtUp()
}

// sweep sweeps at t0+after, as a sweep fired then would, and waits for the
// queue to have what it appended.
func (r *dueRig) sweep(after time.Duration) {
	r.h.t.Helper()
	r.clock.set(r.t0.Add(after))
	if err := r.svc.Fire(r.h.ctx, timers.Fired{Kind: approval.TimerSweep}); err != nil {
		r.h.t.Fatal(err)
	}
	r.h.waitCaughtUp()
}

// redeliver hands the case's former due timer to the handler at t0+after:
// a redelivery of one set before ADR 45, or a handler racing a sweep.
func (r *dueRig) redeliver(id string, after time.Duration) {
	r.h.t.Helper()
	r.clock.set(r.t0.Add(after))
	if err := r.svc.Fire(r.h.ctx, timers.Fired{Kind: approval.TimerDue, ID: id}); err != nil {
		r.h.t.Fatal(err)
	}
	r.h.waitCaughtUp()
}

// expect checks the case's history and its due time in the queue: t0+due,
// or none when due is negative; and that it has no timer of its own.
func (r *dueRig) expect(id string, history string, due time.Duration) {
	r.h.t.Helper()
	if got := fmt.Sprint(eventTypesOf(r.h.events(id))); got != history {
		r.h.t.Fatalf("history %s, want %s", got, history)
	}
	if pending := pendingTimers(r.h.t, r.h.ctx, r.tm, id); len(pending) > 0 {
		r.h.t.Fatalf("pending timers %v, want none", pending)
	}
	at := queuedDueAt(r.h.t, r.h.ctx, r.h.db, id)
	switch {
	case due < 0 && !at.IsZero():
		r.h.t.Fatalf("due at t0+%s, want nothing due", at.Sub(r.t0))
	case due >= 0 && !at.Equal(r.t0.Add(due)):
		r.h.t.Fatalf("due at t0+%s (%s), want t0+%s", at.Sub(r.t0), at, due)
	}
}

// A case's due time in the queue: at filing its warning's; swept early,
// nothing appended and the same time; at the warning time,
// DeadlineWarning and the deadline's time; its former due timer fired
// again, still one warning; at the deadline DeadlineMissed and nothing
// due; swept or fired again, nothing.
func TestDueTimeWarnsThenEscalatesWithFakeClock(t *testing.T) {
	r := newDueRig(t, shortPolicy(4*time.Hour)) // warned at 3 h
	c := r.file(assist.Urgent)
	r.expect(c.ID, "[RequestSubmitted]", 3*time.Hour)
	r.sweep(time.Hour) // early
	r.expect(c.ID, "[RequestSubmitted]", 3*time.Hour)
	r.sweep(3 * time.Hour)
	r.expect(c.ID, "[RequestSubmitted DeadlineWarning]", 4*time.Hour)
	r.redeliver(c.ID, 3*time.Hour+time.Minute)
	r.expect(c.ID, "[RequestSubmitted DeadlineWarning]", 4*time.Hour)
	r.sweep(4 * time.Hour)
	r.expect(c.ID, "[RequestSubmitted DeadlineWarning DeadlineMissed]", -1)
	r.sweep(4*time.Hour + time.Minute)
	r.redeliver(c.ID, 4*time.Hour+time.Minute)
	r.expect(c.ID, "[RequestSubmitted DeadlineWarning DeadlineMissed]", -1)
	if got := r.h.get(c.ID); !got.Escalated || !got.Warned {
		t.Fatalf("case escalated %v, warned %v; want both", got.Escalated, got.Warned)
	}
}

// Edge cases of the due time, each on a case filed at t0 with urgent
// (7 h: warned at 5 h 15 m), routine (8 h: warned at 6 h) or critical
// (1 h) deadlines. An amendment that moves the deadline moves the due
// time to the new deadline's warning, or, once warned, to the deadline;
// a due time already past is swept at once.
func TestDueTimeEdgesWithFakeClock(t *testing.T) {
	p := assist.DefaultPolicy()
	p.Deadlines = map[assist.Urgency]time.Duration{assist.Critical: time.Hour, assist.Urgent: 7 * time.Hour,
		assist.Routine: 8 * time.Hour}
	const (
		urgentWarn  = 5*time.Hour + 15*time.Minute
		routineWarn = 6 * time.Hour
	)
	t.Run("first swept past its deadline: escalated, never warned", func(t *testing.T) {
		r := newDueRig(t, p)
		c := r.file(assist.Routine)
		r.sweep(9 * time.Hour)
		r.expect(c.ID, "[RequestSubmitted DeadlineMissed]", -1)
	})
	t.Run("deadline moved later before the warning", func(t *testing.T) {
		r := newDueRig(t, p)
		c := r.file(assist.Urgent)
		r.amend(c.ID, time.Hour, assist.Routine)
		r.expect(c.ID, "[RequestSubmitted RequestAmended]", routineWarn)
		r.sweep(urgentWarn)
		r.expect(c.ID, "[RequestSubmitted RequestAmended]", routineWarn)
		r.sweep(routineWarn)
		r.expect(c.ID, "[RequestSubmitted RequestAmended DeadlineWarning]", 8*time.Hour)
	})
	t.Run("deadline moved later after the warning: warned again for it", func(t *testing.T) {
		r := newDueRig(t, p)
		c := r.file(assist.Urgent)
		r.sweep(urgentWarn)
		r.expect(c.ID, "[RequestSubmitted DeadlineWarning]", 7*time.Hour)
		r.amend(c.ID, 5*time.Hour+30*time.Minute, assist.Routine)
		r.expect(c.ID, "[RequestSubmitted DeadlineWarning RequestAmended]", routineWarn)
		r.sweep(routineWarn)
		r.expect(c.ID, "[RequestSubmitted DeadlineWarning RequestAmended DeadlineWarning]", 8*time.Hour)
	})
	t.Run("deadline moved earlier, its warning time past: warned at once", func(t *testing.T) {
		r := newDueRig(t, p)
		c := r.file(assist.Routine)
		r.amend(c.ID, 5*time.Hour+30*time.Minute, assist.Urgent)
		r.expect(c.ID, "[RequestSubmitted RequestAmended]", urgentWarn)
		r.sweep(5*time.Hour + 30*time.Minute)
		r.expect(c.ID, "[RequestSubmitted RequestAmended DeadlineWarning]", 7*time.Hour)
	})
	t.Run("deadline moved earlier after the warning, still ahead: warned again for it", func(t *testing.T) {
		r := newDueRig(t, p)
		c := r.file(assist.Routine)
		r.sweep(routineWarn)
		r.amend(c.ID, routineWarn+time.Minute, assist.Urgent)
		r.sweep(routineWarn + time.Minute)
		r.expect(c.ID, "[RequestSubmitted DeadlineWarning RequestAmended DeadlineWarning]", 7*time.Hour)
	})
	t.Run("deadline moved earlier than the warning given: escalated at once", func(t *testing.T) {
		r := newDueRig(t, p)
		c := r.file(assist.Routine)
		r.sweep(routineWarn)
		r.amend(c.ID, routineWarn+time.Minute, assist.Critical)
		r.sweep(routineWarn + time.Minute)
		r.expect(c.ID, "[RequestSubmitted DeadlineWarning RequestAmended DeadlineMissed]", -1)
	})
	t.Run("decided: nothing due, a late sweep or fire does nothing", func(t *testing.T) {
		r := newDueRig(t, p)
		c := r.file(assist.Routine)
		r.sweep(routineWarn)
		r.clock.set(r.t0.Add(routineWarn + time.Minute))
		if _, err := r.in.Withdraw(r.h.ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Reason: "no longer needed"}); err != nil {
			t.Fatal(err)
		}
		r.h.waitCaughtUp()
		r.expect(c.ID, "[RequestSubmitted DeadlineWarning RequestWithdrawn]", -1)
		r.sweep(9 * time.Hour)
		r.redeliver(c.ID, 9*time.Hour)
		r.expect(c.ID, "[RequestSubmitted DeadlineWarning RequestWithdrawn]", -1)
	})
}

// Timers set before the upgrade (ADR 12's deadline and warning kinds)
// still fire and are handled as before, beside the sweeps that now see to
// the same cases: an open case is warned, then escalated, once each; a
// decided one gets nothing. The former firer's consumer keeps its filter,
// so that a replica of the former build shares it safely. Faked: the
// former timers are set by hand, as if the cases had been scheduled by
// the former build.
func TestTimersSetBeforeTheUpgradeStillFireWithFormerScheduleFaked(t *testing.T) {
	holds := &fakeHolds{placeHold: heldAsAsked(1_000_000)}
	h := newHarness(t, sqldbtest.SQLite(t), holds)
	p := shortPolicy(4 * time.Second) // warned at 3 s
	in := intake.New(intake.Deps{Config: intake.Config{Policy: p}, NC: h.nc, Log: h.log, DB: h.db, Keys: h.keys,
		Logger: zaptest.NewLogger(t)})
	h.consumeIntake()
	_, tm := h.runApprovalAt(p, holds, nil)
	open, decided := h.fileWith(in, fileRequest(ana)), h.fileWith(in, fileRequest(ana))
	for _, c := range []*assist.Case{open, decided} {
		for _, err := range []error{
			tm.Set(h.ctx, approval.TimerDeadline, c.ID, c.Deadline),
			tm.Set(h.ctx, approval.TimerWarning, c.ID, assist.WarnAt(c.CreatedAt, c.Deadline)),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	h.claim(decided.ID, olu)
	if _, err := h.svc.Approve(h.ctx, approveRequest(decided.ID, olu, 25_000)); err != nil {
		t.Fatal(err)
	}
	evatest.Await(t, time.Minute, "the former timers to fire", func() (bool, string) {
		return countType(h.events(open.ID), "DeadlineMissed") == 1, fmt.Sprint(eventTypesOf(h.events(open.ID)))
	})
	if got := fmt.Sprint(eventTypesOf(h.events(open.ID))); got != "[RequestSubmitted DeadlineWarning DeadlineMissed]" {
		t.Fatalf("open case: history %s", got)
	}
	evatest.Eventually(t, "the decided case's former timers to fire and be handled", func() bool {
		pending := pendingTimers(t, h.ctx, tm, decided.ID)
		_, deadline := pending[approval.TimerDeadline]
		_, warning := pending[approval.TimerWarning]
		c, err := tm.Stream().Consumer(h.ctx, approval.FirerName)
		if deadline || warning || err != nil {
			return false
		}
		// Handled: acked up to the last of the case's fired timers (the
		// consumer's counts alone may not have a message just stored).
		var fired uint64
		for _, kind := range []string{approval.TimerDeadline, approval.TimerWarning} {
			m, err := tm.Stream().GetLastMsgForSubject(h.ctx, "eva.timer.fire."+kind+"."+decided.ID)
			if err != nil {
				return false
			}
			fired = max(fired, m.Sequence)
		}
		info, err := c.Info(h.ctx)
		return err == nil && info.AckFloor.Stream >= fired && info.NumAckPending == 0
	})
	if got := fmt.Sprint(eventTypesOf(h.events(decided.ID))); got != "[RequestSubmitted ReviewClaimed RequestApproved]" {
		t.Fatalf("decided case: history %s", got)
	}
	c, err := tm.Stream().Consumer(h.ctx, approval.FirerName)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"eva.timer.fire.deadline.*", "eva.timer.fire.warning.*", "eva.timer.fire.claim.*"}
	if got := c.CachedInfo().Config.FilterSubjects; !slices.Equal(got, want) {
		t.Fatalf("the former firer's filter %v, want %v unchanged", got, want)
	}
}
