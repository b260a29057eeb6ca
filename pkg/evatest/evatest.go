// Package evatest holds the helpers EVA's tests share. It imports nothing
// of EVA, so that any package's tests may use it.
package evatest

import (
	"os"
	"testing"
	"time"
)

// Patience is how long Eventually waits: long enough for a loaded CI
// machine, so that a wait never fails for slowness alone.
const Patience = 60 * time.Second

// Eventually polls cond until it holds, failing the test after Patience.
// It waits for an asynchronous effect; it does not time it.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	Await(tb, Patience, what, func() (bool, string) { return cond(), "" })
}

// Await polls cond until it holds or d passes; then it fails the test with
// what the last call reported seeing.
func Await(tb testing.TB, d time.Duration, what string, cond func() (ok bool, saw string)) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if saw != "" {
				tb.Fatalf("timed out after %s waiting for %s; last saw: %s", d, what, saw)
			}
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(wait)
	}
}

// Measurement skips a measurement unless EVA_MEASURE is set: it runs
// apart, with `EVA_MEASURE=1 go test -v -run <test> <pkg>`, and reports
// with t.Log what docs/benchmarks.md records.
func Measurement(tb testing.TB, pkg string) {
	tb.Helper()
	if os.Getenv("EVA_MEASURE") == "" {
		tb.Skipf("a measurement: EVA_MEASURE=1 go test -v -run %s %s", tb.Name(), pkg)
	}
}
