package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// changesHarness is a harness whose GET /v1/changes follows a real event
// log, served by a real HTTP server (a recorder cannot stream).
func changesHarness(t *testing.T) (*harness, eventlogtest.Log, *httptest.Server) {
	t.Helper()
	h := newHarness(t, sqldbtest.SQLite(t))
	l := eventlogtest.Open(t)
	h.srv.follow = l.Log
	ts := httptest.NewServer(h.h)
	t.Cleanup(ts.Close)
	return h, l, ts
}

// follower reads one change stream.
type follower struct {
	t      *testing.T
	resp   *http.Response
	events chan changeEvent
	ended  chan struct{}
}

// changeEvent is one server-sent event as the client parsed it.
type changeEvent struct {
	id   string
	data map[string]any
}

// follow opens GET path as user with the headers given (name, value, ...)
// and parses its events until it ends.
func (h *harness) follow(t *testing.T, ts *httptest.Server, user, path string, header ...string) (*follower, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		r.Header.Set("Authorization", "Bearer "+h.tokens[user])
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	resp, err := ts.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return nil, resp
	}
	f := &follower{t: t, resp: resp, events: make(chan changeEvent, 100), ended: make(chan struct{})}
	go func() {
		defer close(f.ended)
		sc := bufio.NewScanner(resp.Body)
		var ev changeEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.id != "" {
					f.events <- ev
				}
				ev = changeEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data); err != nil {
					t.Errorf("data line %q: %v", line, err)
				}
			}
		}
	}()
	return f, resp
}

// next waits for the next event.
func (f *follower) next() changeEvent {
	f.t.Helper()
	select {
	case ev := <-f.events:
		return ev
	case <-f.ended:
		f.t.Fatal("the stream ended before the event")
	case <-time.After(10 * time.Second):
		f.t.Fatal("no event within 10 s")
	}
	return changeEvent{}
}

