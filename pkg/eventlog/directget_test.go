package eventlog_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// history appends n events to a new case (its filing, then amendments)
// and returns the case and its events' sequences.
func history(tb testing.TB, l *eventlog.Log, n int) (string, []uint64) {
	tb.Helper()
	ctx := context.Background()
	id := newID()
	seq, err := l.Append(ctx, submitted(tb, id), 0)
	if err != nil {
		tb.Fatal(err)
	}
	seqs := []uint64{seq}
	c, err := l.Case(ctx, id)
	if err != nil {
		tb.Fatal(err)
	}
	for len(seqs) < n {
		j := fmt.Sprintf("detail %d", len(seqs))
		e, err := c.Amend(assist.Cmd{ID: newID(), Actor: ana, At: time.Now().UTC()}, assist.AmendInput{Justification: &j}, assist.DefaultPolicy())
		if err != nil {
			tb.Fatal(err)
		}
		if seq, err = l.Append(ctx, e, seq); err != nil {
			tb.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	return id, seqs
}

// checkHistory loads a case and compares its events' sequences with want.
func checkHistory(ctx context.Context, l *eventlog.Log, id string, want []uint64) error {
	msgs, err := l.LoadRaw(ctx, id)
	if err != nil {
		return fmt.Errorf("load %s: %w", id, err)
	}
	if len(msgs) != len(want) {
		return fmt.Errorf("case %s read %d events, want %d", id, len(msgs), len(want))
	}
	for i, m := range msgs {
		if m.Seq != want[i] || m.CaseID != id {
			return fmt.Errorf("case %s event %d: %d of %s, want %d", id, i, m.Seq, m.CaseID, want[i])
		}
	}
	return nil
}

// inserts is how many subscriptions the server has made so far, in all.
func inserts(tb testing.TB, s *server.Server) uint64 {
	tb.Helper()
	sz, err := s.Subsz(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return sz.NumInserts
}

// Many readers share one log: each read gets its own case's history,
// whole and in order, among histories of every length (one longer than a
// batch), and no read subscribes anything on the server — the reads share
// one reply subscription, made at the log's first read.
func TestConcurrentReadsEachGetTheirOwnHistoryWithoutSubscribing(t *testing.T) {
	s := natsxtest.Server(t)
	nc, js := natsxtest.Connect(t, s)
	l, err := eventlog.Open(context.Background(), js, eventlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ids, want := []string{}, map[string][]uint64{}
	for _, n := range []int{1, 2, 3, 5, 8, 13, 21, 300} {
		id, seqs := history(t, l, n)
		ids, want[id] = append(ids, id), seqs
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := checkHistory(ctx, l, ids[0], want[ids[0]]); err != nil {
		t.Fatal(err)
	}
	subs, before := nc.NumSubscriptions(), inserts(t, s)

	const readers, reads = 16, 25
	errs := make(chan error, readers*reads)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			for i := range reads {
				id := ids[(r+i)%len(ids)]
				errs <- checkHistory(ctx, l, id, want[id])
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
	if n := inserts(t, s) - before; n != 0 {
		t.Fatalf("%d reads made %d subscriptions on the server, want none", readers*reads, n)
	}
	if n := nc.NumSubscriptions(); n != subs {
		t.Fatalf("the connection has %d subscriptions after the reads, %d before", n, subs)
	}
}

// The shared reply subscription outlives a reconnect: reads before and
// after it go through the one subscription, which nats.go subscribes
// again on the new connection.
func TestReadsAcrossAReconnect(t *testing.T) {
	s := natsxtest.Server(t)
	nc, js := natsxtest.Connect(t, s)
	l, err := eventlog.Open(context.Background(), js, eventlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	id, seqs := history(t, l, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := checkHistory(ctx, l, id, seqs); err != nil {
		t.Fatal(err)
	}
	subs := nc.NumSubscriptions()
	reconnected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(reconnected)
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatal("no reconnect")
	}
	if nc.Reconnects == 0 {
		t.Fatal("the connection did not reconnect")
	}
	if err := checkHistory(ctx, l, id, seqs); err != nil {
		t.Fatalf("after a reconnect: %v", err)
	}
	if n := nc.NumSubscriptions(); n != subs {
		t.Fatalf("the connection has %d subscriptions after the reconnect, %d before", n, subs)
	}
}

// On a closed connection a read fails at once, as unavailable.
func TestReadOnAClosedConnectionFails(t *testing.T) {
	nc, js := natsxtest.JetStream(t)
	l, err := eventlog.Open(context.Background(), js, eventlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	id, seqs := history(t, l, 2)
	if err := checkHistory(context.Background(), l, id, seqs); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	start := time.Now()
	if _, err := l.LoadRaw(context.Background(), id); !assist.IsCode(err, assist.CodeUnavailable) {
		t.Fatalf("read on a closed connection: %v, want unavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("read on a closed connection took %v", d)
	}
}

// A log on a JetStream reached through a domain, or an API prefix,
// reads through it too: the direct gets go where js sends its API calls
// ($JS.<domain>.API.DIRECT.GET..., not $JS.<domain>.DIRECT.GET...).
func TestReadThroughADomainOrAnAPIPrefix(t *testing.T) {
	s, err := server.NewServer(&server.Options{JetStream: true, JetStreamDomain: "hub", StoreDir: t.TempDir(),
		DontListen: true, NoSigs: true, SyncAlways: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	for name, open := range map[string]func(*nats.Conn) (jetstream.JetStream, error){
		"domain":     func(nc *nats.Conn) (jetstream.JetStream, error) { return jetstream.NewWithDomain(nc, "hub") },
		"api prefix": func(nc *nats.Conn) (jetstream.JetStream, error) { return jetstream.NewWithAPIPrefix(nc, "$JS.hub.API") },
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := natsx.Connect("", s, t.Name())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			js, err := open(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			l, err := eventlog.Open(ctx, js, eventlog.Config{})
			if err != nil {
				t.Fatal(err)
			}
			id, seqs := history(t, l, 3)
			if err := checkHistory(ctx, l, id, seqs); err != nil {
				t.Fatal(err)
			}
			if last, _, err := l.LastSeqOf(ctx, assist.KindCase, id); err != nil || last != seqs[2] {
				t.Fatalf("last of %s: %d %v, want %d", id, last, err, seqs[2])
			}
			if dl, err := l.DeadLetters(ctx, 0, 10); err != nil || len(dl) != 0 {
				t.Fatalf("dead letters: %v %v, want none", dl, err)
			}
		})
	}
}
