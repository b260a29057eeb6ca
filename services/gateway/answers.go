package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/rpc"
)

// answers writes the records of Idempotency-Keys: a new key's pending
// record, before its command runs (begin), and a command's answer, once
// answered (put). The records of concurrent requests are written together
// (group commit): each caller waits until its own is stored, the first to
// find no write under way writes what is waiting, and the records that
// arrive meanwhile wait for the next write, all of them in one
// transaction. When a write ends, the first of those waiting writes the
// next batch (as a fund's holds do, disbursement's holdGroups): no caller
// writes for others once its own is stored, so a busy gateway never keeps
// one request (and its client's connection) writing batch after batch.
// An idle gateway writes each record at once, as before; a busy one
// writes several in the round trip and commit that each used to take.
// Nothing waits on a timer. A handler returns only once its answer is
// stored, so a client's next request on the same connection finds it, and
// runs its command only once its key's pending record is stored.
type answers struct {
	store interface {
		StoreKeys(ctx context.Context, begins, answers []IdemRecord) ([]Begun, error)
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

// answer is one record to write: an answer, or a new key's pending
// record (begin).
type answer struct {
	rec   IdemRecord
	begin bool
	done  chan outcome
}

// outcome is what a waiting record is told: stored (or failed) with err,
// and for a begin the key's record as it is (begun); or, not stored yet,
// that its caller is to write the next batch.
type outcome struct {
	err    error
	stored bool
	begun  Begun
}

// put stores rec (Store.StoreKeys) with the records of the requests that
// arrive meanwhile, and returns when it is stored or failed.
func (a *answers) put(ctx context.Context, rec IdemRecord) error {
	return a.enqueue(ctx, answer{rec: rec, done: make(chan outcome, 1)}).err
}

// begin stores rec, a new key's pending record, unless its key has one
// (Store.StoreKeys's begins), with the records of the requests that arrive
// meanwhile, and returns the key's record as stored once it is.
func (a *answers) begin(ctx context.Context, rec IdemRecord) (Begun, error) {
	o := a.enqueue(ctx, answer{rec: rec, begin: true, done: make(chan outcome, 1)})
	return o.begun, o.err
}

// enqueue waits for mine to be written, writing it (and what waits with
// it) when no write is under way.
func (a *answers) enqueue(ctx context.Context, mine answer) outcome {
	a.mu.Lock()
	a.waiting = append(a.waiting, mine)
	if a.writing {
		a.mu.Unlock()
		if o := <-mine.done; o.stored {
			return o
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
	return <-mine.done
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
// batch of several fails for another reason than an outage, each record
// is written alone, so that one record the store refuses fails no other.
func (a *answers) write(ctx context.Context, batch []answer) {
	var begins, recs []IdemRecord
	for _, b := range batch {
		if b.begin {
			begins = append(begins, b.rec)
		} else {
			recs = append(recs, b.rec)
		}
	}
	begun, err := a.store.StoreKeys(ctx, begins, recs)
	if err == nil && len(begun) != len(begins) {
		err = fmt.Errorf("store idempotency keys: %d records for %d new keys", len(begun), len(begins))
	}
	if err != nil && len(batch) > 1 && !assist.IsCode(err, assist.CodeUnavailable) {
		for _, b := range batch {
			b.done <- a.writeAlone(ctx, b)
		}
		return
	}
	i := 0
	for _, b := range batch {
		o := outcome{err: err, stored: true}
		if b.begin && err == nil {
			o.begun = begun[i]
			i++
		}
		b.done <- o
	}
}

// writeAlone writes one record in a write of its own.
func (a *answers) writeAlone(ctx context.Context, b answer) outcome {
	if !b.begin {
		_, err := a.store.StoreKeys(ctx, nil, []IdemRecord{b.rec})
		return outcome{err: err, stored: true}
	}
	begun, err := a.store.StoreKeys(ctx, []IdemRecord{b.rec}, nil)
	if err == nil && len(begun) != 1 {
		err = fmt.Errorf("store idempotency key: %d records for one new key", len(begun))
	}
	if err != nil {
		return outcome{err: err, stored: true}
	}
	return outcome{begun: begun[0], stored: true}
}
