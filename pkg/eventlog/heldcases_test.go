package eventlog_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
)

var mei = assist.Actor{Username: "mei", Role: assist.RoleApprover}

func claimCmd(caseID, cmdID string, who assist.Actor) eventlog.Command {
	return eventlog.Command{CaseID: caseID, ID: cmdID, Decide: func(c *assist.Case) (assist.Event, error) {
		return c.Claim(assist.Cmd{ID: cmdID, Actor: who, At: time.Now().UTC()}, time.Hour)
	}}
}

// observeAll hands held every event of the case as the log has them, as
// the projection's consumer would.
func observeAll(t *testing.T, l *eventlog.Log, held *eventlog.HeldCases, caseID string) {
	t.Helper()
	msgs, err := l.LoadRaw(context.Background(), caseID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		held.Observe(m)
	}
}

// startCase files a new case and returns its id.
func startCase(t *testing.T, l *eventlog.Log) string {
	t.Helper()
	id := newID()
	if _, err := l.Start(context.Background(), submitted(t, id)); err != nil {
		t.Fatal(err)
	}
	return id
}

// wantEvents fails unless the log holds n events of the case.
func wantEvents(t *testing.T, l *eventlog.Log, id string, n int, what string) {
	t.Helper()
	if recs, err := l.Load(context.Background(), id); err != nil || len(recs) != n {
		t.Fatalf("the log has %d events (%v), want %d: %s", len(recs), err, n, what)
	}
}

func seqs(recs []assist.Recorded) []uint64 {
	var s []uint64
	for _, r := range recs {
		s = append(s, r.Seq)
	}
	return s
}

// checkPrefix fails unless held holds a prefix of the case's history in
// the log, from its first event.
func checkPrefix(t *testing.T, l *eventlog.Log, held *eventlog.HeldCases, caseID string) []assist.Recorded {
	t.Helper()
	h := held.HistoryForTest(caseID)
	recs, err := l.Load(context.Background(), caseID)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) > len(recs) {
		t.Fatalf("held %v, the log has %v", seqs(h), seqs(recs))
	}
	for i := range h {
		if h[i].Seq != recs[i].Seq || h[i].Event.ID != recs[i].Event.ID {
			t.Fatalf("held %v is not a prefix of the log's %v", seqs(h), seqs(recs))
		}
	}
	return h
}

