package wire_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/cmd/eva/internal/wire/wiretest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/services/intake"
)

// AwaitConsumers returns once every consumer of the event log has taken
// every event; it does not for a consumer that does not exist, nor for
// one that has events left to take.
func TestAwaitConsumersWaitsForEachToCatchUp(t *testing.T) {
	s := wiretest.Start(t, wiretest.Options{Quiet: true})
	s.AwaitConsumers(t)
	js, err := jetstream.New(s.P.NC)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, name := range wire.EventConsumers {
		c, err := js.Consumer(ctx, eventlog.Stream, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			t.Errorf("%s: %d pending, %d awaiting their ack after AwaitConsumers", name, info.NumPending, info.NumAckPending)
		}
	}

	// A consumer that nobody runs has the demo data's events left.
	if _, err := js.CreateOrUpdateConsumer(ctx, eventlog.Stream, jetstream.ConsumerConfig{Durable: "nobody-runs-it",
		AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	// Long enough for an answer from JetStream on a loaded CI machine:
	// the error must say why, not only that time ran out.
	for name, why := range map[string]string{"nobody-runs-it": "pending", "no-such-consumer": "not found"} {
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := wire.AwaitConsumers(short, js, []string{name})
		cancel()
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), why) {
			t.Errorf("awaiting %s: %v, want an error naming it and saying %q", name, err, why)
		}
	}
}

// A look at a consumer that the cluster never answers (its leader not yet
// elected: the request is dropped) is tried again, not waited on until
// the caller's time runs out. Here JetStream's API is reached through a
// relay that loses the first consumer-info request.
func TestAwaitConsumersAsksAgainAfterAnUnansweredRequest(t *testing.T) {
	s := wiretest.Start(t, wiretest.Options{Quiet: true})
	s.AwaitConsumers(t)
	js, infos := natsxtest.LossyAPI(t, s.P.NC, "CONSUMER.INFO.", 1)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := wire.AwaitConsumers(ctx, js, []string{intake.ConsumerName}); err != nil {
		t.Fatalf("awaiting %s after a dropped request: %v", intake.ConsumerName, err)
	}
	if n := infos.Load(); n < 2 {
		t.Fatalf("%d consumer-info requests, want the dropped one and another", n)
	}
}

// When the caller's time ends during a look that JetStream does not
// answer, the error still says what JetStream said before: here the
// consumer's first look answers that events are pending, and the third
// consumer-info request (the second look's first) is lost, until the
// caller's 1.5 s are spent.
func TestAwaitConsumersSaysWhyWhenTimeEndsDuringALook(t *testing.T) {
	l := eventlogtest.Open(t)
	ctx := t.Context()
	if _, err := eventlogtest.Synthesize(ctx, l.JS, 2, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := l.JS.CreateOrUpdateConsumer(ctx, eventlog.Stream, jetstream.ConsumerConfig{Durable: "nobody-runs-it",
		AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	js, infos := natsxtest.LossyAPI(t, l.NC, "CONSUMER.INFO.", 3)
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	err := wire.AwaitConsumers(short, js, []string{"nobody-runs-it"})
	if err == nil || !strings.Contains(err.Error(), "6 events pending") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("awaiting a consumer with 6 events pending: %v; want an error saying so, and that time ran out", err)
	}
	if n := infos.Load(); n != 3 {
		t.Fatalf("%d consumer-info requests, want 3 (the third lost until the end)", n)
	}
}
