package notify

import (
	"context"
	"fmt"

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
	c, err := s.store.CaseState(ctx, q, m.CaseID)
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
		if err := s.store.SaveCase(ctx, q, c); err != nil {
			return err
		}
	}
	if err := s.store.Enqueue(ctx, q, Delivery{EventID: m.ID, CaseID: m.CaseID, Type: m.Type, Seq: m.Seq, At: e.At,
		Status: c.State, NextAt: s.now()}); err != nil {
		return err
	}
	return s.enqueueMails(ctx, q, e, m.Seq, c)
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
