package evatest

import (
	"bytes"
	"encoding/json"
	"runtime/pprof"
	"strings"
	"testing"
)

// GoroutineLabels returns the values of the profiler label key that the
// process's live goroutines carry (runtime/pprof.Do), each once: what a
// CPU profile's -tagfocus key=value would select.
func GoroutineLabels(tb testing.TB, key string) []string {
	tb.Helper()
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		tb.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	for line := range strings.Lines(buf.String()) {
		labels, ok := strings.CutPrefix(strings.TrimSpace(line), "# labels: ")
		if !ok {
			continue
		}
		var m map[string]string
		if err := json.Unmarshal([]byte(labels), &m); err != nil {
			tb.Fatalf("goroutine labels %q: %v", labels, err)
		}
		if v, ok := m[key]; ok && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
