package eventlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/retry"
	"github.com/eva-org/eva/pkg/sqldb"
	"go.uber.org/zap"
)

// Command is one command on one existing case, as Execute runs it: load
// the case once, decide once, prepare the side effects the decision needs,
// append once.
type Command struct {
	// CaseID names the case.
	CaseID string
	// ID is the command's id. It becomes the id of the event the command
	// causes, so that the command retried is recognised in the case's
	// history and answered as the first time.
	ID string
	// Decide turns the case's current state into the one event the
	// command causes, or refuses. It does no I/O: when another writer wins
	// the race to append, the command is decided again on the new state.
	Decide func(c *assist.Case) (assist.Event, error)
	// Prepare, when set, runs once the command is decided and before its
	// event is appended: the side effects the event records (holding money
	// on a fund, sealing personal data), which may complete the event (the
	// fund's available amount, the ciphertext). It runs again only after a
	// lost race, so it must be idempotent under the command id. Nothing is
	// appended when it fails. c is the state the event was decided on.
	Prepare func(ctx context.Context, c *assist.Case, e *assist.Event) error
}

// maxRaces bounds how often a command is decided again after losing a
// race.
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
		return nil, errNoCase(caseID)
	}
	return c, nil
}

func errNoCase(caseID string) error {
	return assist.Errorf(assist.CodeNotFound, "no request %s", caseID)
}

// Execute runs one command against an existing case: it loads the case
// (one read), lets Decide produce the event, runs Prepare, and appends the
// event expecting the case unchanged since the load. When another writer
// got there first, the command is decided again on the new state (which
// may now refuse it). When the command already happened (its id is in the
// history) Execute returns the case as it stood right after it, so that a
// retried command answers the same as the first.
//
// Errors: CodeNotFound for a case without events; those of Decide and
// Prepare; CodeConflict after losing maxRaces races; CodeUnavailable;
// CodeInternal.
func (l *Log) Execute(ctx context.Context, cmd Command) (*assist.Case, error) {
	return l.executeFolding(ctx, cmd, assist.Fold)
}

// executeFolding is Execute, folding the case's history with fold.
func (l *Log) executeFolding(ctx context.Context, cmd Command, fold func([]assist.Recorded) *assist.Case) (*assist.Case, error) {
	c, _, err := ExecuteOn(ctx, l, CommandOn[*assist.Case]{Kind: assist.KindCase, ID: cmd.CaseID, CmdID: cmd.ID,
		Fold: fold,
		Decide: func(c *assist.Case, _ uint64) (assist.Event, error) {
			if c == nil {
				return assist.Event{}, errNoCase(cmd.CaseID)
			}
			return cmd.Decide(c)
		},
		Prepare: cmd.Prepare})
	return c, err
}

// ExecuteFrom runs cmd on a case the caller holds as the log left it
// after the caller's own last command on it (c, at c.Version): it decides
// on c and appends expecting c.Version, without reading the case first —
// one round trip to the log instead of two, for a process that goes on
// from one command of a case to the next. When the case moved on
// meanwhile (the append's expected sequence is stale), when the command
// happened already, or when c refuses it, the command runs as Execute
// runs it, on the case read afresh: the answer is always Execute's. A
// command with Prepare, or a nil c, always runs as Execute. c is updated
// in place and must not be used after the call.
//
// Errors: those of Execute.
func (l *Log) ExecuteFrom(ctx context.Context, c *assist.Case, cmd Command) (*assist.Case, error) {
	if c == nil || c.Version == 0 || c.ID != cmd.CaseID || cmd.Prepare != nil {
		return l.Execute(ctx, cmd)
	}
	e, err := cmd.Decide(c)
	if err != nil {
		return l.Execute(ctx, cmd) // c may be behind the log: decide on the log
	}
	seq, existed, err := l.appendEvent(ctx, e, c.Version)
	switch {
	case err == nil && !existed:
		c.Apply(e, seq)
		return c, nil
	case err == nil, isLostRace(err):
		// The same command stored before, or the case moved on: answer
		// as Execute does, from the history.
		return l.Execute(ctx, cmd)
	}
	return nil, err
}

