package main

import (
	"context"
	"runtime"
	"testing"

	"github.com/eva-org/eva/cmd/eva/internal/wire/wiretest"
	"github.com/eva-org/eva/pkg/bench"
)

// The bench drives a real EVA through both phases without an error and
// sees every case disbursed. (It asserts what happened, not how fast.)
func TestRunDrivesTheWholeLifecycle(t *testing.T) {
	s := wiretest.Start(t, wiretest.Options{Quiet: true})
	res, err := bench.Run(context.Background(), bench.Options{URL: s.URL, Requests: 20, Clients: 4, Password: "demo",
		RawDir: t.TempDir(), RawMessages: 200})
	if err != nil {
		t.Fatal(err)
	}
	if res.FilingErrors != 0 || res.LifecycleErrors != 0 || res.LifecycleMissing != 0 {
		t.Fatalf("errors: filing %d, lifecycle %d, not disbursed %d", res.FilingErrors, res.LifecycleErrors, res.LifecycleMissing)
	}
	if res.WarmupFilings != 8 || res.WarmupP99 <= 0 {
		t.Errorf("warm-up: %d filings, p99 %v; want 2 per client, timed", res.WarmupFilings, res.WarmupP99)
	}
	if !res.Followed {
		t.Error("the bench polled the cases: it did not follow GET /v1/changes")
	}
	if res.FilingsPerSec <= 0 || res.CompletedPerSec <= 0 || res.RawAppendsPerSec <= 0 || res.ToDisbursedP99 <= 0 {
		t.Fatalf("nothing measured: %+v", res)
	}
	if res.FilingP50 > res.FilingP99 || res.ToDisbursedP50 > res.ToDisbursedP99 {
		t.Fatalf("percentiles out of order: %+v", res)
	}
	if runtime.GOOS == "linux" && (res.CPUPerLifecycle <= 0 || res.MachineCPUPerLifecycle <= 0) {
		t.Errorf("CPU per lifecycle: this process %v, the machine %v; want both measured", res.CPUPerLifecycle, res.MachineCPUPerLifecycle)
	}
	// Each step of the lifecycle is measured from the cases' histories.
	if len(res.Steps) != 5 || res.Steps[0].From != "RequestSubmitted" || res.Steps[4].To != "PayoutSettled" {
		t.Fatalf("steps %+v", res.Steps)
	}
	for _, st := range res.Steps {
		if st.Cases != 20 || st.P50Ms > st.P99Ms {
			t.Errorf("step %+v: want 20 cases, p50 <= p99", st)
		}
	}
}
