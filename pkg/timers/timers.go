// Package timers keeps EVA's durable timers — approval's sweeps of the
// deadlines and claim leases due — as JetStream message schedules in a
// stream of their own, EVA_TIMERS, never in the event log: enabling
// schedules on a stream also allows rollups and purges, which the event
// log must refuse.
//
// A timer is one schedule message on eva.timer.set.<kind>.<id> whose
// Nats-Schedule is "@at <time>"; setting it again replaces it (one schedule
// per subject). When it is due the server publishes its payload on
// eva.timer.fire.<kind>.<id>, where a durable pull consumer hands it to the
// handler. The schedules live in the stream's file store, so a timer that
// fell due while the server was down fires as soon as it is back. Timers
// are hints, at least once: the handler re-checks the thing it is about.
package timers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/retry"
)

// Names of the stream and its subjects.
const (
	Stream     = "EVA_TIMERS"
	setPrefix  = "eva.timer.set."
	firePrefix = "eva.timer.fire."
)

// firedTTL bounds how long a fired timer stays in the stream once it was
// published: long after its handler acked it, long enough to survive any
// outage of the consumer.
const firedTTL = 30 * 24 * time.Hour

// Config sets up the stream.
type Config struct {
	// Replicas of the stream: 1 standalone, 3 in production clusters.
	Replicas int
	// Workers is how many fired timers one process handles at once;
	// default 16.
	Workers int
}

// Timers sets, cancels and delivers durable timers.
type Timers struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	workers int
}

// Open creates or updates the timers stream.
//
// Errors: CodeUnavailable when JetStream cannot be reached.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Timers, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              Stream,
		Description:       "EVA: durable timers (deadlines, claim leases) as message schedules",
		Subjects:          []string{"eva.timer.>"},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Replicas:          cfg.Replicas,
		AllowMsgSchedules: true,
		AllowMsgTTL:       true,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, unavailable("create stream "+Stream, err)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	return &Timers{js: js, stream: st, workers: cfg.Workers}, nil
}

// Stream returns the underlying stream, for its info.
func (t *Timers) Stream() jetstream.Stream { return t.stream }

// Set makes the timer of kind for id fire at at, replacing any timer of the
// same kind and id. A time in the past fires at once.
//
// Errors: CodeInvalid for a kind or id that is not a subject token,
// CodeUnavailable when JetStream does not answer.
func (t *Timers) Set(ctx context.Context, kind, id string, at time.Time) error {
	m, err := setMsg(kind, id, at)
	if err != nil {
		return err
	}
	_, err = retry.DoValue(ctx, retry.Policy{First: 5 * time.Millisecond, Attempts: 4}, isTimeout,
		func(ctx context.Context) (*jetstream.PubAck, error) {
			ctx, cancel := context.WithTimeout(ctx, setAttempt)
			defer cancel()
			return t.js.PublishMsg(ctx, m, jetstream.WithExpectStream(Stream))
		})
	if err != nil {
		return unavailable("set timer "+kind+" "+id, err)
	}
	return nil
}

// setAttempt bounds one attempt to store a timer.
const setAttempt = 2 * time.Second

