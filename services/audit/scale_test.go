package audit_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// scaleEvents is how many events TestVerifyAtScale archives and verifies:
// $EVA_AUDIT_SCALE_EVENTS, default 100,000 (10,000 with -short or the race
// detector).
func scaleEvents(t *testing.T) int {
	if v := os.Getenv("EVA_AUDIT_SCALE_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("EVA_AUDIT_SCALE_EVENTS=%q: %v", v, err)
		}
		return n
	}
	if testing.Short() || raceEnabled {
		return 10_000
	}
	return 100_000
}

// The archive keeps up with a large log and Verify walks it in pages.
func TestVerifyAtScale(t *testing.T) {
	n := scaleEvents(t)
	e := newEnvOn(t, sqldbtest.SQLite(t), fastServer(t))
	ctx := e.ctx
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, 1024)
	wait := func() {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatal(err)
			}
		}
		futures = futures[:0]
	}
	now := time.Now().UTC()
	for range n {
		id := newID()
		ev, err := assist.Submit(assist.Cmd{ID: id, Actor: ana, At: now}, assist.SubmitInput{
			Post: "BGD-DHAKA", Category: assist.Shelter, Urgency: assist.Routine, AmountCents: 100,
			Justification: "scale", BeneficiaryRefHash: []byte("r")}, assist.DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		data, err := eventcodec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(eventlog.Subject(id, ev.Type()))
		m.Data = data
		f, err := e.js.PublishMsgAsync(m, jetstream.WithMsgID(id))
		if err != nil {
			t.Fatal(err)
		}
		if futures = append(futures, f); len(futures) == cap(futures) {
			wait()
		}
	}
	wait()
	t.Logf("published %d events in %s", n, time.Since(start))

	start = time.Now()
	e.cfg.Batch = 512
	e.start()
	e.waitArchived()
	t.Logf("archived %d events in %s", n, time.Since(start))

	start = time.Now()
	e.wantOK(uint64(n))
	t.Logf("verified %d events in %s", n, time.Since(start))
	res, err := e.client.Verify(ctx, auditapi.VerifyRequest{})
	if err != nil || !res.OK || res.Events != uint64(n) {
		t.Fatalf("Client.Verify = %s %v", show(res), err)
	}
}

// fastServer is an embedded JetStream server that does not fsync every
// write: this test is about the archive's throughput and Verify's paging,
// not about durability, and fsyncs would make filling the log its slowest
// part by far. Each option adjusts its configuration.
func fastServer(tb testing.TB, opts ...func(*server.Options)) *server.Server {
	tb.Helper()
	return fastServerAt(tb, tb.TempDir(), opts...)
}

// fastServerAt is fastServer on the store directory dir.
func fastServerAt(tb testing.TB, dir string, opts ...func(*server.Options)) *server.Server {
	tb.Helper()
	o := &server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoSigs: true, NoLog: true}
	for _, opt := range opts {
		opt(o)
	}
	s, err := server.NewServer(o)
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		tb.Fatal("nats server did not become ready")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}
