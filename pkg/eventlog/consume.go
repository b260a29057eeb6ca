package eventlog

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/retry"
	"github.com/eva-org/eva/pkg/sqldb"
)

//go:embed migrations
var migrationFS embed.FS

// Migrations creates the tables consumers keep their records in. Every
// service that consumes the log applies it to its database.
var Migrations = sqldb.Embedded("eventlog", migrationFS)

// Handler applies one event to a consumer's store inside the transaction
// that also records the event as seen. It must do no I/O but through q.
// An error marked with Poison is dead-lettered at once; any other error is
// retried with back-off, up to the consumer's MaxAttempts. A write whose
// result the handler does not read may be deferred (sqldb.Defer): it goes
// with the transaction's next statement, and its failure is still pinned
// on its own event (the batch is then applied one event at a time).
type Handler func(ctx context.Context, q sqldb.Querier, m Msg) error

type poisonError struct{ err error }

func (p poisonError) Error() string { return p.err.Error() }
func (p poisonError) Unwrap() error { return p.err }

// Poison marks an error that no retry can fix: the event goes to the
// dead-letter subject at once.
func Poison(err error) error { return poisonError{err} }

// IsPoison reports whether err was marked with Poison.
func IsPoison(err error) bool { return errors.As(err, new(poisonError)) }

// ConsumerConfig configures a durable consumer.
type ConsumerConfig struct {
	// Name of the durable consumer; also keys its seen-records.
	Name string
	// Held, for Project only, is given every case event the projection
	// is handed (HeldCases.Observe), so that the service's commands can
	// decide on the cases it holds (ExecuteHeld).
	Held *HeldCases
	// Filters select subjects; default every case event.
	Filters []string
	// AfterCommit, when set, is called after each committed batch: a hint
	// for work that waits on the consumer's effects.
	AfterCommit func()
	// Repair, when set, is called outside any transaction when the
	// handler reports ErrGap for m: it brings the consumer's store up to
	// m from the log (reading the log, which a handler must not do inside
	// its transaction) and commits on its own. The event is then tried
	// again at once. Without Repair, or when it fails, the event waits
	// for its predecessor with back-off.
	Repair func(ctx context.Context, m Msg) error
	// SeenByHandler says the handler's own store already records which
	// events it applied (a projection keeps each case's last sequence; an
	// archive is keyed by sequence) and skips those, in the same
	// transaction as its effect: the consumer then writes no seen-record
	// of its own.
	SeenByHandler bool
	// Batch is the most events applied in one transaction; default 128.
	Batch int
	// Linger is how long a batch waits for more events after its first,
	// at most; by default it closes as soon as 1 ms passes without one.
	// A consumer that no command waits on (the audit archive, a read
	// model that people read) trades that much lag for bigger batches
	// (OffPathLinger): the same events in fewer transactions and
	// statements.
	Linger time.Duration
	// MaxAttempts is how often a failing event is tried before it is
	// dead-lettered; default 5.
	MaxAttempts int
	// RetryDelay is the first back-off; it doubles per attempt; default
	// 250ms.
	RetryDelay time.Duration
	// AckWait is how long the server waits for an ack before redelivery
	// (after a crash mid-batch); default 10s.
	AckWait time.Duration
	// StepTimeout bounds each call of the consumer to its store (a
	// batch's transaction, a repair, a ping); default 30s. A call that
	// never returns (a connection that died without a word, a lock held
	// by a client that is gone) then fails and is retried like an outage,
	// instead of leaving the consumer waiting on it for good while events
	// pile up behind it.
	StepTimeout time.Duration
	// Lanes is how many transactions apply a pulled batch at once: each
	// event goes to the lane its case (or thing) hashes to, so the events
	// of one case are still applied one after another in log order, while
	// different cases no longer wait for each other's round trips to the
	// database. Default 1: the whole batch in log order (the audit
	// archive's hash chain needs it).
	Lanes int
}

// OffPathLinger is the Linger of the consumers that no command waits on
// (ADR 38): the audit archive, notify and intake's projection.
const OffPathLinger = 20 * time.Millisecond

func (c *ConsumerConfig) defaults() {
	if len(c.Filters) == 0 {
		c.Filters = []string{AllSubjects}
	}
	if c.Batch <= 0 {
		c.Batch = 128
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = 250 * time.Millisecond
	}
	if c.AckWait <= 0 {
		c.AckWait = 10 * time.Second
	}
	if c.Lanes <= 0 {
		c.Lanes = 1
	}
	if c.StepTimeout <= 0 {
		c.StepTimeout = 30 * time.Second
	}
}

