package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/notify/notifyapi"
)

const webhookID = "0194e1c2-7a3b-7c4d-8e5f-00000000d001"

// fakeNotify is a fake of the notify service: it keeps webhooks in a map.
type fakeNotify struct {
	calls *calls
	mu    sync.Mutex
	hooks map[string]notifyapi.Webhook
}

func newFakeNotify(c *calls) *fakeNotify {
	return &fakeNotify{calls: c, hooks: map[string]notifyapi.Webhook{
		webhookID: {ID: webhookID, URL: "https://hooks.example.org/eva", Events: []string{"RequestApproved"},
			RegisteredBy: "adm", RegisteredAt: t0},
	}}
}

func (f *fakeNotify) Webhooks(ctx context.Context, r notifyapi.WebhooksRequest) (notifyapi.WebhookPage, error) {
	return call(f.calls, "notify.Webhooks", func(context.Context, notifyapi.WebhooksRequest) (notifyapi.WebhookPage, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		p := notifyapi.WebhookPage{Items: []notifyapi.Webhook{}}
		for _, w := range f.hooks {
			p.Items = append(p.Items, w)
		}
		slices.SortFunc(p.Items, func(a, b notifyapi.Webhook) int { return strings.Compare(a.ID, b.ID) })
		return p, nil
	}, ctx, r)
}

func (f *fakeNotify) RegisterWebhook(ctx context.Context, r notifyapi.RegisterWebhookRequest) (notifyapi.Webhook, error) {
	return call(f.calls, "notify.RegisterWebhook", func(context.Context, notifyapi.RegisterWebhookRequest) (notifyapi.Webhook, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w := notifyapi.Webhook{ID: r.CommandID, URL: r.URL, Events: r.Events, RegisteredBy: r.Actor.Username, RegisteredAt: t0}
		f.hooks[w.ID] = w
		return w, nil
	}, ctx, r)
}

func (f *fakeNotify) RemoveWebhook(ctx context.Context, r notifyapi.RemoveWebhookRequest) (notifyapi.Webhook, error) {
	return call(f.calls, "notify.RemoveWebhook", func(context.Context, notifyapi.RemoveWebhookRequest) (notifyapi.Webhook, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w, ok := f.hooks[r.ID]
		if !ok {
			return w, assist.Errorf(assist.CodeNotFound, "no webhook %s", r.ID)
		}
		delete(f.hooks, r.ID)
		return w, nil
	}, ctx, r)
}

// TestWebhookBadInput: a URL that is not http(s) or holds a user name, an
// unknown event type, an empty or short secret: 400 naming the field, and
// notify is not called.
func TestWebhookBadInput(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	const secret = `"0123456789abcdef"`
	cases := []struct{ name, body, field string }{
		{"no url", `{"events":["RequestApproved"],"secret":` + secret + `}`, "url"},
		{"ftp url", `{"url":"ftp://example.org/x","events":["RequestApproved"],"secret":` + secret + `}`, "url"},
		{"relative url", `{"url":"/hooks","events":["RequestApproved"],"secret":` + secret + `}`, "url"},
		{"javascript url", `{"url":"javascript:alert(1)","events":["RequestApproved"],"secret":` + secret + `}`, "url"},
		{"userinfo", `{"url":"https://u:p@example.org/x","events":["RequestApproved"],"secret":` + secret + `}`, "url"},
		{"no host", `{"url":"https:///x","events":["RequestApproved"],"secret":` + secret + `}`, "url"},
		{"no events", `{"url":"https://example.org/x","events":[],"secret":` + secret + `}`, "events"},
		{"unknown event", `{"url":"https://example.org/x","events":["RequestApproved","CaseExploded"],"secret":` + secret + `}`, "events[1]"},
		{"a webhook's own event", `{"url":"https://example.org/x","events":["WebhookRegistered"],"secret":` + secret + `}`, "events[0]"},
		{"empty secret", `{"url":"https://example.org/x","events":["RequestApproved"],"secret":""}`, "secret"},
		{"short secret", `{"url":"https://example.org/x","events":["RequestApproved"],"secret":"short"}`, "secret"},
		{"long secret", `{"url":"https://example.org/x","events":["RequestApproved"],"secret":"` + strings.Repeat("s", 257) + `"}`, "secret"},
	}
	for _, c := range cases {
		h.calls.reset()
		w := h.post("adm", "/v1/webhooks", c.body)
		p := decodeProblem(t, w, http.StatusBadRequest)
		if fs := fieldsOf(p); !slices.Contains(fs, c.field) {
			t.Errorf("%s: fields %v, want %s (%s)", c.name, fs, c.field, p.Detail)
		}
		if got := h.calls.list(); len(got) != 0 {
			t.Errorf("%s: services called: %v", c.name, got)
		}
	}
	if n := len(h.notify.hooks); n != 1 {
		t.Fatalf("%d webhooks after bad input, want the 1 there before", n)
	}
}

// TestWebhookRoundTrip: register (201, Location, no secret in the answer),
// list, remove, then removing again is 404.
func TestWebhookRoundTrip(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	w := h.post("adm", "/v1/webhooks", `{"url":"http://10.0.0.1:8080/in","events":["RequestSubmitted","DeadlineMissed"],"secret":"a-very-long-secret"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("register: %d %s", w.Code, w.Body)
	}
	if strings.Contains(w.Body.String(), "a-very-long-secret") {
		t.Fatalf("the secret is in the answer: %s", w.Body)
	}
	var got webhookJSON
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if w.Header().Get("Location") != "/v1/webhooks/"+got.ID || got.RegisteredBy != "adm" ||
		!slices.Equal(got.Events, []string{"RequestSubmitted", "DeadlineMissed"}) {
		t.Fatalf("registered %+v, Location %q", got, w.Header().Get("Location"))
	}
	var list page[webhookJSON]
	if err := json.Unmarshal(h.get("adm", "/v1/webhooks").Body.Bytes(), &list); err != nil || len(list.Items) != 2 {
		t.Fatalf("list %+v %v", list, err)
	}
	del := func() int {
		return h.do(req{user: "adm", method: http.MethodDelete, path: "/v1/webhooks/" + got.ID, header: map[string]string{}}).Code
	}
	if c := del(); c != http.StatusOK {
		t.Fatalf("remove: %d", c)
	}
	if c := del(); c != http.StatusNotFound {
		t.Fatalf("remove again: %d, want 404", c)
	}
}
