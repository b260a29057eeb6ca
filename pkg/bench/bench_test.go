package bench_test

import (
	"context"
	"io"
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
// peer: a shell echo), and refuses a command without one.
func TestRunPeerReadsTheFakePeersReport(t *testing.T) {
	ctx := context.Background()
	p, err := bench.RunPeer(ctx, `echo 'starting'; echo '{"system":"fake","workflows_per_sec": 12.5, "p50_ms": 3.25, "p99_ms": 9}'`, io.Discard)
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
	sum := bench.Result{CompletedPerSec: 25, FilingsPerSec: 50, RawAppendsPerSec: 100}.Summary("postgres", &p)
	if sum.LifecyclesOverPeer != 2 || sum.FilingsOverRaw != 0.5 || sum.Store != "postgres" {
		t.Fatalf("summary %+v", sum)
	}
}
