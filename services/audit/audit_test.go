package audit_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/audit/auditapi"
)

var (
	ana = assist.Actor{Username: "ana", Role: assist.RoleRequester, Post: "BGD-DHAKA"}
	olu = assist.Actor{Username: "olu", Role: assist.RoleApprover}
)

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// env is a real embedded JetStream, the event log on it, a real database
// and the audit service, which runs (consumer and endpoints) only between
// start and stop.
type env struct {
	t      testing.TB
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *eventlog.Log
	db     sqldb.DB
	store  *audit.SQLStore
	svc    *audit.Service
	client *auditapi.Client
	cfg    audit.Config
	key    *audit.Key
	stop   func()
	// ctx bounds every call of the test. A deadline matters: a batched
	// read of the log without one gives up silently after the
	// connection's 2s timeout (see the report on eventlog.scan).
	ctx context.Context
}

func newEnv(t *testing.T, db sqldb.DB) *env {
	t.Helper()
	return newEnvOn(t, db, natsxtest.Server(t))
}

func newEnvOn(t testing.TB, db sqldb.DB, s *server.Server) *env {
	t.Helper()
	nc, js := natsxtest.Connect(t, s)
	return newEnvJS(t, db, nc, js)
}

// newEnvJS is newEnv on the JetStream js of connection nc.
func newEnvJS(t testing.TB, db sqldb.DB, nc *nats.Conn, js jetstream.JetStream) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	t.Cleanup(cancel)
	l, err := eventlog.Open(ctx, js, eventlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx, eventlog.Migrations); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, nc: nc, js: js, log: l, db: db, store: migrated(t, db), client: auditapi.NewClient(nc),
		cfg: audit.Config{RetryDelay: 10 * time.Millisecond, CheckpointEvery: 20 * time.Millisecond}, key: testKey(t), ctx: ctx}
	e.svc = audit.New(e.deps())
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
	})
	return e
}

func (e *env) deps() audit.Deps {
	return audit.Deps{NC: e.nc, Log: e.log, DB: e.db, Logger: zaptest.NewLogger(e.t), Config: e.cfg, Key: e.key}
}

// testKey is a fresh checkpoint signing key.
func testKey(tb testing.TB) *audit.Key {
	tb.Helper()
	skey, _, err := audit.GenerateKey("test.eva.example/audit")
	if err != nil {
		tb.Fatal(err)
	}
	k, err := audit.ParseKey(skey)
	if err != nil {
		tb.Fatal(err)
	}
	return &k
}

// start runs the service until stop, and waits until it answers.
func (e *env) start() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- audit.Run(ctx, e.deps()) }()
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
		e.stop = nil
	}
	evatest.Eventually(e.t, "the audit service to answer", func() bool {
		_, err := e.client.Checkpoint(e.ctx)
		return err == nil
	})
}