// ExecuteFromThen runs cmd and then next on a case the caller holds (c,
// as for ExecuteFrom), when next follows from cmd at once with nothing to
// do in between (a payment the provider answered settled: sent, then
// settled). On a replicated stream (or a BatchStore, which stands for
// one in simulations) both are decided on c, one after the
// other, and their events are appended as one atomic batch, with the
// round trip of one append, expecting c.Version; whatever stands in the
// way — c behind the log, either command done before or refused, a
// Prepare, a batch refused or unanswered, a stream that takes no batches
// — runs them as Execute then ExecuteFrom, one append each. On a
// standalone stream they run as ExecuteFrom twice: there the server
// stages an atomic batch in files of its own, which costs more than the
// second append it saves (docs/benchmarks.md). The answer is always
// that of the commands run one by one. c is updated in place and must
// not be used after the call.
//
// Errors: those of Execute, for either command.
func (l *Log) ExecuteFromThen(ctx context.Context, c *assist.Case, cmd, next Command) (*assist.Case, error) {
	if !l.batches(c, cmd, next) {
		c, err := l.ExecuteFrom(ctx, c, cmd)
		if err != nil {
			return nil, err
		}
		return l.ExecuteFrom(ctx, c, next)
	}
	if done, ok := l.executeBoth(ctx, c, cmd, next); ok {
		return done, nil
	}
	// c may hold cmd's event, which did not land: read the case afresh.
	c, err := l.Execute(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return l.ExecuteFrom(ctx, c, next)
}

// batches reports whether ExecuteFromThen appends cmd's and next's
// events as one batch.
func (l *Log) batches(c *assist.Case, cmd, next Command) bool {
	_, storeBatches := l.store.(BatchStore)
	return (l.replicated && l.store == nil || storeBatches) && c != nil && c.Version != 0 && c.ID == cmd.CaseID &&
		next.CaseID == cmd.CaseID && cmd.Prepare == nil && next.Prepare == nil
}

// executeBoth is ExecuteFromThen's batch: ok is false when it appended
// nothing, and c may then hold cmd's event.
func (l *Log) executeBoth(ctx context.Context, c *assist.Case, cmd, next Command) (*assist.Case, bool) {
	expected := c.Version
	first, err := cmd.Decide(c)
	if err != nil {
		return nil, false
	}
	// next is decided on the case after cmd's event, whose sequence is
	// not known yet; Decide reads no version.
	c.Apply(first, 0)
	second, err := next.Decide(c)
	if err != nil {
		return nil, false
	}
	last, err := l.appendBatch(ctx, []assist.Event{first, second}, expected)
	if err != nil {
		return nil, false
	}
	c.Apply(second, last)
	return c, true
}

// CommandOn is one command on one thing of a kind (a case, a fund, the
// policy, ...) whose state S folds from its events.
type CommandOn[S any] struct {
	Kind assist.Kind
	// ID names the thing.
	ID string
	// CmdID is the command's id, which becomes its event's id.
	CmdID string
	// Fold is the state after events, in log order; it is given no events
	// for a thing that has none yet.
	Fold func(recs []assist.Recorded) S
	// Decide turns the state (at version, the log position of the thing's
	// last event, 0 for none) into the one event the command causes, or
	// refuses; it does no I/O and may run again after a lost race.
	Decide func(s S, version uint64) (assist.Event, error)
	// Prepare, when set, runs once the command is decided and before its
	// event is appended (see Command.Prepare).
	Prepare func(ctx context.Context, s S, e *assist.Event) error
}

// ExecuteOn runs a command on one thing of a kind, the one command path of
// the log: load its events once, fold, decide once, prepare, append once
// expecting the thing's last sequence (0: none yet). A lost race decides
// again on the new state, at most maxRaces times; a command whose id is in
// the history answers with the state right after it. It returns the state
// after the command and its version.
//
// Errors: those of Decide and Prepare; CodeConflict after losing maxRaces
// races; CodeUnavailable; CodeInternal.
func ExecuteOn[S any](ctx context.Context, l *Log, cmd CommandOn[S]) (S, uint64, error) {
	type result struct {
		s       S
		version uint64
	}
	r, err := retry.DoValue(ctx, retry.Policy{First: time.Millisecond, Max: 20 * time.Millisecond, Attempts: maxRaces},
		isLostRace, func(ctx context.Context) (result, error) {
			s, v, err := executeOnce(ctx, l, cmd)
			return result{s, v}, err
		})
	// Racers spread out by the back-off; this one lost every time.
	return r.s, r.version, unwrapRace(err)
}

func executeOnce[S any](ctx context.Context, l *Log, cmd CommandOn[S]) (S, uint64, error) {
	var zero S
	recs, err := l.History(ctx, cmd.Kind, cmd.ID)
	if err != nil {
		return zero, 0, err
	}
	if i := commandIndex(recs, cmd.CmdID); i >= 0 {
		return cmd.Fold(recs[:i+1]), recs[i].Seq, nil
	}
	var version uint64
	if len(recs) > 0 {
		version = recs[len(recs)-1].Seq
	}
	s := cmd.Fold(recs)
	e, err := cmd.Decide(s, version)
	if err != nil {
		return zero, 0, err
	}
	if cmd.Prepare != nil {
		if err := cmd.Prepare(ctx, s, &e); err != nil {
			return zero, 0, err
		}
	}
	seq, existed, err := l.appendEvent(ctx, e, version)
	switch {
	case err != nil:
		return zero, 0, err
	case existed:
		// The same command ran concurrently and its event is stored:
		// answer with the stored event, not with this decision.
		recs, err := l.History(ctx, cmd.Kind, cmd.ID)
		if err != nil {
			return zero, 0, err
		}
		i := commandIndex(recs, cmd.CmdID)
		if i < 0 {
			return zero, 0, assist.Errorf(assist.CodeInternal, "command %s of %s %s is stored but not in its history",
				cmd.CmdID, cmd.Kind, cmd.ID)
		}
		return cmd.Fold(recs[:i+1]), recs[i].Seq, nil
	}
	return cmd.Fold(append(recs, assist.Recorded{Seq: seq, Event: e})), seq, nil
}

// commandIndex is the position of the event caused by commandID, -1 when
// none is.
func commandIndex(recs []assist.Recorded, commandID string) int {
	if commandID == "" {
		return -1
	}
	for i, r := range recs {
		if r.Event.CommandID == commandID {
			return i
		}
	}
	return -1
}

// Start appends the event that starts a new case (whose id is the
// event's case id), already decided and prepared. It appends without
// reading first, expecting the case to have no event: a new case costs
// one round trip to the log. When the case exists — the same command
// again, a retry — the history decides: the command's own event returns
// the case as of it; anything else is a conflict.
//
// Errors: CodeConflict, CodeInvalid for a malformed event,
// CodeUnavailable, CodeInternal.
func (l *Log) Start(ctx context.Context, e assist.Event) (*assist.Case, error) {
	seq, existed, err := l.appendEvent(ctx, e, 0)
	if err != nil {
		return nil, unwrapRace(err)
	}
	if !existed {
		c := &assist.Case{}
		c.Apply(e, seq)
		return c, nil
	}
	// The event was appended before (a retry): answer as then.
	return l.asLogged(ctx, e.CaseID, e.CommandID)
}

// Answer answers a command that already happened with the case as it
// stood right after it.
//
// Errors: CodeConflict when the command is not in the case's history,
// CodeUnavailable, CodeInternal.
func (l *Log) Answer(ctx context.Context, caseID, commandID string) (*assist.Case, error) {
	recs, err := l.Load(ctx, caseID)
	if err != nil {
		return nil, err
	}
	if c := assist.FoldThrough(recs, commandID); c != nil {
		return c, nil
	}
	return nil, assist.Errorf(assist.CodeConflict, "request %s was not changed by command %s", caseID, commandID)
}

// asLogged answers a command whose event is in the log with the case as it
// stood right after it.
func (l *Log) asLogged(ctx context.Context, caseID, commandID string) (*assist.Case, error) {
	c, err := l.Answer(ctx, caseID, commandID)
	if assist.IsCode(err, assist.CodeConflict) {
		return nil, assist.Errorf(assist.CodeInternal, "command %s of case %s is stored but not in its history", commandID, caseID)
	}
	return c, err
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
	next, _, applied, err = foldMsg(c, m)
	return next, applied, err
}

// foldMsg is Fold, returning also the event it decoded when applied.
func foldMsg(c *assist.Case, m Msg) (next *assist.Case, e assist.Event, applied bool, err error) {
	var version uint64
	if c != nil {
		version = c.Version
	}
	switch {
	case m.Seq <= version:
		return c, assist.Event{}, false, nil
	case m.Prev != version:
		return nil, assist.Event{}, false, fmt.Errorf("event %d of case %s follows %d, projection is at %d: %w", m.Seq, m.CaseID, m.Prev, version, ErrGap)
	}
	if e, err = eventcodec.Decode(m.Type, m.Data); err != nil {
		return nil, assist.Event{}, false, Poison(err)
	}
	if c == nil {
		c = &assist.Case{}
	}
	c.Apply(e, m.Seq)
	return c, e, true, nil
}

// Projection is a read model that keeps a state per case, folded from
// the case's events. A projection may keep only part of a case (say, the
// columns of a queue): Projected then returns a case holding only those
// fields, and Apply must (and does) set them from the event alone.
type Projection interface {
	// Projected loads a case, nil when the read model has none.
	Projected(ctx context.Context, q sqldb.Querier, caseID string) (*assist.Case, error)
	// Project stores a case.
	Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error
}

// Project runs a durable consumer that folds each event into the
// projection's copy of its case, until ctx ends. The projection records
// which events it applied itself (each case's version), in the same
// transaction. An event whose predecessor the projection has not applied
// (a redelivery overtook it, or the predecessor was dead-lettered) is a
// gap: the consumer repairs it outside any transaction, folding the case
// from the log up to that event, and then tries the event again.
func (l *Log) Project(ctx context.Context, db sqldb.DB, cfg ConsumerConfig, p Projection, zl *zap.Logger) error {
	pr := projector{log: l, db: db, p: p, held: cfg.Held}
	cfg.SeenByHandler = true
	cfg.Repair = pr.repair
	return l.Consume(ctx, db, cfg, pr.handle, zl)
}

type projector struct {
	log  *Log
	db   sqldb.DB
	p    Projection
	held *HeldCases
}

// BatchProjection is a BulkProjection that also loads many cases in one
// call. Project then reads the cases of a consumer's batch in one
// statement, folds the batch's events in memory, and writes the cases it
// changed in one more, before the commit: two statements a batch instead
// of two an event.
type BatchProjection interface {
	BulkProjection
	// ProjectedAll loads the cases of ids that the read model has, in q.
	ProjectedAll(ctx context.Context, q sqldb.Querier, ids []string) (map[string]*assist.Case, error)
}

// handle is the consumer's Handler: it reads nothing but the store.
func (pr projector) handle(ctx context.Context, q sqldb.Querier, m Msg) error {
	load, store := pr.p.Projected, pr.p.Project
	if bp, ok := pr.p.(BatchProjection); ok && batchOf(ctx) != nil {
		pb := TxLocal(ctx, projectedKey{}, func() *projectedBatch { return &projectedBatch{p: bp} })
		load, store = pb.projected, pb.project
	}
	c, err := load(ctx, q, m.CaseID)
	if err != nil {
		pr.held.Observe(m)
		return err
	}
	next, e, applied, err := foldMsg(c, m)
	if !applied {
		pr.held.Observe(m) // a redelivery, a gap or a bad event: decoded apart
		return err
	}
	pr.held.hold(m, e) // the event the fold decoded, not decoded again
	return store(ctx, q, next)
}

type projectedKey struct{}

// projectedBatch is a BatchProjection's cases in one consumer
// transaction: those of the batch's events, read at the first, and the
// ones changed, written before the commit.
type projectedBatch struct {
	p       BatchProjection
	cases   map[string]*assist.Case // nil until read
	changed []string                // ids, in the order first changed
}

func (pb *projectedBatch) projected(ctx context.Context, q sqldb.Querier, caseID string) (*assist.Case, error) {
	if pb.cases == nil {
		cases, err := pb.p.ProjectedAll(ctx, q, BatchCaseIDs(ctx, caseID))
		if err != nil {
			return nil, err
		}
		pb.cases = cases
		if err := BeforeCommit(ctx, q, pb.write); err != nil {
			return nil, err
		}
	}
	return pb.cases[caseID], nil
}

func (pb *projectedBatch) project(_ context.Context, _ sqldb.Querier, c *assist.Case) error {
	if !slices.Contains(pb.changed, c.ID) {
		pb.changed = append(pb.changed, c.ID)
	}
	pb.cases[c.ID] = c
	return nil
}

func (pb *projectedBatch) write(ctx context.Context, q sqldb.Querier) error {
	if len(pb.changed) == 0 {
		return nil
	}
	cs := make([]*assist.Case, len(pb.changed))
	for i, id := range pb.changed {
		cs[i] = pb.cases[id]
	}
	return pb.p.ProjectAll(ctx, q, cs)
}

// repair folds a case from the log up to and including m — the read
// outside any transaction — and stores it unless the projection moved
// past it meanwhile.
func (pr projector) repair(ctx context.Context, m Msg) error {
	recs, err := pr.log.Load(ctx, m.CaseID)
	if err != nil {
		return err
	}
	n := 0
	for n < len(recs) && recs[n].Seq <= m.Seq {
		n++
	}
	next := assist.Fold(recs[:n])
	if next == nil || next.Version != m.Seq {
		return fmt.Errorf("case %s: event %d is not in its history: %w", m.CaseID, m.Seq, ErrGap)
	}
	return pr.db.Tx(ctx, func(q sqldb.Querier) error {
		c, err := pr.p.Projected(ctx, q, m.CaseID)
		if err != nil || (c != nil && c.Version >= next.Version) {
			return err
		}
		return pr.p.Project(ctx, q, next)
	})
}
