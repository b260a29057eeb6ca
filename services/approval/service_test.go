package approval_test

import (
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/intake"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// Service tests: approval on a real embedded JetStream and a real database
// (both drivers), with requests filed through intake.

// DESIGN §5.2: two approvers never decide the same request.
func TestClaimRaceHasExactlyOneWinner(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, &fakeHolds{})
		for range 8 {
			c := h.file(ana)
			var wg sync.WaitGroup
			start := make(chan struct{})
			actors := []assist.Actor{olu, pia}
			got := make([]*assist.Case, len(actors))
			errs := make([]error, len(actors))
			for i, a := range actors {
				wg.Go(func() {
					<-start
					got[i], errs[i] = h.svc.Claim(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: a, CaseID: c.ID})
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for i := range actors {
				switch {
				case errs[i] == nil:
					if winner >= 0 {
						t.Fatalf("both approvers claimed %s", c.ID)
					}
					winner = i
				case !assist.IsCode(errs[i], assist.CodeConflict):
					t.Fatalf("the losing claim: %v, want %s", errs[i], assist.CodeConflict)
				}
			}
			if winner < 0 {
				t.Fatalf("nobody claimed %s: %v", c.ID, errs)
			}
			recs := h.events(c.ID)
			if n := countType(recs, "ReviewClaimed"); n != 1 {
				t.Fatalf("%d ReviewClaimed events, want 1", n)
			}
			final := h.get(c.ID)
			if final.State != assist.StateUnderReview || final.ClaimedBy != actors[winner].Username ||
				!reflect.DeepEqual(got[winner], final) {
				t.Fatalf("case after the race = %+v, want claimed by %s as answered", final, actors[winner].Username)
			}
		}
	})
}

func TestClaim(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, &fakeHolds{})
		t.Run("gives the approver the case for the claim time", func(t *testing.T) {
			c := h.file(ana)
			before := time.Now()
			r := approvalapi.CaseCommand{CommandID: newID(), Actor: olu, CaseID: c.ID}
			got, err := h.svc.Claim(h.ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			ttl := assist.DefaultPolicy().ClaimTTL
			if got.State != assist.StateUnderReview || got.ClaimedBy != "olu" ||
				got.ClaimExpiresAt.Before(before.Add(ttl)) || got.ClaimExpiresAt.After(time.Now().Add(ttl)) {
				t.Fatalf("claimed case = %+v", got)
			}
			// A retried claim answers the same and appends nothing.
			seq := h.lastSeq()
			again, err := h.svc.Claim(h.ctx, r)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("retried Claim = %+v, %v", again, err)
			}
			h.requireNoNewEvent(seq)
			// Claiming again under a new command is a conflict.
			_, err = h.svc.Claim(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: olu, CaseID: c.ID})
			requireCode(t, err, assist.CodeConflict)
		})
		t.Run("an expired claim can be taken over", func(t *testing.T) {
			c := h.file(ana)
			h.claim(c.ID, olu)
			later := h.service(&fakeHolds{}, func() time.Time { return time.Now().Add(assist.DefaultPolicy().ClaimTTL + time.Minute) })
			got, err := later.Claim(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: pia, CaseID: c.ID})
			if err != nil || got.ClaimedBy != "pia" {
				t.Fatalf("Claim after expiry = %+v, %v", got, err)
			}
		})
		withdrawn := h.file(ana)
		if _, err := h.intake.Withdraw(h.ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: withdrawn.ID, Reason: "r"}); err != nil {
			t.Fatal(err)
		}
		held := h.file(ana)
		h.claim(held.ID, olu)
		open := h.file(ana)
		for _, tc := range []struct {
			name string
			r    approvalapi.CaseCommand
			code assist.Code
		}{
			// Four eyes: the filer, even with the approver role.
			{"by the filer", approvalapi.CaseCommand{Actor: anaApprover, CaseID: open.ID}, assist.CodeForbidden},
			{"by a requester", approvalapi.CaseCommand{Actor: bo, CaseID: open.ID}, assist.CodeForbidden},
			{"by an auditor", approvalapi.CaseCommand{Actor: assist.Actor{Username: "aud", Role: assist.RoleAuditor}, CaseID: open.ID}, assist.CodeForbidden},
			{"held by another", approvalapi.CaseCommand{Actor: pia, CaseID: held.ID}, assist.CodeConflict},
			{"withdrawn", approvalapi.CaseCommand{Actor: olu, CaseID: withdrawn.ID}, assist.CodeConflict},
			{"unknown case", approvalapi.CaseCommand{Actor: olu, CaseID: newID()}, assist.CodeNotFound},
			{"malformed case id", approvalapi.CaseCommand{Actor: olu, CaseID: "eva.case.>"}, assist.CodeNotFound},
			{"bad command id", approvalapi.CaseCommand{CommandID: "x", Actor: olu, CaseID: open.ID}, assist.CodeInvalid},
		} {
			t.Run("refused/"+tc.name, func(t *testing.T) {
				seq := h.lastSeq()
				if tc.r.CommandID == "" {
					tc.r.CommandID = newID()
				}
				_, err := h.svc.Claim(h.ctx, tc.r)
				requireCode(t, err, tc.code)
				h.requireNoNewEvent(seq)
			})
		}
	})
}

