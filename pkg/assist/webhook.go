package assist

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Webhooks: an admin registers a URL to be told of case events
// (services/notify delivers them). A registration and a removal are
// events of kind webhook, on eva.webhook.<id>.<Type>.

// Limits of a webhook registration.
const (
	// MinWebhookSecret and MaxWebhookSecret bound the secret's length in
	// bytes: the receiver's key for the HMAC of each delivery.
	MinWebhookSecret = 16
	MaxWebhookSecret = 256
	// MaxWebhookURL bounds the URL's length.
	MaxWebhookURL = 2048
)

// The webhook events.
type (
	// WebhookRegistered: a URL is to receive the case events of the
	// types Events. The secret is only ever in the log sealed: Secret
	// holds it encrypted under a data key (KeyID the webhook's id) that
	// SecretKey holds wrapped by the installation's master key.
	WebhookRegistered struct {
		URL       string
		Events    []string
		Secret    Sealed
		SecretKey []byte
	}
	// WebhookRemoved: the webhook receives nothing more; deliveries
	// still pending for it are dropped.
	WebhookRemoved struct{}
)

// Type implements Body.
func (WebhookRegistered) Type() string { return "WebhookRegistered" }

// Type implements Body.
func (WebhookRemoved) Type() string { return "WebhookRemoved" }

// Kind says the event is about a webhook.
func (WebhookRegistered) Kind() Kind { return KindWebhook }

// Kind says the event is about a webhook.
func (WebhookRemoved) Kind() Kind { return KindWebhook }

func (WebhookRegistered) isBody() {}
func (WebhookRemoved) isBody()    {}

// CaseEventTypes are the event types about a case: those a webhook may
// ask for.
func CaseEventTypes() []string {
	var out []string
	for _, t := range EventTypes {
		if TypeKind(t) == KindCase {
			out = append(out, t)
		}
	}
	return out
}

// Webhook is a webhook as its events leave it.
type Webhook struct {
	ID        string
	URL       string
	Events    []string
	Secret    Sealed
	SecretKey []byte
	By        string
	At        time.Time
	Removed   bool
}

// FoldWebhook is the webhook after its events; nil when it has none.
func FoldWebhook(recs []Recorded) *Webhook {
	var w *Webhook
	for _, r := range recs {
		switch b := r.Event.Body.(type) {
		case WebhookRegistered:
			w = &Webhook{ID: r.Event.CaseID, URL: b.URL, Events: b.Events, Secret: b.Secret, SecretKey: b.SecretKey,
				By: r.Event.Actor.Username, At: r.Event.At}
		case WebhookRemoved:
			if w != nil {
				w.Removed = true
			}
		}
	}
	return w
}

// WebhookInput is a registration as an admin sends it.
type WebhookInput struct {
	URL    string
	Events []string
	Secret string
}

// CheckWebhook checks a registration: the URL absolute http or https,
// with a host and without user information; at least one event type, each
// a case event type (duplicates are dropped); a secret of
// MinWebhookSecret to MaxWebhookSecret bytes. It returns the event types
// in the order given.
//
// Errors: CodeInvalid naming each bad field (url, events or events[i],
// secret).
func CheckWebhook(in WebhookInput) ([]string, error) {
	var probs Problems
	u, err := url.Parse(in.URL)
	switch {
	case in.URL == "":
		probs.Add("url", "is required")
	case len(in.URL) > MaxWebhookURL:
		probs.Add("url", "must be at most %d bytes", MaxWebhookURL)
	case err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https"):
		probs.Add("url", "must be an absolute http or https URL")
	case u.User != nil:
		probs.Add("url", "must not hold a user name or password")
	case u.Hostname() == "":
		probs.Add("url", "must name a host")
	case u.Fragment != "" || strings.ContainsAny(in.URL, " \t\r\n"):
		probs.Add("url", "must have no fragment and no spaces")
	}
	types := CaseEventTypes()
	var events []string
	if len(in.Events) == 0 {
		probs.Add("events", "is required: one or more of %s", strings.Join(types, ", "))
	}
	for i, e := range in.Events {
		switch {
		case !slices.Contains(types, e):
			probs.Add("events["+strconv.Itoa(i)+"]", "%q is not a case event type; one of %s", e, strings.Join(types, ", "))
		case !slices.Contains(events, e):
			events = append(events, e)
		}
	}
	switch {
	case len(in.Secret) < MinWebhookSecret:
		probs.Add("secret", "must be at least %d bytes", MinWebhookSecret)
	case len(in.Secret) > MaxWebhookSecret:
		probs.Add("secret", "must be at most %d bytes", MaxWebhookSecret)
	}
	if err := probs.Err(); err != nil {
		return nil, err
	}
	return events, nil
}

// RegisterWebhook decides a registration of the webhook id (w its state,
// nil for a new one). The event's secret is empty: the caller seals it
// (Secret, SecretKey) before the event is appended.
//
// Errors: CodeForbidden for anyone but an admin; those of CheckWebhook;
// CodeConflict when the id is taken.
func RegisterWebhook(cmd Cmd, id string, w *Webhook, in WebhookInput) (Event, error) {
	if cmd.Actor.Role != RoleAdmin {
		return Event{}, Errorf(CodeForbidden, "only an admin registers webhooks")
	}
	events, err := CheckWebhook(in)
	if err != nil {
		return Event{}, err
	}
	if w != nil {
		return Event{}, conflict("webhook %s exists", id)
	}
	return cmd.event(id, "", WebhookRegistered{URL: in.URL, Events: events}), nil
}

// RemoveWebhook decides the removal of webhook id (w its state).
//
// Errors: CodeForbidden for anyone but an admin; CodeNotFound when there
// is no such webhook or it was removed.
func RemoveWebhook(cmd Cmd, id string, w *Webhook) (Event, error) {
	if cmd.Actor.Role != RoleAdmin {
		return Event{}, Errorf(CodeForbidden, "only an admin removes webhooks")
	}
	if w == nil || w.Removed {
		return Event{}, Errorf(CodeNotFound, "no webhook %s", id)
	}
	return cmd.event(id, "", WebhookRemoved{}), nil
}
