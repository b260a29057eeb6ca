package notify

import (
	"context"
	"fmt"
	"slices"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
)

// Apply is notify's consumer handler, inside the transaction that records
// the event as seen: a webhook event updates the webhooks; a user event
// the accounts (address, roles); a case event updates the case's status
// and adds a delivery for every webhook that asks for its type and, with
// e-mail on, a mail for each of its recipients. It reads nothing but the
// store.
//
// The case events of one consumer batch share their work (see txCases):
// the batch's cases are read in one statement and folded in memory, and
// the cases changed and the webhook deliveries are written once, before
// the commit. Called on its own, outside a batch, Apply writes at once.
//
// Errors: eventlog.ErrGap when an earlier event of the case is missing (the
// consumer repairs it); a decode error, marked Poison; the store's.
func (s *Service) Apply(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
	e, err := eventcodec.Decode(m.Type, m.Data)
	if err != nil {
		return eventlog.Poison(err)
	}
	switch m.Kind {
	case assist.KindWebhook:
		switch b := e.Body.(type) {
		case assist.WebhookRegistered:
			return s.store.SaveWebhook(ctx, q, assist.Webhook{ID: m.Of, URL: b.URL, Events: b.Events, Secret: b.Secret,
				SecretKey: b.SecretKey, By: e.Actor.Username, At: e.At}, m.Seq)
		case assist.WebhookRemoved:
			return s.store.RemoveWebhook(ctx, q, m.Of)
		}
		return nil
	case assist.KindUser:
		return s.applyUser(ctx, q, e, m.Seq)
	case assist.KindCase:
	default:
		return nil
	}
	tc := eventlog.TxLocal(ctx, txCasesKey{}, func() *txCases { return &txCases{store: s.store} })
	c, err := tc.get(ctx, q, m.CaseID)
	if err != nil {
		return err
	}
	var version uint64
	if c != nil {
		version = c.Version
	}
	switch {
	case m.Seq <= version:
		// Folded already by a repair: only the deliveries remain to add.
	case m.Prev != version:
		return fmt.Errorf("event %d of case %s follows %d, notify is at %d: %w", m.Seq, m.CaseID, m.Prev, version, eventlog.ErrGap)
	default:
		if c == nil {
			c = &assist.Case{}
		}
		c.Apply(e, m.Seq)
		tc.changed(c)
	}
	tc.deliveries = append(tc.deliveries, Delivery{EventID: m.ID, CaseID: m.CaseID, Type: m.Type, Seq: m.Seq, At: e.At,
		Status: c.State, NextAt: s.now()})
	if err := s.enqueueMails(ctx, q, e, m.Seq, c); err != nil {
		return err
	}
	return tc.writeBeforeCommit(ctx, q)
}

type txCasesKey struct{}

// txCases is what the case events of one consumer transaction share
// (eventlog.TxLocal): the cases of the batch, read at its first case
// event in one statement and from then on folded in memory, so that each
// event sees the ones before it; and what is written once after the
// batch's last event: the cases changed and the deliveries to the
// webhooks, each in a statement of many rows, for which the webhooks are
// read once then.
// Read that late, the webhooks include those registered and exclude
// those removed by the batch's own webhook events, as each event's
// delivery is filtered by the registration's log position. A failed
// transaction drops it all.
type txCases struct {
	store      Store
	cases      map[string]*assist.Case // nil until read
	order      []string                // the ids changed, in the order first changed
	deliveries []Delivery
	queued     bool // write is queued to run before the commit
}

// get is a copy of case id as the batch's events before this one leave
// it, for the caller to fold the event into; nil for a case notify has
// not seen.
func (tc *txCases) get(ctx context.Context, q sqldb.Querier, id string) (*assist.Case, error) {
	if tc.cases == nil {
		cases, err := tc.store.CaseStates(ctx, q, eventlog.BatchCaseIDs(ctx, id))
		if err != nil {
			return nil, err
		}
		tc.cases = cases
	}
	c, ok := tc.cases[id]
	if !ok {
		return nil, nil
	}
	cp := *c
	return &cp, nil
}

// changed keeps the part of c that the store keeps as the batch's state
// of its case, to be written.
func (tc *txCases) changed(c *assist.Case) {
	if !slices.Contains(tc.order, c.ID) {
		tc.order = append(tc.order, c.ID)
	}
	tc.cases[c.ID] = keptPart(c)
}

// writeBeforeCommit queues write to run after the batch's last event,
// once; outside a batch it runs at once.
func (tc *txCases) writeBeforeCommit(ctx context.Context, q sqldb.Querier) error {
	if tc.queued {
		return nil
	}
	tc.queued = true
	return eventlog.BeforeCommit(ctx, q, tc.write)
}

// write stores the cases changed and adds the deliveries due.
func (tc *txCases) write(ctx context.Context, q sqldb.Querier) error {
	cs := make([]*assist.Case, len(tc.order))
	for i, id := range tc.order {
		cs[i] = tc.cases[id]
	}
	if err := tc.store.SaveCases(ctx, q, cs); err != nil {
		return err
	}
	return tc.store.Enqueue(ctx, q, tc.deliveries...)
}

// repair folds a case from the log up to and including m (outside any
// transaction) and stores its status, unless the store moved past it.
func (s *Service) repair(ctx context.Context, m eventlog.Msg) error {
	recs, err := s.log.Load(ctx, m.CaseID)
	if err != nil {
		return err
	}
	c := &assist.Case{}
	for _, r := range recs {
		if r.Seq > m.Seq {
			break
		}
		c.Apply(r.Event, r.Seq)
	}
	return s.db.Tx(ctx, func(q sqldb.Querier) error {
		cur, err := s.store.CaseState(ctx, q, m.CaseID)
		if err != nil || (cur != nil && cur.Version >= c.Version) {
			return err
		}
		return s.store.SaveCase(ctx, q, c)
	})
}
