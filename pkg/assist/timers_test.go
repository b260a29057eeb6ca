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