func TestRelease(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, &fakeHolds{})
		c := h.file(ana)
		h.claim(c.ID, olu)
		for _, tc := range []struct {
			name  string
			actor assist.Actor
			code  assist.Code
		}{
			{"by a non-holder", pia, assist.CodeConflict},
			{"by a requester", ana, assist.CodeForbidden},
		} {
			t.Run("refused/"+tc.name, func(t *testing.T) {
				seq := h.lastSeq()
				_, err := h.svc.Release(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: tc.actor, CaseID: c.ID})
				requireCode(t, err, tc.code)
				h.requireNoNewEvent(seq)
			})
		}
		got, err := h.svc.Release(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: olu, CaseID: c.ID})
		if err != nil || got.State != assist.StateSubmitted || got.ClaimedBy != "" || !got.ClaimExpiresAt.IsZero() {
			t.Fatalf("Release = %+v, %v; want submitted and unclaimed", got, err)
		}
		// Released, it is nobody's: releasing again is a conflict, and the
		// other approver may claim it.
		_, err = h.svc.Release(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: olu, CaseID: c.ID})
		requireCode(t, err, assist.CodeConflict)
		h.claim(c.ID, pia)
	})
}

func TestReject(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, &fakeHolds{})
		c := h.file(ana)
		h.claim(c.ID, olu)
		for _, tc := range []struct {
			name   string
			actor  assist.Actor
			reason string
			code   assist.Code
			field  string
		}{
			{"without reason", olu, "", assist.CodeInvalid, "reason"},
			{"blank reason", olu, " \t\n", assist.CodeInvalid, "reason"},
			{"reason too long", olu, strings.Repeat("r", assist.MaxReason+1), assist.CodeInvalid, "reason"},
			{"by a non-holder", pia, "no", assist.CodeConflict, ""},
			{"by the filer", anaApprover, "no", assist.CodeForbidden, ""},
			{"by a requester", ana, "no", assist.CodeForbidden, ""},
		} {
			t.Run("refused/"+tc.name, func(t *testing.T) {
				seq := h.lastSeq()
				_, err := h.svc.Reject(h.ctx, approvalapi.RejectRequest{CommandID: newID(), Actor: tc.actor, CaseID: c.ID, Reason: tc.reason})
				requireCode(t, err, tc.code)
				if tc.field != "" {
					requireField(t, err, tc.field)
				}
				h.requireNoNewEvent(seq)
			})
		}
		got, err := h.svc.Reject(h.ctx, approvalapi.RejectRequest{CommandID: newID(), Actor: olu, CaseID: c.ID, Reason: "not eligible"})
		if err != nil || got.State != assist.StateRejected || got.ClaimedBy != "" {
			t.Fatalf("Reject = %+v, %v", got, err)
		}
		recs := h.events(c.ID)
		if last := recs[len(recs)-1].Event; last.Type() != "RequestRejected" || last.Reason != "not eligible" || last.Actor != olu {
			t.Fatalf("last event = %+v, want RequestRejected by olu with the reason", last)
		}
		// Decided: nothing more to claim or decide.
		_, err = h.svc.Claim(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: pia, CaseID: c.ID})
		requireCode(t, err, assist.CodeConflict)
		_, err = h.svc.Reject(h.ctx, approvalapi.RejectRequest{CommandID: newID(), Actor: olu, CaseID: c.ID, Reason: "again"})
		requireCode(t, err, assist.CodeConflict)
	})
}

