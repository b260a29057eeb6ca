// Package policy keeps the decision policy's versions in the event log:
// each change is a PolicyChanged event on eva.policy.<assist.PolicyID>.>,
// appended with the log's concurrency check, so that two admins changing
// it at once get one winner. The version in force is the last; a case
// records the version it was filed under and every decision the version
// it was taken under, so a change never alters a past decision.
package policy

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
)

// Book reads and changes the policy. It keeps the history it last read,
// with the log position of its last event, and reads it again only when
// the log's last policy event is another: every command asks for the
// policy in force, which changes a few times a year.
type Book struct {
	log     *eventlog.Log
	initial assist.Policy

	mu   sync.Mutex
	read []assist.PolicyVersion // the history last read; nil before the first read
	at   uint64                 // the log position of its last event, 0 for none
}

// New returns the book of the policy on log; initial is the policy in
// force until the first change.
func New(log *eventlog.Log, initial assist.Policy) *Book {
	return &Book{log: log, initial: initial}
}

// Current is the policy in force.
//
// Errors: CodeUnavailable, CodeInternal.
func (b *Book) Current(ctx context.Context) (assist.Policy, error) {
	h, err := b.History(ctx)
	if err != nil {
		return assist.Policy{}, err
	}
	return h[len(h)-1].Policy, nil
}

// History is every version, the initial one first, as the log has them
// when it is asked: it asks the log for the position of the policy's last
// event (the stream leader's subject index, no event read) and folds the
// events again only when that is not the position of the history it
// holds (a log without a subject index, the simulator's, is read every
// time). The returned slice is the caller's; the policies in it are shared
// and must not be changed.
//
// Errors: CodeUnavailable, CodeInternal.
func (b *Book) History(ctx context.Context) ([]assist.PolicyVersion, error) {
	last, indexed, err := b.log.LastSeqOf(ctx, assist.KindPolicy, assist.PolicyID)
	if err != nil {
		return nil, err
	}
	if h, ok := b.held(last); ok && indexed {
		return h, nil
	}
	recs, err := b.log.History(ctx, assist.KindPolicy, assist.PolicyID)
	if err != nil {
		return nil, err
	}
	h := assist.PolicyHistory(b.initial, recs)
	var at uint64
	if len(recs) > 0 {
		at = recs[len(recs)-1].Seq
	}
	b.mu.Lock()
	if b.read == nil || at > b.at {
		b.read, b.at = h, at
	}
	b.mu.Unlock()
	return slices.Clone(h), nil
}

// held is the history the book holds when its last event is at last.
func (b *Book) held(last uint64) ([]assist.PolicyVersion, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.read == nil || b.at != last {
		return nil, false
	}
	return slices.Clone(b.read), true
}

// Change makes in the next version of the policy, by actor, under the
// command id (a retried command answers as the first time).
//
// Errors: those of assist.ChangePolicy; CodeConflict after losing races;
// CodeUnavailable; CodeInternal.
func (b *Book) Change(ctx context.Context, commandID string, actor assist.Actor, at time.Time, in assist.Policy) (assist.PolicyVersion, error) {
	if !eventlog.ValidCaseID(commandID) {
		return assist.PolicyVersion{}, assist.Errorf(assist.CodeInvalid, "command id %q is not a UUID", commandID)
	}
	h, _, err := eventlog.ExecuteOn(ctx, b.log, eventlog.CommandOn[[]assist.PolicyVersion]{
		Kind: assist.KindPolicy, ID: assist.PolicyID, CmdID: commandID,
		Fold: func(recs []assist.Recorded) []assist.PolicyVersion { return assist.PolicyHistory(b.initial, recs) },
		Decide: func(h []assist.PolicyVersion, _ uint64) (assist.Event, error) {
			return assist.ChangePolicy(assist.Cmd{ID: commandID, Actor: actor, At: at}, len(h), in)
		},
	})
	if err != nil {
		return assist.PolicyVersion{}, err
	}
	return h[len(h)-1], nil
}
