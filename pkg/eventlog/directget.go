package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Batched direct gets (JetStream's DIRECT.GET with a batch) answer one
// request with many messages: the stored messages, then an end-of-batch
// status. A request of its own reply subscription each time, as orbit.go's
// jetstreamext.GetBatch made (natsext.RequestMany), with which EVA read
// before, costs a SUB and an UNSUB on the server, an insert into and a
// removal from its subject index, a goroutine, and a channel as long as
// the connection's synchronous queue (4096 messages on EVA's connections
// then, 32 KiB): at a case read per command, a twentieth of all the bytes
// EVA allocated. And the channel drops what does not fit: a batch of 4,096
// and its end-of-batch status fitted only once the reader had taken one,
// so a reader not scheduled in time lost the end as a slow consumer. A log
// reads through one reply subscription instead, made at its first read: a
// wildcard on an inbox of its own, each request told apart by its reply
// subject, as nats.go's Request does for single replies; its replies wait
// for their reader, however many. nats.go subscribes it again after a
// reconnect; a request whose replies were lost meanwhile ends when its
// time does, as before. The audit's reads of whole streams go through it
// too (GetBatch).

// errNoMessages is a direct get's 404: nothing at or after the sequence
// asked for.
var errNoMessages = errors.New("no messages")

// errNoResults is a multi-last direct get's 404 when no subject matches:
// the thing has no events. (Its other 404, a message that failed to load,
// is only errNoMessages.)
var errNoResults = fmt.Errorf("%w: no results", errNoMessages)

// Status headers of a direct get's replies.
const (
	statusNoContent    = "204" // with description "EOB": the batch ended
	statusNotFound     = "404" // no message at or after the sequence
	statusNoResponders = "503" // nobody serves direct gets of the stream
	descEOB            = "EOB"
	descNoResults      = "No Results" // a multi-last get that matched nothing
)

// directBatch is the body of a batched direct get: up to Batch messages
// on NextBySubj (wildcards allowed) from sequence Seq; or, with
// MultiLast, the last message of each subject that matches one of its
// filters, in stream order.
type directBatch struct {
	Seq        uint64   `json:"seq,omitempty"`
	NextBySubj string   `json:"next_by_subj,omitempty"`
	Batch      int      `json:"batch,omitempty"`
	MultiLast  []string `json:"multi_last,omitempty"`
}

// replies is a log's one subscription for the replies to its direct gets,
// and the requests waiting on it.
type replies struct {
	nc *nats.Conn

	mu sync.Mutex
	// sub is the wildcard subscription on prefix + "*", made at the first
	// request and again after it closes (the connection drained).
	sub    *nats.Subscription
	prefix string
	// closed is closed when sub is: the requests waiting on it fail at
	// once rather than when their time runs out.
	closed chan struct{}
	// waiting holds the requests in flight by reply subject. A reply to a
	// subject it does not hold (its request gave up, or its batch had
	// ended) is dropped.
	waiting map[string]*waiter
	next    uint64
}

// waiter is one request in flight: the replies received and not yet
// read, and a signal that some arrived. The replies are kept in a slice
// that grows as they come, guarded by replies.mu, so that the shared
// subscription never waits on a reader, however many replies a request
// gets or however slowly its reader takes them.
type waiter struct {
	msgs  []*nats.Msg
	ready chan struct{}
}

func newReplies(nc *nats.Conn) *replies {
	return &replies{nc: nc, waiting: map[string]*waiter{}}
}

// register makes the shared subscription if there is none (or it has
// closed) and registers a request, returning its reply subject, its
// waiter, and the channel closed when the subscription ends.
func (r *replies) register() (string, *waiter, <-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sub == nil || !r.sub.IsValid() {
		if err := r.subscribeLocked(); err != nil {
			return "", nil, nil, err
		}
	}
	r.next++
	reply := r.prefix + strconv.FormatUint(r.next, 36)
	w := &waiter{ready: make(chan struct{}, 1)}
	r.waiting[reply] = w
	return reply, w, r.closed, nil
}

func (r *replies) subscribeLocked() error {
	// The connection's inbox prefix: a service's NATS user may subscribe
	// to its own inbox only (ADR 16).
	prefix := r.nc.NewInbox() + "."
	closed := make(chan struct{})
	sub, err := r.nc.Subscribe(prefix+"*", r.dispatch)
	if err != nil {
		return err
	}
	// The handler never waits, so replies do not queue up beyond the
	// requests in flight; a limit would only drop replies of a request
	// still read (nats.go's slow consumer), cutting its history short.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	var once sync.Once
	end := func() { once.Do(func() { close(closed) }) }
	sub.SetClosedHandler(func(string) { end() })
	// The connection may have closed before the handler was set, after
	// which nats.go would not call it.
	if !sub.IsValid() {
		end()
	}
	r.sub, r.prefix, r.closed = sub, prefix, closed
	return nil
}

// dispatch hands a reply to its request, or drops it.
func (r *replies) dispatch(m *nats.Msg) {
	r.mu.Lock()
	w := r.waiting[m.Subject]
	if w != nil {
		w.msgs = append(w.msgs, m)
	}
	r.mu.Unlock()
	if w != nil {
		select {
		case w.ready <- struct{}{}:
		default: // already signalled
		}
	}
}

// forget ends a request: later replies to it are dropped.
func (r *replies) forget(reply string) {
	r.mu.Lock()
	delete(r.waiting, reply)
	r.mu.Unlock()
}

// take returns the replies of w received since the last take, giving w
// spare (emptied) to fill next.
func (r *replies) take(w *waiter, spare []*nats.Msg) []*nats.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	msgs := w.msgs
	w.msgs = spare[:0]
	return msgs
}