// waitArchived waits until the archive reaches the log's last event.
func (e *env) waitArchived() uint64 {
	e.t.Helper()
	last, err := e.log.LastSeq(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	evatest.Eventually(e.t, fmt.Sprintf("the archive to reach %d", last), func() bool {
		seq, _, err := e.store.Last(e.ctx, nil)
		return err == nil && seq >= last
	})
	return last
}

// waitAcked waits until the durable consumer has acknowledged every event
// up to seq: everything delivered has been handled.
func (e *env) waitAcked(seq uint64) {
	e.t.Helper()
	evatest.Eventually(e.t, fmt.Sprintf("the consumer to ack up to %d", seq), func() bool {
		c, err := e.js.Consumer(e.ctx, eventlog.Stream, audit.ConsumerName)
		if err != nil {
			return false
		}
		info, err := c.Info(e.ctx)
		return err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0
	})
}

// submit files a new case at time at and returns its id.
func (e *env) submit(at time.Time) string {
	e.t.Helper()
	id := newID()
	ev, err := assist.Submit(assist.Cmd{ID: id, Actor: ana, At: at}, assist.SubmitInput{
		Post: "BGD-DHAKA", Category: assist.Shelter, Urgency: assist.Critical, AmountCents: 10_000,
		Justification: "shelter tonight", BeneficiaryRefHash: []byte("ref"),
	}, assist.DefaultPolicy())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.log.Start(e.ctx, ev); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// step appends one more event to a case: a claim when it is submitted, a
// release when it is under review.
func step(ctx context.Context, l *eventlog.Log, caseID string, at time.Time) error {
	cmdID := newID()
	_, err := l.Execute(ctx, eventlog.Command{CaseID: caseID, ID: cmdID, Decide: func(c *assist.Case) (assist.Event, error) {
		cmd := assist.Cmd{ID: cmdID, Actor: olu, At: at}
		if c.State == assist.StateUnderReview {
			return c.Release(cmd)
		}
		return c.Claim(cmd, time.Hour)
	}})
	return err
}

func (e *env) step(caseID string, at time.Time) {
	e.t.Helper()
	if err := step(e.ctx, e.log, caseID, at); err != nil {
		e.t.Fatal(err)
	}
}

// someCases appends n cases of 1..4 events each.
func (e *env) someCases(n int) []string {
	e.t.Helper()
	var ids []string
	now := time.Now().UTC()
	for i := range n {
		id := e.submit(now)
		for range i % 4 {
			e.step(id, now)
		}
		ids = append(ids, id)
	}
	return ids
}

func (e *env) verify() auditapi.VerifyResult {
	e.t.Helper()
	res, err := audit.Verify(e.ctx, e.store, e.log, audit.VerifyOptions{VerifierKey: e.key.Verifier})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func (e *env) wantOK(events uint64) {
	e.t.Helper()
	if res := e.verify(); !res.OK || res.FirstBad != nil || res.Events != events || res.Lag != 0 {
		e.t.Fatalf("verify = %s, want ok with %d events", show(res), events)
	}
}

func (e *env) wantBad(seq uint64) auditapi.VerifyResult {
	e.t.Helper()
	res := e.verify()
	if res.OK || res.FirstBad == nil || *res.FirstBad != seq || res.Reason == "" {
		e.t.Fatalf("verify = %s, want first_bad %d", show(res), seq)
	}
	if res.Events != seq-1 {
		e.t.Errorf("verify counted %d good events before %d", res.Events, seq)
	}
	return res
}

func show(r auditapi.VerifyResult) string {
	b, _ := json.Marshal(r)
	return string(b)
}

func (e *env) archive() []audit.Record {
	e.t.Helper()
	recs, err := e.store.Range(e.ctx, 0, 1_000_000)
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// archiveDirect archives msgs through the consumer's handler, as one
// batch in one transaction, as the consumer would; on a gap it fills the
// gap outside the transaction (the consumer's Repair) and tries again.
func (e *env) archiveDirect(msgs ...eventlog.Msg) {
	e.t.Helper()
	ctx := e.ctx
	cfg := eventlog.ConsumerConfig{Name: audit.ConsumerName, SeenByHandler: true}
	archive := func() error {
		_, err := eventlog.Deliver(ctx, e.db, cfg, e.svc.Archive, msgs)
		return err
	}
	err := archive()
	for _, m := range msgs {
		if !errors.Is(err, eventlog.ErrGap) {
			break
		}
		if err := e.svc.FillGap(ctx, m); err != nil {
			e.t.Fatal(err)
		}
		err = archive()
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) get(seq uint64) eventlog.Msg {
	e.t.Helper()
	m, err := e.log.Get(e.ctx, seq)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// Invariant 5: every event of several cases is archived, in order, and
// the archive verifies against its chain and the log.
func TestArchiveEqualsLog(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		e.someCases(6) // 1+2+3+4+1+2 = 13 events
		e.start()
		n := e.waitArchived()
		if n != 13 {
			t.Fatalf("log has %d events, want 13", n)
		}
		e.wantOK(n)
		// And over the wire.
		res, err := e.client.Verify(e.ctx, auditapi.VerifyRequest{})
		if err != nil || !res.OK || res.Events != n {
			t.Fatalf("Client.Verify = %s %v", show(res), err)
		}
		// Every archived record is the log's event, hashed and chained.
		chain := audit.GenesisChain()
		for _, r := range e.archive() {
			m := e.get(r.Seq)
			hash := audit.HashEvent(m.Seq, m.Subject, m.ID, m.Data)
			chain = audit.ChainNext(chain, hash)
			if r.Subject != m.Subject || r.ID != m.ID || r.CaseID != m.CaseID || r.Type != m.Type ||
				!bytes.Equal(r.Data, m.Data) || !bytes.Equal(r.Hash, hash) || !bytes.Equal(r.Chain, chain) ||
				r.At.UnixMicro() != m.Time.UnixMicro() {
				t.Fatalf("archived %d = %+v, log has %+v", r.Seq, r, m)
			}
		}
		// A checkpoint of the whole archive is signed, and its root is the
		// tree recomputed from the events.
		var cp auditapi.SignedCheckpoint
		evatest.Eventually(t, "a checkpoint of every event", func() bool {
			cp, err = e.client.Checkpoint(e.ctx)
			return err == nil && cp.Size == int64(n)
		})
		head, err := auditapi.OpenCheckpoint([]byte(cp.Note), e.key.Verifier)
		if err != nil || head.Size != int64(n) || head.Root.String() != res.Root || cp.At.IsZero() {
			t.Fatalf("checkpoint %+v (%+v) %v, want size %d root %s", cp, head, err, n, res.Root)
		}
		// Lag: events the archive has not reached yet are not failures.
		e.stop()
		e.someCases(2) // 1 + 2 events
		if res := e.verify(); !res.OK || res.Events != n || res.Lag != 3 {
			t.Fatalf("verify with the consumer stopped = %s, want ok, %d events, lag 3", show(res), n)
		}
	})
}

func TestTamperingIsDetected(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		e.someCases(5) // 11 events
		e.start()
		n := e.waitArchived()
		e.stop()
		e.wantOK(n)
		orig := e.archive()
		ctx := e.ctx
		exec := func(query string, args ...any) {
			t.Helper()
			if _, err := db.Exec(ctx, query, args...); err != nil {
				t.Fatal(err)
			}
		}
		restore := func(r audit.Record) {
			t.Helper()
			exec(`DELETE FROM audit_events WHERE seq = $1`, int64(r.Seq))
			insertAll(t, db, e.store, []audit.Record{r})
			e.wantOK(n)
		}
		const k = 6
		r := orig[k-1]

		t.Run("changed bytes", func(t *testing.T) {
			data := append(bytes.Clone(r.Data), 0x01)
			exec(`UPDATE audit_events SET data = $1 WHERE seq = $2`, data, int64(k))
			res := e.wantBad(k)
			t.Log(res.Reason)
			restore(r)
		})
		t.Run("changed subject", func(t *testing.T) {
			exec(`UPDATE audit_events SET subject = $1 WHERE seq = $2`, eventlog.Subject(newID(), r.Type), int64(k))
			e.wantBad(k)
			restore(r)
		})
		t.Run("changed chain", func(t *testing.T) {
			exec(`UPDATE audit_events SET chain = $1 WHERE seq = $2`, make([]byte, 32), int64(k))
			e.wantBad(k)
			restore(r)
		})
		t.Run("row deleted in the middle", func(t *testing.T) {
			exec(`DELETE FROM audit_events WHERE seq = $1`, int64(k))
			res := e.wantBad(k)
			t.Log(res.Reason)
			insertAll(t, db, e.store, []audit.Record{r})
			e.wantOK(n)
		})
		t.Run("first row deleted", func(t *testing.T) {
			exec(`DELETE FROM audit_events WHERE seq = 1`)
			e.wantBad(1)
			insertAll(t, db, e.store, []audit.Record{orig[0]})
			e.wantOK(n)
		})
		t.Run("changed case id", func(t *testing.T) {
			exec(`UPDATE audit_events SET case_id = $1 WHERE seq = $2`, newID(), int64(k))
			e.wantBad(k)
			restore(r)
		})
		t.Run("changed stream time", func(t *testing.T) {
			exec(`UPDATE audit_events SET at = at + 1000000 WHERE seq = $1`, int64(k))
			e.wantBad(k)
			restore(r)
		})
		// A forger who rewrites an event and recomputes every hash and
		// chain after it gets a self-consistent archive: the log still
		// gives it away.
		t.Run("consistent rewrite", func(t *testing.T) {
			forged := append([]audit.Record(nil), orig...)
			chain := orig[k-2].Chain
			for i := k - 1; i < len(forged); i++ {
				f := forged[i]
				if i == k-1 {
					f.Data = append(bytes.Clone(f.Data), 0x01)
				}
				f.Hash = audit.HashEvent(f.Seq, f.Subject, f.ID, f.Data)
				f.Chain = audit.ChainNext(chain, f.Hash)
				chain = f.Chain
				forged[i] = f
			}
			exec(`DELETE FROM audit_events WHERE seq >= $1`, int64(k))
			insertAll(t, db, e.store, forged[k-1:])
			res := e.wantBad(k)
			t.Log(res.Reason)
			exec(`DELETE FROM audit_events WHERE seq >= $1`, int64(k))
			insertAll(t, db, e.store, orig[k-1:])
			e.wantOK(n)
		})
		// A row beyond the end of the log, even well hashed and chained,
		// is not an event.
		t.Run("extra row beyond the log", func(t *testing.T) {
			last := orig[n-1]
			subject := eventlog.Subject(last.CaseID, "RequestClosed")
			extra := audit.Record{Seq: n + 1, ID: "forged", CaseID: last.CaseID, Type: "RequestClosed", Subject: subject,
				At: time.Now(), Data: []byte("forged")}
			extra.Hash = audit.HashEvent(extra.Seq, extra.Subject, extra.ID, extra.Data)
			extra.Chain = audit.ChainNext(last.Chain, extra.Hash)
			insertAll(t, db, e.store, []audit.Record{extra})
			res := e.wantBad(n + 1)
			t.Log(res.Reason)
			exec(`DELETE FROM audit_events WHERE seq = $1`, int64(n+1))
			e.wantOK(n)
		})
	})
}

// The consumer may deliver an event before the ones it follows: the gap
// is filled from the stream and the archive stays contiguous;
// the overtaken events, when they arrive, change nothing.
func TestOutOfOrderDeliveryFillsTheGap(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		now := time.Now().UTC()
		id := e.submit(now)
		e.step(id, now)
		e.step(id, now)
		e.archiveDirect(e.get(3))
		recs := e.archive()
		if len(recs) != 3 || recs[0].Seq != 1 || recs[2].Seq != 3 {
			t.Fatalf("after seq 3 alone the archive holds %d records", len(recs))
		}
		e.wantOK(3)
		e.archiveDirect(e.get(1), e.get(2), e.get(3))
		if got := e.archive(); !sameRecords(got, recs) {
			t.Fatal("late events changed the archive")
		}
		// The real consumer then delivers 1, 2 and 3 again, and 4.
		e.step(id, now)
		e.start()
		e.waitAcked(4)
		got := e.archive()
		if len(got) != 4 || !sameRecords(got[:3], recs) {
			t.Fatalf("after the consumer ran the archive holds %d records", len(got))
		}
		e.wantOK(4)
	})
}

