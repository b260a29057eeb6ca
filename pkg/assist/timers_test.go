package assist_test

import (
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
)

func TestMissDeadline(t *testing.T) {
	for _, row := range rows() {
		t.Run(row, func(t *testing.T) {
			h := caseIn(t, row)
			cmd := h.cmd(system)
			cmd.At = h.c.Deadline
			e, err := h.c.MissDeadline(cmd)
			if !assist.State(row).Open() {
				wantCode(t, err, assist.CodeConflict)
				return
			}
			h.record(e, err)
			if !h.c.Escalated || h.c.State != assist.State(row) {
				t.Fatalf("escalated %v in %s; want escalated in %s", h.c.Escalated, h.c.State, row)
			}
			// Once only.
			_, err = h.c.MissDeadline(cmd)
			wantCode(t, err, assist.CodeConflict)
		})
	}
}

func TestMissDeadlineBeforeItPasses(t *testing.T) {
	h := caseIn(t, string(assist.StateSubmitted))
	cmd := h.cmd(system)
	cmd.At = h.c.Deadline.Add(-time.Nanosecond)
	_, err := h.c.MissDeadline(cmd)
	wantCode(t, err, assist.CodeConflict)
}

// The warning comes at three quarters of the time from filing to the
// deadline, once, only while the case is open, not escalated and before
// its deadline; a deadline moved by an amendment warns anew.
func TestWarnDeadline(t *testing.T) {
	for _, row := range rows() {
		t.Run(row, func(t *testing.T) {
			h := caseIn(t, row)
			warnAt := h.c.CreatedAt.Add(h.c.Deadline.Sub(h.c.CreatedAt) * 3 / 4)
			if !h.c.WarnAt().Equal(warnAt) {
				t.Fatalf("WarnAt %s, want %s", h.c.WarnAt(), warnAt)
			}
			early := h.cmd(system)
			early.At = warnAt.Add(-time.Nanosecond)
			_, err := h.c.WarnDeadline(early)
			wantCode(t, err, assist.CodeConflict)
			cmd := h.cmd(system)
			cmd.At = warnAt
			e, err := h.c.WarnDeadline(cmd)
			if !assist.State(row).Open() {
				wantCode(t, err, assist.CodeConflict)
				return
			}
			h.record(e, err)
			if b, ok := e.Body.(assist.DeadlineWarning); !ok || !b.Deadline.Equal(h.c.Deadline) {
				t.Fatalf("event %+v", e.Body)
			}
			if !h.c.Warned || h.c.Escalated || h.c.State != assist.State(row) {
				t.Fatalf("warned %v, escalated %v in %s; want warned only", h.c.Warned, h.c.Escalated, h.c.State)
			}
			// Once only.
			_, err = h.c.WarnDeadline(cmd)
			wantCode(t, err, assist.CodeConflict)
			// The deadline is still missed after it.
			cmd.At = h.c.Deadline
			h.record(h.c.MissDeadline(cmd))
		})
	}
}

func TestWarnDeadlineNotAfterItPassedOrEscalated(t *testing.T) {
	h := caseIn(t, string(assist.StateSubmitted))
	cmd := h.cmd(system)
	cmd.At = h.c.Deadline
	_, err := h.c.WarnDeadline(cmd)
	wantCode(t, err, assist.CodeConflict)
	h.record(h.c.MissDeadline(cmd))
	cmd.At = h.c.WarnAt()
	_, err = h.c.WarnDeadline(cmd)
	wantCode(t, err, assist.CodeConflict)
}

func TestWarnDeadlineAgainAfterTheDeadlineMoved(t *testing.T) {
	h := caseIn(t, string(assist.StateSubmitted))
	cmd := h.cmd(system)
	cmd.At = h.c.WarnAt()
	h.record(h.c.WarnDeadline(cmd))
	h.c.Apply(assist.Event{CaseID: h.c.ID, At: cmd.At, Body: assist.RequestAmended{Deadline: h.c.Deadline.Add(time.Hour)}}, h.c.Version+1)
	if h.c.Warned {
		t.Fatal("a moved deadline is still warned about")
	}
	cmd.At = h.c.WarnAt()
	h.record(h.c.WarnDeadline(cmd))
	h.c.Apply(assist.Event{CaseID: h.c.ID, At: cmd.At, Body: assist.RequestAmended{Deadline: h.c.Deadline}}, h.c.Version+1)
	if !h.c.Warned {
		t.Fatal("an amendment that keeps the deadline cleared its warning")
	}
}

func TestExpireClaim(t *testing.T) {
	h := caseIn(t, string(assist.StateUnderReview))
	early := h.cmd(system)
	early.At = h.c.ClaimExpiresAt.Add(-time.Nanosecond)
	_, err := h.c.ExpireClaim(early)
	wantCode(t, err, assist.CodeConflict)

	cmd := h.cmd(system)
	cmd.At = h.c.ClaimExpiresAt
	h.record(h.c.ExpireClaim(cmd))
	if h.c.State != assist.StateSubmitted || h.c.ClaimedBy != "" {
		t.Fatalf("after expiry: %s held by %q; want submitted, unheld", h.c.State, h.c.ClaimedBy)
	}
	if b := h.events[len(h.events)-1].Event.Body.(assist.ClaimExpired); b.ClaimedBy != bob.Username {
		t.Fatalf("ClaimExpired names %q, want %q", b.ClaimedBy, bob.Username)
	}
	// Back in the queue: another approver may claim it.
	h.claim(carol)

	for _, row := range []string{"submitted", "approved", "info_requested"} {
		h := caseIn(t, row)
		cmd := h.cmd(system)
		cmd.At = t0.Add(365 * 24 * time.Hour)
		_, err := h.c.ExpireClaim(cmd)
		wantCode(t, err, assist.CodeConflict)
	}
}
