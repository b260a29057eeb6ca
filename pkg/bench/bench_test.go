package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/bench"
	"github.com/eva-org/eva/pkg/evatest"
)

// The bench drives a real EVA through both phases without an error and
// sees every case disbursed. (It asserts what happened, not how fast.)
func TestRunDrivesTheWholeLifecycle(t *testing.T) {
	s := evatest.Start(t, evatest.Options{Quiet: true})
	res, err := bench.Run(context.Background(), bench.Options{URL: s.URL, Requests: 20, Clients: 4, Password: "demo",
		RawDir: t.TempDir(), RawMessages: 200})
	if err != nil {
		t.Fatal(err)
	}
	if res.FilingErrors != 0 || res.LifecycleErrors != 0 || res.LifecycleMissing != 0 {
		t.Fatalf("errors: filing %d, lifecycle %d, not disbursed %d", res.FilingErrors, res.LifecycleErrors, res.LifecycleMissing)
	}
	if res.FilingsPerSec <= 0 || res.CompletedPerSec <= 0 || res.RawAppendsPerSec <= 0 || res.ToDisbursedP99 <= 0 {
		t.Fatalf("nothing measured: %+v", res)
	}
	if res.FilingP50 > res.FilingP99 || res.ToDisbursedP50 > res.ToDisbursedP99 {
		t.Fatalf("percentiles out of order: %+v", res)
	}
}

func TestPercentile(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(100-i) * time.Millisecond // reversed: the function sorts
	}
	for p, want := range map[int]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := bench.Percentile(d, p); got != want {
			t.Errorf("p%d = %v, want %v", p, got, want)
		}
	}
	if got := bench.Percentile(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
}
