package web

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The queue marks a case whose deadline is near (due_soon: DeadlineWarning
// recorded) as due soon, and an escalated one as such, never both; the
// case's History names the warning by its label. The page names, for its
// script, the change stream it follows and its timed refresh (15 s).
func TestQueueMarksDueSoon(t *testing.T) {
	now := t0.Add(3 * time.Hour)
	soon, late, calm := sampleCase(), sampleCase(), sampleCase()
	soon.ID, late.ID, calm.ID = caseID, "01900000-0000-7000-8000-0000000000c2", "01900000-0000-7000-8000-0000000000c3"
	late.Escalated = true
	api := &fakeAPI{answer: func(r *http.Request, body []byte) (int, any) {
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/auth/token":
			return 200, tokenJSON{Token: "eva_tok"}
		case "GET /v1/me":
			return 200, me{Username: "olu", Roles: []string{"approver"}}
		case "GET /v1/queue":
			return 200, page[queueItem]{Items: []queueItem{{caseJSON: late, DueSoon: false}, {caseJSON: soon, DueSoon: true}, {caseJSON: calm}}}
		case "GET /v1/requests/" + caseID:
			return 200, soon
		case "GET /v1/requests/" + caseID + "/history":
			return 200, page[eventJSON]{Items: []eventJSON{{Seq: 1, Type: "RequestSubmitted", At: t0.Format(time.RFC3339),
				Actor: actorJSON{Username: "ana", Role: "requester"}}, {Seq: 2, Type: "DeadlineWarning",
				At: t0.Add(3 * time.Hour).Format(time.RFC3339), Actor: actorJSON{Username: "eva", Role: "system"}}}}
		}
		return 200, page[fundJSON]{}
	}}
	c := newClient(t, newSite(t, api, func() time.Time { return now }))
	signIn(t, c)
	w := c.do("GET", "/queue", nil)
	body := w.Body.String()
	if w.Code != http.StatusOK || strings.Count(body, `data-due-soon="true"`) != 1 || !strings.Contains(body, ">Due soon</span>") {
		t.Fatalf("queue: %d %s", w.Code, body)
	}
	if !strings.Contains(body, `<div id="queue-live" data-live="/queue?partial=1" data-changes="/v1/changes">`) ||
		!strings.Contains(body, `<body data-refresh="15">`) {
		t.Fatalf("the queue does not name its change stream and refresh: %s", body)
	}
	row := func(id string) string {
		i := strings.Index(body, `data-case-id="`+id+`"`)
		j := strings.Index(body[i:], "</tr>")
		return body[i : i+j]
	}
	if !strings.Contains(row(soon.ID), "data-due-soon") || strings.Contains(row(late.ID), "data-due-soon") ||
		!strings.Contains(row(late.ID), "badge esc") || strings.Contains(row(calm.ID), "badge") {
		t.Fatalf("marks by row: soon %q late %q calm %q", row(soon.ID), row(late.ID), row(calm.ID))
	}
	w = c.do("GET", "/requests/"+caseID, nil)
	if !strings.Contains(w.Body.String(), "Deadline near") {
		t.Fatalf("the case's History does not name the warning: %s", w.Body)
	}
}
