package eventlog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// A consumer whose leader's server stops takes events again at once, on
// the server it is connected to (not the stopped one): a server that
// stops hands its leaderships on, and the consumer's pull follows the
// new leader. (A server that crashes hands nothing on; this test cannot
// crash an in-process server.)
func TestConsumerGoesOnSoonAfterItsLeadersServerStops(t *testing.T) {
	servers := natsxtest.Cluster(t, 3)
	logs, jss := replicatedLogsOn(t, servers)
	db := sqldbtest.SQLite(t)
	effectsDB(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const name = "leader-goes"
	consuming, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = logs[0].Consume(consuming, db, eventlog.ConsumerConfig{Name: name}, record, zaptest.NewLogger(t))
	}()
	defer func() { stop(); <-done }()
	applied := func(what, id string, patience time.Duration) {
		t.Helper()
		evatest.Await(t, patience, what, func() (bool, string) {
			n := effects(t, db)[id]
			return n == 1, fmt.Sprintf("applied %d times", n)
		})
	}
	file := func() string {
		t.Helper()
		id := newID()
		if _, err := logs[0].Start(ctx, submitted(t, id)); err != nil {
			t.Fatal(err)
		}
		return id
	}
	applied("the first event", file(), evatest.Patience)

	// The consumer's leader must be another server than the one the
	// consumer is connected to (server 0): step it down until it is.
	leader := func() int {
		for i, s := range servers {
			if s.Running() && s.JetStreamIsConsumerLeader("$G", eventlog.Stream, name) {
				return i
			}
		}
		return -1
	}
	evatest.Await(t, evatest.Patience, "a consumer leader other than server 0", func() (bool, string) {
		switch l := leader(); l {
		case -1:
			return false, "no leader"
		case 0:
			_, _ = jss[1].Conn().Request("$JS.API.CONSUMER.LEADER.STEPDOWN."+eventlog.Stream+"."+name, nil, 2*time.Second)
			return false, "server 0 leads"
		default:
			return true, ""
		}
	})
	gone := leader()
	// An event taken after the step-down says the consumer's pull now
	// waits at that leader.
	applied("the event after the step-down", file(), evatest.Patience)
	servers[gone].Shutdown()
	stopped := time.Now()
	id := file()
	applied("the event after the leader's server stopped", id, 15*time.Second)
	t.Logf("server %d, the consumer's leader, stopped: the next event was applied %s later", gone, time.Since(stopped).Round(10*time.Millisecond))
}
