package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// An account with a second factor signs in through the form: the Code
// field is always there; a missing or wrong code is shown at it.
func TestSignInWithCode(t *testing.T) {
	var sent map[string]string
	api := &fakeAPI{answer: func(r *http.Request, body []byte) (int, any) {
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/auth/token":
			sent = map[string]string{}
			_ = json.Unmarshal(body, &sent)
			switch {
			case sent["password"] != "demo":
				return 401, problem{Status: 401, Code: "unauthenticated", Detail: "wrong username or password", Errors: []fieldError{}}
			case sent["otp"] == "":
				return 401, problem{Status: 401, Code: "unauthenticated", Detail: "this account signs in with a one-time code",
					Errors: []fieldError{{Field: "otp", Message: "is required: the code your authenticator shows"}}}
			case sent["otp"] != "123456":
				return 401, problem{Status: 401, Code: "unauthenticated", Detail: "wrong or used one-time code",
					Errors: []fieldError{{Field: "otp", Message: "is not the current code of your authenticator"}}}
			}
			return 200, tokenJSON{Token: "eva_tok"}
		case "GET /v1/me":
			return 200, me{Username: "olu", Roles: []string{"approver"}}
		}
		return 404, problem{Status: 404, Code: "not_found", Detail: "no such resource"}
	}}
	c := newClient(t, newSite(t, api, nil))
	w := c.do("GET", "/login", nil)
	if !strings.Contains(w.Body.String(), `<label for="login-otp">Code</label>`) ||
		!strings.Contains(w.Body.String(), `autocomplete="one-time-code"`) {
		t.Fatalf("sign-in page lacks the Code field: %s", w.Body)
	}
	csrf := csrfOf(t, w.Body.String())
	w = c.do("POST", "/login", url.Values{"csrf": {csrf}, "username": {"olu"}, "password": {"demo"}})
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), `aria-invalid="true" aria-describedby="login-otp-error`) ||
		!strings.Contains(w.Body.String(), "Enter the code of your authenticator app.") {
		t.Fatalf("no code: %d %s", w.Code, w.Body)
	}
	w = c.do("POST", "/login", url.Values{"csrf": {csrf}, "username": {"olu"}, "password": {"demo"}, "otp": {"654321"}})
	if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "is not the current code") ||
		strings.Contains(w.Body.String(), `value="654321"`) {
		t.Fatalf("wrong code: %d %s", w.Code, w.Body)
	}
	w = c.do("POST", "/login", url.Values{"csrf": {csrf}, "username": {"olu"}, "password": {"demo"}, "otp": {"123 456"}})
	if w.Code != http.StatusSeeOther || sent["otp"] != "123456" {
		t.Fatalf("with the code: %d, sent %v", w.Code, sent)
	}
}
