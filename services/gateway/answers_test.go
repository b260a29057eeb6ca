package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
)

// fakeAnswerStore records each StoreKeys call's keys; the first call
// waits for release, and a batch with the key "refused" fails whole.
type fakeAnswerStore struct {
	mu      sync.Mutex
	calls   [][]string
	started chan struct{} // closed when the first call starts
	release chan struct{}
}

func (f *fakeAnswerStore) StoreKeys(_ context.Context, begins, recs []IdemRecord) ([]Begun, error) {
	f.mu.Lock()
	first := len(f.calls) == 0
	keys := keysOf(begins, recs)
	f.calls = append(f.calls, keys)
	f.mu.Unlock()
	if first {
		close(f.started)
		<-f.release
	}
	if slices.Contains(keys, "refused") {
		return nil, errors.New("refused")
	}
	return created(begins), nil
}

// keysOf lists the keys of a write: its begins', then its answers'.
func keysOf(begins, recs []IdemRecord) []string {
	var keys []string
	for _, r := range append(slices.Clone(begins), recs...) {
		keys = append(keys, r.Key)
	}
	return keys
}

// created answers begins as a store does that finds none of their keys.
func created(begins []IdemRecord) []Begun {
	var b []Begun
	for _, r := range begins {
		r.Status = IdemPending
		b = append(b, Begun{Rec: r, Created: true})
	}
	return b
}

// writing starts the write of an answer under key on an idle gateway,
// which the fake store holds until f.release is closed; first gets the
// put's error.
func writing(key string) (f *fakeAnswerStore, a *answers, first <-chan error) {
	f = &fakeAnswerStore{started: make(chan struct{}), release: make(chan struct{})}
	a = &answers{store: f}
	errs := make(chan error, 1)
	go func() { errs <- a.put(context.Background(), IdemRecord{Key: key}) }()
	<-f.started
	return f, a, errs
}

// awaitWaiting waits until n answers wait for the next write.
func awaitWaiting(t *testing.T, a *answers, n int) {
	t.Helper()
	evatest.Eventually(t, fmt.Sprintf("%d answers waiting", n), func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.waiting) == n
	})
}

// Answers that arrive while one is being written wait for that write and
// are then written together, in one call; each caller returns once its
// own is stored.
func TestAnswersOfConcurrentRequestsAreStoredTogether(t *testing.T) {
	f, a, first := writing("k0")
	ctx := context.Background()
	errs := make(chan error, 6)
	go func() { errs <- <-first }()
	for i := 1; i <= 5; i++ {
		go func() { errs <- a.put(ctx, IdemRecord{Key: fmt.Sprintf("k%d", i)}) }()
	}
	awaitWaiting(t, a, 5)
	close(f.release)
	for range 6 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	calls := func() [][]string {
		f.mu.Lock()
		defer f.mu.Unlock()
		return slices.Clone(f.calls)
	}
	if c := calls(); len(c) != 2 || len(c[0]) != 1 || len(c[1]) != 5 {
		t.Fatalf("writes %v, want one of k0, then one of the five that waited", c)
	}
	// Idle again: the next answer is written at once, by its caller.
	if err := a.put(ctx, IdemRecord{Key: "k6"}); err != nil || len(calls()) != 3 {
		t.Fatalf("an answer to an idle gateway: %v, writes %v", err, calls())
	}
}

