package eventlog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/sqldb"
)

// Decide turns the current state of a case (nil when it has no event yet)
// into the one event a command causes, or refuses with an error.
type Decide func(c *assist.Case) (assist.Event, error)

// maxRaces bounds how often a command is re-decided after losing a race.
const maxRaces = 5

// Case loads and folds a case.
//
// Errors: CodeNotFound when it has no event, CodeUnavailable, CodeInternal.
func (l *Log) Case(ctx context.Context, caseID string) (*assist.Case, error) {
	recs, err := l.Load(ctx, caseID)
	if err != nil {
		return nil, err
	}
	c := assist.Fold(recs)
	if c == nil {
		return nil, assist.Errorf(assist.CodeNotFound, "no request %s", caseID)
	}
	return c, nil
}

// Execute runs one command against a case: it loads the case, lets decide
// produce the event, and appends it expecting the case unchanged since the
// load. When another writer got there first, the command is decided again
// on the new state (which may now refuse it). When the command already
// happened (its id is in the history) Execute returns the case as it stood
// right after it, so that a retried command answers the same as the first.
//
// Errors: those of decide, CodeConflict after losing maxRaces races,
// CodeUnavailable, CodeInternal.
func (l *Log) Execute(ctx context.Context, caseID, commandID string, decide Decide) (*assist.Case, error) {
	for race := 0; ; race++ {
		recs, err := l.Load(ctx, caseID)
		if err != nil {
			return nil, err
		}
		if c := assist.FoldThrough(recs, commandID); c != nil {
			return c, nil
		}
		c := assist.Fold(recs)
		e, err := decide(c)
		if err != nil {
			return nil, err
		}
		var expected uint64
		if c != nil {
			expected = c.Version
		}
		seq, existed, err := l.appendEvent(ctx, e, expected)
		if err == nil && existed {
			// The same command ran concurrently and its event is stored:
			// answer with the stored event, not with this decision.
			return l.asLogged(ctx, caseID, commandID)
		}
		if err == nil {
			if c == nil {
				c = &assist.Case{}
			}
			c.Apply(e, seq)
			return c, nil
		}
		if !assist.IsCode(err, assist.CodeConflict) || race+1 >= maxRaces {
			return nil, err
		}
		// Lost a race: back off a little so that racers spread out.
		select {
		case <-time.After(time.Duration(1+rand.IntN(5*(race+1))) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Create runs the command that starts a case whose id is the command id.
// It appends without reading first, expecting the case to be empty: a new
// case costs one round trip to the log. When the case exists — the same
// command again, a retry — the history decides: the command's own event
// returns the case as of it; anything else is a conflict.
//
// Errors: those of decide, CodeConflict, CodeUnavailable, CodeInternal.
func (l *Log) Create(ctx context.Context, caseID string, decide Decide) (*assist.Case, error) {
	e, err := decide(nil)
	if err != nil {
		return nil, err
	}
	seq, existed, err := l.appendEvent(ctx, e, 0)
	if err != nil {
		return nil, err
	}
	if !existed {
		c := &assist.Case{}
		c.Apply(e, seq)
		return c, nil
	}
	// The event was appended before (a retry): answer as then.
	return l.asLogged(ctx, caseID, e.CommandID)
}

// asLogged answers a command whose event is in the log with the case as it
// stood right after it.
func (l *Log) asLogged(ctx context.Context, caseID, commandID string) (*assist.Case, error) {
	recs, err := l.Load(ctx, caseID)
	if err != nil {
		return nil, err
	}
	if c := assist.FoldThrough(recs, commandID); c != nil {
		return c, nil
	}
	return nil, assist.Errorf(assist.CodeInternal, "command %s of case %s is stored but not in its history", commandID, caseID)
}

// AsOf folds a case's events up to and including time t.
//
// Errors: CodeNotFound when the case had no event by t, CodeUnavailable,
// CodeInternal.
func (l *Log) AsOf(ctx context.Context, caseID string, t time.Time) (*assist.Case, error) {
	recs, err := l.Load(ctx, caseID)
	if err != nil {
		return nil, err
	}
	n := 0
	for n < len(recs) && !recs[n].Event.At.After(t) {
		n++
	}
	c := assist.Fold(recs[:n])
	if c == nil {
		return nil, assist.Errorf(assist.CodeNotFound, "request %s did not exist at %s", caseID, t.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// ErrGap is returned by Fold when an event does not follow the state it
// is applied to: an earlier event of the case has not been applied yet.
var ErrGap = errors.New("an earlier event of the case is missing")

// Fold applies a raw event to a projected case (nil for a case not seen
// yet) and returns the new state. An event already included is reported by
// applied=false; an event whose predecessor is missing returns ErrGap, so
// that the consumer retries it after the predecessor.
//
// Errors: ErrGap; a decode error, marked Poison.
func Fold(c *assist.Case, m Msg) (next *assist.Case, applied bool, err error) {
	var version uint64
	if c != nil {
		version = c.Version
	}
	switch {
	case m.Seq <= version:
		return c, false, nil
	case m.Prev != version:
		return nil, false, fmt.Errorf("event %d of case %s follows %d, projection is at %d: %w", m.Seq, m.CaseID, m.Prev, version, ErrGap)
	}
	e, err := eventcodec.Decode(m.Type, m.Data)
	if err != nil {
		return nil, false, Poison(err)
	}
	if c == nil {
		c = &assist.Case{}
	}
	c.Apply(e, m.Seq)
	return c, true, nil
}

// Projection is a read model that keeps whole cases.
type Projection interface {
	// Projected loads a case, nil when the read model has none.
	Projected(ctx context.Context, q sqldb.Querier, caseID string) (*assist.Case, error)
	// Project stores a case.
	Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error
}

// Project returns a consumer Handler that folds each event into the
// projection's copy of its case. An event whose predecessor the projection
// has not applied (a redelivery overtook it) is repaired at once: the case
// is folded from the log up to that event.
func (l *Log) Project(p Projection) Handler {
	return func(ctx context.Context, q sqldb.Querier, m Msg) error {
		c, err := p.Projected(ctx, q, m.CaseID)
		if err != nil {
			return err
		}
		next, applied, err := Fold(c, m)
		if errors.Is(err, ErrGap) {
			// Reading the log inside the transaction stalls the other
			// writers of an embedded database for one read; gaps are rare.
			next, applied, err = l.foldUpTo(ctx, c, m)
		}
		if err != nil || !applied {
			return err
		}
		return p.Project(ctx, q, next)
	}
}

// foldUpTo rebuilds a case from the log, up to and including m.
func (l *Log) foldUpTo(ctx context.Context, c *assist.Case, m Msg) (*assist.Case, bool, error) {
	recs, err := l.Load(ctx, m.CaseID)
	if err != nil {
		return nil, false, err
	}
	n := 0
	for n < len(recs) && recs[n].Seq <= m.Seq {
		n++
	}
	next := assist.Fold(recs[:n])
	if next == nil || next.Version != m.Seq {
		return nil, false, fmt.Errorf("case %s: event %d is not in its history: %w", m.CaseID, m.Seq, ErrGap)
	}
	return next, c == nil || next.Version > c.Version, nil
}
