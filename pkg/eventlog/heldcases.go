package eventlog

import (
	"container/list"
	"context"
	"slices"
	"sync"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
)

// DefaultHeldCases is how many cases a HeldCases keeps when Max is 0.
const DefaultHeldCases = 1024

// HeldCases keeps the events of the cases a service saw last — from its
// projection's consumer (ConsumerConfig.Held) and from its own commands —
// so that a command can be decided on a case without reading the case
// from the log first (ExecuteHeld). What it holds is only ever a prefix
// of a case's history, complete from the case's first event: each event
// is added only after the one its append expected (HeaderPrev), so the
// held events of a case are exactly its log's events up to the last one
// held. It may be behind the log; the append's per-case expected sequence
// then refuses the command's event and the command runs on the case read
// afresh. It is safe for concurrent use; a nil *HeldCases holds nothing.
type HeldCases struct {
	// Max is how many cases are held, the least recently used dropped
	// first; 0 is DefaultHeldCases.
	Max int

	mu sync.Mutex
	m  map[string]*list.Element // of *heldCase
	ll list.List                // most recently used first
}

type heldCase struct {
	id   string
	recs []assist.Recorded // never changed in place: appended to a clipped copy
}

// Observe holds a case event read from the log: it extends the held
// history when the event follows its last event, starts one for a case's
// first event, and drops the case on a gap (its history then comes from
// the log on the next command). Events of other kinds, and events
// appended without HeaderPrev, are ignored.
func (h *HeldCases) Observe(m Msg) {
	if !h.follows(m) {
		return
	}
	e, err := eventcodec.Decode(m.Type, m.Data)
	if err != nil {
		h.drop(m.CaseID)
		return
	}
	h.add(m.CaseID, assist.Recorded{Seq: m.Seq, Event: e}, m.Prev)
}

// hold is Observe of m whose event e is decoded already.
func (h *HeldCases) hold(m Msg, e assist.Event) {
	if h.follows(m) {
		h.add(m.CaseID, assist.Recorded{Seq: m.Seq, Event: e}, m.Prev)
	}
}

// follows reports whether h keeps events like m: a case's, appended
// with HeaderPrev.
func (h *HeldCases) follows(m Msg) bool {
	return h != nil && m.Kind == assist.KindCase && m.chained && ValidCaseID(m.CaseID)
}

// add holds rec, appended expecting prev as its case's last sequence.
func (h *HeldCases) add(caseID string, rec assist.Recorded, prev uint64) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	el, ok := h.m[caseID]
	if !ok {
		if prev == 0 {
			h.insert(caseID, []assist.Recorded{rec})
		}
		return
	}
	hc := el.Value.(*heldCase)
	switch last := hc.recs[len(hc.recs)-1].Seq; {
	case rec.Seq <= last:
		// Held already (the consumer and the command both saw it).
	case prev == last:
		hc.recs = append(slices.Clip(hc.recs), rec)
		h.ll.MoveToFront(el)
	default:
		h.ll.Remove(el)
		delete(h.m, caseID)
	}
}

// put holds recs, a case's whole history up to its last element, unless
// a longer one is held.
func (h *HeldCases) put(caseID string, recs []assist.Recorded) {
	if h == nil || len(recs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.m[caseID]; ok {
		hc := el.Value.(*heldCase)
		if hc.recs[len(hc.recs)-1].Seq < recs[len(recs)-1].Seq {
			hc.recs = slices.Clip(recs)
		}
		h.ll.MoveToFront(el)
		return
	}
	h.insert(caseID, slices.Clip(recs))
}

// insert adds a case not held yet; h.mu is held.
func (h *HeldCases) insert(caseID string, recs []assist.Recorded) {
	if h.m == nil {
		h.m = map[string]*list.Element{}
	}
	h.m[caseID] = h.ll.PushFront(&heldCase{id: caseID, recs: recs})
	limit := h.Max
	if limit <= 0 {
		limit = DefaultHeldCases
	}
	for h.ll.Len() > limit {
		oldest := h.ll.Back()
		h.ll.Remove(oldest)
		delete(h.m, oldest.Value.(*heldCase).id)
	}
}

func (h *HeldCases) drop(caseID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.m[caseID]; ok {
		h.ll.Remove(el)
		delete(h.m, caseID)
	}
}

// history is the held history of a case, nil when none is held. The
// slice is shared: the caller must not change it.
func (h *HeldCases) history(caseID string) []assist.Recorded {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.m[caseID]; ok {
		return el.Value.(*heldCase).recs
	}
	return nil
}

// ExecuteHeld runs cmd as Execute does, but decides on the case as held
// holds it when it holds the case and not the command already: it then
// prepares and appends expecting the held case's version, without
// reading the case first. When the case moved on since (the append's
// expected sequence is stale), when the held case refuses the command,
// or when the case or the command is not held, the command runs as
// Execute runs it, on the case read afresh — so the answer is always
// Execute's — and the history it read is held for the next command.
// Prepare may then run twice, as it may after any lost race;
// a refusal from it on the held case is not an answer until Execute,
// deciding on the log, gives it too. Its failure to reach a dependency,
// or a failure after ctx ended, is the answer.
//
// Errors: those of Execute.
func (l *Log) ExecuteHeld(ctx context.Context, held *HeldCases, cmd Command) (*assist.Case, error) {
	if recs := held.history(cmd.CaseID); len(recs) > 0 && commandIndex(recs, cmd.ID) < 0 {
		c := assist.Fold(recs)
		version := c.Version
		e, err := cmd.Decide(c)
		if err == nil && cmd.Prepare != nil {
			err = cmd.Prepare(ctx, c, &e)
			if err != nil && (assist.IsCode(err, assist.CodeUnavailable) || ctx.Err() != nil) {
				// Out of reach or out of time: so it would be on the
				// log, after asking the same dependency again.
				return nil, err
			}
		}
		if err == nil {
			seq, existed, err := l.appendEvent(ctx, e, version)
			switch {
			case err == nil && !existed:
				held.add(cmd.CaseID, assist.Recorded{Seq: seq, Event: e}, version)
				c.Apply(e, seq)
				return c, nil
			case err != nil && !isLostRace(err):
				return nil, err
			}
		}
		// Refused or not prepared on what is held (which may be behind
		// the log), stored before (a retry), or the case moved on:
		// Execute answers from the history.
	}
	return l.executeFolding(ctx, cmd, func(recs []assist.Recorded) *assist.Case {
		// The history read, or it with the command's own event appended:
		// either is the case's whole history up to its last element.
		held.put(cmd.CaseID, recs)
		return assist.Fold(recs)
	})
}
