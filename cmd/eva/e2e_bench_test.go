package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/bench"
)

// `eva bench` starts its own instance (its gateway on a socket the bench
// listened on itself), files and carries 30 cases through their whole
// lifecycle with 3 clients, and prints its JSON summary: every case
// filed and disbursed, none lost.
func TestE2EBenchCarriesEveryCaseToDisbursedAndReportsJSON(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	p := startProc(t, "eva bench", childEnv("TMPDIR="+tmp), "bench", "-n", "30", "-c", "3", "--json", "--log-level", "error")
	if code := p.wait(3 * time.Minute); code != 0 {
		t.Fatalf("eva bench exited with %d", code)
	}
	out := p.out.String()
	start, end := strings.Index(out, "{\n"), strings.LastIndex(out, "}")
	if start < 0 || end < start {
		t.Fatalf("no JSON summary in the output:\n%s", out)
	}
	var sum struct {
		Requests        int     `json:"requests"`
		Clients         int     `json:"clients"`
		Store           string  `json:"store"`
		FilingsPerSec   float64 `json:"filings_per_sec"`
		FilingErrors    int     `json:"filing_errors"`
		LifecyclesPerS  float64 `json:"lifecycles_per_sec"`
		LifecycleErrors int     `json:"lifecycle_errors"`
		NotDisbursed    int     `json:"not_disbursed"`
		RawAppendsPerS  float64 `json:"raw_appends_per_sec"`
		IdleRSSMiB      int64   `json:"idle_rss_mib"`
		DiskWritesPerS  float64 `json:"disk_writes_per_sec"`
		EventsPerLife   float64 `json:"events_per_lifecycle"`
		LogBound        float64 `json:"log_bound_lifecycles_per_sec"`
	}
	if err := json.Unmarshal([]byte(out[start:end+1]), &sum); err != nil {
		t.Fatalf("the summary is not JSON: %v\n%s", err, out[start:end+1])
	}
	if sum.Requests != 30 || sum.Clients != 3 || sum.Store != "embedded" {
		t.Errorf("summary of %d requests, %d clients, store %q; want 30, 3, embedded", sum.Requests, sum.Clients, sum.Store)
	}
	if sum.FilingErrors != 0 || sum.LifecycleErrors != 0 || sum.NotDisbursed != 0 {
		t.Errorf("filing errors %d, lifecycle errors %d, not disbursed %d; want none", sum.FilingErrors, sum.LifecycleErrors, sum.NotDisbursed)
	}
	if sum.FilingsPerSec <= 0 || sum.LifecyclesPerS <= 0 || sum.RawAppendsPerS <= 0 || sum.IdleRSSMiB <= 0 {
		t.Errorf("rates and memory must be measured: %+v", sum)
	}
	// Every case settled: its history holds the lifecycle's six events
	// and no other, and the log's bound is the raw rate over them.
	if sum.EventsPerLife != 6 || sum.LogBound <= 0 || sum.LogBound > sum.RawAppendsPerS/6*1.0001 {
		t.Errorf("events a lifecycle %.2f and the log's bound %.1f (raw %.1f appends/s): want 6 and raw/6",
			sum.EventsPerLife, sum.LogBound, sum.RawAppendsPerS)
	}
	// The data directory is under TMPDIR: on Linux, on a block device,
	// the device's writes over the lifecycle phase are in the summary.
	if runtime.GOOS == "linux" && bench.OnBlockDevice(tmp) && sum.DiskWritesPerS <= 0 {
		t.Errorf("the data directory is on a block device, but the summary has no disk writes: %+v", sum)
	}
}
