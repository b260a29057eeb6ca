package assist_test

import (
	"testing"

	"github.com/eva-org/eva/pkg/assist"
)

// BenchmarkFoldLifecycle measures rebuilding a case from the six events
// of a complete lifecycle, which every command does.
func BenchmarkFoldLifecycle(b *testing.B) {
	h := caseIn(b, "disbursed")
	recs := h.events
	b.ReportAllocs()
	for b.Loop() {
		if c := assist.Fold(recs); c.State != assist.StateDisbursed {
			b.Fatal(c.State)
		}
	}
}
