package eventlog

import (
	"context"
	"sync"

	"github.com/eva-org/eva/pkg/assist"
)

// Held keeps things of one kind (the policy, payees) folded from their
// histories, each at the log position of its last event, and reads a
// thing's history again only when the log's last event of it is another
// (LastSeqOf): for things that change rarely and are read by every
// command or payout, one question to the stream leader's subject index
// instead of a read of the whole history. A state is as fresh as a read of
// the history would be. A log on a Store is read every time.
type Held[S any] struct {
	// Kind of the things held.
	Kind assist.Kind
	// Fold is a thing's state after its events, in log order.
	Fold func(recs []assist.Recorded) S

	mu   sync.Mutex
	held map[string]heldState[S]
}

type heldState[S any] struct {
	s  S
	at uint64 // the log position of the thing's last event, 0 for none
}

// Get is the state of thing id as the log has it when asked. The state
// is shared with other callers: it must not be changed.
//
// Errors: CodeUnavailable, CodeInternal.
func (h *Held[S]) Get(ctx context.Context, l *Log, id string) (S, error) {
	var zero S
	last, indexed, err := l.LastSeqOf(ctx, h.Kind, id)
	if err != nil {
		return zero, err
	}
	h.mu.Lock()
	hs, ok := h.held[id]
	h.mu.Unlock()
	if ok && indexed && hs.at == last {
		return hs.s, nil
	}
	recs, err := l.History(ctx, h.Kind, id)
	if err != nil {
		return zero, err
	}
	s := h.Fold(recs)
	if !indexed {
		return s, nil
	}
	var at uint64
	if len(recs) > 0 {
		at = recs[len(recs)-1].Seq
	}
	h.mu.Lock()
	if h.held == nil {
		h.held = map[string]heldState[S]{}
	}
	if cur, ok := h.held[id]; !ok || at > cur.at {
		h.held[id] = heldState[S]{s: s, at: at}
	}
	h.mu.Unlock()
	return s, nil
}
