package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/rpc"
)

// answers stores commands' answers under their Idempotency-Keys, once
// answered, the answers of concurrent requests together (group commit):
// each caller waits until its own is stored, the first to find no write
// under way writes what is waiting, and the answers that arrive
// meanwhile wait for the next write, all of them in one transaction. When
// a write ends, the first of those waiting writes the next batch (as a
// fund's holds do, disbursement's holdGroups): no caller writes for
// others once its own is stored, so a busy gateway never keeps one
// request (and its client's connection) writing answer after answer. An
// idle gateway writes each answer at once, as before; a busy one writes
// several in the round trip and commit that each used to take. Nothing
// waits on a timer. The handler still returns only once its answer is
// stored, so a client's next request on the same connection finds it.
type answers struct {
	store interface {
		StoreAnswers(ctx context.Context, recs []IdemRecord) error
	}

	// timeout bounds a write, which runs apart from its requests'
	// cancellation (they have answered); 0 is rpc.DefaultTimeout. A store
	// that stops answering fails the answers (their keys stay pending)
	// rather than holding their requests for good.
	timeout time.Duration

	mu      sync.Mutex
	waiting []answer
	writing bool
}

type answer struct {
	rec  IdemRecord
	done chan outcome
}

// outcome is what a waiting answer is told: stored (or failed) with err,
// or, not stored yet, that its caller is to write the next batch.
type outcome struct {
	err    error
	stored bool
}

// put stores rec (Store.StoreAnswers) with the answers of the requests
// that finish meanwhile, and returns when it is stored or failed.
func (a *answers) put(ctx context.Context, rec IdemRecord) error {
	mine := answer{rec: rec, done: make(chan outcome, 1)}
	a.mu.Lock()
	a.waiting = append(a.waiting, mine)
	if a.writing {
		a.mu.Unlock()
		if o := <-mine.done; o.stored {
			return o.err
		}
		a.mu.Lock() // this caller writes the next batch, its own answer in it
	}
	a.writing = true
	batch := a.waiting
	a.waiting = nil
	a.mu.Unlock()
	timeout := a.timeout
	if timeout <= 0 {
		timeout = rpc.DefaultTimeout
	}
	func() {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		defer a.unwedge(batch)
		a.write(ctx, batch)
	}()
	a.handOff()
	return (<-mine.done).err
}

// handOff wakes the first of the answers that waited for the write that
// ended, to write them, or lets the next answer find no write under way.
func (a *answers) handOff() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.waiting) > 0 {
		a.waiting[0].done <- outcome{}
		return
	}
	a.writing = false
}

// unwedge, when the write of batch panicked, fails that batch's answers
// and those waiting for the next write, lets the next answer find no
// write under way, and panics again: their callers return (their keys
// stay pending, as when a write fails), instead of every later answer of
// the gateway waiting for good on a writer gone.
func (a *answers) unwedge(batch []answer) {
	p := recover()
	if p == nil {
		return
	}
	failed := outcome{err: fmt.Errorf("store answers: the writer panicked: %v", p), stored: true}
	a.mu.Lock()
	waiting := a.waiting
	a.waiting, a.writing = nil, false
	a.mu.Unlock()
	for _, b := range append(batch, waiting...) {
		select {
		case b.done <- failed:
		default: // answered before the panic
		}
	}
	panic(p)
}

// write stores a batch and tells each of its callers how it went. When a
// batch of several fails for another reason than an outage, each answer
// is written alone, so that one answer the store refuses fails no other.
func (a *answers) write(ctx context.Context, batch []answer) {
	recs := make([]IdemRecord, len(batch))
	for i, b := range batch {
		recs[i] = b.rec
	}
	err := a.store.StoreAnswers(ctx, recs)
	if err != nil && len(batch) > 1 && !assist.IsCode(err, assist.CodeUnavailable) {
		for _, b := range batch {
			b.done <- outcome{err: a.store.StoreAnswers(ctx, []IdemRecord{b.rec}), stored: true}
		}
		return
	}
	for _, b := range batch {
		b.done <- outcome{err: err, stored: true}
	}
}
