package wire_test

import (
	"context"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
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

// TestToolLogReadsTheStreamFiles checks that the offline tools' log finds
// the embedded server's files of the event stream, and reads there what
// the server serves.
func TestToolLogReadsTheStreamFiles(t *testing.T) {
	ctx := context.Background()
	p, err := wire.Open(ctx, wire.Config{DataDir: t.TempDir(), Replicas: 1, Policy: assist.DefaultPolicy()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	last, err := eventlogtest.Synthesize(ctx, p.Log.JetStream(), 20, 5)
	if err != nil {
		t.Fatal(err)
	}
	tl := p.ToolLog()
	if !tl.ReadsFiles() {
		t.Fatal("the tools' log does not find the stream's files")
	}
	var fromFiles, fromServer []eventlog.Msg
	for l, into := range map[*eventlog.Log]*[]eventlog.Msg{tl: &fromFiles, p.Log: &fromServer} {
		if _, err := l.Scan(ctx, 1, last, func(m eventlog.Msg) error { *into = append(*into, m); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if len(fromFiles) != int(last) || !reflect.DeepEqual(fromFiles, fromServer) {
		t.Fatalf("%d events from the files, %d through the server, or they differ", len(fromFiles), len(fromServer))
	}
}