// The real consumer delivers out of order after a failure: the first
// attempt at event 2 fails, events 3 and 4 are handled while 2 waits for
// its redelivery, and the archive is contiguous all the same.
func TestConsumerRedeliversOutOfOrder(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		now := time.Now().UTC()
		id := e.submit(now)
		for range 3 {
			e.step(id, now)
		}
		var (
			mu      sync.Mutex
			failed  bool
			handled []uint64 // the order of successful calls
		)
		// flakyArchive is a fault injector around the real handler.
		flakyArchive := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
			mu.Lock()
			defer mu.Unlock()
			if m.Seq == 2 && !failed {
				failed = true
				return errors.New("injected failure")
			}
			if err := e.svc.Archive(ctx, q, m); err != nil {
				return err
			}
			handled = append(handled, m.Seq)
			return nil
		}
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = e.log.Consume(ctx, db, eventlog.ConsumerConfig{Name: audit.ConsumerName, RetryDelay: 200 * time.Millisecond,
				Repair: e.svc.FillGap}, flakyArchive, zaptest.NewLogger(t))
		}()
		t.Cleanup(func() { cancel(); <-done })
		e.waitAcked(4)
		mu.Lock()
		order := slices.Clone(handled)
		mu.Unlock()
		if i3, i2 := slices.Index(order, 3), slices.Index(order, 2); i3 < 0 || i2 < 0 || i3 > i2 {
			t.Fatalf("handled %v; want 3 before the redelivered 2", order)
		}
		e.wantOK(4)
	})
}

