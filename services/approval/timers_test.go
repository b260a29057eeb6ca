package approval_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/pkg/timers"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/intake"
)

// shortPolicy decides urgent requests within d and leases claims for d.
func shortPolicy(d time.Duration) assist.Policy {
	p := assist.DefaultPolicy()
	p.Deadlines = map[assist.Urgency]time.Duration{assist.Critical: d, assist.Urgent: d, assist.Routine: d}
	p.ClaimTTL = d
	return p
}

// runApproval runs approval as Run does (queue, timers, commands) with
// policy p; it stops after the test.
func (h *harness) runApproval(p assist.Policy) *approval.Service {
	h.t.Helper()
	svc, _ := h.runApprovalAt(p, &fakeHolds{}, nil)
	return svc
}

func TestDeadlineMissedOnceAndEscalated(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), &fakeHolds{})
	p := shortPolicy(time.Second)
	h.intake = h.intakeAt(nil)
	in := intake.New(intake.Deps{Config: intake.Config{Policy: p}, NC: h.nc, Log: h.log, DB: h.db, Keys: h.keys,
		Logger: zaptest.NewLogger(t)})
	late := h.fileWith(in, fileRequest(ana))
	onTime := h.fileWith(in, fileRequest(ana))
	relaxed := h.file(ana) // the default policy: a day to decide
	h.consumeIntake()
	svc := h.runApproval(p)
	// onTime is decided before its deadline: no DeadlineMissed.
	if _, err := svc.Claim(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: olu, CaseID: onTime.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Reject(h.ctx, approvalapi.RejectRequest{CommandID: newID(), Actor: olu, CaseID: onTime.ID, Reason: "out of mandate"}); err != nil {
		t.Fatal(err)
	}

	evatest.Eventually(t, "DeadlineMissed", func() bool { return countType(h.events(late.ID), "DeadlineMissed") == 1 })
	evatest.Eventually(t, "the escalated case first in the queue", func() bool {
		q := h.queue()
		return len(q) == 2 && q[0].CaseID == late.ID && q[0].Escalated && q[1].CaseID == relaxed.ID && !q[1].Escalated
	})
	if c := h.get(late.ID); !c.Escalated || c.State != assist.StateSubmitted {
		t.Fatalf("late case: escalated %v, %s; want escalated, still submitted", c.Escalated, c.State)
	}
	var missed assist.Event // after its DeadlineWarning
	for _, r := range h.events(late.ID) {
		if r.Event.Type() == "DeadlineMissed" {
			missed = r.Event
		}
	}
	if missed.Actor.Role != assist.RoleSystem || !missed.At.After(late.Deadline) && !missed.At.Equal(late.Deadline) {
		t.Fatalf("DeadlineMissed by %+v at %s; want the system, at or after %s", missed.Actor, missed.At, late.Deadline)
	}
	// Its timer delivered again: still once.
	if err := svc.Fire(h.ctx, timers.Fired{Kind: approval.TimerDeadline, ID: late.ID, Due: late.Deadline}); err != nil {
		t.Fatal(err)
	}
	if n := countType(h.events(late.ID), "DeadlineMissed"); n != 1 {
		t.Fatalf("DeadlineMissed %d times, want once", n)
	}
	if n := countType(h.events(onTime.ID), "DeadlineMissed"); n != 0 {
		t.Fatalf("a case decided in time missed its deadline %d times", n)
	}
}

func TestClaimExpiresBackToQueue(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), &fakeHolds{})
	c := h.file(ana)
	h.consumeIntake()
	svc := h.runApproval(shortPolicy(time.Second))
	if _, err := svc.Claim(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: olu, CaseID: c.ID}); err != nil {
		t.Fatal(err)
	}
	evatest.Eventually(t, "ClaimExpired", func() bool { return countType(h.events(c.ID), "ClaimExpired") == 1 })
	evatest.Eventually(t, "the case back in the queue, unclaimed", func() bool {
		q := queuedIDs(h.queue())
		it, ok := q[c.ID]
		return ok && it.Status == string(assist.StateSubmitted) && it.ClaimedBy == ""
	})
	// Someone else may take it now.
	if _, err := svc.Claim(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: pia, CaseID: c.ID}); err != nil {
		t.Fatal(err)
	}
}

