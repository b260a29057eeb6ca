package eventlog_test

import (
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// A consumer whose pull request is lost (the server holding it went
// away, or a cluster still forming dropped it) hears no heartbeat and
// pulls again within a few seconds, not after nats.go's default of two
// missed 15-second heartbeats. Here JetStream's API is reached through a
// relay that loses the first pull.
func TestConsumerPullsAgainSoonAfterALostPull(t *testing.T) {
	js, pulls := natsxtest.LossyAPI(t, eventlogtest.Open(t).NC, "CONSUMER.MSG.NEXT.", 1)
	ctx := t.Context()
	l, err := eventlog.Open(ctx, js, eventlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	db := sqldbtest.SQLite(t)
	effectsDB(t, db)
	id := newID()
	if _, err := l.Append(ctx, submitted(t, id), 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	consumeInBackground(t, l, db, eventlog.ConsumerConfig{Name: "lostpull"}, record)
	evatest.Await(t, 12*time.Second, "the event after a lost pull", func() (bool, string) {
		return effects(t, db)[id] == 1, ""
	})
	if n := pulls.Load(); n < 2 {
		t.Fatalf("%d pull requests, want the lost one and another", n)
	}
	t.Logf("applied %v after the consumer started, %d pulls", time.Since(start).Round(time.Millisecond), pulls.Load())
}