// appendCase appends the first event of a new case and returns its id and
// sequence.
func appendCase(t *testing.T, l eventlogtest.Log) (string, uint64) {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	e, err := assist.Submit(assist.Cmd{ID: id, Actor: assist.Actor{Username: "ana", Role: assist.RoleRequester, Post: "BGD-DHAKA"},
		At: time.Now().UTC()}, assist.SubmitInput{Post: "BGD-DHAKA", Category: assist.Shelter, Urgency: assist.Critical,
		AmountCents: 10_000, Justification: "shelter tonight", BeneficiaryRefHash: []byte("ref")}, assist.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	seq, err := l.Append(context.Background(), e, 0)
	if err != nil {
		t.Fatal(err)
	}
	return id, seq
}

func TestChangesStreamsEachCaseEventAsItIsAppended(t *testing.T) {
	h, l, ts := changesHarness(t)
	before, _ := appendCase(t, l)
	f, resp := h.follow(t, ts, "olu", "/v1/changes")
	if f == nil {
		t.Fatalf("GET /v1/changes: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	id, seq := appendCase(t, l)
	ev := f.next()
	if ev.id != strconv.FormatUint(seq, 10) {
		t.Fatalf("first event id %q, want %d (the event of %s, filed before, is not news)", ev.id, seq, before)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range ev.data {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, []string{"at", "case_id", "id", "seq", "type"}) {
		t.Fatalf("data has %v, want exactly at, case_id, id, seq, type (no personal data)", keys)
	}
	if ev.data["case_id"] != id || ev.data["type"] != "RequestSubmitted" || ev.data["seq"] != float64(seq) || ev.data["id"] != id {
		t.Fatalf("data %v, want case %s RequestSubmitted at %d", ev.data, id, seq)
	}
	if _, err := time.Parse(time.RFC3339Nano, ev.data["at"].(string)); err != nil {
		t.Fatalf("at: %v", err)
	}
	for _, user := range []string{"fin", "aud"} {
		if f, resp := h.follow(t, ts, user, "/v1/changes?after=0"); f == nil {
			t.Fatalf("%s: %s", user, resp.Status)
		} else if ev := f.next(); ev.data["case_id"] != before {
			t.Fatalf("%s from the start: first event %v, want the case %s", user, ev.data, before)
		}
	}
}

func TestChangesResumeAfterTheLastEventSeen(t *testing.T) {
	h, l, ts := changesHarness(t)
	var seqs []uint64
	for range 5 {
		_, seq := appendCase(t, l)
		seqs = append(seqs, seq)
	}
	for _, c := range []struct {
		name   string
		path   string
		header []string
	}{
		{"Last-Event-ID", "/v1/changes", []string{"Last-Event-ID", strconv.FormatUint(seqs[1], 10)}},
		{"after", "/v1/changes?after=" + strconv.FormatUint(seqs[1], 10), nil},
		// A reconnecting EventSource sends its last id with the URL it
		// first opened: the header is the newer.
		{"both", "/v1/changes?after=0", []string{"Last-Event-ID", strconv.FormatUint(seqs[1], 10)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, resp := h.follow(t, ts, "olu", c.path, c.header...)
			if f == nil {
				t.Fatalf("%s", resp.Status)
			}
			for _, want := range seqs[2:] {
				if ev := f.next(); ev.id != strconv.FormatUint(want, 10) {
					t.Fatalf("event %s, want %d: resumed after %d in log order", ev.id, want, seqs[1])
				}
			}
			_, seq := appendCase(t, l)
			seqs = append(seqs, seq)
			if ev := f.next(); ev.id != strconv.FormatUint(seq, 10) {
				t.Fatalf("then %s, want the new %d", ev.id, seq)
			}
		})
	}
}

func TestChangesRefusesWhoMayNotSeeEveryCaseAndBadPositions(t *testing.T) {
	h, _, ts := changesHarness(t)
	for _, c := range []struct {
		user, path string
		header     []string
		status     int
		field      string
	}{
		{"", "/v1/changes", nil, http.StatusUnauthorized, ""},
		{"ana", "/v1/changes", nil, http.StatusForbidden, ""},
		{"adm", "/v1/changes", nil, http.StatusForbidden, ""},
		{"olu", "/v1/changes", []string{"Last-Event-ID", "seven"}, http.StatusBadRequest, "Last-Event-ID"},
		{"olu", "/v1/changes", []string{"Last-Event-ID", "-1"}, http.StatusBadRequest, "Last-Event-ID"},
		{"olu", "/v1/changes?after=-1", nil, http.StatusBadRequest, "after"},
		{"olu", "/v1/changes?after=1&after=2", nil, http.StatusBadRequest, "after"},
	} {
		f, resp := h.follow(t, ts, c.user, c.path, c.header...)
		if f != nil {
			t.Fatalf("%s %s %v: a stream, want %d", c.user, c.path, c.header, c.status)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" ||
			(c.field != "" && !strings.Contains(string(body), `"field":"`+c.field+`"`)) {
			t.Errorf("%s %s %v: %s %s, want %d naming %q", c.user, c.path, c.header, resp.Status, body, c.status, c.field)
		}
	}
}

func TestChangesEndWithTheSessionAndTheGateway(t *testing.T) {
	h, _, ts := changesHarness(t)
	h.srv.heartbeat = 20 * time.Millisecond
	f, resp := h.follow(t, ts, "olu", "/v1/changes")
	if f == nil {
		t.Fatal(resp.Status)
	}
	if rr := h.do(req{method: http.MethodDelete, path: "/v1/auth/token", user: "olu"}); rr.Code != http.StatusNoContent {
		t.Fatalf("sign out: %d %s", rr.Code, rr.Body)
	}
	select {
	case <-f.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived the session by 10 s")
	}

	ctx, stop := context.WithCancel(context.Background())
	h.srv.stopping = ctx
	f, resp = h.follow(t, ts, "mei", "/v1/changes")
	if f == nil {
		t.Fatal(resp.Status)
	}
	stop()
	select {
	case <-f.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived the gateway's shutdown by 10 s")
	}
}

func TestChangesBoundTheOpenStreams(t *testing.T) {
	h, _, ts := changesHarness(t)
	h.srv.followers = make(chan struct{}, 1)
	f, resp := h.follow(t, ts, "olu", "/v1/changes")
	if f == nil {
		t.Fatal(resp.Status)
	}
	_, resp = h.follow(t, ts, "mei", "/v1/changes")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second stream: %s (Retry-After %q), want 429 with Retry-After", resp.Status, resp.Header.Get("Retry-After"))
	}
	f.resp.Body.Close()
	<-f.ended
	evatest.Await(t, 10*time.Second, "a stream once the first ended", func() (bool, string) {
		f, resp := h.follow(t, ts, "mei", "/v1/changes")
		if f == nil {
			return false, resp.Status
		}
		return true, ""
	})
}

// failingChangesFake is a log (Changes) faked for a test: its first Follow
// gives one event and then fails as a log that cannot be read; later ones
// give one event and wait. It tells after what each Follow began.
type failingChangesFake struct {
	afters chan uint64
	calls  atomic.Int32
}

func (f *failingChangesFake) LastSeq(context.Context) (uint64, error) { return 10, nil }

func (f *failingChangesFake) Follow(ctx context.Context, after uint64, fn func(eventlog.Msg) error) error {
	first := f.calls.Add(1) == 1
	f.afters <- after
	m := eventlog.Msg{Seq: after + 1, ID: uuid.Must(uuid.NewV7()).String(), Type: "RequestSubmitted",
		CaseID: uuid.Must(uuid.NewV7()).String(), Time: time.Now()}
	if err := fn(m); err != nil {
		return err
	}
	if first {
		return assist.Errorf(assist.CodeUnavailable, "event log: follow the log after %d: no answer", after+1)
	}
	<-ctx.Done()
	return ctx.Err()
}

// A change stream whose log cannot be read ends (with 200 already sent,
// an EventSource reconnects), and the reconnection with Last-Event-ID
// goes on after the last event it had.
func TestChangesEndWhenTheLogFailsAndResumeAfterTheLastEvent(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	fake := &failingChangesFake{afters: make(chan uint64, 4)}
	h.srv.follow = fake
	ts := httptest.NewServer(h.h)
	t.Cleanup(ts.Close)

	// followFrom opens a stream, checks that the log was followed after
	// after, and that the stream's first event is the one after it.
	followFrom := func(after uint64, header ...string) *follower {
		t.Helper()
		f, resp := h.follow(t, ts, "olu", "/v1/changes", header...)
		if f == nil {
			t.Fatalf("%s", resp.Status)
		}
		if got := <-fake.afters; got != after {
			t.Fatalf("followed after %d, want %d", got, after)
		}
		if ev := f.next(); ev.id != strconv.FormatUint(after+1, 10) {
			t.Fatalf("event %s, want %d", ev.id, after+1)
		}
		return f
	}
	f := followFrom(10) // the log's end
	select {
	case <-f.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end when its log failed")
	}
	followFrom(11, "Last-Event-ID", "11") // after the last event seen
}