func sameRecords(a, b []audit.Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameRecord(a[i], b[i]) {
			return false
		}
	}
	return true
}

// Deleting the durable consumer redelivers the whole log: nothing is
// archived twice or changed, whether or not the seen-records survive.
func TestRedeliveryIsHarmless(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		e.someCases(4)
		e.start()
		n := e.waitArchived()
		e.waitAcked(n)
		before := e.archive()
		ctx := e.ctx
		for round, forgetSeen := range []bool{false, true} {
			e.stop()
			if err := e.js.DeleteConsumer(ctx, eventlog.Stream, audit.ConsumerName); err != nil {
				t.Fatal(err)
			}
			if forgetSeen {
				// Without its seen-records, the handler itself must
				// recognise every redelivered event.
				if _, err := db.Exec(ctx, `DELETE FROM event_seen WHERE consumer = $1`, audit.ConsumerName); err != nil {
					t.Fatal(err)
				}
			}
			e.start()
			e.waitAcked(n + uint64(round))
			if got := e.archive(); !sameRecords(got[:n], before) {
				t.Fatalf("round %d: redelivery changed the archive", round)
			}
			// A new event after the redelivered ones is archived next.
			e.someCases(1)
			e.waitArchived()
			e.wantOK(n + uint64(round) + 1)
			before = e.archive()[:n]
		}
	})
}

