package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// userHarness is a harness whose user events go to a real event log.
func userHarness(t *testing.T, db sqldb.DB) (*harness, eventlogtest.Log) {
	t.Helper()
	h := newHarness(t, db)
	l := eventlogtest.Open(t)
	h.srv.events = LogEvents(l.Log)
	return h, l
}

func (h *harness) patch(user, path, body string) *httptest.ResponseRecorder {
	h.t.Helper()
	return h.do(req{user: user, method: http.MethodPatch, path: path, body: body})
}

// userEvents reads the events of username from the log, with their raw
// bytes.
func userEvents(t *testing.T, l eventlogtest.Log, username string) ([]assist.Recorded, [][]byte) {
	t.Helper()
	msgs, err := l.LoadOf(context.Background(), assist.KindUser, assist.UserID(username))
	if err != nil {
		t.Fatal(err)
	}
	var raw [][]byte
	for _, m := range msgs {
		raw = append(raw, m.Data)
	}
	recs, err := l.History(context.Background(), assist.KindUser, assist.UserID(username))
	if err != nil {
		t.Fatal(err)
	}
	return recs, raw
}

// An admin lists, creates and changes accounts; each change is one event
// of kind user with its actor, never with the password or its hash; the
// new account signs in; a retried command changes nothing twice.
func TestUserAdministration(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h, l := userHarness(t, db)
		const pw = "correct horse battery"
		w := h.post("adm", "/v1/admin/users", `{"username":"nia","password":"`+pw+`","roles":["requester"],"posts":["KEN-NAIROBI"]}`)
		u := decodeJSONBody[userJSON](t, w, http.StatusCreated)
		if u.Username != "nia" || len(u.Roles) != 1 || u.Roles[0] != requester || u.Posts[0] != "KEN-NAIROBI" || u.Disabled {
			t.Fatalf("created %+v", u)
		}
		if loc := w.Header().Get("Location"); loc != "/v1/admin/users/nia" {
			t.Fatalf("Location %q", loc)
		}
		if w := login(h, "nia", pw, ""); w.Code != http.StatusOK {
			t.Fatalf("the new account signs in: %d %s", w.Code, w.Body)
		}

		w = h.patch("adm", "/v1/admin/users/nia", `{"roles":["requester","auditor"],"password":"another long one"}`)
		u = decodeJSONBody[userJSON](t, w, http.StatusOK)
		if len(u.Roles) != 2 || u.Posts[0] != "KEN-NAIROBI" {
			t.Fatalf("changed %+v: posts must stay", u)
		}
		if w := login(h, "nia", pw, ""); w.Code != http.StatusUnauthorized {
			t.Fatalf("the old password: %d", w.Code)
		}

		recs, raw := userEvents(t, l, "nia")
		if len(recs) != 2 {
			t.Fatalf("%d events, want 2", len(recs))
		}
		created, ok := recs[0].Event.Body.(assist.UserCreated)
		if !ok || created.Username != "nia" || recs[0].Event.Actor.Username != "adm" || recs[0].Event.Actor.Role != admin {
			t.Fatalf("first event %+v", recs[0].Event)
		}
		changed, ok := recs[1].Event.Body.(assist.UserChanged)
		if !ok || !changed.PasswordChanged || len(changed.Roles) != 2 || changed.Disabled {
			t.Fatalf("second event %+v", recs[1].Event)
		}
		for _, data := range raw {
			if bytes.Contains(data, []byte(pw)) || bytes.Contains(data, []byte("another long one")) ||
				bytes.Contains(data, []byte("argon2")) {
				t.Fatal("a user event holds the password or its hash")
			}
		}
		var waiting int
		if err := db.QueryRow(context.Background(), `SELECT count(*) FROM gateway_user_outbox`).Scan(&waiting); err != nil || waiting != 0 {
			t.Fatalf("outbox holds %d (%v), want 0 once appended", waiting, err)
		}

		// The same Idempotency-Key replays; a change that changes nothing
		// records nothing.
		key := map[string]string{IdempotencyHeader: "k-1"}
		for range 2 {
			w = h.do(req{user: "adm", method: http.MethodPatch, path: "/v1/admin/users/nia", body: `{"disabled":true}`, header: key})
			if w.Code != http.StatusOK {
				t.Fatalf("disable: %d %s", w.Code, w.Body)
			}
		}
		if w := h.patch("adm", "/v1/admin/users/nia", `{"disabled":true}`); w.Code != http.StatusOK {
			t.Fatalf("disable again: %d", w.Code)
		}
		if recs, _ := userEvents(t, l, "nia"); len(recs) != 3 {
			t.Fatalf("%d events, want 3", len(recs))
		}

		// Listed by username, paged.
		var names []string
		path := "/v1/admin/users?limit=4"
		for pages := 0; ; pages++ {
			p := decodeJSONBody[page[userJSON]](t, h.get("adm", path), http.StatusOK)
			for _, u := range p.Items {
				names = append(names, u.Username)
				if u.Username == "nia" && !u.Disabled {
					t.Fatal("nia is listed enabled")
				}
			}
			if p.NextCursor == "" {
				break
			}
			if pages > 5 {
				t.Fatal("too many pages")
			}
			path = "/v1/admin/users?limit=4&cursor=" + p.NextCursor
		}
		if len(names) != len(testUsers)+1 || names[0] != "adm" || !strings.Contains(strings.Join(names, ","), "nia") {
			t.Fatalf("listed %v", names)
		}
		decodeProblem(t, h.get("adm", "/v1/admin/users?cursor=bogus"), http.StatusBadRequest)
		decodeProblem(t, h.patch("adm", "/v1/admin/users/nobody", `{"disabled":true}`), http.StatusNotFound)
	})
}

