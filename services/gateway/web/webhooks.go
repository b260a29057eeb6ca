package web

import (
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

type (
	webhookJSON struct {
		ID           string   `json:"id"`
		URL          string   `json:"url"`
		Events       []string `json:"events"`
		RegisteredBy string   `json:"registered_by"`
		RegisteredAt string   `json:"registered_at"`
	}
	webhookListData struct {
		Items []webhookJSON
		Form  *form
		Key   string
	}
)

// webhookList is /webhooks (admins): the webhooks, a form to register
// one, a button to remove each.
func (s *site) webhookList(v *view) error { return s.showWebhooks(v, http.StatusOK, newForm()) }

func (s *site) showWebhooks(v *view, status int, f *form) error {
	p, err := get[page[webhookJSON]](v.ctx(), v.s.api, v.token, "/v1/webhooks")
	if err != nil {
		return err
	}
	v.render(status, "webhooks", v.L.T("webhooks.title"), webhookListData{Items: p.Items, Form: f, Key: randomKey()})
	return nil
}

// createWebhook is POST /webhooks: the event types are typed as a list
// separated by commas or spaces.
func (s *site) createWebhook(v *view) error {
	f := formFrom(v.r, "url", "events", "secret")
	f.Key = formKey(v.r)
	f.require(v.L, "url", "events", "secret")
	if f.OK() {
		events := strings.FieldsFunc(f.V("events"), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
		res, err := v.call(call{method: http.MethodPost, path: "/v1/webhooks", key: f.Key,
			body: map[string]any{"url": f.V("url"), "events": events, "secret": f.V("secret")}})
		if err != nil {
			return err
		}
		if res.Problem == nil {
			v.redirect("/webhooks?done=webhook")
			return nil
		}
		if res.Problem.Status == http.StatusUnauthorized {
			return res.Problem
		}
		for i, fe := range res.Problem.Errors {
			if strings.HasPrefix(fe.Field, "events[") {
				res.Problem.Errors[i].Field = "events"
			}
		}
		f.fromProblem(v.L, res.Problem)
	}
	f.Values["secret"] = "" // never shown again
	f.Key = randomKey()
	return s.showWebhooks(v, statusOfForm(f), f)
}

// removeWebhook is POST /webhooks/{id}/remove.
func (s *site) removeWebhook(v *view) error {
	res, err := v.call(call{method: http.MethodDelete, path: "/v1/webhooks/" + chi.URLParam(v.r, "id"), key: formKey(v.r)})
	if err != nil {
		return err
	}
	if res.Problem != nil && res.Problem.Status != http.StatusNotFound {
		return res.Problem
	}
	v.redirect("/webhooks?done=webhook.removed")
	return nil
}
