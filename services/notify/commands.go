package notify

import (
	"context"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/seal"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/notify/notifyapi"
)

// secretKeyID is the id a webhook's secret is sealed under.
func secretKeyID(webhookID string) string { return "webhook " + webhookID }

// Webhooks lists the webhooks not removed, oldest first.
//
// Errors: CodeUnavailable.
func (s *Service) Webhooks(ctx context.Context, _ notifyapi.WebhooksRequest) (notifyapi.WebhookPage, error) {
	ws, err := s.store.Webhooks(ctx)
	if err != nil {
		return notifyapi.WebhookPage{}, err
	}
	page := notifyapi.WebhookPage{Items: make([]notifyapi.Webhook, len(ws))}
	for i, w := range ws {
		page.Items[i] = toWebhook(w)
	}
	return page, nil
}

func toWebhook(w assist.Webhook) notifyapi.Webhook {
	return notifyapi.Webhook{ID: w.ID, URL: w.URL, Events: w.Events, RegisteredBy: w.By, RegisteredAt: w.At}
}

// RegisterWebhook registers a webhook whose id is the command's: the event
// WebhookRegistered, its secret sealed. The webhook is listed at once and
// receives the case events after its registration in the log.
//
// Errors: CodeForbidden unless an admin; CodeInvalid naming the field;
// CodeConflict after losing races; CodeUnavailable.
func (s *Service) RegisterWebhook(ctx context.Context, r notifyapi.RegisterWebhookRequest) (notifyapi.Webhook, error) {
	if r.Actor.Role != assist.RoleAdmin {
		return notifyapi.Webhook{}, assist.Errorf(assist.CodeForbidden, "only an admin registers webhooks")
	}
	if !eventlog.ValidCaseID(r.CommandID) {
		return notifyapi.Webhook{}, assist.Errorf(assist.CodeInvalid, "command id %q is not a UUID", r.CommandID)
	}
	in := assist.WebhookInput{URL: r.URL, Events: r.Events, Secret: r.Secret}
	id := r.CommandID
	w, seq, err := eventlog.ExecuteOn(ctx, s.log, eventlog.CommandOn[*assist.Webhook]{
		Kind: assist.KindWebhook, ID: id, CmdID: r.CommandID, Fold: assist.FoldWebhook,
		Decide: func(w *assist.Webhook, _ uint64) (assist.Event, error) {
			return assist.RegisterWebhook(assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}, id, w, in)
		},
		Prepare: func(_ context.Context, _ *assist.Webhook, e *assist.Event) error {
			b := e.Body.(assist.WebhookRegistered)
			key, wrapped := s.keys.NewDataKey(secretKeyID(id))
			ct, err := seal.Seal(key, []byte(r.Secret), []byte(secretKeyID(id)))
			if err != nil {
				return assist.Errorf(assist.CodeInternal, "seal the webhook secret: %v", err)
			}
			b.Secret, b.SecretKey = assist.Sealed{KeyID: secretKeyID(id), Ciphertext: ct}, wrapped
			e.Body = b
			return nil
		},
	})
	if err != nil {
		return notifyapi.Webhook{}, err
	}
	// Listed at once; the consumer records the same registration again
	// (a no-op) when it reaches the event.
	if err := s.db.Tx(ctx, func(q sqldb.Querier) error { return s.store.SaveWebhook(ctx, q, *w, seq) }); err != nil {
		return notifyapi.Webhook{}, err
	}
	return toWebhook(*w), nil
}

// RemoveWebhook removes a webhook: the event WebhookRemoved. Nothing more
// is sent to it; deliveries still pending are dropped.
//
// Errors: CodeForbidden unless an admin; CodeNotFound; CodeConflict after
// losing races; CodeUnavailable.
func (s *Service) RemoveWebhook(ctx context.Context, r notifyapi.RemoveWebhookRequest) (notifyapi.Webhook, error) {
	if r.Actor.Role != assist.RoleAdmin {
		return notifyapi.Webhook{}, assist.Errorf(assist.CodeForbidden, "only an admin removes webhooks")
	}
	if !eventlog.ValidCaseID(r.CommandID) {
		return notifyapi.Webhook{}, assist.Errorf(assist.CodeInvalid, "command id %q is not a UUID", r.CommandID)
	}
	if !eventlog.ValidCaseID(r.ID) {
		return notifyapi.Webhook{}, assist.Errorf(assist.CodeNotFound, "no webhook %s", r.ID)
	}
	w, _, err := eventlog.ExecuteOn(ctx, s.log, eventlog.CommandOn[*assist.Webhook]{
		Kind: assist.KindWebhook, ID: r.ID, CmdID: r.CommandID, Fold: assist.FoldWebhook,
		Decide: func(w *assist.Webhook, _ uint64) (assist.Event, error) {
			return assist.RemoveWebhook(assist.Cmd{ID: r.CommandID, Actor: r.Actor, At: s.now()}, r.ID, w)
		},
	})
	if err != nil {
		return notifyapi.Webhook{}, err
	}
	if err := s.db.Tx(ctx, func(q sqldb.Querier) error { return s.store.RemoveWebhook(ctx, q, r.ID) }); err != nil {
		return notifyapi.Webhook{}, err
	}
	return toWebhook(*w), nil
}
