package timers_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/pkg/timers"
)

// recorder collects fired timers.
type recorder struct {
	mu    sync.Mutex
	fired []timers.Fired
}

func (r *recorder) handle(_ context.Context, f timers.Fired) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fired = append(r.fired, f)
	return nil
}

func (r *recorder) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, f := range r.fired {
		if f.ID == id {
			n++
		}
	}
	return n
}

func run(t *testing.T, tm *timers.Timers, h timers.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tm.Run(ctx, "test", []string{"deadline"}, h, zap.NewNop())
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func open(t *testing.T) *timers.Timers {
	t.Helper()
	_, js := natsxtest.JetStream(t)
	tm, err := timers.Open(context.Background(), js, timers.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestTimerFiresOnceWhenDue(t *testing.T) {
	tm := open(t)
	var r recorder
	run(t, tm, r.handle)
	id := uuid.NewString()
	due := time.Now().Add(time.Second)
	if err := tm.Set(context.Background(), "deadline", id, due); err != nil {
		t.Fatal(err)
	}
	evatest.Eventually(t, "the timer to fire", func() bool { return r.count(id) == 1 })
	if got := r.fired[0]; !got.Due.Equal(due.UTC()) || got.Kind != "deadline" || got.FiredAt.Before(due.Add(-time.Millisecond)) {
		t.Fatalf("fired %+v, want due %s, fired at or after it", got, due)
	}
	// Another second: it does not fire again.
	time.Sleep(1500 * time.Millisecond)
	if n := r.count(id); n != 1 {
		t.Fatalf("fired %d times, want once", n)
	}
}

func TestSetAgainReplacesAndCancelRemoves(t *testing.T) {
	tm := open(t)
	var r recorder
	run(t, tm, r.handle)
	ctx := context.Background()
	moved, cancelled, marker := uuid.NewString(), uuid.NewString(), uuid.NewString()
	soon := time.Now().Add(500 * time.Millisecond)
	for _, err := range []error{
		tm.Set(ctx, "deadline", moved, soon),
		tm.Set(ctx, "deadline", moved, soon.Add(time.Hour)), // replaces the first
		tm.Set(ctx, "deadline", cancelled, soon),
		tm.Cancel(ctx, "deadline", cancelled),
		tm.Set(ctx, "deadline", marker, soon.Add(time.Second)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Timers fire in due order: once the later marker fired, the others
	// would have.
	evatest.Eventually(t, "the marker timer", func() bool { return r.count(marker) == 1 })
	if n, m := r.count(moved), r.count(cancelled); n != 0 || m != 0 {
		t.Fatalf("the replaced timer fired %d times, the cancelled one %d; want 0 and 0", n, m)
	}
	info, err := tm.Stream().Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Pending: the moved timer only; and the marker's fired message.
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want 2 (one pending timer, one fired)", info.State.Msgs)
	}
}

// A timer that falls due while the server is down fires when it is back.
func TestTimerDueDuringDowntimeFiresAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := natsx.StartServer(natsx.ServerConfig{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, js := natsxtest.Connect(t, s)
	tm, err := timers.Open(context.Background(), js, timers.Config{})
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	due := time.Now().Add(time.Second)
	if err := tm.Set(context.Background(), "deadline", id, due); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	time.Sleep(time.Until(due) + 500*time.Millisecond) // the timer falls due while nothing runs

	s, err = natsx.StartServer(natsx.ServerConfig{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	_, js = natsxtest.Connect(t, s)
	tm, err = timers.Open(context.Background(), js, timers.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var r recorder
	run(t, tm, r.handle)
	evatest.Eventually(t, "the overdue timer to fire after the restart", func() bool { return r.count(id) == 1 })
}

func TestFailedTimerIsTriedAgain(t *testing.T) {
	tm := open(t)
	var (
		mu    sync.Mutex
		tries int
	)
	run(t, tm, func(context.Context, timers.Fired) error {
		mu.Lock()
		defer mu.Unlock()
		tries++
		if tries == 1 {
			return context.DeadlineExceeded // a transient failure
		}
		return nil
	})
	if err := tm.Set(context.Background(), "deadline", uuid.NewString(), time.Now()); err != nil {
		t.Fatal(err)
	}
	evatest.Eventually(t, "a second delivery", func() bool { mu.Lock(); defer mu.Unlock(); return tries == 2 })
}

func TestSetRefusesBadTokens(t *testing.T) {
	tm := open(t)
	for _, id := range []string{"", "a.b", "*", ">"} {
		if err := tm.Set(context.Background(), "deadline", id, time.Now()); err == nil {
			t.Errorf("Set with id %q: no error", id)
		}
	}
}

// A timer set on a stream of three replicas fires once, as on one
// server; set again before it fires, the later time replaces the first.
func TestTimerFiresOnceInACluster(t *testing.T) {
	servers := natsxtest.Cluster(t, 3)
	_, js := natsxtest.Connect(t, servers[0])
	// A cluster just formed may not place a stream at once (as approval
	// does, ask again for a while).
	var (
		tm  *timers.Timers
		err error
	)
	evatest.Await(t, time.Minute, "the cluster to place the timers stream", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if tm, err = timers.Open(ctx, js, timers.Config{Replicas: 3}); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	var r recorder
	run(t, tm, r.handle)
	ctx := context.Background()
	id := uuid.NewString()
	if err := tm.Set(ctx, "deadline", id, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := tm.Set(ctx, "deadline", id, time.Now().Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	evatest.Eventually(t, "the timer to fire", func() bool { return r.count(id) == 1 })
	if _, err := tm.Stream().GetLastMsgForSubject(ctx, "eva.timer.set.deadline."+id); err == nil {
		t.Fatal("the timer is still pending once fired")
	}
}

// A timer consumer whose pull request is lost (the server holding it went
// away, or a cluster still forming dropped it) pulls again within a few
// seconds, not after nats.go's default of two missed 15-second
// heartbeats. Here JetStream's API is reached through a relay that loses
// the first pull.
func TestTimersPullAgainSoonAfterALostPull(t *testing.T) {
	nc, _ := natsxtest.JetStream(t)
	js, pulls := natsxtest.LossyAPI(t, nc, "CONSUMER.MSG.NEXT.", 1)
	tm, err := timers.Open(context.Background(), js, timers.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var r recorder
	run(t, tm, r.handle)
	id := uuid.NewString()
	if err := tm.Set(context.Background(), "deadline", id, time.Now()); err != nil {
		t.Fatal(err)
	}
	evatest.Await(t, 12*time.Second, "the timer after a lost pull", func() (bool, string) { return r.count(id) == 1, "" })
	if n := pulls.Load(); n < 2 {
		t.Fatalf("%d pull requests, want the lost one and another", n)
	}
}
