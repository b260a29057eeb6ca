package timers_test

import (
	"context"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/pkg/timers"
)

// TestMeasurePendingTimers measures what 100,000 pending timers cost: the
// stream's bytes on disk, the embedded server's heap, and how long a
// restart takes to load them. It runs with EVA_MEASURE=1 and reports with
// t.Log (go test -v); docs/benchmarks.md has the numbers.
func TestMeasurePendingTimers(t *testing.T) {
	evatest.Measurement(t, "./pkg/timers")
	const n = 100_000
	dir := t.TempDir()
	s, err := natsx.StartServer(natsx.ServerConfig{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, js := natsxtest.Connect(t, s)
	ctx := context.Background()
	tm, err := timers.Open(ctx, js, timers.Config{})
	if err != nil {
		t.Fatal(err)
	}
	heap0 := heapInUse()
	due := time.Now().Add(24 * time.Hour)
	start := time.Now()
	// Set them 64 at a time, concurrently, as many cases filed at once.
	sem := make(chan struct{}, 64)
	errs := make(chan error, n)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- tm.Set(ctx, "deadline", uuid.NewString(), due.Add(time.Duration(i)*time.Millisecond))
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	info, err := tm.Stream().Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	heap1 := heapInUse()
	t.Logf("%d pending timers: set in %s (%.0f/s); stream %d msgs, %.1f MB (%.0f B/timer); server heap +%.1f MB (%.0f B/timer)",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), info.State.Msgs, mb(info.State.Bytes),
		float64(info.State.Bytes)/n, mb(heap1-heap0), float64(heap1-heap0)/n)
	t.Logf("store dir on disk: %.1f MB", mb(dirSize(t, dir)))

	s.Shutdown()
	s.WaitForShutdown()
	start = time.Now()
	s, err = natsx.StartServer(natsx.ServerConfig{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	_, js = natsxtest.Connect(t, s)
	tm, err = timers.Open(ctx, js, timers.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if info, err = tm.Stream().Info(ctx); err != nil || info.State.Msgs != n {
		t.Fatalf("after restart: %v, %d msgs", err, info.State.Msgs)
	}
	t.Logf("restart with %d pending timers: ready in %s", n, time.Since(start).Round(time.Millisecond))
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

func dirSize(t *testing.T, dir string) uint64 {
	t.Helper()
	var total uint64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += uint64(fi.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// TestMeasureFireDelay measures the server's part of a timer's delay: for
// 1,000 timers falling due over 2 s (a burst) and over 20 s, how long
// after its due time the server fired each (the fired message's time) and
// the handler got it. It runs with EVA_MEASURE=1.
func TestMeasureFireDelay(t *testing.T) {
	evatest.Measurement(t, "./pkg/timers")
	for _, spread := range []time.Duration{2 * time.Second, 20 * time.Second} {
		t.Run(spread.String(), func(t *testing.T) { measureFireDelay(t, spread) })
	}
}

func measureFireDelay(t *testing.T, spread time.Duration) {
	const n = 1000
	tm := open(t)
	var (
		mu             sync.Mutex
		fired, handled []time.Duration
		all            = make(chan struct{})
	)
	run(t, tm, func(_ context.Context, f timers.Fired) error {
		mu.Lock()
		defer mu.Unlock()
		fired = append(fired, f.FiredAt.Sub(f.Due))
		handled = append(handled, time.Since(f.Due))
		if len(fired) == n {
			close(all)
		}
		return nil
	})
	start := time.Now().Add(3 * time.Second)
	for i := range n {
		if err := tm.Set(context.Background(), "deadline", uuid.NewString(), start.Add(time.Duration(i)*spread/n)); err != nil {
			t.Fatal(err)
		}
	}
	if time.Now().After(start) {
		t.Fatal("setting the timers took longer than their lead")
	}
	select {
	case <-all:
	case <-time.After(time.Minute + spread):
		t.Fatal("not every timer fired in time")
	}
	q := func(ds []time.Duration, p int) time.Duration { return ds[len(ds)*p/100].Round(time.Millisecond) }
	slices.Sort(fired)
	slices.Sort(handled)
	t.Logf("%d timers due over %s: fired after due median %s p99 %s; handled after due median %s p99 %s", n, spread,
		q(fired, 50), q(fired, 99), q(handled, 50), q(handled, 99))
}