// Consume runs a durable pull consumer until ctx ends. Each event is
// applied by h and recorded as seen in one database transaction, then
// acked: a redelivered event is skipped. Events are applied in batches, one
// transaction per batch; when a batch fails, its events are retried one by
// one so that one bad event holds up no other. An event that keeps failing
// goes, after MaxAttempts, to the dead-letter subject eva.dlq.<consumer>
// with the reason, and to the dead_letters table.
//
// It returns nil when ctx ends.
func (l *Log) Consume(ctx context.Context, db sqldb.DB, cfg ConsumerConfig, h Handler, log *zap.Logger) error {
	cfg.defaults()
	consCfg := jetstream.ConsumerConfig{
		Durable:        cfg.Name,
		FilterSubjects: cfg.Filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		// Retries are counted by the consumer itself, so that an outage of
		// its database never exhausts an event's deliveries.
		MaxDeliver:    -1,
		MaxAckPending: cfg.Batch * 8,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	// A cluster that is still electing, or busy, may not answer at once:
	// keep asking until it does or ctx ends.
	cons, err := retry.DoValue(ctx, retry.Policy{First: 250 * time.Millisecond, Max: 5 * time.Second}, retry.Always,
		func(ctx context.Context) (jetstream.Consumer, error) {
			cons, err := l.js.CreateOrUpdateConsumer(ctx, Stream, consCfg)
			if err != nil && ctx.Err() == nil {
				log.Warn("create consumer; will retry", zap.String("consumer", cfg.Name), zap.Error(err))
			}
			return cons, err
		})
	if err != nil {
		return nil // ctx ended
	}
	r := &runner{log: l, db: db, cfg: cfg, h: h, zl: log.With(zap.String("consumer", cfg.Name))}
	for ctx.Err() == nil {
		it, err := cons.Messages(jetstream.PullMaxMessages(cfg.Batch*2), jetstream.PullHeartbeat(natsx.PullHeartbeat))
		if err != nil {
			r.zl.Warn("pull", zap.Error(err))
			sleep(ctx, time.Second)
			continue
		}
		// The consumer's own CPU (decoding, folding, its handlers outside
		// the database's writer) shows in profiles under its name.
		pprof.Do(ctx, pprof.Labels("eva-consumer", cfg.Name), func(ctx context.Context) { r.run(ctx, it) })
		it.Stop()
	}
	return nil
}

type runner struct {
	log  *Log
	db   sqldb.DB
	cfg  ConsumerConfig
	h    Handler
	zl   *zap.Logger
	down atomic.Bool // a dependency is out of reach (logged once)
}

type item struct {
	js        jetstream.Msg
	msg       Msg
	delivered uint64
}

// run pulls batches until ctx ends or the iterator breaks.
func (r *runner) run(ctx context.Context, it jetstream.MessagesContext) {
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for ctx.Err() == nil {
		first, err := it.Next()
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				r.zl.Warn("next", zap.Error(err))
			}
			return
		}
		batch := []jetstream.Msg{first}
		until := time.Now().Add(r.cfg.Linger)
		for len(batch) < r.cfg.Batch {
			m, err := it.Next(jetstream.NextMaxWait(max(time.Millisecond, time.Until(until))))
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		r.process(ctx, batch)
	}
}

func (r *runner) process(ctx context.Context, batch []jetstream.Msg) {
	items := make([]item, 0, len(batch))
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			r.zl.Error("message without metadata", zap.Error(err))
			_ = m.Term()
			continue
		}
		items = append(items, item{js: m, delivered: meta.NumDelivered,
			msg: newMsg(meta.Sequence.Stream, m.Subject(), m.Headers(), meta.Timestamp, m.Data())})
	}
	if r.cfg.Lanes <= 1 || len(items) <= 1 {
		r.applyBatch(ctx, items)
		return
	}
	lanes := make([][]item, r.cfg.Lanes)
	for _, it := range items {
		i := lane(it.msg, r.cfg.Lanes)
		lanes[i] = append(lanes[i], it)
	}
	var wg sync.WaitGroup
	for _, l := range lanes {
		if len(l) > 0 {
			wg.Go(func() { r.applyBatch(ctx, l) })
		}
	}
	wg.Wait()
}

// lane is the lane of n that an event's case (or thing) is applied in.
func lane(m Msg, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(m.Of))
	return int(h.Sum32() % uint32(n))
}

