package approval_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/pkg/timers"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/intake"
)

// startApproval runs approval as Run does with policy p until stop is
// called (or the test ends): a restart is stop, then startApproval again.
func (h *harness) startApproval(p assist.Policy) (svc *approval.Service, tm *timers.Timers, stop func()) {
	h.t.Helper()
	tm, err := timers.Open(h.ctx, h.js, timers.Config{})
	if err != nil {
		h.t.Fatal(err)
	}
	d := approval.Deps{Config: approval.Config{Policy: p}, NC: h.nc, Log: h.log, DB: h.db, Holds: &fakeHolds{},
		Timers: tm, Logger: zaptest.NewLogger(h.t)}
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() { done <- approval.Run(ctx, d) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("approval.Run: %v", err)
		}
	}
	h.t.Cleanup(stop)
	return approval.New(d), tm, stop
}

// queued is the queue's item of a case.
func (h *harness) queued(id string) (approvalapi.QueueItem, bool) {
	it, ok := queuedIDs(h.queue())[id]
	return it, ok
}

// At three quarters of the time to its deadline an undecided case gets
// DeadlineWarning, once, by the system, and is marked due soon in the
// queue; when the deadline passes it is escalated and no longer due soon.
// A case decided before its warning time, and one with a far deadline,
// get none.
func TestDeadlineWarningOnceThenMissed(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), &fakeHolds{})
	p := shortPolicy(16 * time.Second) // warned at 12 s
	h.intake = h.intakeAt(nil)
	in := intake.New(intake.Deps{Config: intake.Config{Policy: p}, NC: h.nc, Log: h.log, DB: h.db, Keys: h.keys,
		Logger: zaptest.NewLogger(t)})
	late := h.fileWith(in, fileRequest(ana))
	decided := h.fileWith(in, fileRequest(ana))
	relaxed := h.file(ana) // the default policy: a day to decide
	h.consumeIntake()
	svc, _, _ := h.startApproval(p)
	if _, err := svc.Claim(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: olu, CaseID: decided.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Reject(h.ctx, approvalapi.RejectRequest{CommandID: newID(), Actor: olu, CaseID: decided.ID, Reason: "out of mandate"}); err != nil {
		t.Fatal(err)
	}

	evatest.Await(t, time.Minute, "DeadlineWarning", func() (bool, string) {
		return countType(h.events(late.ID), "DeadlineWarning") == 1, fmt.Sprint(countType(h.events(late.ID), "DeadlineWarning"))
	})
	warning := h.events(late.ID)[1].Event
	b, ok := warning.Body.(assist.DeadlineWarning)
	warnAt := assist.WarnAt(late.CreatedAt, late.Deadline)
	if !ok || !b.Deadline.Equal(late.Deadline) || warning.Actor.Role != assist.RoleSystem || warning.At.Before(warnAt) ||
		!warning.At.Before(late.Deadline) {
		t.Fatalf("the warning %+v at %s; want DeadlineWarning by the system between %s and %s", warning, warning.At, warnAt, late.Deadline)
	}
	evatest.Await(t, 5*time.Second, "the case due soon in the queue", func() (bool, string) {
		it, _ := h.queued(late.ID)
		return it.DueSoon && !it.Escalated, fmt.Sprintf("%+v", it)
	})
	if it, _ := h.queued(relaxed.ID); it.DueSoon {
		t.Fatalf("a case with a day to go is due soon: %+v", it)
	}
	// Its timer delivered again: still once.
	if err := svc.Fire(h.ctx, timers.Fired{Kind: approval.TimerWarning, ID: late.ID, Due: warnAt}); err != nil {
		t.Fatal(err)
	}
	if n := countType(h.events(late.ID), "DeadlineWarning"); n != 1 {
		t.Fatalf("DeadlineWarning %d times, want once", n)
	}

	evatest.Await(t, time.Minute, "DeadlineMissed after the warning", func() (bool, string) {
		return countType(h.events(late.ID), "DeadlineMissed") == 1, ""
	})
	evatest.Eventually(t, "the escalated case no longer due soon", func() bool {
		it, _ := h.queued(late.ID)
		return it.Escalated && !it.DueSoon
	})
	if got := eventTypesOf(h.events(late.ID)); fmt.Sprint(got) != "[RequestSubmitted DeadlineWarning DeadlineMissed]" {
		t.Fatalf("history %v", got)
	}
	for _, c := range []*assist.Case{decided, relaxed} {
		if n := countType(h.events(c.ID), "DeadlineWarning"); n != 0 {
			t.Fatalf("%s: DeadlineWarning %d times, want none", c.ID, n)
		}
	}
}

// A warning time that passed while approval was down is warned about when
// it comes back (its first sweep); a case whose deadline passed too while
// it was down is escalated, not warned.
func TestDeadlineWarningAfterRestart(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), &fakeHolds{})
	p := shortPolicy(20 * time.Second) // urgent: warned at 15 s
	p.Deadlines[assist.Critical] = 4 * time.Second
	h.intake = h.intakeAt(nil)
	in := intake.New(intake.Deps{Config: intake.Config{Policy: p}, NC: h.nc, Log: h.log, DB: h.db, Keys: h.keys,
		Logger: zaptest.NewLogger(t)})
	urgent := h.fileWith(in, fileRequest(ana))
	r := fileRequest(ana)
	r.Urgency = string(assist.Critical)
	critical := h.fileWith(in, r)
	h.consumeIntake()
	_, _, stop := h.startApproval(p)
	h.waitCaughtUp() // both in the queue, due
	stop()
	// Down past the urgent case's warning time and the critical case's
	// deadline.
	time.Sleep(time.Until(assist.WarnAt(urgent.CreatedAt, urgent.Deadline).Add(500 * time.Millisecond)))
	if n := countType(h.events(urgent.ID), "DeadlineWarning"); n != 0 {
		t.Fatalf("warned while approval was down: %d", n)
	}
	h.startApproval(p)
	evatest.Await(t, 30*time.Second, "the warning after the restart", func() (bool, string) {
		return countType(h.events(urgent.ID), "DeadlineWarning") == 1 && countType(h.events(critical.ID), "DeadlineMissed") == 1,
			fmt.Sprint(eventTypesOf(h.events(urgent.ID)), eventTypesOf(h.events(critical.ID)))
	})
	if w := h.events(urgent.ID)[1].Event; !w.At.Before(urgent.Deadline) {
		t.Fatalf("warned at %s, after the deadline %s", w.At, urgent.Deadline)
	}
	if got := eventTypesOf(h.events(critical.ID)); fmt.Sprint(got) != "[RequestSubmitted DeadlineMissed]" {
		t.Fatalf("a case whose deadline passed while approval was down: %v; want escalated, not warned", got)
	}
}

func eventTypesOf(recs []assist.Recorded) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Event.Type()
	}
	return out
}