// An approver asks; the case leaves the queue; the requester answers
// through intake; the case is back in the queue, unclaimed.
func TestRequestInfoThenAnswerRequeues(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, &fakeHolds{})
		h.consume()
		c := h.file(ana)
		h.claim(c.ID, olu)
		h.waitCaughtUp()
		if it, ok := queuedIDs(h.queue())[c.ID]; !ok || assist.State(it.Status) != assist.StateUnderReview {
			t.Fatalf("the claimed case is not queued under review: %+v", it)
		}
		for _, tc := range []struct {
			name     string
			actor    assist.Actor
			question string
			code     assist.Code
			field    string
		}{
			{"without question", olu, " ", assist.CodeInvalid, "question"},
			{"by a non-holder", pia, "why?", assist.CodeConflict, ""},
			{"by the filer", anaApprover, "why?", assist.CodeForbidden, ""},
		} {
			t.Run("refused/"+tc.name, func(t *testing.T) {
				seq := h.lastSeq()
				_, err := h.svc.RequestInfo(h.ctx, approvalapi.RequestInfoRequest{CommandID: newID(), Actor: tc.actor, CaseID: c.ID, Question: tc.question})
				requireCode(t, err, tc.code)
				if tc.field != "" {
					requireField(t, err, tc.field)
				}
				h.requireNoNewEvent(seq)
			})
		}
		got, err := h.svc.RequestInfo(h.ctx, approvalapi.RequestInfoRequest{CommandID: newID(), Actor: olu, CaseID: c.ID, Question: "which shelter?"})
		if err != nil || got.State != assist.StateInfoRequested || got.Question != "which shelter?" || got.ClaimedBy != "" {
			t.Fatalf("RequestInfo = %+v, %v", got, err)
		}
		h.waitCaughtUp()
		if _, ok := queuedIDs(h.queue())[c.ID]; ok {
			t.Fatal("a case waiting for information is still queued")
		}
		// Nobody may claim it while the question is open.
		_, err = h.svc.Claim(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: pia, CaseID: c.ID})
		requireCode(t, err, assist.CodeConflict)

		if _, err := h.intake.Answer(h.ctx, intakeapi.AnswerRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Answer: "Shanti shelter"}); err != nil {
			t.Fatal(err)
		}
		h.waitCaughtUp()
		it, ok := queuedIDs(h.queue())[c.ID]
		if !ok || assist.State(it.Status) != assist.StateSubmitted || it.ClaimedBy != "" || h.get(c.ID).Question != "" {
			t.Fatalf("the answered case is not back in the queue unclaimed: %+v (queued %v)", it, ok)
		}
		if want := queueItemOf(h.get(c.ID)); !sameQueued(it, want) {
			t.Fatalf("queued case %+v is not the fold of its log %+v", it, want)
		}
		h.claim(c.ID, pia)
	})
}

// The queue through the service after the projection ran: missed
// deadlines first, then by deadline; possible duplicates flagged across
// posts, never merged.
func TestQueueOverdueFirstAndDuplicatesFlagged(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, &fakeHolds{})
		h.consume()
		at := func(ago time.Duration) *intake.Service {
			return h.intakeAt(func() time.Time { return time.Now().Add(-ago) })
		}
		file := func(svc *intake.Service, actor assist.Actor, u assist.Urgency, ref string, cat assist.Category) *assist.Case {
			r := fileRequest(actor)
			r.Urgency, r.Category = string(u), string(cat)
			if ref != "" {
				r.Beneficiary.Reference = ref
			}
			return h.fileWith(svc, r)
		}
		// Filed 5 h ago, critical (4 h): 1 h overdue.
		late1h := file(at(5*time.Hour), ana, assist.Critical, "", assist.Shelter)
		// Filed 100 h ago, routine (72 h): 28 h overdue.
		late28h := file(at(100*time.Hour), bo, assist.Routine, "", assist.Medical)
		// Due in 4 h, 24 h, 72 h.
		in4h := file(h.intake, ana, assist.Critical, "", assist.Shelter)
		in24h := file(h.intake, bo, assist.Urgent, "", assist.Shelter)
		// The same person at two posts, written differently.
		dupDhaka := file(h.intake, ana, assist.Routine, "UNHCR 123-456", assist.Shelter)
		dupKtm := file(h.intake, bo, assist.Routine, "unhcr123-456", assist.Shelter)
		// The same person, another kind of help: not a duplicate.
		sameRefMedical := file(h.intake, bo, assist.Routine, "UNHCR123-456", assist.Medical)
		// Claimed: queued; withdrawn and waiting for information: not.
		claimed := file(at(time.Hour), ana, assist.Urgent, "", assist.Shelter)
		h.claim(claimed.ID, olu)
		withdrawn := file(h.intake, ana, assist.Critical, "", assist.Shelter)
		if _, err := h.intake.Withdraw(h.ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: withdrawn.ID, Reason: "r"}); err != nil {
			t.Fatal(err)
		}
		asked := file(at(10*time.Hour), ana, assist.Critical, "", assist.Shelter)
		h.claim(asked.ID, olu)
		if _, err := h.svc.RequestInfo(h.ctx, approvalapi.RequestInfoRequest{CommandID: newID(), Actor: olu, CaseID: asked.ID, Question: "?"}); err != nil {
			t.Fatal(err)
		}
		h.waitCaughtUp()

		items := h.queue()
		var got []string
		for _, it := range items {
			got = append(got, it.CaseID)
		}
		// claimed: filed 1 h ago, urgent: due in 23 h, before in24h.
		want := []string{late28h.ID, late1h.ID, in4h.ID, claimed.ID, in24h.ID, dupDhaka.ID, dupKtm.ID, sameRefMedical.ID}
		if !slices.Equal(got, want) {
			t.Fatalf("queue = %v\nwant  %v", got, want)
		}
		dups := map[string][]string{dupDhaka.ID: {dupKtm.ID}, dupKtm.ID: {dupDhaka.ID}}
		for i, it := range items {
			if it.Overdue != (i < 2) {
				t.Fatalf("%s overdue = %v", it.CaseID, it.Overdue)
			}
			w := dups[it.CaseID]
			if w == nil {
				w = []string{}
			}
			if !slices.Equal(it.PossibleDuplicates, w) {
				t.Fatalf("possible duplicates of %s = %v, want %v", it.CaseID, it.PossibleDuplicates, w)
			}
			if want := queueItemOf(h.get(it.CaseID)); !sameQueued(it, want) {
				t.Fatalf("queued case %+v is not the fold of its log %+v", it, want)
			}
		}
		// Flagged, never merged: both duplicates are decided on their own.
		h.claim(dupDhaka.ID, olu)
		h.claim(dupKtm.ID, pia)
		_, err := h.svc.Queue(h.ctx, approvalapi.QueueRequest{Cursor: "bad"})
		requireField(t, err, "cursor")
	})
}