// Bad input is a 4xx naming the field or the reason, and changes nothing:
// no account, no event.
func TestUserAdministrationBadInput(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h, _ := userHarness(t, db)
		const good = "long enough pw"
		for _, c := range []struct {
			name, method, path, body string
			status                   int
			field                    string
		}{
			{"unknown role", "POST", "/v1/admin/users", `{"username":"x1","password":"` + good + `","roles":["boss"]}`, 400, "roles"},
			{"no role", "POST", "/v1/admin/users", `{"username":"x1","password":"` + good + `","roles":[]}`, 400, "roles"},
			{"bad post code", "POST", "/v1/admin/users", `{"username":"x1","password":"` + good + `","roles":["requester"],"posts":["dhaka city"]}`, 400, "posts"},
			{"requester without post", "POST", "/v1/admin/users", `{"username":"x1","password":"` + good + `","roles":["requester"]}`, 400, "posts"},
			{"duplicate username", "POST", "/v1/admin/users", `{"username":"ana","password":"` + good + `","roles":["approver"]}`, 409, "username"},
			{"weak password", "POST", "/v1/admin/users", `{"username":"x1","password":"short","roles":["approver"]}`, 400, "password"},
			{"password is the username", "POST", "/v1/admin/users", `{"username":"longusername","password":"LongUserName","roles":["approver"]}`, 400, "password"},
			{"empty password", "POST", "/v1/admin/users", `{"username":"x1","password":"","roles":["approver"]}`, 400, "password"},
			{"no username", "POST", "/v1/admin/users", `{"password":"` + good + `","roles":["approver"]}`, 400, "username"},
			{"bidi in username", "POST", "/v1/admin/users", `{"username":"x\u202e1","password":"` + good + `","roles":["approver"]}`, 400, "username"},
			{"NUL in password", "POST", "/v1/admin/users", `{"username":"x1","password":"long enough\u0000pw","roles":["approver"]}`, 400, "password"},
			{"control in post", "POST", "/v1/admin/users", `{"username":"x1","password":"` + good + `","roles":["requester"],"posts":["BGD\u0007"]}`, 400, "posts"},
			{"space in username", "POST", "/v1/admin/users", `{"username":"x 1","password":"` + good + `","roles":["approver"]}`, 400, "username"},
			{"patch unknown role", "PATCH", "/v1/admin/users/olu", `{"roles":["approver","boss"]}`, 400, "roles"},
			{"patch bad post", "PATCH", "/v1/admin/users/ana", `{"posts":["bgd-dhaka"]}`, 400, "posts"},
			{"patch requester to no post", "PATCH", "/v1/admin/users/ana", `{"posts":[]}`, 400, "posts"},
			{"patch weak password", "PATCH", "/v1/admin/users/olu", `{"password":"pw"}`, 400, "password"},
			{"patch nothing", "PATCH", "/v1/admin/users/olu", `{}`, 400, "body"},
			{"patch not a bool", "PATCH", "/v1/admin/users/olu", `{"disabled":"yes"}`, 400, "disabled"},
			{"email without @", "POST", "/v1/admin/users", `{"username":"x1","password":"` + good + `","roles":["approver"],"email":"x1.example.org"}`, 400, "email"},
			{"email with a display name", "POST", "/v1/admin/users", `{"username":"x1","password":"` + good + `","roles":["approver"],"email":"X <x1@example.org>"}`, 400, "email"},
			{"email with a header in it", "POST", "/v1/admin/users", `{"username":"x1","password":"` + good + `","roles":["approver"],"email":"x1@example.org\r\nBcc: all@example.org"}`, 400, "email"},
			{"email without a dot in its domain", "POST", "/v1/admin/users", `{"username":"x1","password":"` + good + `","roles":["approver"],"email":"x1@localhost"}`, 400, "email"},
			{"email too long", "POST", "/v1/admin/users", `{"username":"x1","password":"` + good + `","roles":["approver"],"email":"` + strings.Repeat("x", 250) + `@example.org"}`, 400, "email"},
			{"patch email two @", "PATCH", "/v1/admin/users/olu", `{"email":"olu@hq@example.org"}`, 400, "email"},
			{"patch email not a string", "PATCH", "/v1/admin/users/olu", `{"email":7}`, 400, "email"},
			{"last admin disables itself", "PATCH", "/v1/admin/users/adm", `{"disabled":true}`, 409, ""},
			{"last admin drops the role", "PATCH", "/v1/admin/users/adm", `{"roles":["auditor"]}`, 409, ""},
		} {
			t.Run(c.name, func(t *testing.T) {
				before, _ := h.store.Accounts(context.Background(), "", 100)
				w := h.do(req{user: "adm", method: c.method, path: c.path, body: c.body})
				p := decodeProblem(t, w, c.status)
				if c.field != "" && !strings.Contains(strings.Join(fieldsOf(p), ","), c.field) {
					t.Fatalf("fields %v, want %s; %s", fieldsOf(p), c.field, w.Body)
				}
				if c.status == http.StatusConflict && c.field == "" && !strings.Contains(p.Detail, "last enabled admin") {
					t.Fatalf("detail %q does not name the reason", p.Detail)
				}
				after, _ := h.store.Accounts(context.Background(), "", 100)
				if len(after) != len(before) {
					t.Fatalf("%d accounts after, %d before", len(after), len(before))
				}
				for i := range after {
					if after[i].Disabled != before[i].Disabled || after[i].Email != before[i].Email || strings.Join(after[i].Roles, ",") != strings.Join(before[i].Roles, ",") ||
						strings.Join(after[i].Posts, ",") != strings.Join(before[i].Posts, ",") {
						t.Fatalf("%s changed: %+v → %+v", after[i].Username, before[i], after[i])
					}
				}
				var n int
				if err := db.QueryRow(context.Background(), `SELECT count(*) FROM gateway_user_outbox`).Scan(&n); err != nil || n != 0 {
					t.Fatalf("outbox %d %v", n, err)
				}
			})
		}
		// With a second admin, the first may disable itself.
		decodeJSONBody[userJSON](t, h.post("adm", "/v1/admin/users", `{"username":"adm2","password":"`+good+`","roles":["admin"]}`), http.StatusCreated)
		decodeJSONBody[userJSON](t, h.patch("adm", "/v1/admin/users/adm", `{"disabled":true}`), http.StatusOK)
	})
}

