package bench_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/bench"
)

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

// RunPeer reads the last JSON report a peer command prints (here a fake
// peer: a shell echo), and refuses a command without one. Without the
// number of workflows in the report it measures no CPU a workflow.
func TestRunPeerReadsTheFakePeersReport(t *testing.T) {
	ctx := context.Background()
	p, err := bench.RunPeer(ctx, `echo 'starting'; echo '{"system":"fake","workflows_per_sec": 12.5, "p50_ms": 3.25, "p99_ms": 9, "machine_cpu_ms_per_workflow": 7}'`, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if p.WorkflowsPerSec != 12.5 || p.P50Ms != 3.25 || p.P99Ms != 9 || !strings.Contains(string(p.Output), `"fake"`) {
		t.Fatalf("peer %+v", p)
	}
	for _, bad := range []string{`echo nothing`, `exit 3`, `echo '{"p50_ms": 1}'`} {
		if _, err := bench.RunPeer(ctx, bad, io.Discard); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if p.Requests != 0 || p.MachineCPUMsPerWorkflow != 0 {
		t.Fatalf("a report without requests: %d requests, %.2f ms a workflow, want neither", p.Requests, p.MachineCPUMsPerWorkflow)
	}
	sum := bench.Result{CompletedPerSec: 25, FilingsPerSec: 50, RawAppendsPerSec: 100}.Summary("postgres", &p)
	if sum.LifecyclesOverPeer != 2 || sum.FilingsOverRaw != 0.5 || sum.Store != "postgres" {
		t.Fatalf("summary %+v", sum)
	}
	if sum.LogBound != 0 || sum.LogBoundOverPeer != 0 || sum.LogMachineCPUMs != 0 {
		t.Fatalf("summary %+v: a log's bound without the events a lifecycle", sum)
	}
}

// The log's bound is the raw append rate over the events a lifecycle
// appends, beside the peer; its CPU is the raw append's times as many.
func TestSummaryBoundsLifecyclesByTheLogsRawRate(t *testing.T) {
	r := bench.Result{CompletedPerSec: 200, RawAppendsPerSec: 6000, EventsPerLifecycle: 6, RawMachineCPUAppend: 150 * time.Microsecond}
	sum := r.Summary("embedded", &bench.Peer{WorkflowsPerSec: 400})
	if sum.LogBound != 1000 || sum.LogBoundOverPeer != 2.5 || sum.LifecyclesOverPeer != 0.5 {
		t.Errorf("bound %.1f lifecycles/s, %.2f× the peer (EVA %.2f×); want 1000, 2.5 and 0.5", sum.LogBound, sum.LogBoundOverPeer, sum.LifecyclesOverPeer)
	}
	if sum.LogMachineCPUMs != 0.9 || sum.MachineCPUMsPerRawAppend != 0.15 {
		t.Errorf("log CPU %.3f ms a lifecycle at %.3f ms an append; want 0.9 at 0.15", sum.LogMachineCPUMs, sum.MachineCPUMsPerRawAppend)
	}
}

// RunPeer measures the machine's CPU over the peer's command, per
// workflow its report counts: a fake peer that spins the shell for a
// while reports four workflows; the figure is its own, never the
// report's.
func TestRunPeerMeasuresTheMachinesCPUAWorkflowWithAFakePeer(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc/stat: the machine's CPU is not measured here")
	}
	spin := `i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; `
	p, err := bench.RunPeer(context.Background(),
		spin+`echo '{"workflows_per_sec": 4, "requests": 4, "machine_cpu_ms_per_workflow": -1}'`, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if p.Requests != 4 || p.MachineCPUMsPerWorkflow <= 0 {
		t.Fatalf("peer %+v: want 4 requests and the machine's CPU a workflow measured", p)
	}
}