// applyBatch applies items in one transaction. When the handler fails on
// one of them, the events before it are applied again without it, the
// failing event is retried or dead-lettered on its own, and the events
// after it go on as a new batch: one bad event holds up no other. A
// failure that names no event (at the commit, or of a deferred write) has
// each event applied in a transaction of its own, to find whose it is.
func (r *runner) applyBatch(ctx context.Context, items []item) {
	for len(items) > 0 {
		failed, failure := -1, error(nil)
		var after []func()
		tctx, cancel := context.WithTimeout(ctx, r.cfg.StepTimeout)
		msgs := make([]Msg, len(items))
		for i, it := range items {
			msgs[i] = it.msg
		}
		err := r.db.Tx(tctx, func(q sqldb.Querier) error {
			var err error
			failed, after, err = applyAll(tctx, q, r.cfg, r.h, msgs)
			if failed >= 0 {
				failure = err
			}
			return err
		})
		if err != nil && tctx.Err() != nil && ctx.Err() == nil {
			// Out of time: the store is as good as out of reach.
			err = r.overdue(err)
			if failed >= 0 {
				failure = r.overdue(failure)
			}
		}
		cancel()
		switch {
		case err == nil:
			r.healed()
			r.ack(items)
			for _, fn := range after {
				fn()
			}
			if r.cfg.AfterCommit != nil {
				r.cfg.AfterCommit()
			}
			return
		case failed < 0 && (assist.IsCode(err, assist.CodeUnavailable) || ctx.Err() != nil):
			// The store is out of reach, or the consumer is stopping:
			// retry everything soon.
			r.outage("store", err)
			for _, it := range items {
				_ = it.js.NakWithDelay(r.outageDelay(it.delivered))
			}
			return
		case len(items) > 1 && (failed < 0 || sqldb.IsDeferredFailure(failure)):
			// The failure is no one event's to tell: the transaction
			// failed at its commit, or a write a handler deferred
			// (sqldb.Defer) failed with a later statement, perhaps one
			// of another event's handler. Each event is applied in a
			// transaction of its own, where what fails is its own.
			r.zl.Warn("batch failed; applying its events one by one", zap.Int("events", len(items)), zap.Error(err))
			for i := range items {
				r.applyBatch(ctx, items[i:i+1])
			}
			return
		case failed < 0:
			// The one event's transaction failed at its commit (its
			// deferred writes, or the batch's end functions for it).
			failed, failure = 0, err
		}
		if failed > 0 {
			r.applyBatch(ctx, items[:failed])
		}
		r.fail(ctx, items[failed], failure)
		items = items[failed+1:]
	}
}

func (r *runner) ack(items []item) {
	for _, it := range items {
		_ = it.js.Ack()
	}
}

// Deliver applies a batch of delivered events in one transaction of db,
// exactly as the consumer cfg applies a batch it pulled: each recorded as
// seen and handled, all committed together or not at all. It is the
// consumer's step without JetStream, for simulations that choose the
// deliveries themselves (redeliveries, reordering); it does not ack,
// retry or dead-letter. Once committed, it runs what the handlers asked
// to run then (AfterCommit). failed is the index of the event whose handler
// failed, -1 when none did (or the transaction itself failed).
func Deliver(ctx context.Context, db sqldb.DB, cfg ConsumerConfig, h Handler, msgs []Msg) (failed int, err error) {
	failed = -1
	var after []func()
	err = db.Tx(ctx, func(q sqldb.Querier) error {
		var err error
		failed, after, err = applyAll(ctx, q, cfg, h, msgs)
		return err
	})
	if err == nil {
		for _, fn := range after {
			fn()
		}
	}
	return failed, err
}

// fail retries a failed event later, or dead-letters it once it is poison
// or out of attempts.
func (r *runner) fail(ctx context.Context, it item, err error) {
	fields := []zap.Field{zap.Uint64("seq", it.msg.Seq), zap.String("subject", it.msg.Subject),
		zap.Uint64("delivered", it.delivered), zap.Error(err)}
	if errors.Is(err, ErrGap) && r.cfg.Repair != nil && ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, r.cfg.StepTimeout)
		rerr := r.cfg.Repair(rctx, it.msg)
		if rerr != nil && rctx.Err() != nil && ctx.Err() == nil {
			rerr = r.overdue(rerr)
		}
		cancel()
		switch {
		case rerr == nil:
			_ = it.js.Nak() // repaired: try it again now
			return
		case assist.IsCode(rerr, assist.CodeUnavailable):
			err = rerr // the repair met an outage: wait for the dependency
		default:
			fields = append(fields, zap.NamedError("repair", rerr))
		}
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.StepTimeout)
	perr := r.db.Ping(pctx)
	cancel()
	if perr != nil || ctx.Err() != nil || assist.IsCode(err, assist.CodeUnavailable) {
		// The store or the log is out of reach: not this event's fault,
		// never dead-letter it; try again soon, so that the consumer
		// resumes within a second of the dependency's return.
		r.outage("store or log", errors.Join(err, perr))
		_ = it.js.NakWithDelay(r.outageDelay(it.delivered))
		return
	}
	if errors.Is(err, ErrGap) {
		// An earlier event of the case has yet to arrive.
		r.zl.Warn("will retry", fields...)
		_ = it.js.NakWithDelay(r.gapDelay(it.delivered))
		return
	}
	if !IsPoison(err) && it.delivered < uint64(r.cfg.MaxAttempts) {
		r.zl.Warn("event failed; will retry", fields...)
		_ = it.js.NakWithDelay(r.backoff(it.delivered))
		return
	}
	r.zl.Error("event dead-lettered", fields...)
	if err := r.deadLetter(ctx, it, err.Error()); err != nil {
		r.zl.Error("dead-letter failed; will retry", zap.Uint64("seq", it.msg.Seq), zap.Error(err))
		_ = it.js.NakWithDelay(r.backoff(it.delivered))
		return
	}
	_ = it.js.TermWithReason(truncate(err.Error(), 200))
}

