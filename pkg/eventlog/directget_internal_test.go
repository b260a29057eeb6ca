package eventlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// openInternal opens a log on a new embedded server.
func openInternal(tb testing.TB) (*Log, *nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, js := natsxtest.JetStream(tb)
	l, err := Open(context.Background(), js, Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return l, nc, js
}

// rawCase publishes n messages of a new case straight to the event
// stream (scan does not decode them) and returns the case's filter and
// the messages' sequences.
func rawCase(tb testing.TB, js jetstream.JetStream, n int) (string, []uint64) {
	tb.Helper()
	id := uuid.NewString()
	seqs := make([]uint64, n)
	for i := range seqs {
		ack, err := js.Publish(context.Background(), SubjectOf("case", id, "Noted"), []byte(strconv.Itoa(i)))
		if err != nil {
			tb.Fatal(err)
		}
		seqs[i] = ack.Sequence
	}
	return CaseFilter(id), seqs
}

// scanSeqs scans the event stream on filter and compares the sequences
// read with want.
func scanSeqs(ctx context.Context, l *Log, filter string, want []uint64) error {
	var got []uint64
	if err := l.scan(ctx, Stream, filter, func(raw *jetstream.RawStreamMsg) error {
		got = append(got, raw.Sequence)
		return nil
	}); err != nil {
		return fmt.Errorf("scan %s: %w", filter, err)
	}
	if len(got) != len(want) {
		return fmt.Errorf("scan %s read %d messages, want %d", filter, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Errorf("scan %s: message %d is %d, want %d", filter, i, got[i], want[i])
		}
	}
	return nil
}

func (r *replies) inFlight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.waiting)
}

