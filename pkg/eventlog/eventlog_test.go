package eventlog_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
)

func openLog(tb testing.TB) (*eventlog.Log, jetstream.JetStream) {
	tb.Helper()
	l := eventlogtest.Open(tb)
	return l.Log, l.JS
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

var (
	ana = assist.Actor{Username: "ana", Role: assist.RoleRequester, Post: "BGD-DHAKA"}
	olu = assist.Actor{Username: "olu", Role: assist.RoleApprover}
)

func submitted(tb testing.TB, caseID string) assist.Event {
	tb.Helper()
	e, err := assist.Submit(assist.Cmd{ID: caseID, Actor: ana, At: time.Now().UTC()}, assist.SubmitInput{
		Post: "BGD-DHAKA", Category: assist.Shelter, Urgency: assist.Critical, AmountCents: 10_000,
		Justification: "shelter tonight", BeneficiaryRefHash: []byte("ref"),
	}, assist.DefaultPolicy())
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func claimed(tb testing.TB, c *assist.Case, by assist.Actor) assist.Event {
	tb.Helper()
	e, err := c.Claim(assist.Cmd{ID: newID(), Actor: by, At: time.Now().UTC()}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func TestAppendLoadRoundTrip(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := newID()
	seq, err := l.Append(ctx, submitted(t, id), 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Case(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != assist.StateSubmitted || c.Version != seq || c.Requester != "ana" {
		t.Fatalf("loaded %+v, want submitted at %d by ana", c, seq)
	}
	msgs, err := l.LoadRaw(ctx, id)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("raw: %v %v", msgs, err)
	}
	if m := msgs[0]; m.ID != id || m.CaseID != id || m.Type != "RequestSubmitted" || m.Prev != 0 {
		t.Fatalf("raw message %+v", m)
	}
	if _, err := l.Case(ctx, newID()); !assist.IsCode(err, assist.CodeNotFound) {
		t.Fatalf("unknown case: %v, want not_found", err)
	}
}

// Twenty writers expect the same last sequence of one case: exactly one
// append lands, the others are told they lost.
func TestConcurrentAppendsExactlyOneWins(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := newID()
	seq, err := l.Append(ctx, submitted(t, id), 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Case(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	const writers = 20
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		won, lost int
		others    []error
	)
	start := make(chan struct{})
	for range writers {
		e := claimed(t, c, olu) // each with its own event id
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := l.Append(ctx, e, seq)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case assist.IsCode(err, assist.CodeConflict):
				lost++
			default:
				others = append(others, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if won != 1 || lost != writers-1 || len(others) > 0 {
		t.Fatalf("won %d, lost %d, other errors %v; want 1 and %d", won, lost, others, writers-1)
	}
	recs, err := l.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("case has %d events, want 2", len(recs))
	}
}

// An append whose ack was lost is retried with the same event: it is not
// written twice, whether the server still remembers the message id or the
// case has moved on since.
func TestRetryAfterLostAckIsNotDuplicated(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := newID()
	first := submitted(t, id)
	seq1, err := l.Append(ctx, first, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The retry: same event, same expectation.
	again, err := l.Append(ctx, first, 0)
	if err != nil || again != seq1 {
		t.Fatalf("retry: seq %d, %v; want %d", again, err, seq1)
	}
	// The case moves on, then a late retry of the first append arrives.
	c, err := l.Case(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	claim := claimed(t, c, olu)
	seq2, err := l.Append(ctx, claim, seq1)
	if err != nil {
		t.Fatal(err)
	}
	late, err := l.Append(ctx, first, 0)
	if err != nil || late != seq1 {
		t.Fatalf("late retry: seq %d, %v; want %d", late, err, seq1)
	}
	lateClaim, err := l.Append(ctx, claim, seq1)
	if err != nil || lateClaim != seq2 {
		t.Fatalf("late retry of claim: seq %d, %v; want %d", lateClaim, err, seq2)
	}
	recs, err := l.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("case has %d events after retries, want 2", len(recs))
	}
}

func TestExecuteRedecidesAfterLostRaceAndReplaysCommands(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := newID()
	if _, err := l.Execute(ctx, eventlog.Command{CaseID: id, ID: newID(), Decide: func(c *assist.Case) (assist.Event, error) {
		t.Fatal("a command on a case without events must not be decided")
		return assist.Event{}, nil
	}}); !assist.IsCode(err, assist.CodeNotFound) {
		t.Fatalf("command on no case: %v, want not_found", err)
	}
	c, err := l.Start(ctx, submitted(t, id))
	if err != nil || c.State != assist.StateSubmitted {
		t.Fatalf("submit: %+v %v", c, err)
	}
	// Two approvers claim at once: one claim lands, the other is decided
	// again on the claimed case and refused.
	mei := assist.Actor{Username: "mei", Role: assist.RoleApprover}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, who := range []assist.Actor{olu, mei} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := newID()
			_, errs[i] = l.Execute(ctx, eventlog.Command{CaseID: id, ID: cmd, Decide: func(c *assist.Case) (assist.Event, error) {
				return c.Claim(assist.Cmd{ID: cmd, Actor: who, At: time.Now().UTC()}, time.Hour)
			}})
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("claims: %v, %v; want exactly one to succeed", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !assist.IsCode(err, assist.CodeConflict) {
			t.Fatalf("losing claim: %v, want conflict", err)
		}
	}
	// Replaying the filing command returns the case as it was filed.
	again, err := l.Execute(ctx, eventlog.Command{CaseID: id, ID: id, Decide: func(*assist.Case) (assist.Event, error) {
		t.Fatal("a replayed command must not be decided again")
		return assist.Event{}, nil
	}})
	if err != nil || again.State != assist.StateSubmitted || again.Events != 1 {
		t.Fatalf("replay: %+v %v", again, err)
	}
}

func TestAsOf(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := newID()
	sub := submitted(t, id)
	seq, err := l.Append(ctx, sub, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := l.Case(ctx, id)
	claim := claimed(t, c, olu)
	claim.At = sub.At.Add(time.Minute)
	if _, err := l.Append(ctx, claim, seq); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Time
		want assist.State
	}{
		{sub.At, assist.StateSubmitted},
		{sub.At.Add(30 * time.Second), assist.StateSubmitted},
		{sub.At.Add(time.Minute), assist.StateUnderReview},
	} {
		got, err := l.AsOf(ctx, id, tc.at)
		if err != nil || got.State != tc.want {
			t.Errorf("as of %v: %+v %v, want %s", tc.at, got, err, tc.want)
		}
	}
	if _, err := l.AsOf(ctx, id, sub.At.Add(-time.Second)); !assist.IsCode(err, assist.CodeNotFound) {
		t.Fatalf("before filing: %v, want not_found", err)
	}
}

func TestAppendRefusesMalformedCaseIDs(t *testing.T) {
	l, _ := openLog(t)
	for _, id := range []string{"", "x", "a.b", ">", "*", uuid.Must(uuid.NewV7()).String() + ".x", "01234567-89AB-7DEF-8123-456789ABCDEF"} {
		e := submitted(t, newID())
		e.CaseID = id
		if _, err := l.Append(context.Background(), e, 0); !assist.IsCode(err, assist.CodeInvalid) {
			t.Errorf("case id %q: %v, want invalid", id, err)
		}
	}
}

func TestParseSubject(t *testing.T) {
	for _, tc := range []struct {
		subject, caseID, typ string
		ok                   bool
	}{
		{"eva.case.abc.RequestSubmitted", "abc", "RequestSubmitted", true},
		{"eva.case.abc", "", "", false},
		{"eva.case..X", "", "", false},
		{"eva.case.abc.X.Y", "", "", false},
		{"other.abc.X", "", "", false},
	} {
		c, typ, ok := eventlog.ParseSubject(tc.subject)
		if c != tc.caseID || typ != tc.typ || ok != tc.ok {
			t.Errorf("%s: %q %q %v", tc.subject, c, typ, ok)
		}
	}
	if got := eventlog.Subject("c1", "T"); got != "eva.case.c1.T" {
		t.Errorf("Subject = %s", got)
	}
	if got := eventlog.CaseFilter("c1"); got != fmt.Sprintf("eva.case.%s.>", "c1") {
		t.Errorf("CaseFilter = %s", got)
	}
}

// Start appends a new case in one round trip; the same command again
// answers as the first time, without a second event; another command on
// the same id is a conflict.
func TestStart(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := newID()
	sub := submitted(t, id)
	first, err := l.Start(ctx, sub)
	if err != nil || first.State != assist.StateSubmitted || first.Events != 1 {
		t.Fatalf("create: %+v %v", first, err)
	}
	c, _ := l.Case(ctx, id)
	if _, err := l.Append(ctx, claimed(t, c, olu), c.Version); err != nil {
		t.Fatal(err)
	}
	again, err := l.Start(ctx, sub)
	if err != nil || again.Version != first.Version || again.State != assist.StateSubmitted {
		t.Fatalf("retry: %+v %v, want the case as first filed", again, err)
	}
	other := submitted(t, id)
	other.ID, other.CommandID = newID(), newID()
	if _, err := l.Start(ctx, other); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("another command on an existing case: %v, want conflict", err)
	}
	if recs, _ := l.Load(ctx, id); len(recs) != 2 {
		t.Fatalf("%d events, want 2", len(recs))
	}
}

// Every kind of the log has its subjects; a subject of another kind or
// shape does not parse.
func TestSubjectsOfEveryKind(t *testing.T) {
	id := newID()
	for _, k := range assist.Kinds {
		subject := eventlog.SubjectOf(k, id, "Something")
		kind, of, typ, ok := eventlog.ParseSubjectOf(subject)
		if !ok || kind != k || of != id || typ != "Something" {
			t.Errorf("%s: %q %q %q %v", subject, kind, of, typ, ok)
		}
		if got := eventlog.Filter(k, id); got != "eva."+string(k)+"."+id+".>" {
			t.Errorf("Filter(%s) = %s", k, got)
		}
		if !slices.Contains(eventlog.AllKinds(), "eva."+string(k)+".>") {
			t.Errorf("the stream does not take %s events", k)
		}
		_, _, caseOK := eventlog.ParseSubject(subject)
		if caseOK != (k == assist.KindCase) {
			t.Errorf("ParseSubject(%s) ok = %v", subject, caseOK)
		}
	}
	for _, bad := range []string{"eva.nothing." + id + ".X", "eva.fund." + id, "eva.fund..X", "eva.fund." + id + ".X.Y", "x.fund." + id + ".X"} {
		if _, _, _, ok := eventlog.ParseSubjectOf(bad); ok {
			t.Errorf("%s parsed", bad)
		}
	}
}

// ExecuteOn runs a command on a thing with a state of its own: it starts
// one from no events, folds with the given fold, answers a replayed command
// as the first time, and refuses as Decide does.
func TestExecuteOnFoldsItsOwnState(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := newID()
	count := func(recs []assist.Recorded) int { return len(recs) }
	first := id
	n, v1, err := eventlog.ExecuteOn(ctx, l, eventlog.CommandOn[int]{Kind: assist.KindCase, ID: id, CmdID: first, Fold: count,
		Decide: func(n int, version uint64) (assist.Event, error) {
			if n != 0 || version != 0 {
				t.Fatalf("a new thing has %d events at %d", n, version)
			}
			return submitted(t, id), nil
		}})
	if err != nil || n != 1 || v1 == 0 {
		t.Fatalf("first: %d at %d, %v", n, v1, err)
	}
	claim := newID()
	decideClaim := func(n int, version uint64) (assist.Event, error) {
		if version != v1 {
			t.Fatalf("decided at %d, want %d", version, v1)
		}
		c, _ := l.Case(ctx, id)
		e := claimed(t, c, olu)
		e.ID, e.CommandID = claim, claim
		return e, nil
	}
	n, v2, err := eventlog.ExecuteOn(ctx, l, eventlog.CommandOn[int]{Kind: assist.KindCase, ID: id, CmdID: claim, Fold: count, Decide: decideClaim})
	if err != nil || n != 2 || v2 <= v1 {
		t.Fatalf("claim: %d at %d, %v", n, v2, err)
	}
	// The first command again: answered as then, not decided.
	n, v, err := eventlog.ExecuteOn(ctx, l, eventlog.CommandOn[int]{Kind: assist.KindCase, ID: id, CmdID: first, Fold: count,
		Decide: func(int, uint64) (assist.Event, error) {
			t.Fatal("a replayed command was decided again")
			return assist.Event{}, nil
		}})
	if err != nil || n != 1 || v != v1 {
		t.Fatalf("replay: %d at %d, %v; want 1 at %d", n, v, err, v1)
	}
	refused := assist.Errorf(assist.CodeConflict, "no")
	if _, _, err := eventlog.ExecuteOn(ctx, l, eventlog.CommandOn[int]{Kind: assist.KindCase, ID: id, CmdID: newID(), Fold: count,
		Decide: func(int, uint64) (assist.Event, error) { return assist.Event{}, refused }}); err != refused {
		t.Fatalf("refusal: %v", err)
	}
	if recs := eventlogtest.Events(t, l, id); len(recs) != 2 {
		t.Fatalf("%d events, want 2", len(recs))
	}
}

// ExecuteFrom appends on the state the caller holds, and answers as
// Execute whenever that state is behind the log: a stale state never
// appends (the expected sequence refuses it), a repeated command is
// recognised.
func TestExecuteFromAnswersAsExecute(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	id := newID()
	c, err := l.Start(ctx, submitted(t, id))
	if err != nil {
		t.Fatal(err)
	}
	stale := *c // the case as filed, kept by a slower process
	claim := newID()
	claimBy := func(who assist.Actor, cmd string) func(c *assist.Case) (assist.Event, error) {
		return func(c *assist.Case) (assist.Event, error) {
			return c.Claim(assist.Cmd{ID: cmd, Actor: who, At: time.Now().UTC()}, time.Hour)
		}
	}
	got, err := l.ExecuteFrom(ctx, c, eventlog.Command{CaseID: id, ID: claim, Decide: claimBy(olu, claim)})
	if err != nil {
		t.Fatal(err)
	}
	fromLog, err := l.Case(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != assist.StateUnderReview || got.Version != fromLog.Version || got.Events != 2 || got.ClaimedBy != "olu" {
		t.Fatalf("after ExecuteFrom: %+v; the log folds %+v", got, fromLog)
	}
	// Another approver on the stale state: decided again on the log's,
	// where the case is claimed: refused, nothing appended.
	mei := assist.Actor{Username: "mei", Role: assist.RoleApprover}
	other := newID()
	s1 := stale
	if _, err := l.ExecuteFrom(ctx, &s1, eventlog.Command{CaseID: id, ID: other, Decide: claimBy(mei, other)}); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("claim on a stale state: %v, want conflict", err)
	}
	// The first claim again, on the stale state: recognised, not appended.
	s2 := stale
	again, err := l.ExecuteFrom(ctx, &s2, eventlog.Command{CaseID: id, ID: claim, Decide: claimBy(olu, claim)})
	if err != nil || again.Version != fromLog.Version || again.ClaimedBy != "olu" {
		t.Fatalf("repeated claim: %+v %v", again, err)
	}
	recs, err := l.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d events in the log, want 2 (filed, claimed once)", len(recs))
	}
}
