package eventlog

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// chainedCase appends a new case's events of the given types straight to
// the event stream, each naming the one before it (HeaderPrev) as an
// append does, with another case's message before each; it returns the
// case's id and its events' sequences. prev, when set, gives the
// HeaderPrev of the i-th event instead (to break the chain).
func chainedCase(tb testing.TB, js jetstream.JetStream, types []string, prev func(i int, seqs []uint64) string) (string, []uint64) {
	return chainedCaseAmong(tb, js, types, 1, prev)
}

// chainedCaseAmong is chainedCase with others messages of other cases
// before each of the case's events.
func chainedCaseAmong(tb testing.TB, js jetstream.JetStream, types []string, others int, prev func(i int, seqs []uint64) string) (string, []uint64) {
	tb.Helper()
	ctx := context.Background()
	id := uuid.NewString()
	var seqs []uint64
	var last uint64
	for i, typ := range types {
		for range others {
			if _, err := js.PublishAsync(SubjectOf("case", uuid.NewString(), "Other"), []byte("x")); err != nil {
				tb.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			tb.Fatal("the other cases' messages were not acknowledged")
		}
		m := nats.NewMsg(SubjectOf("case", id, typ))
		m.Data = []byte(strconv.Itoa(i))
		p := strconv.FormatUint(last, 10)
		if prev != nil {
			p = prev(i, seqs)
		}
		if p != "" {
			m.Header.Set(HeaderPrev, p)
		}
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			tb.Fatal(err)
		}
		last = ack.Sequence
		seqs = append(seqs, ack.Sequence)
	}
	return id, seqs
}

// directGets counts the direct gets of the event stream, by what they
// ask, as a second connection overhears them.
type directGets struct {
	nc  *nats.Conn
	sub *nats.Subscription
}

func overhear(tb testing.TB, nc *nats.Conn) *directGets {
	tb.Helper()
	sub, err := nc.SubscribeSync("$JS.API.DIRECT.GET." + Stream)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	return &directGets{nc: nc, sub: sub}
}

// take counts the direct gets overheard since the last take.
func (g *directGets) take(tb testing.TB) (multiLast, bySubject int) {
	tb.Helper()
	// Once the server answers the flush, every request made before it
	// waits in the subscription.
	if err := g.nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	n, _, err := g.sub.Pending()
	if err != nil {
		tb.Fatal(err)
	}
	for range n {
		m, err := g.sub.NextMsg(time.Second)
		if err != nil {
			tb.Fatal(err)
		}
		var req directBatch
		if err := json.Unmarshal(m.Data, &req); err != nil {
			tb.Fatalf("direct get %q: %v", m.Data, err)
		}
		if len(req.MultiLast) > 0 {
			multiLast++
		} else {
			bySubject++
		}
	}
	return multiLast, bySubject
}

