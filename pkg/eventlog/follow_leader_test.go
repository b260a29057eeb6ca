package eventlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// follower runs Follow in the background, as the gateway's change stream
// does, and tells what it saw and how it ended.
type follower struct {
	got  chan eventlog.Msg
	done chan error
}

func follow(ctx context.Context, l *eventlog.Log, after uint64) *follower {
	f := &follower{got: make(chan eventlog.Msg, 16), done: make(chan error, 1)}
	go func() {
		f.done <- l.Follow(ctx, after, func(m eventlog.Msg) error {
			select {
			case f.got <- m:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return f
}

// streamLeader is the index of the server leading the log's stream.
func streamLeader(t *testing.T, servers []*server.Server) int {
	t.Helper()
	for i, s := range servers {
		if s.JetStreamIsStreamLeader("$G", eventlog.Stream) {
			return i
		}
	}
	t.Fatal("the log's stream has no leader")
	return -1
}

// A follower whose server stops — there the log's stream is led and,
// as likely as not, its consumer of one replica lives — gets the events
// appended after, or is told within seconds that it must follow again
// (CodeUnavailable; a browser's EventSource reconnects). It never waits
// for good: nats.go would make its lost consumer again and again under
// one name, placed, while the cluster still counted the server online,
// on the stopped server, which never answers (TestE2ETopology's change
// stream saw nothing more of a case).
func TestFollowGoesOnOrEndsSoonAfterItsServerStops(t *testing.T) {
	servers := natsxtest.Cluster(t, 3)
	logs, _ := replicatedLogsOn(t, servers)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leader := streamLeader(t, servers)
	writer := logs[(leader+1)%3]
	after, err := writer.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := newID()
	if _, err := writer.Start(ctx, submitted(t, first)); err != nil {
		t.Fatal(err)
	}
	f := follow(ctx, logs[leader], after)
	if m := <-f.got; m.CaseID != first {
		t.Fatalf("followed %s first, want %s", m.CaseID, first)
	}
	servers[leader].Shutdown()
	stopped := time.Now()
	second := newID()
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := writer.Start(actx, submitted(t, second))
		acancel()
		if err == nil {
			break
		}
		t.Logf("append while the stream elects a leader: %v", err)
	}
	const patience = 30 * time.Second
	select {
	case m := <-f.got:
		if m.CaseID != second {
			t.Fatalf("followed %s after the stop, want %s", m.CaseID, second)
		}
		t.Logf("the follower went on: %s after the stop", time.Since(stopped).Round(time.Millisecond))
		return
	case err := <-f.done:
		if !assist.IsCode(err, assist.CodeUnavailable) {
			t.Fatalf("follow ended with %v, want unavailable", err)
		}
		t.Logf("follow ended %s after the stop: %v", time.Since(stopped).Round(time.Millisecond), err)
	case <-time.After(patience):
		t.Fatalf("the follower saw nothing and did not end for %s after its server stopped", patience)
	}
	// Followed again from the last event seen, as a reconnecting
	// browser does, it gets the event.
	again := follow(ctx, writer, after+1)
	select {
	case m := <-again.got:
		if m.CaseID != second {
			t.Fatalf("followed again, got %s first, want %s", m.CaseID, second)
		}
	case err := <-again.done:
		t.Fatalf("followed again: %v", err)
	case <-time.After(patience):
		t.Fatalf("followed again, nothing came for %s", patience)
	}
}

// A follower on a cluster that has lost its quorum — its own server
// stopped, and one more — is told so (CodeUnavailable) within seconds,
// rather than waiting for good while nats.go asks again and again for a
// consumer no one can make.
func TestFollowEndsWhenTheClusterCannotServeIt(t *testing.T) {
	servers := natsxtest.Cluster(t, 3)
	logs, _ := replicatedLogsOn(t, servers)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	after, err := logs[0].LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := newID()
	if _, err := logs[0].Start(ctx, submitted(t, id)); err != nil {
		t.Fatal(err)
	}
	f := follow(ctx, logs[1], after)
	if m := <-f.got; m.CaseID != id {
		t.Fatalf("followed %s, want %s", m.CaseID, id)
	}
	servers[2].Shutdown()
	servers[1].Shutdown() // the follower's own: it reconnects to server 0 and makes its consumer again
	stopped := time.Now()
	const patience = 30 * time.Second
	select {
	case m := <-f.got:
		t.Fatalf("followed %s with no quorum", m.CaseID)
	case err := <-f.done:
		if !assist.IsCode(err, assist.CodeUnavailable) {
			t.Fatalf("follow ended with %v, want unavailable", err)
		}
		t.Logf("follow ended %s after the quorum was lost: %v", time.Since(stopped).Round(time.Millisecond), err)
	case <-time.After(patience):
		t.Fatalf("the follower did not end for %s after the cluster lost its quorum", patience)
	}
}