// An event that does not decode is archived, hashed and shown all the same.
func TestUndecodableEventIsArchived(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	ctx := e.ctx
	id, future := e.submit(time.Now().UTC()), newID()
	m := nats.NewMsg(eventlog.Subject(future, "FromTheFuture"))
	m.Data = []byte{0xff, 0xff, 0xff}
	if _, err := e.js.PublishMsg(ctx, m, jetstream.WithMsgID(newID())); err != nil {
		t.Fatal(err)
	}
	e.step(id, time.Now().UTC())
	e.start()
	e.waitArchived()
	e.wantOK(3)
	page, err := e.client.Events(ctx, auditapi.EventsRequest{})
	if err != nil || len(page.Items) != 3 {
		t.Fatalf("events: %+v %v", page, err)
	}
	bad := page.Items[1]
	if bad.Type != "FromTheFuture" || bad.CaseID != future || bad.DecodeError == "" || bad.Hash == "" ||
		!(len(bad.Data) == 0 || string(bad.Data) == "null") || bad.At.IsZero() {
		t.Fatalf("undecodable event rendered as %+v", bad)
	}
	if page.Items[2].Type != "ReviewClaimed" || page.Items[2].DecodeError != "" {
		t.Fatalf("the event after it: %+v", page.Items[2])
	}
}