func TestExecuteHeldAnswersAsExecute(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := startCase(t, l)
	held, stale := &eventlog.HeldCases{}, &eventlog.HeldCases{}
	observeAll(t, l, held, id)
	observeAll(t, l, stale, id) // a process that will not see the claim

	claim := newID()
	got, err := l.ExecuteHeld(ctx, held, claimCmd(id, claim, olu))
	if err != nil {
		t.Fatal(err)
	}
	fromLog, err := l.Case(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != assist.StateUnderReview || got.Version != fromLog.Version || got.Events != 2 || got.ClaimedBy != "olu" {
		t.Fatalf("after ExecuteHeld: %+v; the log folds %+v", got, fromLog)
	}
	if h := checkPrefix(t, l, held, id); len(h) != 2 {
		t.Fatalf("held %v after the claim, want both events", seqs(h))
	}

	// Another approver on the stale copy: decided again on the log,
	// where the case is claimed: refused, nothing appended, and the
	// history read is held from then on.
	if _, err := l.ExecuteHeld(ctx, stale, claimCmd(id, newID(), mei)); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("claim on a stale copy: %v, want conflict", err)
	}
	if h := checkPrefix(t, l, stale, id); len(h) != 2 {
		t.Fatalf("the stale copy holds %v after reading the case, want both events", seqs(h))
	}

	// The first claim again, on a copy that does not hold it, and on one
	// that does: recognised both times, answered as it was, not appended.
	older := &eventlog.HeldCases{}
	msgs, err := l.LoadRaw(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	older.Observe(msgs[0])
	for name, h := range map[string]*eventlog.HeldCases{"without the claim": older, "with the claim": held} {
		again, err := l.ExecuteHeld(ctx, h, claimCmd(id, claim, olu))
		if err != nil || again.Version != fromLog.Version || again.ClaimedBy != "olu" {
			t.Fatalf("repeated claim %s: %+v %v", name, again, err)
		}
	}
	wantEvents(t, l, id, 2, "filed, claimed once")
}

// A refusal from Prepare on a held copy that is behind the log is not
// the answer: Execute, deciding on the log, refuses first.
func TestExecuteHeldPrepareRefusalOnAStaleCopyIsExecutesAnswer(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := startCase(t, l)
	stale := &eventlog.HeldCases{}
	observeAll(t, l, stale, id)
	if _, err := l.Execute(ctx, claimCmd(id, newID(), olu)); err != nil {
		t.Fatal(err)
	}
	errPrepare := errors.New("no money (fake hold refusal)")
	prepared := 0
	cmd := claimCmd(id, newID(), mei)
	cmd.Prepare = func(context.Context, *assist.Case, *assist.Event) error {
		prepared++
		return errPrepare
	}
	_, err := l.ExecuteHeld(ctx, stale, cmd)
	if !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("got %v, want the log's conflict (claimed by olu), not the stale copy's prepare error", err)
	}
	if prepared != 1 {
		t.Fatalf("prepare ran %d times, want once (on the stale copy; the log refuses before preparing)", prepared)
	}
	// On a copy that is current, Prepare's refusal stands, and nothing
	// is appended.
	cmd2 := claimCmd(id, newID(), mei)
	cmd2.Decide = func(c *assist.Case) (assist.Event, error) {
		return c.Release(assist.Cmd{ID: cmd2.ID, Actor: olu, At: time.Now().UTC()})
	}
	cmd2.Prepare = func(context.Context, *assist.Case, *assist.Event) error { return errPrepare }
	if _, err := l.ExecuteHeld(ctx, stale, cmd2); !errors.Is(err, errPrepare) {
		t.Fatalf("prepare refusing on a current copy: %v, want its error", err)
	}
	wantEvents(t, l, id, 2, "filed, claimed; no release")
}

