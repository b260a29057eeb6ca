package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// adminAPI answers as the API would for adm (an admin) signed in with
// the token eva_tok; bodies records what the UI sent, by call.
func adminAPI(t *testing.T, bodies map[string]map[string]any) *fakeAPI {
	return &fakeAPI{answer: func(r *http.Request, body []byte) (int, any) {
		if r.URL.Path != "/v1/auth/token" && r.Header.Get("Authorization") != "Bearer eva_tok" {
			return 401, problem{Status: 401, Code: "unauthenticated", Detail: "sign in"}
		}
		var in map[string]any
		_ = json.Unmarshal(body, &in)
		bodies[r.Method+" "+r.URL.Path] = in
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/auth/token":
			return 200, tokenJSON{Token: "eva_tok"}
		case "GET /v1/me":
			return 200, me{Username: "adm", Roles: []string{"admin"}}
		case "GET /v1/admin/users":
			return 200, page[userJSON]{Items: []userJSON{
				{Username: "adm", Roles: []string{"admin"}, Posts: []string{}},
				{Username: "ana", Roles: []string{"requester"}, Posts: []string{"BGD-DHAKA"}, Disabled: true}}}
		case "POST /v1/admin/users":
			if in["username"] == "ana" {
				return 409, problem{Status: 409, Code: "conflict", Detail: "an account ana exists",
					Errors: []fieldError{{Field: "username", Message: "is taken"}}}
			}
			return 201, userJSON{Username: in["username"].(string)}
		case "PATCH /v1/admin/users/adm":
			return 409, problem{Status: 409, Code: "conflict", Detail: "adm is the last enabled admin", Errors: []fieldError{}}
		case "PATCH /v1/admin/users/ana":
			return 200, userJSON{Username: "ana"}
		}
		return 404, problem{Status: 404, Code: "not_found", Detail: "no such resource"}
	}}
}

// The Users page lists accounts and, without any script, creates one and
// changes one through the API; refusals come back on their form.
func TestUsersPage(t *testing.T) {
	bodies := map[string]map[string]any{}
	api := adminAPI(t, bodies)
	c := newClient(t, newSite(t, api, nil))
	signIn(t, c)
	w := c.do("GET", "/users", nil)
	page := w.Body.String()
	for _, want := range []string{`data-username="ana"`, `data-disabled="true"`, `<label for="newuser-username">Username</label>`,
		`<label for="newuser-password">Password</label>`, `<label for="newuser-roles">Roles</label>`,
		`<label for="newuser-posts">Posts</label>`, `>Create account</button>`, `action="/users/ana"`,
		`<label for="user1-roles">Roles</label>`, `id="user1-posts" name="posts" type="text" value="BGD-DHAKA"`,
		`id="user1-disabled" name="disabled" type="checkbox" checked`, `<label for="user1-disabled">Disabled</label>`} {
		if !strings.Contains(page, want) {
			t.Errorf("users page lacks %s", want)
		}
	}
	if w.Code != http.StatusOK {
		t.Fatalf("users page: %d", w.Code)
	}
	csrf := csrfOf(t, page)

	// Without the CSRF token nothing reaches the API.
	before := len(api.calls)
	if w := c.do("POST", "/users", url.Values{"username": {"nia"}, "password": {"long enough pw"}, "roles": {"approver"}}); w.Code != http.StatusForbidden {
		t.Fatalf("no CSRF token: %d", w.Code)
	}
	if slices.ContainsFunc(api.calls[before:], func(s string) bool { return strings.HasPrefix(s, "POST /v1/admin") }) {
		t.Fatal("the API was called without a CSRF token")
	}

	w = c.do("POST", "/users", url.Values{"csrf": {csrf}, "key": {"k1"}, "username": {"nia"}, "password": {"long enough pw"},
		"roles": {"requester, auditor"}, "posts": {"KEN-NAIROBI"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/users?done=user_created" {
		t.Fatalf("create: %d %q %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	got := bodies["POST /v1/admin/users"]
	if got["username"] != "nia" || got["password"] != "long enough pw" || len(got["roles"].([]any)) != 2 || got["posts"].([]any)[0] != "KEN-NAIROBI" {
		t.Fatalf("create sent %v", got)
	}

	w = c.do("POST", "/users", url.Values{"csrf": {csrf}, "key": {"k2"}, "username": {"ana"}, "password": {"long enough pw"},
		"roles": {"approver"}})
	body := w.Body.String()
	if w.Code != http.StatusBadRequest || !strings.Contains(body, `aria-invalid="true" aria-describedby="newuser-username-error`) ||
		strings.Contains(body, "long enough pw") {
		t.Fatalf("taken username: %d %s", w.Code, body)
	}

	w = c.do("POST", "/users/ana", url.Values{"csrf": {csrf}, "key": {"k3"}, "roles": {"requester"}, "posts": {"BGD-DHAKA, BGD-CTG"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/users?done=user_changed" {
		t.Fatalf("change: %d %s", w.Code, w.Body)
	}
	got = bodies["PATCH /v1/admin/users/ana"]
	if got["disabled"] != false || len(got["posts"].([]any)) != 2 || got["roles"].([]any)[0] != "requester" {
		t.Fatalf("change sent %v", got)
	}
	w = c.do("POST", "/users/adm", url.Values{"csrf": {csrf}, "key": {"k4"}, "roles": {"admin"}, "disabled": {"on"}})
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "last enabled admin") {
		t.Fatalf("last admin: %d %s", w.Code, w.Body)
	}

	c.lang = "fr"
	if w := c.do("GET", "/users", nil); !strings.Contains(w.Body.String(), `<label for="newuser-username">Nom d&#39;utilisateur</label>`) {
		t.Fatalf("French users page: %s", w.Body)
	}
}
