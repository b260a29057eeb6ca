package sqldb

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A caller that finds every place taken waits for one while places are
// given back, and takes it: it never goes beyond, however long it waits
// (the gate's wait is an hour here).
func TestGateCallerWaitsForAPlaceGivenBack(t *testing.T) {
	g := newGate(1, time.Hour)
	first := g.enter(context.Background())
	got := make(chan bool)
	go func() { got <- g.enter(context.Background()) }()
	g.exit(first)
	if took := <-got; !took {
		t.Fatal("the waiting caller went on without the place given back")
	}
	if n := g.beyond.Load(); n != 0 {
		t.Fatalf("%d callers went beyond", n)
	}
}

// When no place is given back for the gate's wait (a slow database, or
// a caller that holds a place and asks for another), the caller goes on
// without one, and is counted.
func TestGateCallerGoesBeyondWhenNoPlaceIsGivenBack(t *testing.T) {
	g := newGate(1, 10*time.Millisecond)
	held := g.enter(context.Background())
	defer g.exit(held)
	if took := g.enter(context.Background()); took {
		t.Fatal("a second caller took the only place, which was held")
	}
	if n := g.beyond.Load(); n != 1 {
		t.Fatalf("beyond = %d, want 1", n)
	}
}

// A caller whose context ends stops waiting, and is not counted beyond:
// it gets no connection of the pool either.
func TestGateCallerStopsWaitingWhenItsContextEnds(t *testing.T) {
	g := newGate(1, time.Hour)
	held := g.enter(context.Background())
	defer g.exit(held)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if took := g.enter(ctx); took {
		t.Fatal("a caller whose context ended took the held place")
	}
	if n := g.beyond.Load(); n != 0 {
		t.Fatalf("a caller whose context ended is counted beyond (%d): the pool refuses it", n)
	}
}

// Under contention, the callers that hold places never number more than
// the places, and every place is given back.
func TestGateNeverSeatsMoreThanItsPlaces(t *testing.T) {
	const places = 3
	g := newGate(places, time.Hour)
	var in, most atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				took := g.enter(context.Background())
				if took {
					n := in.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					in.Add(-1)
				}
				g.exit(took)
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > places || m == 0 {
		t.Fatalf("at most %d callers held places at once, want 1..%d", m, places)
	}
	if n := g.beyond.Load(); n != 0 {
		t.Fatalf("%d callers went beyond with places given back all along", n)
	}
	if n := len(g.places); n != 0 {
		t.Fatalf("%d places still taken", n)
	}
}
