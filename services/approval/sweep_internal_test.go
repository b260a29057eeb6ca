package approval

import (
	"testing"
	"time"
)

// A case's waits: a second after its first failure, doubling after each
// failure in a row up to sweepAtLeast; a success of one of its kinds in
// the sweep where another failed leaves the wait standing, a success in
// a later sweep forgets it, and keep forgets the cases no longer due.
func TestBackoffsWaitLongerAfterEachFailureInARow(t *testing.T) {
	var b backoffs
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	now := t0
	for i, want := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60} {
		if b.waiting("c", now) {
			t.Fatalf("failure %d: the case waits at %s, when it may be fired again", i+1, now)
		}
		n, at := b.failed("c", now)
		if n != i+1 || at != now.Add(want*time.Second) {
			t.Fatalf("failure %d: %d failures, fired again at %s; want %d, %s", i+1, n, at, i+1, now.Add(want*time.Second))
		}
		// Another of its kinds failing in the same sweep counts once.
		if n2, at2 := b.failed("c", now); n2 != n || at2 != at {
			t.Fatalf("a second kind failing in the same sweep: %d, %s; want %d, %s", n2, at2, n, at)
		}
		if !b.waiting("c", now.Add(time.Second/2)) {
			t.Fatalf("failure %d: the case does not wait half a second on", i+1)
		}
		now = at
	}
	b.succeeded("c", now.Add(-time.Second)) // another kind's success in the sweep that failed
	if first, ok := b.earliest(); !ok || first != now {
		t.Fatalf("after a success beside a failure: earliest %s, %v; want the wait %s to stand", first, ok, now)
	}
	b.succeeded("c", now)
	if _, ok := b.earliest(); ok || b.waiting("c", now) {
		t.Fatal("a case fired after its wait is still held back")
	}
	b.failed("c", now)
	b.failed("d", now.Add(time.Second))
	b.keep(map[string]bool{"d": true})
	if first, ok := b.earliest(); !ok || first != now.Add(2*time.Second) || len(b.m) != 1 {
		t.Fatalf("after keep: %d held, earliest %s; want d alone, at %s", len(b.m), first, now.Add(2*time.Second))
	}
}
