package gateway

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/notify/notifyapi"
)

// webhookJSON is a registered webhook; its secret is never shown again.
type webhookJSON struct {
	ID           string    `json:"id"`
	URL          string    `json:"url"`
	Events       []string  `json:"events" jsonschema_description:"the case event types it receives"`
	RegisteredBy string    `json:"registered_by"`
	RegisteredAt timestamp `json:"registered_at"`
}

func (w webhookJSON) location() string { return "/v1/webhooks/" + w.ID }

// webhookBody is POST /v1/webhooks's body.
type webhookBody struct {
	URL    string   `json:"url" jsonschema_description:"an absolute http or https URL without user name or password"`
	Events []string `json:"events" jsonschema_description:"case event type names (RequestSubmitted, RequestApproved, DeadlineMissed, ...); one or more"`
	Secret string   `json:"secret" jsonschema_description:"the key of each delivery's EVA-Signature HMAC, 16 to 256 bytes; kept sealed, never shown again"`
}

func toWebhookJSON(w notifyapi.Webhook) webhookJSON {
	return webhookJSON{ID: w.ID, URL: w.URL, Events: w.Events, RegisteredBy: w.RegisteredBy,
		RegisteredAt: formatTime(w.RegisteredAt)}
}

func adminActor(u Account) assist.Actor { return assist.Actor{Username: u.Username, Role: admin} }

// notifyService is the notify client, or an error when the gateway runs
// without one.
func (s *server) notifyService() (Notify, error) {
	if s.notify == nil {
		return nil, assist.Errorf(assist.CodeUnavailable, "notifications are not configured")
	}
	return s.notify, nil
}

// listWebhooks is GET /v1/webhooks.
func (s *server) listWebhooks(r *http.Request) (page[webhookJSON], error) {
	n, err := s.notifyService()
	if err != nil {
		return page[webhookJSON]{}, err
	}
	p, err := n.Webhooks(r.Context(), notifyapi.WebhooksRequest{})
	if err != nil {
		return page[webhookJSON]{}, err
	}
	return page[webhookJSON]{Items: mapSlice(p.Items, toWebhookJSON)}, nil
}

// registerWebhook is POST /v1/webhooks.
func (s *server) registerWebhook(r *http.Request, c command, in webhookBody) (webhookJSON, error) {
	n, err := s.notifyService()
	if err != nil {
		return webhookJSON{}, err
	}
	// The service checks too; checking here answers 400 without a call.
	if _, err := assist.CheckWebhook(assist.WebhookInput{URL: in.URL, Events: in.Events, Secret: in.Secret}); err != nil {
		return webhookJSON{}, err
	}
	w, err := n.RegisterWebhook(r.Context(), notifyapi.RegisterWebhookRequest{CommandID: c.ID, Actor: adminActor(c.User),
		URL: in.URL, Events: in.Events, Secret: in.Secret})
	if err != nil {
		return webhookJSON{}, err
	}
	return toWebhookJSON(w), nil
}

// removeWebhook is DELETE /v1/webhooks/{id}.
func (s *server) removeWebhook(r *http.Request, c command, _ noBody) (webhookJSON, error) {
	n, err := s.notifyService()
	if err != nil {
		return webhookJSON{}, err
	}
	w, err := n.RemoveWebhook(r.Context(), notifyapi.RemoveWebhookRequest{CommandID: c.ID, Actor: adminActor(c.User),
		ID: chi.URLParam(r, "id")})
	if err != nil {
		return webhookJSON{}, err
	}
	return toWebhookJSON(w), nil
}
