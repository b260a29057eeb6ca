package evatest

import (
	"context"
	"runtime/pprof"
	"slices"
	"testing"
)

func TestGoroutineLabelsFindsALabeledGoroutine(t *testing.T) {
	stop, started := make(chan struct{}), make(chan struct{})
	go pprof.Do(context.Background(), pprof.Labels("evatest", "probe"), func(context.Context) {
		close(started)
		<-stop
	})
	<-started
	defer close(stop)
	if got := GoroutineLabels(t, "evatest"); !slices.Contains(got, "probe") {
		t.Fatalf("labels %q, want probe among them", got)
	}
	if got := GoroutineLabels(t, "no-such-key"); len(got) != 0 {
		t.Fatalf("labels %q of a key nobody set", got)
	}
}