// directGet sends a batched direct get of stream and calls f with each
// message of the batch, in order, until the end of the batch. It keeps
// the behaviour of jetstreamext.GetBatch, which EVA read with before: a
// request with no deadline of its own has the connection's timeout, and a
// batch whose time runs out ends early without an error (the caller
// tells, from the messages' pending counts, whether more remain); a
// cancelled ctx is an error; errNoMessages when nothing is at or after
// the sequence; nats.ErrNoResponders when nobody serves the stream's
// direct gets (a replicated stream whose replicas are still starting).
func (l *Log) directGet(ctx context.Context, stream string, req directBatch, f func(*jetstream.RawStreamMsg) error) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	nc := l.js.Conn()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, nc.Opts.Timeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return endOf(err)
	}
	reply, w, closed, err := l.replies.register()
	if err != nil {
		return err
	}
	defer l.replies.forget(reply)
	if err := nc.PublishRequest(l.api+"DIRECT.GET."+stream, reply, body); err != nil {
		return err
	}
	var msgs []*nats.Msg
	for {
		msgs = l.replies.take(w, msgs)
		for i, m := range msgs {
			msgs[i] = nil
			// A request that gave up reads no more, even of the replies
			// already received.
			if err := ctx.Err(); err != nil {
				return endOf(err)
			}
			raw, err := fromDirect(m)
			switch {
			case errors.Is(err, errEndOfBatch):
				return nil
			case err != nil:
				return err
			}
			if err := f(raw); err != nil {
				return err
			}
		}
		if len(msgs) > 0 {
			continue
		}
		select {
		case <-w.ready:
		case <-ctx.Done():
			return endOf(ctx.Err())
		case <-closed:
			if nc.IsClosed() {
				return nats.ErrConnectionClosed
			}
			return nats.ErrBadSubscription
		}
	}
}