// setMsg is the schedule message of the timer of kind for id at at.
func setMsg(kind, id string, at time.Time) (*nats.Msg, error) {
	if !validToken(kind) || !validToken(id) {
		return nil, assist.Errorf(assist.CodeInvalid, "timer %q of %q: not subject tokens", kind, id)
	}
	m := nats.NewMsg(setPrefix + kind + "." + id)
	m.Data = []byte(at.UTC().Format(time.RFC3339Nano))
	// The header rather than jetstream.WithScheduleAt, which rounds to the
	// second: the server parses fractions too.
	m.Header.Set("Nats-Schedule", "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set("Nats-Schedule-Target", firePrefix+kind+"."+id)
	m.Header.Set("Nats-Schedule-TTL", firedTTL.String())
	return m, nil
}

// Cancel removes the pending timer of kind for id, if any.
//
// Errors: CodeUnavailable when JetStream does not answer.
func (t *Timers) Cancel(ctx context.Context, kind, id string) error {
	if !validToken(kind) || !validToken(id) {
		return nil
	}
	if err := t.stream.Purge(ctx, jetstream.WithPurgeSubject(setPrefix+kind+"."+id)); err != nil {
		return unavailable("cancel timer "+kind+" "+id, err)
	}
	return nil
}

// Fired is a timer that fell due.
type Fired struct {
	Kind string
	ID   string
	// Due is when it was set to fire; FiredAt when the server fired it.
	Due, FiredAt time.Time
}

// Handler handles a fired timer. An error is tried again after a delay;
// an error wrapped by Drop is logged and the timer dropped.
type Handler func(ctx context.Context, f Fired) error

type dropError struct{ err error }

func (d dropError) Error() string { return d.err.Error() }
func (d dropError) Unwrap() error { return d.err }

// Drop marks a fired timer that can never be handled.
func Drop(err error) error { return dropError{err} }

// retryDelay is the delay before a failed timer is tried again.
const retryDelay = time.Second

// Run delivers fired timers of the given kinds to h through the durable
// consumer name until ctx ends; it returns nil then. Up to Config.Workers
// timers are handled at once: many deadlines fall due together.
func (t *Timers) Run(ctx context.Context, name string, kinds []string, h Handler, zl *zap.Logger) error {
	filters := make([]string, len(kinds))
	for i, k := range kinds {
		filters[i] = firePrefix + k + ".*"
	}
	cons, err := retry.DoValue(ctx, retry.Policy{First: 250 * time.Millisecond, Max: 5 * time.Second}, retry.Always,
		func(ctx context.Context) (jetstream.Consumer, error) {
			cons, err := t.js.CreateOrUpdateConsumer(ctx, Stream, jetstream.ConsumerConfig{
				Durable:        name,
				FilterSubjects: filters,
				AckPolicy:      jetstream.AckExplicitPolicy,
				AckWait:        30 * time.Second,
				MaxDeliver:     -1,
				MaxAckPending:  1000,
				DeliverPolicy:  jetstream.DeliverAllPolicy,
			})
			if err != nil && ctx.Err() == nil {
				zl.Warn("create timer consumer; will retry", zap.String("consumer", name), zap.Error(err))
			}
			return cons, err
		})
	if err != nil {
		return nil // ctx ended
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, t.workers)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return // redelivered after AckWait
		}
		wg.Go(func() {
			defer func() { <-sem }()
			t.deliver(ctx, m, h, zl)
		})
	}, jetstream.PullMaxMessages(256), jetstream.PullHeartbeat(natsx.PullHeartbeat))
	if err != nil {
		return unavailable("consume timers", err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

func (t *Timers) deliver(ctx context.Context, m jetstream.Msg, h Handler, zl *zap.Logger) {
	f, err := parseFired(m)
	if err == nil {
		err = h(ctx, f)
	}
	switch {
	case err == nil:
		_ = m.Ack()
	case errors.As(err, new(dropError)):
		zl.Warn("timer dropped", zap.String("subject", m.Subject()), zap.Error(err))
		_ = m.Term()
	default:
		if ctx.Err() == nil {
			zl.Warn("timer failed; will retry", zap.String("subject", m.Subject()), zap.Error(err))
		}
		_ = m.NakWithDelay(retryDelay)
	}
}

func parseFired(m jetstream.Msg) (Fired, error) {
	rest, ok := strings.CutPrefix(m.Subject(), firePrefix)
	kind, id, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return Fired{}, Drop(fmt.Errorf("timer on unexpected subject %q", m.Subject()))
	}
	due, err := time.Parse(time.RFC3339Nano, string(m.Data()))
	if err != nil {
		return Fired{}, Drop(fmt.Errorf("timer %s: due time: %w", m.Subject(), err))
	}
	f := Fired{Kind: kind, ID: id, Due: due}
	if md, err := m.Metadata(); err == nil {
		f.FiredAt = md.Timestamp
	}
	return f, nil
}

func validToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

func unavailable(what string, err error) error {
	return &assist.Error{Code: assist.CodeUnavailable, Message: fmt.Sprintf("timers: %s: %v", what, err)}
}