func TestEventsPages(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	ctx := e.ctx
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	id := e.submit(at)
	e.step(id, at.Add(time.Minute))
	e.someCases(3) // 1 + 2 + 3 events: 8 in all
	e.start()
	n := e.waitArchived()

	first, err := e.client.Events(ctx, auditapi.EventsRequest{Limit: 1})
	if err != nil || len(first.Items) != 1 || first.Next != 1 {
		t.Fatalf("first page: %+v %v", first, err)
	}
	sub := first.Items[0]
	if sub.Seq != 1 || sub.ID != id || sub.CaseID != id || sub.Type != "RequestSubmitted" || !sub.At.Equal(at) ||
		sub.Actor != ana || len(sub.Hash) != 64 || len(sub.Chain) != 64 {
		t.Fatalf("first event: %+v", sub)
	}
	var body map[string]any
	if err := json.Unmarshal(sub.Data, &body); err != nil {
		t.Fatalf("data %s: %v", sub.Data, err)
	}
	if body["category"] != "shelter" || body["amount_usd_cents"] != "10000" || body["post"] != "BGD-DHAKA" {
		t.Fatalf("body with protobuf names: %s", sub.Data)
	}
	var seqs []uint64
	for after := uint64(0); ; {
		page, err := e.client.Events(ctx, auditapi.EventsRequest{After: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			seqs = append(seqs, it.Seq)
		}
		if page.Next == 0 {
			break
		}
		after = page.Next
	}
	if uint64(len(seqs)) != n || seqs[0] != 1 || seqs[n-1] != n {
		t.Fatalf("paged through %v, want 1..%d", seqs, n)
	}
	all, err := e.client.Events(ctx, auditapi.EventsRequest{})
	if err != nil || uint64(len(all.Items)) != n || all.Next != 0 {
		t.Fatalf("default page: %d items next %d, %v", len(all.Items), all.Next, err)
	}
	if claim := all.Items[1]; claim.Type != "ReviewClaimed" || claim.Actor != olu || !claim.At.Equal(at.Add(time.Minute)) {
		t.Fatalf("claim event: %+v", claim)
	}
	// Errors are checked on the service itself, not over NATS: pkg/rpc
	// answers errors from a goroutine of its own, which races with the
	// micro package's request statistics (see the report on pkg/rpc).
	if _, err := e.svc.Events(ctx, auditapi.EventsRequest{Limit: -1}); !assist.IsCode(err, assist.CodeInvalid) {
		t.Fatalf("negative limit: %v, want invalid", err)
	}
	if page, err := e.client.Events(ctx, auditapi.EventsRequest{After: n}); err != nil || len(page.Items) != 0 || page.Next != 0 {
		t.Fatalf("page after the end: %+v %v", page, err)
	}
}

func TestEventsLimitIsCapped(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	now := time.Now().UTC()
	var last uint64
	for range audit.MaxLimit + 10 {
		id := newID()
		ev, err := assist.Submit(assist.Cmd{ID: id, Actor: ana, At: now}, assist.SubmitInput{
			Post: "BGD-DHAKA", Category: assist.Shelter, Urgency: assist.Routine, AmountCents: 100,
			Justification: "x", BeneficiaryRefHash: []byte("r")}, assist.DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		if last, err = e.log.Append(e.ctx, ev, 0); err != nil {
			t.Fatal(err)
		}
	}
	e.archiveDirect(e.get(last)) // one gap fill of all the events before it
	page, err := e.svc.Events(e.ctx, auditapi.EventsRequest{Limit: 10_000})
	if err != nil || len(page.Items) != audit.MaxLimit || page.Next != audit.MaxLimit {
		t.Fatalf("limit 10000 gave %d items, next %d, %v", len(page.Items), page.Next, err)
	}
	e.wantOK(audit.MaxLimit + 10)
}

func TestHistoryAsOfAccess(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		ctx := e.ctx
		t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
		id := e.submit(t0)
		other := e.submit(t0)
		e.step(id, t0.Add(10*time.Minute)) // claimed
		e.step(id, t0.Add(20*time.Minute)) // released
		e.start()
		e.waitArchived()

		hist, err := e.client.History(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wantTypes := []string{"RequestSubmitted", "ReviewClaimed", "ReviewReleased"}
		if len(hist) != len(wantTypes) {
			t.Fatalf("history has %d events, want 3", len(hist))
		}
		byseq := map[uint64]audit.Record{}
		for _, r := range e.archive() {
			byseq[r.Seq] = r
		}
		for i, h := range hist {
			if h.Type != wantTypes[i] || h.CaseID != id || (i > 0 && h.Seq <= hist[i-1].Seq) {
				t.Fatalf("history[%d] = %+v", i, h)
			}
			r := byseq[h.Seq]
			if h.Hash != hex.EncodeToString(r.Hash) || h.Chain != hex.EncodeToString(r.Chain) || h.Hash == "" {
				t.Fatalf("history[%d] hash %s chain %s, archive has %x %x", i, h.Hash, h.Chain, r.Hash, r.Chain)
			}
		}
		if !hist[1].At.Equal(t0.Add(10*time.Minute)) || hist[1].Actor != olu {
			t.Fatalf("claim in history: %+v", hist[1])
		}

		// Read-your-writes: history reads the log, so an event not yet
		// archived is there, without a hash.
		e.stop()
		e.step(id, t0.Add(30*time.Minute))
		hist, err = e.svc.History(ctx, auditapi.CaseRequest{CaseID: id})
		if err != nil || len(hist) != 4 {
			t.Fatalf("history after a new event: %d events, %v", len(hist), err)
		}
		if last := hist[3]; last.Type != "ReviewClaimed" || last.Hash != "" || last.Chain != "" {
			t.Fatalf("unarchived event in history: %+v", last)
		}
		e.start()

		for _, tc := range []struct {
			at   time.Time
			want assist.State
		}{
			{t0, assist.StateSubmitted},
			{t0.Add(5 * time.Minute), assist.StateSubmitted},
			{t0.Add(15 * time.Minute), assist.StateUnderReview},
			{t0.Add(25 * time.Minute), assist.StateSubmitted},
			{t0.Add(time.Hour), assist.StateUnderReview},
		} {
			c, err := e.client.AsOf(ctx, id, tc.at)
			if err != nil || c.Status != string(tc.want) || c.ID != id {
				t.Fatalf("as of %s: %+v %v, want %s", tc.at, c, err, tc.want)
			}
		}
		// Errors are checked on the service itself: see TestEventsPages.
		if _, err := e.svc.AsOf(ctx, auditapi.AsOfRequest{CaseID: id, At: t0.Add(-time.Second)}); !assist.IsCode(err, assist.CodeNotFound) {
			t.Fatalf("as of before filing: %v, want not_found", err)
		}
		if _, err := e.svc.AsOf(ctx, auditapi.AsOfRequest{CaseID: id}); !assist.IsCode(err, assist.CodeInvalid) {
			t.Fatalf("as of without a time: %v, want invalid", err)
		}

		if err := e.log.RecordAccess(ctx, eventlog.Access{CaseID: other, Username: "aud", Role: assist.RoleAuditor,
			At: t0, What: "beneficiary"}); err != nil {
			t.Fatal(err)
		}
		acc, err := e.client.Access(ctx, other)
		if err != nil || len(acc) != 1 || acc[0].Username != "aud" || acc[0].CaseID != other {
			t.Fatalf("access of other: %+v %v", acc, err)
		}
		if acc, err := e.client.Access(ctx, id); err != nil || len(acc) != 0 {
			t.Fatalf("access of an unread case: %+v %v", acc, err)
		}

		for _, bad := range []string{"", "nope", "eva.case.>", newID(), "*"} {
			if _, err := e.svc.History(ctx, auditapi.CaseRequest{CaseID: bad}); !assist.IsCode(err, assist.CodeNotFound) {
				t.Errorf("history of %q: %v, want not_found", bad, err)
			}
			if _, err := e.svc.AsOf(ctx, auditapi.AsOfRequest{CaseID: bad, At: t0.Add(time.Hour)}); !assist.IsCode(err, assist.CodeNotFound) {
				t.Errorf("as of of %q: %v, want not_found", bad, err)
			}
		}
		for _, bad := range []string{"", "nope", "eva.access.>"} {
			if _, err := e.svc.Access(ctx, auditapi.CaseRequest{CaseID: bad}); !assist.IsCode(err, assist.CodeNotFound) {
				t.Errorf("access of %q: %v, want not_found", bad, err)
			}
		}
	})
}

// Invariant 5 under concurrency: writers append to many cases, some of
// them racing on the same cases, while the consumer archives; in the end
// the archive equals the log event for event.
func TestArchiveEqualsLogUnderConcurrency(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		e.start()
		ctx := e.ctx
		shared := []string{e.submit(time.Now().UTC()), e.submit(time.Now().UTC())}
		const writers, casesEach, stepsEach = 8, 12, 3
		var wg sync.WaitGroup
		errs := make(chan error, writers*casesEach*(stepsEach+2))
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range casesEach {
					id := newID()
					now := time.Now().UTC()
					ev, err := assist.Submit(assist.Cmd{ID: id, Actor: ana, At: now}, assist.SubmitInput{
						Post: "BGD-DHAKA", Category: assist.Medical, Urgency: assist.Urgent, AmountCents: 5_000,
						Justification: "doctor", BeneficiaryRefHash: []byte("ref")}, assist.DefaultPolicy())
					if err == nil {
						_, err = e.log.Start(ctx, ev)
					}
					if err != nil {
						errs <- err
						continue
					}
					for range stepsEach {
						if err := step(ctx, e.log, id, now); err != nil {
							errs <- err
						}
					}
					// Race with the other writers on a shared case;
					// losing is fine, a lost event is not.
					if err := step(ctx, e.log, shared[w%2], now); err != nil && !assist.IsCode(err, assist.CodeConflict) {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		n := e.waitArchived()
		if min := uint64(2 + writers*casesEach*(stepsEach+1)); n < min {
			t.Fatalf("log has %d events, want at least %d", n, min)
		}
		e.wantOK(n)
		recs := e.archive()
		if uint64(len(recs)) != n {
			t.Fatalf("archive has %d records, log %d", len(recs), n)
		}
		// Each case's history, from the log, is archived hash for hash.
		for _, id := range shared {
			hist, err := e.client.History(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hist {
				if r := recs[h.Seq-1]; h.Hash != hex.EncodeToString(r.Hash) || h.Hash == "" {
					t.Fatalf("case %s event %d: history hash %s, archive %x", id, h.Seq, h.Hash, r.Hash)
				}
			}
		}
	})
}

// staleTreeSize is a fake store whose first TreeSize answers as it was
// before the last few events were archived: Verify reading the tree's
// size and then an archive that grew meanwhile (a live system).
type staleTreeSize struct {
	*audit.SQLStore
	behind int64
	asked  bool
}

func (s *staleTreeSize) TreeSize(ctx context.Context, q sqldb.Querier) (int64, error) {
	n, err := s.SQLStore.TreeSize(ctx, q)
	if !s.asked {
		s.asked = true
		return n - s.behind, err
	}
	return n, err
}

// Events archived while Verify runs are verified, not taken for events
// missing from the Merkle tree (seen under load in the fault suite).
func TestVerifyWhileTheArchiveGrows(t *testing.T) {
	db := sqldbtest.SQLite(t)
	e := newEnv(t, db)
	e.someCases(3)
	e.start()
	n := e.waitArchived()
	res, err := audit.Verify(e.ctx, &staleTreeSize{SQLStore: e.store, behind: 2}, e.log, audit.VerifyOptions{VerifierKey: e.key.Verifier})
	if err != nil || !res.OK || res.Events != n {
		t.Fatalf("verify with the archive ahead of the tree size read first = %s %v, want ok with %d events", show(res), err, n)
	}
}

// A batch archives its events together, with the head read once and the
// records and tree hashes written once: the archive verifies, and every
// stored tree hash is the one tlog computes leaf by leaf, whether the
// batch starts at the archive's head or overlaps what it holds.
func TestBatchArchiveStoresTheTreeOfOneByOne(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		now := time.Now().UTC()
		for range 3 {
			id := e.submit(now)
			e.step(id, now)
			e.step(id, now)
		}
		const n = 9
		e.archiveDirect(e.get(1))
		e.archiveDirect(e.get(2))
		var batch []eventlog.Msg
		for seq := uint64(2); seq <= n; seq++ {
			batch = append(batch, e.get(seq))
		}
		e.archiveDirect(batch...)
		recs := e.archive()
		if len(recs) != n {
			t.Fatalf("the archive holds %d records, want %d", len(recs), n)
		}
		e.wantOK(n)
		var mem []tlog.Hash
		read := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(ix))
			for i, x := range ix {
				out[i] = mem[x]
			}
			return out, nil
		})
		for i, r := range recs {
			hs, err := tlog.StoredHashesForRecordHash(int64(i), audit.LeafHash(r), read)
			if err != nil {
				t.Fatal(err)
			}
			mem = append(mem, hs...)
		}
		ix := make([]int64, len(mem))
		for i := range ix {
			ix[i] = int64(i)
		}
		stored, err := e.store.ReadHashes(e.ctx, nil, ix)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(stored, mem) {
			t.Fatalf("stored tree hashes differ from tlog's leaf-by-leaf computation")
		}
		if size, err := e.store.TreeSize(e.ctx, nil); err != nil || size != n {
			t.Fatalf("tree size %d, %v; want %d", size, err, n)
		}
	})
}

