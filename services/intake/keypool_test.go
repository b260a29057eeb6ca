package intake

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/seal"
)

// slowCountingStore is a fake Store for the key pool alone: AddKeys takes
// a while, as over a slow network, and counts its calls; the pool calls
// nothing else.
type slowCountingStore struct {
	Store
	calls atomic.Int32
}

func (s *slowCountingStore) AddKeys(ctx context.Context, keys []WrappedKey) error {
	s.calls.Add(1)
	select {
	case <-time.After(50 * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Filings that find the pool empty at once wait on one batch, not a batch
// each: under load, a batch each kept every one of them from finishing
// before its filing gave up. A filing that gives up does not take the
// batch down for the others.
func TestEmptyPoolMakesOneBatchForAllWaiters(t *testing.T) {
	ring, err := seal.NewKeyring(seal.NewMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	store := &slowCountingStore{}
	pool := newKeyPool(store, ring, 64)
	quitter, quit := context.WithCancel(t.Context())
	quit() // a filing that has already given up
	if _, err := pool.take(quitter); err == nil {
		t.Fatal("a filing whose context ended got a key")
	}
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Go(func() {
			k, err := pool.take(t.Context())
			if err != nil {
				t.Errorf("take %d: %v", i, err)
			}
			ids[i] = k.id
		})
	}
	wg.Wait()
	if n := store.calls.Load(); n != 1 {
		t.Fatalf("%d batches made for 17 filings on an empty pool of batch 64, want 1", n)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			t.Fatalf("keys handed out %v: each filing must get a key of its own", ids)
		}
		seen[id] = true
	}
}
