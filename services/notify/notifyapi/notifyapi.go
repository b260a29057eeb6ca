// Package notifyapi is the contract of the notify service: its endpoints
// (subjects with their request and reply types) and a typed client. The
// gateway knows notify only through this package.
package notifyapi

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/rpc"
)

// Notify's endpoints.
var (
	Webhooks        = rpc.Endpoint[WebhooksRequest, WebhookPage]{Subject: "eva.notify.webhooks", Idempotent: true}
	RegisterWebhook = rpc.Endpoint[RegisterWebhookRequest, Webhook]{Subject: "eva.notify.webhook_register", Idempotent: true}
	RemoveWebhook   = rpc.Endpoint[RemoveWebhookRequest, Webhook]{Subject: "eva.notify.webhook_remove", Idempotent: true}
)

// Webhook is a registered webhook, without its secret (which never
// leaves notify).
type Webhook struct {
	ID           string    `json:"id"`
	URL          string    `json:"url"`
	Events       []string  `json:"events"`
	RegisteredBy string    `json:"registered_by"`
	RegisteredAt time.Time `json:"registered_at"`
}

// WebhooksRequest asks for the registered webhooks.
type WebhooksRequest struct{}

// WebhookPage is every registered webhook, oldest first.
type WebhookPage struct {
	Items []Webhook `json:"items"`
}

// RegisterWebhookRequest registers a webhook; the command id becomes the
// webhook's id.
type RegisterWebhookRequest struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	URL       string       `json:"url"`
	Events    []string     `json:"events"`
	Secret    string       `json:"secret"`
}

// RemoveWebhookRequest removes webhook ID.
type RemoveWebhookRequest struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	ID        string       `json:"id"`
}

// Acting (rpc.Acting): the commands name their actor, which notify
// accepts only as the gateway signed it.
func (r RegisterWebhookRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

// Acting implements rpc.Acting.
func (r RemoveWebhookRequest) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

// Client calls notify over NATS.
type Client struct{ nc *nats.Conn }

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

// Webhooks lists the registered webhooks.
//
// Errors: CodeUnavailable.
func (c *Client) Webhooks(ctx context.Context, r WebhooksRequest) (WebhookPage, error) {
	return Webhooks.Call(ctx, c.nc, r)
}

// RegisterWebhook registers a webhook: the event WebhookRegistered.
//
// Errors: CodeForbidden unless an admin; CodeInvalid naming the field
// (url, events, events[i], secret); CodeUnavailable.
func (c *Client) RegisterWebhook(ctx context.Context, r RegisterWebhookRequest) (Webhook, error) {
	return RegisterWebhook.Call(ctx, c.nc, r)
}

// RemoveWebhook removes a webhook: the event WebhookRemoved.
//
// Errors: CodeForbidden unless an admin; CodeNotFound; CodeUnavailable.
func (c *Client) RemoveWebhook(ctx context.Context, r RemoveWebhookRequest) (Webhook, error) {
	return RemoveWebhook.Call(ctx, c.nc, r)
}
