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
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
)

// Book reads and changes the policy. It keeps the history it last read
// (eventlog.Held) and reads it again only when the log's last policy
// event is another: every command asks for the policy in force, which
// changes a few times a year.
type Book struct {
	log     *eventlog.Log
	initial assist.Policy
	held    *eventlog.Held[[]assist.PolicyVersion]
}

// New returns the book of the policy on log; initial is the policy in
// force until the first change.
func New(log *eventlog.Log, initial assist.Policy) *Book {
	b := &Book{log: log, initial: initial}
	b.held = &eventlog.Held[[]assist.PolicyVersion]{Kind: assist.KindPolicy, Fold: b.fold}
	return b
}

// fold is the policy's versions after its events, the initial one first.
func (b *Book) fold(recs []assist.Recorded) []assist.PolicyVersion {
	return assist.PolicyHistory(b.initial, recs)
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
// holds. The returned slice is the caller's; the policies in it are shared
// and must not be changed.
//
// Errors: CodeUnavailable, CodeInternal.
func (b *Book) History(ctx context.Context) ([]assist.PolicyVersion, error) {
	h, err := b.held.Get(ctx, b.log, assist.PolicyID)
	if err != nil {
		return nil, err
	}
	return slices.Clone(h), nil
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
		Fold: b.fold,
		Decide: func(h []assist.PolicyVersion, _ uint64) (assist.Event, error) {
			return assist.ChangePolicy(assist.Cmd{ID: commandID, Actor: actor, At: at}, len(h), in)
		},
	})
	if err != nil {
		return assist.PolicyVersion{}, err
	}
	return h[len(h)-1], nil
}
