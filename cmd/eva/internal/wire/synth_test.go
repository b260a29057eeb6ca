package wire_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
)

// TestSynthesizeDataDir fills the event log of the data directory
// $EVA_SYNTH_DATA_DIR with $EVA_SYNTH_EVENTS synthetic events (cases of
// five: filed, then claimed and released in turn), for measuring the
// audit tools on a large log (docs/benchmarks.md). Skipped unless set. The
// embedded store fsyncs every write, so this is slow: give it -timeout 0.
//
//	EVA_SYNTH_DATA_DIR=/tmp/eva-big EVA_SYNTH_EVENTS=200000 go test -run TestSynthesizeDataDir -timeout 0 ./cmd/eva/internal/wire
//	eva audit replay --data /tmp/eva-big
func TestSynthesizeDataDir(t *testing.T) {
	dir := os.Getenv("EVA_SYNTH_DATA_DIR")
	n, _ := strconv.Atoi(os.Getenv("EVA_SYNTH_EVENTS"))
	if dir == "" || n <= 0 {
		t.Skip("EVA_SYNTH_DATA_DIR and EVA_SYNTH_EVENTS are not set")
	}
	p, err := wire.Open(context.Background(), wire.Config{DataDir: dir, Replicas: 1, Policy: assist.DefaultPolicy()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	start := time.Now()
	last, err := eventlogtest.Synthesize(ctx, p.Log.JetStream(), n/5, 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the log of %s ends at %d, %d events added in %s", dir, last, n/5*5, time.Since(start).Round(time.Millisecond))
}
