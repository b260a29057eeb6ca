package eventlog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

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

// A follower whose server stops — there the log's stream is led and, as
// likely as not, its consumer of one replica lives — gets the events
// appended after within seconds. It never waits for good: nats.go would
// make its lost consumer again and again under one name, placed, while
// the cluster still counted the server online, on the stopped server,
// which never answers (TestE2ETopology's change stream saw nothing more
// of a case; here 2 runs in 8 waited 40 s and more). The failed reader is
// replaced by one under a new name.
func TestFollowGoesOnSoonAfterItsServerStops(t *testing.T) {
	// The lost consumer is placed on the stopped server in some runs only
	// (without the retry, one round in three stalled in two runs of the
	// test; with it, 7 rounds in 9 went on through a new reader): a few
	// rounds, side by side, each on a cluster of its own.
	for round := range 3 {
		t.Run(fmt.Sprint("round ", round+1), func(t *testing.T) {
			t.Parallel()
			followAcrossAStop(t)
		})
	}
}

func followAcrossAStop(t *testing.T) {
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
	select {
	case m := <-f.got:
		if m.CaseID != first {
			t.Fatalf("followed %s first, want %s", m.CaseID, first)
		}
	case err := <-f.done:
		t.Fatalf("follow ended before the first event: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the first event did not come within 30 s")
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
	case err := <-f.done:
		t.Fatalf("follow ended %s after its server stopped: %v", time.Since(stopped).Round(time.Millisecond), err)
	case <-time.After(patience):
		t.Fatalf("the follower saw nothing for %s after its server stopped", patience)
	}
}