// Request/reply is at most once: a client retries a claim while its first
// attempt may still be running. Every attempt must answer the case as the
// log has it after the one ReviewClaimed.
func TestClaimSameCommandConcurrentlyAnswersAsLogged(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, &fakeHolds{})
		for range 5 {
			c := h.file(ana)
			r := approvalapi.CaseCommand{CommandID: newID(), Actor: olu, CaseID: c.ID}
			const n = 6
			got := make([]*assist.Case, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					got[i], errs[i] = h.svc.Claim(h.ctx, r)
				})
			}
			close(start)
			wg.Wait()
			recs := h.events(c.ID)
			if k := countType(recs, "ReviewClaimed"); k != 1 {
				t.Fatalf("%d ReviewClaimed events for one command, want 1", k)
			}
			stored := h.get(c.ID)
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("attempt %d: %v", i, errs[i])
				}
				if got[i].Version != stored.Version || got[i].ClaimedBy != "olu" {
					t.Fatalf("attempt %d answered %+v", i, got[i])
				}
				if !reflect.DeepEqual(got[i], stored) {
					t.Fatalf("pkg/eventlog/cases.go:64-70 (Log.Execute): when Append finds the command's event already "+
						"stored (a concurrent retry of the same command: the 10071 path of eventlog.go appendEvent, or a "+
						"duplicate PubAck), Execute applies its own freshly decided event instead of the stored one, so the "+
						"answer differs from the log: attempt %d answered UpdatedAt %s, claim until %s; the log has %s, %s. "+
						"Log.Create (used by File since 713c803) reloads in that case; Execute does not",
						i, got[i].UpdatedAt.Format(time.RFC3339Nano), got[i].ClaimExpiresAt.Format(time.RFC3339Nano),
						stored.UpdatedAt.Format(time.RFC3339Nano), stored.ClaimExpiresAt.Format(time.RFC3339Nano))
				}
			}
		}
	})
}

// queueItemOf is the queue's columns of a case, as the fold of its log
// has them.
func queueItemOf(c *assist.Case) approvalapi.QueueItem {
	return approvalapi.QueueItem{CaseID: c.ID, Status: string(c.State), Urgency: string(c.Urgency), Deadline: c.Deadline,
		Escalated: c.Escalated, ClaimedBy: c.ClaimedBy, ClaimExpiresAt: c.ClaimExpiresAt}
}

// sameQueued compares a queue item's columns with want's, times to the
// microsecond as stored; the flags Overdue and PossibleDuplicates are the
// queue's own and not compared.
func sameQueued(got, want approvalapi.QueueItem) bool {
	got.Overdue, got.PossibleDuplicates = want.Overdue, want.PossibleDuplicates
	return sameItem(got, want)
}