// An account's e-mail address: set at creation, changed and removed by
// PATCH (a change of the address alone is an event, and ends no
// session), listed, and carried by UserCreated and UserChanged for
// notify.
func TestUserEmail(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h, l := userHarness(t, db)
		const pw = "correct horse battery"
		u := decodeJSONBody[userJSON](t, h.post("adm", "/v1/admin/users",
			`{"username":"zoe","password":"`+pw+`","roles":["approver"],"email":"zoe@hq.example.org"}`), http.StatusCreated)
		if u.Email != "zoe@hq.example.org" {
			t.Fatalf("created %+v", u)
		}
		zoe := decodeJSONBody[struct{ Token string }](t, login(h, "zoe", pw, ""), http.StatusOK).Token
		u = decodeJSONBody[userJSON](t, h.patch("adm", "/v1/admin/users/zoe", `{"email":"zoe.k@hq.example.org"}`), http.StatusOK)
		if u.Email != "zoe.k@hq.example.org" || len(u.Roles) != 1 {
			t.Fatalf("changed %+v", u)
		}
		if w := h.do(req{method: http.MethodGet, path: "/v1/me", header: map[string]string{"Authorization": "Bearer " + zoe}}); w.Code != http.StatusOK {
			t.Fatalf("a new address ended the session: %d", w.Code)
		}
		p := decodeJSONBody[page[userJSON]](t, h.get("adm", "/v1/admin/users?limit=500"), http.StatusOK)
		listed := false
		for _, it := range p.Items {
			listed = listed || (it.Username == "zoe" && it.Email == "zoe.k@hq.example.org")
		}
		if !listed {
			t.Fatalf("zoe's address not listed: %+v", p.Items)
		}
		u = decodeJSONBody[userJSON](t, h.patch("adm", "/v1/admin/users/zoe", `{"email":""}`), http.StatusOK)
		if u.Email != "" {
			t.Fatalf("removed: %+v", u)
		}
		recs, _ := userEvents(t, l, "zoe")
		if len(recs) != 3 {
			t.Fatalf("%d events, want 3", len(recs))
		}
		c, _ := recs[0].Event.Body.(assist.UserCreated)
		c1, _ := recs[1].Event.Body.(assist.UserChanged)
		c2, _ := recs[2].Event.Body.(assist.UserChanged)
		if c.Email != "zoe@hq.example.org" || c1.Email != "zoe.k@hq.example.org" || c1.PasswordChanged || len(c1.Roles) != 1 ||
			c2.Email != "" {
			t.Fatalf("events %+v %+v %+v", c, c1, c2)
		}
	})
}

