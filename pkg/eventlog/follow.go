package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/natsx"
)

// followBatch is how many events Follow's consumer keeps in flight: a
// follower wants each event as it comes, and a slow one should not make
// the server buffer much for it.
const followBatch = 256

// Follow calls f with every case event of the log after sequence after,
// in log order, as each is appended, until ctx ends or f fails (after
// LastSeq: the events appended from then on). Its ordered consumer (a
// Reader) costs the server no durable state and is replaced when lost
// with a server; a follower resumes from any sequence it saw last.
//
// Errors: f's; ctx's when it ends; CodeUnavailable when the log does not
// answer.
func (l *Log) Follow(ctx context.Context, after uint64, f func(Msg) error) error {
	return l.readOrdered(ctx, "follow", after+1, []string{AllSubjects}, followBatch, func(m Msg, _ uint64) (bool, error) {
		return true, f(m)
	})
}

// readOrdered reads the stream from sequence from (of the subjects in
// filter; nil: every one) with a Reader and calls f with each message and
// how many are pending after it, until f says no more, f fails or ctx
// ends. what names the reading in errors.
//
// Errors: f's; ctx's when it ends; CodeUnavailable when the log does not
// answer.
func (l *Log) readOrdered(ctx context.Context, what string, from uint64, filter []string, batch int,
	f func(m Msg, pending uint64) (more bool, err error)) error {
	r := l.Reader(ctx, what, from, filter, batch)
	defer r.Stop()
	for {
		m, pending, _, err := r.Next(0)
		if err != nil {
			return err
		}
		if more, err := f(m, pending); err != nil || !more {
			return err
		}
	}
}

// orderedRetries is how many new consumers in a row a Reader opens, none
// giving a message, before it gives up.
const orderedRetries = 2

// Reader reads the stream in order with an ordered consumer: ephemeral,
// no acks, flow controlled, made again by nats.go after a gap. A consumer
// that fails is replaced by a new one, under a new name, that goes on
// after the last message read, a second later, up to orderedRetries times
// in a row without a message between: so a reading rides out a stream's
// leader election or a server that stops, and is told when the log does
// not answer rather than waiting for good.
//
// nats.go makes a lost ordered consumer again under the same name, by
// default again and again. A consumer of one replica made while a server
// stops may be placed on that server, before the cluster counts it
// offline; asked for again by the same name it never answers, and the
// reading would wait for ever (seen in TestE2ETopology's change stream).
// So nats.go is allowed one attempt, which fails within its 10 s, and the
// Reader's next consumer is placed anew. A missed heartbeat (two of
// natsx.PullHeartbeat) tells a pull lost with its server in seconds.
type Reader struct {
	ctx      context.Context
	l        *Log
	what     string
	filter   []string
	batch    int
	next     uint64 // the sequence after the last message read
	it       jetstream.MessagesContext
	stop     func() bool
	failures int // consumers failed since the last message
}

// Reader reads the stream from sequence from, of the subjects in filter
// (nil: every one), batch messages in flight, until ctx ends or Stop.
// what names the reading in errors.
func (l *Log) Reader(ctx context.Context, what string, from uint64, filter []string, batch int) *Reader {
	return &Reader{ctx: ctx, l: l, what: what, filter: filter, batch: batch, next: max(from, 1)}
}

// Next returns the next message and how many the stream had after it.
// With wait > 0, ok is false when none came within wait.
//
// Errors: the Reader's ctx's when it ends; CodeUnavailable when the log
// does not answer.
func (r *Reader) Next(wait time.Duration) (m Msg, pending uint64, ok bool, err error) {
	var opts []jetstream.NextOpt
	if wait > 0 {
		opts = append(opts, jetstream.NextMaxWait(wait))
	}
	for {
		if r.it == nil {
			err = r.open()
		}
		if err == nil {
			var jm jetstream.Msg
			if jm, err = r.it.Next(opts...); err == nil {
				var meta *jetstream.MsgMetadata
				if meta, err = jm.Metadata(); err == nil {
					seq := meta.Sequence.Stream
					r.next, r.failures = seq+1, 0
					return newMsg(seq, jm.Subject(), jm.Headers(), meta.Timestamp, jm.Data()), meta.NumPending, true, nil
				}
			} else if wait > 0 && errors.Is(err, nats.ErrTimeout) {
				return Msg{}, 0, false, nil
			}
		}
		if r.ctx.Err() != nil {
			return Msg{}, 0, false, r.ctx.Err()
		}
		r.Stop()
		if r.failures++; r.failures > orderedRetries {
			return Msg{}, 0, false, unavailable(fmt.Sprintf("%s the log after %d", r.what, r.next-1), err)
		}
		select {
		case <-r.ctx.Done():
			return Msg{}, 0, false, r.ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// open makes the Reader's consumer, from the sequence after the last
// message read.
func (r *Reader) open() error {
	cons, err := r.l.js.OrderedConsumer(r.ctx, Stream, jetstream.OrderedConsumerConfig{FilterSubjects: r.filter,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: r.next, MaxResetAttempts: 1})
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(r.batch), jetstream.PullHeartbeat(natsx.PullHeartbeat))
	if err != nil {
		return err
	}
	r.it, r.stop = it, context.AfterFunc(r.ctx, it.Stop)
	return nil
}

// Stop ends the Reader's consumer; a later Next opens another.
func (r *Reader) Stop() {
	if r.it != nil {
		r.stop()
		r.it.Stop()
		r.it = nil
	}
}