// A Prepare that finds a dependency out of reach on a held copy is the
// answer: the command is not prepared again on the log, where it would
// ask the same dependency a second time, and the caller learns the
// outage, not that its time ran out meanwhile.
func TestExecuteHeldPrepareOutageIsTheAnswer(t *testing.T) {
	l, _ := openLog(t)
	id := startCase(t, l)
	held := &eventlog.HeldCases{}
	observeAll(t, l, held, id)
	prepared := 0
	cmd := claimCmd(id, newID(), olu)
	cmd.Prepare = func(ctx context.Context, _ *assist.Case, _ *assist.Event) error {
		prepared++
		<-ctx.Done() // the fund does not answer before the caller's time is up
		return assist.Errorf(assist.CodeUnavailable, "place hold: %v (fake outage)", ctx.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.ExecuteHeld(ctx, held, cmd); !assist.IsCode(err, assist.CodeUnavailable) {
		t.Fatalf("got %v, want Prepare's unavailable", err)
	}
	if prepared != 1 {
		t.Fatalf("prepare ran %d times, want once", prepared)
	}
	wantEvents(t, l, id, 1, "filed; no claim")
}

func TestHeldCasesHoldOnlyWholePrefixes(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := startCase(t, l)
	if _, err := l.Execute(ctx, claimCmd(id, newID(), olu)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Execute(ctx, eventlog.Command{CaseID: id, ID: newID(), Decide: func(c *assist.Case) (assist.Event, error) {
		return c.Release(assist.Cmd{ID: newID(), Actor: olu, At: time.Now().UTC()})
	}}); err != nil {
		t.Fatal(err)
	}
	msgs, err := l.LoadRaw(ctx, id)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("%d events (%v), want 3", len(msgs), err)
	}
	h := &eventlog.HeldCases{}
	h.Observe(msgs[1]) // not a case's first event: nothing to extend
	if got := h.HistoryForTest(id); got != nil {
		t.Fatalf("holds %v from a middle event", seqs(got))
	}
	h.Observe(msgs[0])
	h.Observe(msgs[2]) // a gap: the copy is dropped
	if got := h.HistoryForTest(id); got != nil {
		t.Fatalf("holds %v across a gap", seqs(got))
	}
	for _, m := range append(msgs, msgs...) { // a redelivery changes nothing
		h.Observe(m)
	}
	if got := checkPrefix(t, l, h, id); len(got) != 3 {
		t.Fatalf("holds %v, want the 3 events", seqs(got))
	}
	// The least recently used case goes first.
	small := &eventlog.HeldCases{Max: 2}
	var ids []string
	for range 3 {
		other := startCase(t, l)
		observeAll(t, l, small, other)
		ids = append(ids, other)
	}
	if small.HistoryForTest(ids[0]) != nil || small.HistoryForTest(ids[1]) == nil || small.HistoryForTest(ids[2]) == nil {
		t.Fatal("a copy of 2 cases did not drop the oldest of 3")
	}
}

// Commands racing on one case through copies that the consumer feeds
// at its own pace: every copy stays a prefix of the log, and the log
// holds each command at most once.
func TestExecuteHeldRacesKeepPrefixes(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := startCase(t, l)
	copies := []*eventlog.HeldCases{{}, {}, {}}
	for _, h := range copies {
		observeAll(t, l, h, id)
	}
	actors := []assist.Actor{olu, mei, {Username: "ike", Role: assist.RoleApprover}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := map[string]bool{}
	for i := range 3 {
		wg.Go(func() {
			h, who := copies[i], actors[i]
			for range 10 {
				cmdID := newID()
				_, err := l.ExecuteHeld(ctx, h, eventlog.Command{CaseID: id, ID: cmdID, Decide: func(c *assist.Case) (assist.Event, error) {
					if c.State == assist.StateUnderReview && c.ClaimedBy == who.Username {
						return c.Release(assist.Cmd{ID: cmdID, Actor: who, At: time.Now().UTC()})
					}
					return c.Claim(assist.Cmd{ID: cmdID, Actor: who, At: time.Now().UTC()}, time.Hour)
				}})
				if err == nil {
					mu.Lock()
					done[cmdID] = true
					mu.Unlock()
				} else if !assist.IsCode(err, assist.CodeConflict) {
					t.Error(err)
				}
				if i == 0 { // one copy is also fed by a consumer
					observeAll(t, l, h, id)
				}
			}
		})
	}
	wg.Wait()
	recs, err := l.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range recs[1:] {
		seen[r.Event.CommandID]++
		if !done[r.Event.CommandID] {
			t.Errorf("event %d's command %s was not answered as done", r.Seq, r.Event.CommandID)
		}
	}
	for cmd, n := range seen {
		if n != 1 {
			t.Errorf("command %s is in the log %d times", cmd, n)
		}
	}
	if len(seen) != len(done) {
		t.Errorf("%d commands answered done, %d in the log", len(done), len(seen))
	}
	for _, h := range copies {
		checkPrefix(t, l, h, id)
	}
}

// A command retried after the stream's de-duplication window, on a copy
// that holds its event, is recognised by the copy: deciding it again on
// the case as it is now would append it a second time.
func TestExecuteHeldRecognisesACommandAfterTheDuplicateWindow(t *testing.T) {
	_, js := openLog(t)
	ctx := context.Background()
	const window = 100 * time.Millisecond
	l, err := eventlog.Open(ctx, js, eventlog.Config{DuplicateWindow: window})
	if err != nil {
		t.Fatal(err)
	}
	id := startCase(t, l)
	held := &eventlog.HeldCases{}
	observeAll(t, l, held, id)
	claim := newID()
	first, err := l.ExecuteHeld(ctx, held, claimCmd(id, claim, olu))
	if err != nil {
		t.Fatal(err)
	}
	release := newID()
	if _, err := l.ExecuteHeld(ctx, held, eventlog.Command{CaseID: id, ID: release, Decide: func(c *assist.Case) (assist.Event, error) {
		return c.Release(assist.Cmd{ID: release, Actor: olu, At: time.Now().UTC()})
	}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * window) // the stream forgets the claim's message id
	again, err := l.ExecuteHeld(ctx, held, claimCmd(id, claim, olu))
	if err != nil || again.Version != first.Version {
		t.Fatalf("the claim retried: %+v %v, want the case as of the first claim (version %d)", again, err, first.Version)
	}
	wantEvents(t, l, id, 3, "filed, claimed, released")
}