// GetBatch calls f with the messages of stream, one of the log's
// streams (Stream, AccessStream, DLQStream), from sequence from on, in
// order, at most batch of them: one batched direct get, sent under the
// JetStream API of js's domain or prefix, its replies taken on the log's
// one reply subscription, which never waits on f: however slowly f takes
// them, no reply of the batch is dropped. When nothing is at or after
// from, f is not called. A batch whose time runs out (ctx's deadline;
// without one, the connection's timeout) ends early without an error: a
// caller that needs the whole batch counts what f took. Only a log on
// JetStream has streams (not one on a Store).
//
// Errors: f's, as it returned it; CodeUnavailable when the stream does not
// answer, the connection closes or ctx is cancelled.
func (l *Log) GetBatch(ctx context.Context, stream string, from uint64, batch int, f func(*jetstream.RawStreamMsg) error) error {
	var ferr error
	err := l.directGet(ctx, stream, directBatch{Seq: from, Batch: batch}, func(raw *jetstream.RawStreamMsg) error {
		ferr = f(raw)
		return ferr
	})
	switch {
	case ferr != nil:
		return ferr
	case err == nil, errors.Is(err, errNoMessages):
		return nil
	}
	return unavailable(fmt.Sprintf("read %s from %d", stream, from), err)
}

// endOf is how a direct get ends when its ctx does: a batch out of time
// ends without an error, as jetstreamext.GetBatch's did.
func endOf(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// headerNumPending counts, on each message of a batched direct get, the
// messages that match the request after it.
const headerNumPending = "Nats-Num-Pending"

// numPending is the pending count of a message of a batched direct get.
func numPending(raw *jetstream.RawStreamMsg) (int64, error) {
	n, err := strconv.ParseInt(raw.Header.Get(headerNumPending), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("direct get without a pending count: %w", err)
	}
	return n, nil
}

// errEndOfBatch is the end-of-batch status, the last reply to a batched
// direct get.
var errEndOfBatch = errors.New("end of batch")

// fromDirect reads a reply to a batched direct get, as jetstreamext
// does: a stored message with its headers, or the status ending the
// batch (errEndOfBatch), or none (errNoMessages).
func fromDirect(m *nats.Msg) (*jetstream.RawStreamMsg, error) {
	if len(m.Data) == 0 {
		switch m.Header.Get("Status") {
		case statusNoContent:
			if m.Header.Get("Description") == descEOB {
				return nil, errEndOfBatch
			}
		case statusNotFound:
			if m.Header.Get("Description") == descNoResults {
				return nil, errNoResults
			}
			return nil, errNoMessages
		case statusNoResponders:
			return nil, nats.ErrNoResponders
		}
		if status := m.Header.Get("Status"); status != "" {
			return nil, fmt.Errorf("direct get answered %s %s", status, m.Header.Get("Description"))
		}
	}
	if len(m.Header) == 0 {
		return nil, errors.New("direct get answered without headers")
	}
	if m.Header.Get(headerNumPending) == "" {
		return nil, errors.New("direct get answered without a pending count: the server does not do batches")
	}
	if m.Header.Get(jetstream.StreamHeader) == "" {
		return nil, errors.New("direct get answered without a stream")
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("direct get answered with a bad sequence: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return nil, fmt.Errorf("direct get answered with a bad time: %w", err)
	}
	subject := m.Header.Get(jetstream.SubjectHeader)
	if subject == "" {
		return nil, errors.New("direct get answered without a subject")
	}
	return &jetstream.RawStreamMsg{Subject: subject, Sequence: seq, Header: m.Header, Data: m.Data, Time: t}, nil
}

// apiPrefix is the prefix of the JetStream API's subjects as js calls
// them, ending in a dot: its API prefix, or its domain's, or $JS.API.
// (jetstreamext v0.3.2 put a domain's calls under $JS.<domain>., without
// the API token, which no server answers.)
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.APIPrefix != "" && strings.HasSuffix(o.APIPrefix, "."):
		return o.APIPrefix
	case o.APIPrefix != "":
		return o.APIPrefix + "."
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	}
	return "$JS.API."
}
