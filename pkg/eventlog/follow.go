package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/natsx"
)

// followBatch is how many events Follow's consumer keeps in flight: a
// follower wants each event as it comes, and a slow one should not make
// the server buffer much for it.
const followBatch = 256

// Follow calls f with every case event of the log after sequence after,
// in log order, as each is appended, until ctx ends or f fails (after
// LastSeq: the events appended from then on). Its ordered consumer
// (readOrdered) costs the server no durable state, and a follower
// resumes from any sequence it saw last.
//
// Errors: f's; ctx's when it ends; CodeUnavailable when the log does not
// answer.
func (l *Log) Follow(ctx context.Context, after uint64, f func(Msg) error) error {
	return l.readOrdered(ctx, "follow", after+1, []string{AllSubjects}, followBatch, func(m Msg, _ uint64) (bool, error) {
		return true, f(m)
	})
}

// readOrdered reads the stream from sequence from (of the subjects in
// filter; nil: every one) with an ordered consumer (Ordered) and calls f
// with each message and how many are pending after it, until f says no
// more, f fails or ctx ends. A reader that fails is replaced by a new one
// that goes on after the last message f had, a second later, up to
// orderedRetries times in a row without a message between: so a read
// rides out a stream's leader election or a server that stops. what
// names the reading in errors.
//
// Errors: f's; ctx's when it ends; CodeUnavailable when the log does not
// answer.
func (l *Log) readOrdered(ctx context.Context, what string, from uint64, filter []string, batch int,
	f func(m Msg, pending uint64) (more bool, err error)) error {
	next := from
	for failures := 0; ; {
		last, err := l.readOrderedOnce(ctx, next, filter, batch, f)
		if last >= next {
			next, failures = last+1, 0
		}
		var rf readerFailure
		if !errors.As(err, &rf) {
			return err
		}
		if failures++; failures > orderedRetries {
			return unavailable(fmt.Sprintf("%s the log after %d", what, next-1), rf.err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// orderedRetries is how many new readers in a row readOrdered opens,
// none getting a message, before it gives up.
const orderedRetries = 2

// readerFailure is an ordered reader's own failure (not f's, not ctx's).
type readerFailure struct{ err error }

func (e readerFailure) Error() string { return e.err.Error() }

// readOrderedOnce is readOrdered with one reader. It returns the sequence
// of the last message given to f (0: none) and why it stopped; a failure
// of the reader is a readerFailure.
func (l *Log) readOrderedOnce(ctx context.Context, from uint64, filter []string, batch int,
	f func(m Msg, pending uint64) (more bool, err error)) (last uint64, err error) {
	it, err := l.Ordered(ctx, from, filter, batch)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, readerFailure{err}
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			return last, readerFailure{err}
		}
		meta, err := m.Metadata()
		if err != nil {
			return last, readerFailure{err}
		}
		seq := meta.Sequence.Stream
		more, err := f(newMsg(seq, m.Subject(), m.Headers(), meta.Timestamp, m.Data()), meta.NumPending)
		last = seq
		if err != nil || !more {
			return last, err
		}
	}
}

// Ordered opens an ordered consumer of the stream from sequence from (of
// the subjects in filter; nil: every one) — ephemeral, no acks, flow
// controlled, batch messages in flight, made again by nats.go after a
// gap. Its iterator fails, rather than waiting for good, when the
// consumer is lost and cannot be made again at once; the reader then
// opens another.
//
// nats.go makes a lost ordered consumer again under the same name, by
// default again and again. A consumer of one replica made while a server
// stops may be placed on that server, before the cluster counts it
// offline; asked for again by the same name it never answers, and the
// reader would wait for ever (seen in TestE2ETopology's change stream).
// So one attempt: it fails within nats.go's 10 s, and the next consumer
// (readOrdered's retry, the change stream's client reconnecting), under a
// new name, is placed anew. A missed heartbeat (two of
// natsx.PullHeartbeat) tells a pull lost with its server in seconds.
func (l *Log) Ordered(ctx context.Context, from uint64, filter []string, batch int) (jetstream.MessagesContext, error) {
	cons, err := l.js.OrderedConsumer(ctx, Stream, jetstream.OrderedConsumerConfig{FilterSubjects: filter,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from, MaxResetAttempts: 1})
	if err != nil {
		return nil, err
	}
	return cons.Messages(jetstream.PullMaxMessages(batch), jetstream.PullHeartbeat(natsx.PullHeartbeat))
}
