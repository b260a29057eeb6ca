package eventlog

import (
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/eva-org/eva/pkg/assist"
)

// foldBatch is how many events the reader hands a fold worker at once.
const foldBatch = 256

// caseFolder folds the events of every case, as RebuildAll's one reading
// of the log gives them, on every CPU: the reader (the caller of add)
// hands each event to the worker that owns its case (by a hash of its
// id), so each case's events are folded in log order, by one worker, as
// one goroutine would fold them; the cases of different workers are
// folded at once. Decoding and folding are most of a reading's CPU, the
// reading itself a fifth.
type caseFolder struct {
	seed    maphash.Seed
	shards  []map[string]*assist.Case
	pending [][]Msg
	work    []chan []Msg
	// free holds the batches the workers are done with, emptied, for
	// add to fill again (a batch is 256 events of ~180 bytes: made anew
	// each time, they were a tenth of a reading's allocations).
	free chan []Msg
	// errs[i] is worker i's first error, with its event's sequence;
	// after it, the worker drops its events.
	errs   []error
	errSeq []uint64
	// failed is set by a worker's error: the reading stops early.
	failed atomic.Bool
	wg     sync.WaitGroup
}

func newCaseFolder() *caseFolder {
	n := min(runtime.GOMAXPROCS(0), 8)
	f := &caseFolder{seed: maphash.MakeSeed(), shards: make([]map[string]*assist.Case, n),
		pending: make([][]Msg, n), work: make([]chan []Msg, n), free: make(chan []Msg, 8*n), errs: make([]error, n),
		errSeq: make([]uint64, n)}
	for i := range f.shards {
		f.shards[i] = map[string]*assist.Case{}
	}
	return f
}

// start starts the workers for a reading; finish ends it.
func (f *caseFolder) start() {
	for i := range f.work {
		ch := make(chan []Msg, 4)
		f.work[i] = ch
		f.wg.Go(func() {
			cases := f.shards[i]
			for batch := range ch {
				if f.errs[i] == nil {
					for _, m := range batch {
						next, _, err := Fold(cases[m.CaseID], m)
						if err != nil {
							f.errs[i], f.errSeq[i] = fmt.Errorf("rebuild: event %d of case %s: %w", m.Seq, m.CaseID, err), m.Seq
							f.failed.Store(true)
							break
						}
						cases[m.CaseID] = next
					}
				}
				clear(batch) // its events' data are the log's blocks: not kept alive by a free batch
				select {
				case f.free <- batch[:0]:
				default:
				}
			}
		})
	}
}

// errFoldStopped ends a reading after a worker's error; finish returns
// the error itself.
var errFoldStopped = errors.New("rebuild: an event did not fold")

// add hands the event of a case to its worker, or returns errFoldStopped
// once a worker has failed.
func (f *caseFolder) add(m Msg) error {
	if f.failed.Load() {
		return errFoldStopped
	}
	i := 0
	if len(f.shards) > 1 {
		i = int(maphash.String(f.seed, m.CaseID) % uint64(len(f.shards)))
	}
	if f.pending[i] == nil {
		select {
		case f.pending[i] = <-f.free:
		default:
			f.pending[i] = make([]Msg, 0, foldBatch)
		}
	}
	if f.pending[i] = append(f.pending[i], m); len(f.pending[i]) == foldBatch {
		f.work[i] <- f.pending[i]
		f.pending[i] = nil
	}
	return nil
}

// finish hands the workers what is pending and waits for them. Its error
// is the first event, in log order, that did not fold: the one a single
// goroutine folding in log order would have stopped at.
func (f *caseFolder) finish() error {
	for i, ch := range f.work {
		if len(f.pending[i]) > 0 {
			ch <- f.pending[i]
			f.pending[i] = nil
		}
		close(ch)
	}
	f.wg.Wait()
	var first error
	var at uint64
	for i, err := range f.errs {
		if err != nil && (first == nil || f.errSeq[i] < at) {
			first, at = err, f.errSeq[i]
		}
	}
	return first
}

// cases is every case folded, by id.
func (f *caseFolder) cases() map[string]*assist.Case {
	if len(f.shards) == 1 {
		return f.shards[0]
	}
	n := 0
	for _, s := range f.shards {
		n += len(s)
	}
	out := make(map[string]*assist.Case, n)
	for _, s := range f.shards {
		for id, c := range s {
			out[id] = c
		}
	}
	return out
}
