package intake

import (
	"context"
	"sync"

	"github.com/google/uuid"

	"github.com/eva-org/eva/pkg/seal"
)

// keyPool hands out data keys made ahead of time: a filing seals personal
// data under a key that is already stored, so it waits for no database
// write. Keys are made in batches, one transaction each, when the pool runs
// low. A key taken by a filing that then fails is never used again; it
// opens nothing.
type keyPool struct {
	store Store
	ring  *seal.Keyring
	batch int

	mu   sync.Mutex
	free []pooledKey
	low  chan struct{}
}

type pooledKey struct {
	id  string
	key []byte
}

func newKeyPool(store Store, ring *seal.Keyring, batch int) *keyPool {
	return &keyPool{store: store, ring: ring, batch: batch, low: make(chan struct{}, 1)}
}

// take returns a stored, unused data key.
func (p *keyPool) take(ctx context.Context) (pooledKey, error) {
	for {
		p.mu.Lock()
		if n := len(p.free); n > 0 {
			k := p.free[n-1]
			p.free = p.free[:n-1]
			low := n-1 < p.batch/2
			p.mu.Unlock()
			if low {
				select {
				case p.low <- struct{}{}:
				default:
				}
			}
			return k, nil
		}
		p.mu.Unlock()
		// Empty (at start, or the refiller fell behind): make a batch now.
		if err := p.fill(ctx); err != nil {
			return pooledKey{}, err
		}
	}
}

// fill makes and stores a batch of keys, then offers them.
func (p *keyPool) fill(ctx context.Context) error {
	keys := make([]pooledKey, p.batch)
	wrapped := make([]WrappedKey, p.batch)
	for i := range keys {
		id := uuid.Must(uuid.NewV7()).String()
		key, w := p.ring.NewDataKey(id)
		keys[i], wrapped[i] = pooledKey{id: id, key: key}, WrappedKey{ID: id, Wrapped: w}
	}
	if err := p.store.AddKeys(ctx, wrapped); err != nil {
		return err
	}
	p.mu.Lock()
	p.free = append(p.free, keys...)
	p.mu.Unlock()
	return nil
}

// refill keeps the pool stocked until ctx ends.
func (p *keyPool) refill(ctx context.Context, onError func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.low:
			if err := p.fill(ctx); err != nil && ctx.Err() == nil {
				onError(err)
			}
		}
	}
}