// deadLetter publishes the event to eva.dlq.<consumer> (idempotently) and
// then records it as dead and seen.
func (r *runner) deadLetter(ctx context.Context, it item, reason string) error {
	m := nats.NewMsg(DLQPrefix + r.cfg.Name)
	m.Data = it.msg.Data
	m.Header.Set("Eva-Dlq-Reason", truncate(reason, 4000))
	m.Header.Set("Eva-Dlq-Consumer", r.cfg.Name)
	m.Header.Set("Eva-Original-Subject", it.msg.Subject)
	m.Header.Set("Eva-Original-Seq", strconv.FormatUint(it.msg.Seq, 10))
	m.Header.Set("Eva-Event-Id", it.msg.ID)
	if _, err := r.log.js.PublishMsg(ctx, m, jetstream.WithMsgID(fmt.Sprintf("dlq-%s-%d", r.cfg.Name, it.msg.Seq))); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return r.db.Tx(ctx, func(q sqldb.Querier) error {
		now := sqldb.Micros(time.Now())
		if _, err := q.Exec(ctx, `INSERT INTO event_seen (consumer, seq, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			r.cfg.Name, int64(it.msg.Seq), now); err != nil {
			return err
		}
		_, err := q.Exec(ctx, `INSERT INTO dead_letters (consumer, seq, subject, event_id, reason, attempts, at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
			r.cfg.Name, int64(it.msg.Seq), it.msg.Subject, it.msg.ID, truncate(reason, 4000), int64(it.delivered), now)
		return err
	})
}

// outage logs, once until the consumer commits again, that a dependency
// is out of reach.
func (r *runner) outage(what string, err error) {
	if r.down.CompareAndSwap(false, true) {
		r.zl.Warn(what+" unavailable; events wait and are tried again every second", zap.Error(err))
	}
}

// healed logs the end of an outage.
func (r *runner) healed() {
	if r.down.CompareAndSwap(true, false) {
		r.zl.Info("dependencies back; events flow again")
	}
}

// outageDelay is the wait before an event is tried again while a
// dependency is out of reach: short and fixed, so that nothing waits long
// once it is back.
func (r *runner) outageDelay(uint64) time.Duration { return min(r.cfg.RetryDelay, time.Second) }

// gapDelay is the wait of an event whose predecessor is not applied yet.
// It backs off as far as eight first delays (2 s by default), never to a
// minute: the gap closes when the predecessor is applied, which an
// outage of the store only puts off by its own short delay, and an event
// that waited for it through a long outage (a disk full for a minute
// fails the writes of its predecessor while the reads that find the gap
// succeed, so each try counts) must follow within seconds of the end,
// not after a minute of back-off it built up meanwhile.
func (r *runner) gapDelay(delivered uint64) time.Duration {
	return min(r.backoff(delivered), 8*r.cfg.RetryDelay)
}

// overdue marks the failure of a call that ran out of its StepTimeout as
// the store being out of reach (an outage, retried soon and never counted
// against the event), whatever error the driver gave for it.
func (r *runner) overdue(err error) error {
	return errors.Join(assist.Errorf(assist.CodeUnavailable, "no answer within %s", r.cfg.StepTimeout), err)
}

func (r *runner) backoff(delivered uint64) time.Duration {
	d := r.cfg.RetryDelay
	for i := uint64(1); i < delivered && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// DeleteConsumer removes a durable consumer of the event stream that is no
// longer used (a read model replaced by another); one that does not exist
// is not an error.
//
// Errors: CodeUnavailable.
func (l *Log) DeleteConsumer(ctx context.Context, name string) error {
	err := l.js.DeleteConsumer(ctx, Stream, name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return unavailable("delete consumer "+name, err)
	}
	return nil
}
