package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeCases is a fake of GET /v1/requests/{id} whose every case shows
// approved for its first two reads and disbursed after, updated at
// created + its index in seconds.
func fakeCases(t *testing.T, created time.Time, ids []string) *client {
	t.Helper()
	return fakeCasesAfter(t, created, ids, 2, func() {})
}

// fakeCasesAfter is fakeCases with the reads that show approved, and
// onRead called at each read.
func fakeCasesAfter(t *testing.T, created time.Time, ids []string, approvedReads int, onRead func()) *client {
	t.Helper()
	var mu sync.Mutex
	reads := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/v1/requests/")
		i := slices.Index(ids, id)
		if i < 0 {
			http.NotFound(w, r)
			return
		}
		onRead()
		mu.Lock()
		reads[id]++
		status := "approved"
		if reads[id] > approvedReads {
			status = "disbursed"
		}
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(caseJSON{ID: id, Status: status, CreatedAt: created,
			UpdatedAt: created.Add(time.Duration(i+1) * time.Second)})
	}))
	t.Cleanup(srv.Close)
	return newClient(srv.URL, 4)
}

// filedAt maps each id to its filing's time.
func filedAt(created time.Time, ids []string) map[string]time.Time {
	m := make(map[string]time.Time, len(ids))
	for _, id := range ids {
		m[id] = created
	}
	return m
}

// awaitDisbursed sees every case disbursed: polling without a change
// stream; with one, by the settlements' times alone, reading no case; and
// reading a case whose settlement it cannot place (no time given).
func TestAwaitDisbursedPollsOrFollows(t *testing.T) {
	created := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ids := []string{"a", "b", "c", "d", "e"}
	check := func(name string, done []time.Duration, last time.Time, missing int) {
		t.Helper()
		slices.Sort(done)
		if missing != 0 || len(done) != len(ids) || done[0] != time.Second || done[4] != 5*time.Second ||
			!last.Equal(created.Add(5*time.Second)) {
			t.Errorf("%s: done %v, last %v, missing %d; want 1..5 s, the last at +5 s, none missing", name, done, last, missing)
		}
	}
	var reads atomic.Int32
	counted := func() *client { return fakeCasesAfter(t, created, ids, 2, func() { reads.Add(1) }) }
	ctx := context.Background()
	done, last, missing := counted().awaitDisbursed(ctx, "tok", filedAt(created, ids), nil, 2, 20*time.Millisecond, 30*time.Second)
	check("polling", done, last, missing)
	if reads.Load() < int32(3*len(ids)) {
		t.Errorf("polling read the cases %d times, want each until it showed disbursed (3 reads)", reads.Load())
	}

	// Sweeps an hour apart: only the stream can settle the cases.
	reads.Store(0)
	settled := make(chan settlement, len(ids))
	for i, id := range ids {
		settled <- settlement{CaseID: id, At: created.Add(time.Duration(i+1) * time.Second)}
	}
	done, last, missing = counted().awaitDisbursed(ctx, "tok", filedAt(created, ids), settled, 2, time.Hour, 30*time.Second)
	check("following", done, last, missing)
	if n := reads.Load(); n != 0 {
		t.Errorf("following read the cases %d times, want none", n)
	}

	// Settlements without a time: each case is read until disbursed.
	reads.Store(0)
	settled = make(chan settlement, 3*len(ids))
	for range 3 {
		for _, id := range ids {
			settled <- settlement{CaseID: id}
		}
	}
	done, last, missing = counted().awaitDisbursed(ctx, "tok", filedAt(created, ids), settled, 2, time.Hour, 30*time.Second)
	check("following, reading", done, last, missing)
	if reads.Load() == 0 {
		t.Error("settlements without a time read no case")
	}
}

// The reads that end while a sweep is starting others do not wait for
// it: with 300 cases pending at a sweep, two read at a time, the reads
// that had ended each waited for the sweep's end before (a goroutine
// apiece: the peak was near 300; at 10,000 cases, 40 MB of stacks).
func TestAwaitDisbursedLeavesNoReadWaiting(t *testing.T) {
	created := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = fmt.Sprintf("case-%03d", i)
	}
	var peak atomic.Int64
	c := fakeCasesAfter(t, created, ids, 0, func() {
		n := int64(runtime.NumGoroutine())
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
	})
	base := runtime.NumGoroutine()
	done, _, missing := c.awaitDisbursed(context.Background(), "tok", filedAt(created, ids), nil, 2, time.Millisecond, 30*time.Second)
	if len(done) != len(ids) || missing != 0 {
		t.Fatalf("done %d, missing %d; want all %d", len(done), missing, len(ids))
	}
	if extra := int(peak.Load()) - base; extra > 60 {
		t.Fatalf("%d goroutines more than before at the peak of the reads; want a few (two reads and the server's)", extra)
	}
}