// Reads given up on in the middle of a batch (their ctx cancelled while
// the rest of the batch is on its way) end with the ctx's error; the
// replies that arrive for them after are dropped; the other reads, running
// at the same time through the same log, each read their own case whole;
// and nothing is left behind: no request in flight, no subscription.
func TestCancelledReadsMidBatchDisturbNoOtherAndLeaveNothing(t *testing.T) {
	l, nc, js := openInternal(t)
	long, longSeqs := rawCase(t, js, 600)
	type kase struct {
		filter string
		seqs   []uint64
	}
	var others []kase
	for n := range 8 {
		f, s := rawCase(t, js, 1+3*n)
		others = append(others, kase{f, s})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := scanSeqs(ctx, l, long, longSeqs); err != nil {
		t.Fatal(err)
	}
	subs := nc.NumSubscriptions()

	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for r := range 8 {
		wg.Go(func() {
			for i := range 20 {
				k := others[(r+i)%len(others)]
				errs <- scanSeqs(ctx, l, k.filter, k.seqs)
			}
		})
	}
	// Cancelled after the k-th message: early, at the end of the first
	// batch of 256, in the second.
	for _, k := range []int{1, 2, 100, 255, 256, 257, 300, 511} {
		wg.Go(func() {
			rctx, rcancel := context.WithCancel(ctx)
			defer rcancel()
			read := 0
			err := l.scan(rctx, Stream, long, func(*jetstream.RawStreamMsg) error {
				if read++; read == k {
					rcancel()
				}
				return nil
			})
			switch {
			case !errors.Is(err, context.Canceled):
				errs <- fmt.Errorf("read cancelled at message %d: %v, want %v", k, err, context.Canceled)
			case read != k:
				errs <- fmt.Errorf("read cancelled at message %d went on to %d", k, read)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := scanSeqs(ctx, l, long, longSeqs); err != nil {
		t.Fatalf("after the cancelled reads: %v", err)
	}
	if n := l.replies.inFlight(); n != 0 {
		t.Fatalf("%d requests left in flight", n)
	}
	if n := nc.NumSubscriptions(); n != subs {
		t.Fatalf("the connection has %d subscriptions, %d before", n, subs)
	}
}

// A reader that takes its time (its callback blocks) holds up no other
// read: the shared subscription hands replies on without waiting on it,
// and the slow read still reads its case whole.
func TestSlowReaderHoldsUpNoOther(t *testing.T) {
	l, _, js := openInternal(t)
	long, longSeqs := rawCase(t, js, 600)
	short, shortSeqs := rawCase(t, js, 5)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	blocked, release := make(chan struct{}), make(chan struct{})
	slow := make(chan error, 1)
	go func() {
		var got []uint64
		err := l.scan(ctx, Stream, long, func(raw *jetstream.RawStreamMsg) error {
			if len(got) == 0 {
				close(blocked)
				<-release
			}
			got = append(got, raw.Sequence)
			return nil
		})
		if err == nil && len(got) != len(longSeqs) {
			err = fmt.Errorf("the slow read read %d messages, want %d", len(got), len(longSeqs))
		}
		slow <- err
	}()
	<-blocked
	for range 50 {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		err := scanSeqs(rctx, l, short, shortSeqs)
		rcancel()
		if err != nil {
			t.Fatalf("while another read is blocked: %v", err)
		}
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// fakeDirectGets serves the direct gets of stream FAKE on its own
// connection to the log's server in place of JetStream: answer gets each
// request's reply subject and body, and sends what it likes. The log
// calls the API under the prefix "fake.".
func fakeDirectGets(t *testing.T, answer func(nc *nats.Conn, reply string, req directBatch)) (*Log, *nats.Conn) {
	t.Helper()
	s := natsxtest.Server(t)
	nc, js := natsxtest.Connect(t, s)
	srv, _ := natsxtest.Connect(t, s)
	if _, err := srv.Subscribe("fake.DIRECT.GET.FAKE", func(m *nats.Msg) {
		var req directBatch
		if err := json.Unmarshal(m.Data, &req); err != nil {
			t.Error(err)
			return
		}
		answer(srv, m.Reply, req)
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Flush(); err != nil {
		t.Fatal(err)
	}
	return &Log{js: js, api: "fake.", replies: newReplies(nc)}, nc
}

// fakeStored is a stored message of FAKE as a batched direct get answers
// it, with pending more on the subject after it.
func fakeStored(reply string, seq, pending uint64) *nats.Msg {
	m := nats.NewMsg(reply)
	m.Data = []byte("event")
	m.Header.Set(jetstream.StreamHeader, "FAKE")
	m.Header.Set(jetstream.SubjectHeader, "eva.case.x.Noted")
	m.Header.Set(jetstream.SequenceHeader, strconv.FormatUint(seq, 10))
	m.Header.Set(jetstream.TimeStampHeaer, time.Now().UTC().Format(time.RFC3339Nano))
	m.Header.Set("Nats-Num-Pending", strconv.FormatUint(pending, 10))
	return m
}

func fakeEOB(reply string) *nats.Msg {
	m := nats.NewMsg(reply)
	m.Header.Set("Status", "204")
	m.Header.Set("Description", "EOB")
	return m
}

// A batch cut short by its deadline, its last message saying more
// remain, is not the end of the subject: the scan fails rather than
// answer a short history (a fake server answers the first two messages of
// five and no more).
func TestFakeBatchOutOfTimeIsNotTheEnd(t *testing.T) {
	l, _ := fakeDirectGets(t, func(nc *nats.Conn, reply string, req directBatch) {
		if req.Seq != 1 {
			return
		}
		for seq := uint64(1); seq <= 2; seq++ {
			_ = nc.PublishMsg(fakeStored(reply, seq, 5-seq))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	read := 0
	err := l.scan(ctx, "FAKE", "eva.case.x.>", func(*jetstream.RawStreamMsg) error { read++; return nil })
	if err == nil || read != 2 {
		t.Fatalf("scan of a batch out of time read %d messages and answered %v; want 2 and an error", read, err)
	}
}

// Replies for a request that gave up are dropped, without holding up the
// next request (a fake server sends a whole batch to a request that was
// cancelled after its first message, then answers the next).
func TestFakeRepliesAfterARequestGaveUpAreDropped(t *testing.T) {
	first, rest := make(chan struct{}), make(chan struct{})
	l, _ := fakeDirectGets(t, func(nc *nats.Conn, reply string, req directBatch) {
		if req.Seq == 1 {
			_ = nc.PublishMsg(fakeStored(reply, 1, 999))
			close(first)
			<-rest
			for seq := uint64(2); seq <= 1000; seq++ {
				_ = nc.PublishMsg(fakeStored(reply, seq, 1000-seq))
			}
			_ = nc.PublishMsg(fakeEOB(reply))
			return
		}
		_ = nc.PublishMsg(fakeStored(reply, req.Seq, 0))
		_ = nc.PublishMsg(fakeEOB(reply))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gave := make(chan error, 1)
	go func() {
		rctx, rcancel := context.WithCancel(ctx)
		defer rcancel()
		gave <- l.directGet(rctx, "FAKE", directBatch{Seq: 1, Batch: 1000}, func(*jetstream.RawStreamMsg) error {
			rcancel()
			return nil
		})
	}()
	<-first
	if err := <-gave; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
	close(rest)
	var got []uint64
	if err := l.directGet(ctx, "FAKE", directBatch{Seq: 5000, Batch: 1}, func(raw *jetstream.RawStreamMsg) error {
		got = append(got, raw.Sequence)
		return nil
	}); err != nil || len(got) != 1 || got[0] != 5000 {
		t.Fatalf("the next request read %v, %v; want [5000]", got, err)
	}
	if n := l.replies.inFlight(); n != 0 {
		t.Fatalf("%d requests left in flight", n)
	}
}

// A request waiting when its connection closes fails at once, not when
// its time runs out (a fake server that never answers).
func TestFakeRequestFailsWhenTheConnectionCloses(t *testing.T) {
	asked := make(chan struct{}, 1)
	l, nc := fakeDirectGets(t, func(*nats.Conn, string, directBatch) { asked <- struct{}{} })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- l.directGet(ctx, "FAKE", directBatch{Seq: 1, Batch: 10}, func(*jetstream.RawStreamMsg) error { return nil })
	}()
	<-asked
	nc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("request on a closed connection: %v, want %v", err, nats.ErrConnectionClosed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request waited on after its connection closed")
	}
}