// A change whose relay to the log failed (the log unreachable, or the
// gateway stopped right after the change) waits in the outbox and is
// appended later, once; one appended before a crash that kept it in the
// outbox is not appended twice.
func TestUserOutboxSurvivesACrash(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t)) // no Events: nothing is relayed
	decodeJSONBody[userJSON](t, h.post("adm", "/v1/admin/users", `{"username":"nia","password":"long enough pw","roles":["approver"]}`), http.StatusCreated)
	evs, err := h.store.UserOutbox(context.Background(), 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("outbox %v %v", evs, err)
	}
	l := eventlogtest.Open(t)
	h.srv.events = LogEvents(l.Log)
	// Appended, then "crashed" before leaving the outbox.
	if err := h.srv.events.AppendOnce(context.Background(), evs[0]); err != nil {
		t.Fatal(err)
	}
	h.srv.relayUsers(context.Background())
	if recs, _ := userEvents(t, l, "nia"); len(recs) != 1 {
		t.Fatalf("%d events, want 1", len(recs))
	}
	if evs, _ := h.store.UserOutbox(context.Background(), 10); len(evs) != 0 {
		t.Fatalf("outbox still holds %d", len(evs))
	}
}

// A disabled account's tokens stop at once on the replica that disabled
// it, and within the revocation poll on another replica (which verifies
// access tokens without its database); it neither signs in nor renews.
// A change of roles takes effect the same way.
func TestDisabledAccountTokensStop(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h, _ := userHarness(t, db)
		other := replica(t, h).router() // a second gateway, polling revocations every second
		tok := h.tokens["raj"]
		if w := getOn(other, tok, "/v1/me"); w.Code != http.StatusOK {
			t.Fatalf("before: %d", w.Code)
		}
		decodeJSONBody[userJSON](t, h.patch("adm", "/v1/admin/users/raj", `{"disabled":true}`), http.StatusOK)
		if w := h.get("raj", "/v1/me"); w.Code != http.StatusUnauthorized {
			t.Fatalf("same replica after disabling: %d", w.Code)
		}
		evatest.Eventually(t, "the other replica refuses the disabled account's token", func() bool {
			return getOn(other, tok, "/v1/me").Code == http.StatusUnauthorized
		})
		if w := h.do(req{user: "raj", method: http.MethodPost, path: "/v1/auth/refresh"}); w.Code != http.StatusUnauthorized {
			t.Fatalf("refresh: %d", w.Code)
		}
		if w := login(h, "raj", "pw", ""); w.Code != http.StatusUnauthorized {
			t.Fatalf("sign-in: %d", w.Code)
		}
		decodeJSONBody[userJSON](t, h.patch("adm", "/v1/admin/users/raj", `{"disabled":false}`), http.StatusOK)
		if w := login(h, "raj", "pw", ""); w.Code != http.StatusOK {
			t.Fatalf("sign-in once enabled: %d", w.Code)
		}

		// olu loses the approver role: its token no longer reaches the queue.
		tok = h.tokens["olu"]
		if w := getOn(other, tok, "/v1/queue"); w.Code != http.StatusOK {
			t.Fatalf("queue before: %d", w.Code)
		}
		decodeJSONBody[userJSON](t, h.patch("adm", "/v1/admin/users/olu", `{"roles":["auditor"]}`), http.StatusOK)
		evatest.Eventually(t, "the other replica reads olu's new roles", func() bool {
			return getOn(other, tok, "/v1/queue").Code == http.StatusForbidden
		})
	})
}

// getOn is a GET of path on srv with a bearer token.
func getOn(srv http.Handler, token, path string) *httptest.ResponseRecorder {
	hr := httptest.NewRequest(http.MethodGet, path, nil)
	hr.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, hr)
	return w
}