// New keys' pending records that arrive while a write is under way wait
// for it with the answers that arrive, and are written with them, in one
// call: each begin is told its key's record, the answers are stored.
func TestNewKeysAreStoredWithTheAnswers(t *testing.T) {
	f, a, first := writing("answer-0")
	ctx := context.Background()
	type begun struct {
		b   Begun
		err error
	}
	begins := make(chan begun, 2)
	puts := make(chan error, 2)
	for i := range 2 {
		go func() {
			b, err := a.begin(ctx, IdemRecord{Key: fmt.Sprintf("key-%d", i), CommandID: fmt.Sprintf("cmd-%d", i)})
			begins <- begun{b, err}
		}()
		go func() { puts <- a.put(ctx, IdemRecord{Key: fmt.Sprintf("answer-%d", i+1)}) }()
	}
	awaitWaiting(t, a, 4)
	close(f.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	cmds := map[string]bool{}
	for range 2 {
		got := <-begins
		if got.err != nil || !got.b.Created || got.b.Rec.Status != IdemPending {
			t.Fatalf("begin: %+v %v, want its pending record made", got.b, got.err)
		}
		cmds[got.b.Rec.CommandID] = true
		if err := <-puts; err != nil {
			t.Fatal(err)
		}
	}
	if !cmds["cmd-0"] || !cmds["cmd-1"] {
		t.Errorf("begins told %v, want each its own record", cmds)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 2 || len(f.calls[1]) != 4 {
		t.Fatalf("writes %v, want answer-0's, then one of the two keys and two answers that waited", f.calls)
	}
}

// steppedAnswerStore holds each StoreKeys call until the test lets
// it end, telling the test when one starts and with which keys.
type steppedAnswerStore struct {
	started chan []string
	release chan struct{}
}

func (f *steppedAnswerStore) StoreKeys(_ context.Context, begins, recs []IdemRecord) ([]Begun, error) {
	f.started <- keysOf(begins, recs)
	<-f.release
	return created(begins), nil
}

// A caller returns once its own answer is stored: the answers that waited
// meanwhile are written by the first of them, not by a caller already
// answered (which would hold its request, and its client's connection,
// through one write after another while answers keep coming).
func TestAnAnsweredCallerWritesForNoOther(t *testing.T) {
	f := &steppedAnswerStore{started: make(chan []string), release: make(chan struct{})}
	a := &answers{store: f}
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- a.put(ctx, IdemRecord{Key: "k0"}) }()
	if keys := <-f.started; !slices.Equal(keys, []string{"k0"}) {
		t.Fatalf("first write %v, want k0 alone", keys)
	}
	others := make(chan error, 2)
	for i := 1; i <= 2; i++ {
		go func() { others <- a.put(ctx, IdemRecord{Key: fmt.Sprintf("k%d", i)}) }()
	}
	awaitWaiting(t, a, 2)
	f.release <- struct{}{} // k0 stored
	if keys := <-f.started; len(keys) != 2 {
		t.Fatalf("second write %v, want the two that waited", keys)
	}
	// The second write is under way: k0's caller has returned already.
	select {
	case err := <-first:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the caller of k0, stored, is still writing the answers that waited")
	}
	f.release <- struct{}{}
	for range 2 {
		if err := <-others; err != nil {
			t.Fatal(err)
		}
	}
	// Idle again: the next answer is written by its own caller.
	go func() { <-f.started; f.release <- struct{}{} }()
	if err := a.put(ctx, IdemRecord{Key: "k3"}); err != nil {
		t.Fatal(err)
	}
}

// One answer the store refuses fails no other written with it: a batch
// that fails (not for an outage) is written again one answer at a time.
func TestAnswerRefusedFailsNoOther(t *testing.T) {
	f := &fakeAnswerStore{started: make(chan struct{}), release: make(chan struct{})}
	close(f.release)
	a := &answers{store: f}
	batch := []answer{{rec: IdemRecord{Key: "a"}, done: make(chan outcome, 1)},
		{rec: IdemRecord{Key: "refused"}, done: make(chan outcome, 1)},
		{rec: IdemRecord{Key: "b", CommandID: "cmd-b"}, begin: true, done: make(chan outcome, 1)}}
	a.write(context.Background(), batch)
	for _, b := range batch {
		o := <-b.done
		if (b.rec.Key == "refused") != (o.err != nil) {
			t.Errorf("record %s: %v", b.rec.Key, o.err)
		}
		if b.begin && (!o.begun.Created || o.begun.Rec.CommandID != "cmd-b") {
			t.Errorf("begin %s: %+v, want its record made", b.rec.Key, o.begun)
		}
	}
	if len(f.calls) != 4 {
		t.Errorf("writes %v, want the batch then each alone", f.calls)
	}
}

// panickyAnswerStore panics in its first StoreKeys call, once the
// answers waiting for the next write are there, and stores the others.
type panickyAnswerStore struct {
	started, release chan struct{}
	calls            atomic.Int32
}

func (f *panickyAnswerStore) StoreKeys(_ context.Context, begins, _ []IdemRecord) ([]Begun, error) {
	if f.calls.Add(1) == 1 {
		close(f.started)
		<-f.release
		panic("a bug in the store")
	}
	return created(begins), nil
}

// A writer that panics (a bug) fails its answers and those waiting for
// the next write, and panics again; the next answer is written as on an
// idle gateway: a panic does not leave every later answer waiting for a
// writer gone.
func TestAWriterThatPanicsWedgesNoAnswer(t *testing.T) {
	f := &panickyAnswerStore{started: make(chan struct{}), release: make(chan struct{})}
	a := &answers{store: f}
	ctx := context.Background()
	var panicked any
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		_ = a.put(ctx, IdemRecord{Key: "k0"})
	}()
	<-f.started
	errs := make(chan error, 2)
	for i := 1; i <= 2; i++ {
		go func() { errs <- a.put(ctx, IdemRecord{Key: fmt.Sprintf("k%d", i)}) }()
	}
	awaitWaiting(t, a, 2)
	close(f.release)
	<-done
	if panicked != "a bug in the store" {
		t.Errorf("the writer recovered %v, want its panic", panicked)
	}
	for range 2 {
		if err := <-errs; err == nil || !strings.Contains(err.Error(), "panicked") {
			t.Errorf("an answer waiting for the next write: %v, want the writer's panic", err)
		}
	}
	if err := a.put(ctx, IdemRecord{Key: "k3"}); err != nil || f.calls.Load() != 2 {
		t.Errorf("the next answer: %v after %d writes, want it stored by a write of its own", err, f.calls.Load())
	}
}

// stuckAnswerStore never answers: a write ends when its ctx does.
type stuckAnswerStore struct{}

func (stuckAnswerStore) StoreKeys(ctx context.Context, _, _ []IdemRecord) ([]Begun, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A write runs apart from its requests' cancellation, but not for good: a
// store that stops answering fails the answer once answers.timeout has
// passed, and the next answer is written afresh.
func TestAStuckWriteGivesUp(t *testing.T) {
	a := &answers{store: stuckAnswerStore{}, timeout: 200 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- a.put(context.Background(), IdemRecord{Key: "k0"}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("an answer the store never stored: nil error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the answer still waits for a store that never answers")
	}
	a.store = &steppedAnswerStore{started: make(chan []string, 1), release: make(chan struct{}, 1)}
	a.store.(*steppedAnswerStore).release <- struct{}{}
	if err := a.put(context.Background(), IdemRecord{Key: "k1"}); err != nil {
		t.Fatalf("the next answer: %v", err)
	}
}
