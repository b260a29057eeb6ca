package audit

import (
	"testing"
	"time"
)

// ReadBatch is readBatch, for the tests of package audit_test.
var ReadBatch = readBatch

// SetLogReadTimeout bounds each batched read of a stream by d for the
// test's duration.
func SetLogReadTimeout(t testing.TB, d time.Duration) {
	was := logReadTimeout
	logReadTimeout = d
	t.Cleanup(func() { logReadTimeout = was })
}
