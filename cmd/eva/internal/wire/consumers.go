package wire

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/retry"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/intake"
	"github.com/eva-org/eva/services/notify"
)

// EventConsumers are the durable consumers of the event log that the
// services run.
var EventConsumers = []string{intake.ConsumerName, approval.ConsumerName, disbursement.ConsumerName,
	audit.ConsumerName, notify.ConsumerName}

// awaitAttempt bounds one look at a consumer (AwaitConsumers).
const awaitAttempt = 2 * time.Second

// AwaitConsumers waits until each of the durable consumers names exists
// on the event log and has taken every event stored (none pending, none
// awaiting its ack), or ctx ends. A measurement then starts on services
// that all consume, not beside a consumer that a cluster just formed is
// still creating (its cases would wait for it, and their wait would be
// counted as the system's).
//
// Errors: the consumer not there or not caught up when ctx ended, as
// JetStream last said (even when ctx ended during a later look).
func AwaitConsumers(ctx context.Context, js jetstream.JetStream, names []string) error {
	for _, name := range names {
		var why error // JetStream's last answer that was not a time-out
		err := retry.Do(ctx, retry.Policy{First: 50 * time.Millisecond, Max: 500 * time.Millisecond}, retry.Always,
			func(ctx context.Context) error {
				err := awaitOnce(ctx, js, name)
				if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
					why = err
				}
				return err
			})
		if err != nil && why != nil && !errors.Is(err, why) {
			err = errors.Join(why, err)
		}
		if err != nil {
			return fmt.Errorf("consumer %s: %w", name, err)
		}
	}
	return nil
}

// awaitOnce looks at a consumer once: nil when it has taken every event.
// A request the cluster drops (a consumer's leader not yet elected, or
// changing) is never answered: each look has its own time, so that one
// lost request does not take all of ctx's.
func awaitOnce(ctx context.Context, js jetstream.JetStream, name string) error {
	ctx, cancel := context.WithTimeout(ctx, awaitAttempt)
	defer cancel()
	c, err := js.Consumer(ctx, eventlog.Stream, name)
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Errorf("%d events pending, %d awaiting their ack", info.NumPending, info.NumAckPending)
	}
	return nil
}

// AwaitConsumers waits until every consumer of the event log that the
// services run (EventConsumers) exists and has taken every event stored,
// or ctx ends (AwaitConsumers).
func (p *Platform) AwaitConsumers(ctx context.Context) error {
	js, err := jetstream.New(p.NC)
	if err != nil {
		return err
	}
	return AwaitConsumers(ctx, js, EventConsumers)
}
