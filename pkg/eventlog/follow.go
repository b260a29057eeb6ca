package eventlog

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// followBatch is how many events Follow's consumer keeps in flight: a
// follower wants each event as it comes, and a slow one should not make
// the server buffer much for it.
const followBatch = 256

// Follow calls f with every case event of the log after sequence after,
// in log order, as each is appended, until ctx ends or f fails (after
// LastSeq: the events appended from then on). It reads with an ordered consumer (ephemeral, no acks,
// restarted by the client library after a gap), so a follower costs the
// server no durable state and resumes from any sequence it saw last.
//
// Errors: f's; ctx's when it ends; CodeUnavailable when the log does not
// answer.
func (l *Log) Follow(ctx context.Context, after uint64, f func(Msg) error) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{AllSubjects},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: after + 1}
	cons, err := l.js.OrderedConsumer(ctx, Stream, cfg)
	if err != nil {
		return unavailable(fmt.Sprintf("follow the log after %d", after), err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(followBatch))
	if err != nil {
		return unavailable(fmt.Sprintf("follow the log after %d", after), err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return unavailable(fmt.Sprintf("follow the log after %d", after), err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return unavailable(fmt.Sprintf("follow the log after %d", after), err)
		}
		after = meta.Sequence.Stream
		if err := f(newMsg(after, m.Subject(), m.Headers(), meta.Timestamp, m.Data())); err != nil {
			return err
		}
	}
}
