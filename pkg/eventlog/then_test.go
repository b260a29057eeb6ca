package eventlog_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// amend is a command that sets the case's justification to j.
func amend(id, cmd, j string) eventlog.Command {
	return eventlog.Command{CaseID: id, ID: cmd, Decide: func(c *assist.Case) (assist.Event, error) {
		return c.Amend(assist.Cmd{ID: cmd, Actor: ana, At: time.Now().UTC()}, assist.AmendInput{Justification: &j},
			assist.DefaultPolicy())
	}}
}

// claim is a command that claims the case for olu.
func claim(id, cmd string) eventlog.Command {
	return eventlog.Command{CaseID: id, ID: cmd, Decide: func(c *assist.Case) (assist.Event, error) {
		return c.Claim(assist.Cmd{ID: cmd, Actor: olu, At: time.Now().UTC()}, time.Hour)
	}}
}

// prevHeader is the HeaderPrev the stream stored with the event at seq.
func prevHeader(t *testing.T, js jetstream.JetStream, seq uint64) string {
	t.Helper()
	st, err := js.Stream(context.Background(), eventlog.Stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	return m.Header.Get(eventlog.HeaderPrev)
}

// On a replicated stream the two events of ExecuteFromThen land as one
// atomic batch, at consecutive sequences, the second naming the one
// before it; every replica reads them back as a whole chain. Done again,
// the commands are recognised and nothing is appended; on a case that
// moved on, the batch is refused and the commands run one by one after
// what moved it; a second command refused on the first's state leaves
// the first appended and answers with the refusal, as one by one.
func TestExecuteFromThenAppendsOneBatchOnAReplicatedStream(t *testing.T) {
	logs, jss := replicatedLogs(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := newID()
	filed, err := logs[0].Start(ctx, submitted(t, id))
	if err != nil {
		t.Fatal(err)
	}
	stale := *filed
	c := *filed
	first, second := newID(), newID()
	got, err := logs[0].ExecuteFromThen(ctx, &c, amend(id, first, "one"), amend(id, second, "two"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Justification != "two" || got.Events != 3 || got.Version != filed.Version+2 {
		t.Fatalf("after both: %q, %d events at %d; want \"two\", 3 at %d", got.Justification, got.Events, got.Version,
			filed.Version+2)
	}
	if p := prevHeader(t, jss[0], got.Version); p != eventlog.PrevInBatch {
		t.Fatalf("the second event's %s is %q, want %q (appended in one batch)", eventlog.HeaderPrev, p, eventlog.PrevInBatch)
	}
	if p := prevHeader(t, jss[0], got.Version-1); p != strconv.FormatUint(filed.Version, 10) {
		t.Fatalf("the first event's %s is %q, want %d", eventlog.HeaderPrev, p, filed.Version)
	}
	for i, l := range logs {
		read, err := l.Case(ctx, id) // a broken chain fails the read
		if err != nil {
			t.Fatalf("server %d: %v", i, err)
		}
		if read.Version != got.Version || read.Justification != "two" || read.Events != 3 {
			t.Fatalf("server %d reads %q, %d events at %d", i, read.Justification, read.Events, read.Version)
		}
	}

	// The same two commands again, from the case as filed: both are in
	// the history, so the batch is refused and nothing is appended.
	s := stale
	again, err := logs[1].ExecuteFromThen(ctx, &s, amend(id, first, "one"), amend(id, second, "two"))
	if err != nil || again.Version != got.Version || again.Justification != "two" {
		t.Fatalf("again: %+v, %v", again, err)
	}

	// Two new commands on the stale state: decided again on the log's.
	s = stale
	third, fourth := newID(), newID()
	moved, err := logs[2].ExecuteFromThen(ctx, &s, amend(id, third, "three"), amend(id, fourth, "four"))
	if err != nil {
		t.Fatal(err)
	}
	if moved.Justification != "four" || moved.Events != 5 {
		t.Fatalf("after the stale pair: %q, %d events", moved.Justification, moved.Events)
	}

	// A claim, then a second claim that the claimed case refuses.
	c = *moved
	claimed, refused := newID(), newID()
	if _, err := logs[0].ExecuteFromThen(ctx, &c, claim(id, claimed), claim(id, refused)); !assist.IsCode(err, assist.CodeConflict) {
		t.Fatalf("claim twice: %v, want the second refused as a conflict", err)
	}
	recs, err := logs[1].Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range recs {
		types = append(types, r.Event.Type())
	}
	if len(recs) != 6 || recs[5].Event.CommandID != claimed {
		t.Fatalf("the log holds %v; want filed, four amendments, the first claim", types)
	}
}

// On a standalone stream the two commands of ExecuteFromThen are appended
// one by one: the server would stage a batch in files of its own.
func TestExecuteFromThenAppendsOneByOneOnAStandaloneStream(t *testing.T) {
	l, js := openLog(t)
	ctx := context.Background()
	id := newID()
	filed, err := l.Start(ctx, submitted(t, id))
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.ExecuteFromThen(ctx, filed, amend(id, newID(), "one"), amend(id, newID(), "two"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Justification != "two" || got.Events != 3 {
		t.Fatalf("after both: %q, %d events", got.Justification, got.Events)
	}
	if p := prevHeader(t, js, got.Version); p != strconv.FormatUint(got.Version-1, 10) {
		t.Fatalf("the second event's %s is %q, want the first's sequence %d", eventlog.HeaderPrev, p, got.Version-1)
	}
}

// replicatedLogs opens the log through each server of an n-node cluster.
func replicatedLogs(t testing.TB, n int) ([]*eventlog.Log, []jetstream.JetStream) {
	t.Helper()
	return replicatedLogsOn(t, natsxtest.Cluster(t, n))
}

// replicatedLogsOn is replicatedLogs on a cluster already started: a log
// on each of servers, with as many replicas.
func replicatedLogsOn(t testing.TB, servers []*server.Server) ([]*eventlog.Log, []jetstream.JetStream) {
	t.Helper()
	n := len(servers)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logs := make([]*eventlog.Log, n)
	jss := make([]jetstream.JetStream, n)
	for i, s := range servers {
		nc, err := natsxtestConnect(t, s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		if jss[i], err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
		// A cluster just formed may not answer its first requests: ask
		// again, each time with a short deadline.
		for deadline := time.Now().Add(time.Minute); ; {
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			logs[i], err = eventlog.Open(actx, jss[i], eventlog.Config{Replicas: n})
			acancel()
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// The replicas of a stream just created subscribe to direct gets a
	// while after it (no responders meanwhile, longer than a read waits
	// on a loaded machine): a case read back through every server says
	// the cluster serves reads before the caller starts.
	warm := newID()
	if _, err := logs[0].Start(ctx, submitted(t, warm)); err != nil {
		t.Fatal(err)
	}
	for i, l := range logs {
		evatest.Await(t, evatest.Patience, fmt.Sprintf("server %d to serve reads", i), func() (bool, string) {
			_, err := l.Case(ctx, warm)
			return err == nil, fmt.Sprint(err)
		})
	}
	return logs, jss
}