// A case's history is read from the last event of each of its subjects,
// and the events that answer lacks (a type seen twice) one by one along
// the chain; a history that chain cannot prove whole cheaply is read by
// scan; every way reads the same events.
func TestCaseHistoryIsReadByItsChain(t *testing.T) {
	s := natsxtest.Server(t)
	_, js := natsxtest.Connect(t, s)
	l, err := Open(context.Background(), js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	watch, _ := natsxtest.Connect(t, s)
	gets := overhear(t, watch)
	lifecycle := []string{"RequestSubmitted", "ReviewClaimed", "RequestApproved", "FundsReserved", "PayoutSent", "PayoutSettled"}
	for _, tc := range []struct {
		name  string
		types []string
		prev  func(i int, seqs []uint64) string
		// gets: the direct gets by sequence or subject the read makes
		// after its multi-last get; scan: the history is read by scan.
		gets int
		scan bool
	}{
		{name: "every type once", types: lifecycle},
		{name: "one event", types: lifecycle[:1]},
		{name: "a type twice", types: []string{"RequestSubmitted", "ReviewClaimed", "InfoRequested", "InfoProvided", "ReviewClaimed", "RequestApproved"}, gets: 1},
		{name: "the last type repeated", types: []string{"RequestSubmitted", "Noted", "Noted", "Noted"}, gets: 2},
		{name: "more repeats than it reads one by one", types: slices.Repeat([]string{"Noted"}, maxChainGets+3), gets: maxChainGets, scan: true},
		{name: "an event without HeaderPrev", types: lifecycle[:3], scan: true,
			prev: func(i int, seqs []uint64) string {
				if i == 0 {
					return ""
				}
				return strconv.FormatUint(seqs[i-1], 10)
			}},
		{name: "an event off the chain", types: lifecycle[:4], scan: true,
			prev: func(i int, seqs []uint64) string {
				if i < 2 {
					return strconv.FormatUint(append([]uint64{0}, seqs...)[i], 10)
				}
				return strconv.FormatUint(seqs[0], 10) // skips the claim
			}},
		{name: "a chain through another case", types: []string{"RequestSubmitted", "Noted", "Noted"}, gets: 1, scan: true,
			prev: func(i int, seqs []uint64) string {
				switch i {
				case 0:
					return "0"
				case 2:
					return strconv.FormatUint(seqs[1]-1, 10) // the other case's message before it
				}
				return strconv.FormatUint(seqs[i-1], 10)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			id, want := chainedCase(t, js, tc.types, tc.prev)
			gets.take(t)
			msgs, ok, err := l.loadByChain(ctx, CaseFilter(id))
			if err != nil {
				t.Fatal(err)
			}
			multi, by := gets.take(t)
			if multi != 1 || by != tc.gets {
				t.Errorf("the chain read made %d multi-last and %d other direct gets, want 1 and %d", multi, by, tc.gets)
			}
			if ok == tc.scan {
				t.Fatalf("the chain read proved the history whole: %v, want %v", ok, !tc.scan)
			}
			if ok {
				if got := seqsOf(msgs); !slices.Equal(got, want) {
					t.Fatalf("the chain read %v, want %v", got, want)
				}
			}
			all, err := l.LoadOf(ctx, "case", id)
			if tc.scan {
				// What the scan makes of it: the history it holds, or a
				// broken chain named.
				if err == nil && !slices.Equal(seqsOf(all), want) {
					t.Fatalf("load read %v, want %v", seqsOf(all), want)
				}
				return
			}
			if err != nil || !slices.Equal(seqsOf(all), want) {
				t.Fatalf("load: %v, %v; want %v", seqsOf(all), err, want)
			}
		})
	}
	t.Run("no events", func(t *testing.T) {
		gets.take(t)
		msgs, ok, err := l.loadByChain(context.Background(), CaseFilter(uuid.NewString()))
		if err != nil || !ok || len(msgs) != 0 {
			t.Fatalf("a case without events: %v, %v, %v; want none, whole", msgs, ok, err)
		}
		if multi, by := gets.take(t); multi != 1 || by != 0 {
			t.Errorf("%d multi-last and %d other direct gets, want 1 and 0", multi, by)
		}
	})
}

// BenchmarkLoadAmongOthers reads a case's history in a busy log, each
// event after 200 messages of other cases, and 2,000 more after the
// last (the log went on). A lifecycle (six events of six types) is read
// by its chain (one multi-last direct get) or by scan alone (one
// next-by-subject batch, which makes the server walk every message from
// the case's first event to the stream's end). A case of three events,
// two of one type, is read by its chain and one get by sequence, or by
// scan alone.
func BenchmarkLoadAmongOthers(b *testing.B) {
	l, _, js := openInternal(b)
	lifecycle := []string{"RequestSubmitted", "ReviewClaimed", "RequestApproved", "FundsReserved", "PayoutSent", "PayoutSettled"}
	amended := []string{"RequestSubmitted", "RequestAmended", "RequestAmended"}
	idL, wantL := chainedCaseAmong(b, js, lifecycle, 200, nil)
	idA, wantA := chainedCaseAmong(b, js, amended, 200, nil)
	chainedCaseAmong(b, js, lifecycle[:1], 2000, nil)
	ctx := context.Background()
	chain := func(id string, want []uint64) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				msgs, ok, err := l.loadByChain(ctx, CaseFilter(id))
				if err != nil || !ok || !slices.Equal(seqsOf(msgs), want) {
					b.Fatalf("read %v, %v, %v; want %v", seqsOf(msgs), ok, err, want)
				}
			}
		}
	}
	scan := func(id string, want []uint64) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := scanSeqs(ctx, l, CaseFilter(id), want); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.Run("lifecycle/chain", chain(idL, wantL))
	b.Run("lifecycle/scan", scan(idL, wantL))
	b.Run("amended/chain", chain(idA, wantA))
	b.Run("amended/scan", scan(idA, wantA))
}

func seqsOf(msgs []Msg) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}