// A fired timer of a case (one set before ADR 45) whose time moved later
// appends nothing and asks for a sweep at the new time; one of a case
// with nothing pending (a claim's, on a case not claimed) asks for none.
func TestFireBeforeDueAppendsNothing(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), &fakeHolds{})
	c := h.file(ana)
	svc, tm := h.withTimers()
	seq := h.lastSeq()
	for _, kind := range []string{approval.TimerDue, approval.TimerDeadline, approval.TimerClaim} {
		if err := svc.Fire(h.ctx, timers.Fired{Kind: kind, ID: c.ID, Due: time.Now()}); err != nil {
			t.Fatal(fmt.Errorf("%s: %w", kind, err))
		}
	}
	h.requireNoNewEvent(seq)
	want := []time.Time{slotOf(assist.WarnAt(c.CreatedAt, c.Deadline)), slotOf(c.Deadline)}
	if got := pendingSweeps(t, h.ctx, tm); !slices.Equal(got, want) {
		t.Fatalf("sweeps pending %v, want at the warning time and the deadline %v", got, want)
	}
}

// TestMeasureDeadlineDelay measures the delay from a case's deadline to its
// DeadlineMissed event (the event's time) over 1,000 cases with a
// 10-second deadline, on embedded JetStream and SQLite: filed as fast as
// 16 clients can (deadlines falling due in a burst), and paced at 50 a
// second. It runs with EVA_MEASURE=1 and reports with t.Log;
// docs/benchmarks.md has the numbers.
func TestMeasureDeadlineDelay(t *testing.T) {
	evatest.Measurement(t, "./services/approval")
	for _, pace := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run("pace="+pace.String(), func(t *testing.T) { measureDeadlineDelay(t, pace) })
	}
}

func measureDeadlineDelay(t *testing.T, pace time.Duration) {
	const n = 1000
	h := newHarness(t, sqldbtest.SQLite(t), &fakeHolds{})
	p := shortPolicy(10 * time.Second)
	in := intake.New(intake.Deps{Config: intake.Config{Policy: p}, NC: h.nc, Log: h.log, DB: h.db, Keys: h.keys,
		Logger: zap.NewNop()})
	h.consumeIntake()
	h.runApproval(p)
	cases := make([]*assist.Case, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	start := time.Now()
	for i := range n {
		if pace > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i) * pace)))
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := in.File(h.ctx, fileRequest(ana))
			if err != nil {
				t.Error(err)
				return
			}
			cases[i] = c
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("filed %d cases in %s", n, time.Since(start).Round(time.Millisecond))
	delays := make([]time.Duration, 0, n)
	var warnings []time.Duration // each case's warning is due at 7.5 s
	for _, c := range cases {
		evatest.Eventually(t, "DeadlineMissed of every case", func() bool { return countType(h.events(c.ID), "DeadlineMissed") == 1 })
		for _, r := range h.events(c.ID) {
			switch r.Event.Type() {
			case "DeadlineMissed":
				delays = append(delays, r.Event.At.Sub(c.Deadline))
			case "DeadlineWarning":
				warnings = append(warnings, r.Event.At.Sub(assist.WarnAt(c.CreatedAt, c.Deadline)))
			}
		}
	}
	slices.Sort(delays)
	t.Logf("%d deadlines → DeadlineMissed: median %s, p99 %s, max %s, min %s", n,
		delays[n/2].Round(time.Millisecond), delays[n*99/100].Round(time.Millisecond),
		delays[n-1].Round(time.Millisecond), delays[0].Round(time.Millisecond))
	slices.Sort(warnings)
	if w := len(warnings); w > 0 {
		t.Logf("%d of %d warning times → DeadlineWarning: median %s, p99 %s, max %s", w, n,
			warnings[w/2].Round(time.Millisecond), warnings[w*99/100].Round(time.Millisecond), warnings[w-1].Round(time.Millisecond))
	}
}