// checkpointsFirst records whether the archive was read before the
// checkpoints. Its Checkpoints gives a Range already asked for a moment
// to get ahead of it, so that a Verify that reads the archive before the
// checkpoints is seen doing so.
type checkpointsFirst struct {
	*audit.SQLStore
	checkpointsRead, rangeBeforeThem atomic.Bool
	rangeAsked                       chan struct{}
	once                             sync.Once
}

func (s *checkpointsFirst) Range(ctx context.Context, after uint64, limit int) ([]audit.Record, error) {
	if !s.checkpointsRead.Load() {
		s.rangeBeforeThem.Store(true)
	}
	s.once.Do(func() { close(s.rangeAsked) })
	return s.SQLStore.Range(ctx, after, limit)
}

func (s *checkpointsFirst) Checkpoints(ctx context.Context, after, upto int64, limit int) ([]audit.StoredCheckpoint, error) {
	select {
	case <-s.rangeAsked:
	case <-time.After(200 * time.Millisecond): // none asked before: the order wanted
	}
	s.checkpointsRead.Store(true)
	return s.SQLStore.Checkpoints(ctx, after, upto, limit)
}

// Verify reads the kept checkpoints before the archive: a checkpoint
// signed after a page of the archive was read may cover events that page
// ended before, and the archive looked cut short ("the log was cut short
// or rolled back: a checkpoint was signed for 38 events, the log and the
// archive hold 15", TestVerifyWhileArchiving in CI under load).
func TestVerifyReadsTheCheckpointsBeforeTheArchive(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	e.someCases(3)
	e.start()
	n := e.waitArchived()
	s := &checkpointsFirst{SQLStore: e.store, rangeAsked: make(chan struct{})}
	res, err := audit.Verify(e.ctx, s, e.log, audit.VerifyOptions{VerifierKey: e.key.Verifier})
	if err != nil || !res.OK || res.Events != n {
		t.Fatalf("verify = %s %v, want ok with %d events", show(res), err, n)
	}
	if s.rangeBeforeThem.Load() {
		t.Error("Verify read the archive before the checkpoints")
	}
}
