package intake

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"

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

	mu      sync.Mutex
	free    []pooledKey
	low     chan struct{}
	filling singleflight.Group // one batch at a time, for the refiller and the filings that found the pool empty
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
		// Empty (at start, or the refiller fell behind): wait for a batch,
		// one for all the filings that found it empty and the refiller.
		select {
		case r := <-p.shared(ctx):
			if r.Err != nil {
				return pooledKey{}, r.Err
			}
		case <-ctx.Done():
			return pooledKey{}, ctx.Err()
		}
	}
}

// shared makes a batch, or joins the one under way, for whoever waits on
// it. A batch each made the filings that found the pool empty wait on as
// many transactions at once, and under load none finished before its
// filing gave up, so none ever did. A caller that gives up does not take
// the batch down with it.
func (p *keyPool) shared(ctx context.Context) <-chan singleflight.Result {
	return p.filling.DoChan("fill", func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fillTimeout)
		defer cancel()
		return nil, p.fill(ctx)
	})
}

// fillTimeout bounds a batch made for those who wait on it.
const fillTimeout = 30 * time.Second

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
			select {
			case r := <-p.shared(ctx):
				if r.Err != nil && ctx.Err() == nil {
					onError(r.Err)
				}
			case <-ctx.Done():
				return
			}
		}
	}
}
