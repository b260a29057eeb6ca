package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const erasable = "0193a1b2-0000-7000-8000-00000000e1a5"

// eraseAPIFake answers as the API would for a user of role: erasing
// erasable once (then 409), 404 for another id, 400 naming reason when
// it is blank. The erasure's answer carries the case as the API gives it,
// justification included, which the page must not show. erased records
// the bodies POSTed.
func eraseAPIFake(role string, erased *[]map[string]string) *fakeAPI {
	return signedInAPI(role, func(r *http.Request, body []byte) (int, any) {
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/requests":
			return 200, page[caseJSON]{}
		case "GET /v1/admin/dead-letters":
			return 200, deadLettersPage{}
		}
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/requests/") && strings.HasSuffix(r.URL.Path, "/erase") {
			if role != "admin" {
				return 403, problem{Status: 403, Code: "forbidden", Detail: "this needs the role admin"}
			}
			var in map[string]string
			_ = json.Unmarshal(body, &in)
			if strings.TrimSpace(in["reason"]) == "" {
				return 400, problem{Status: 400, Code: "invalid", Detail: "invalid", Errors: []fieldError{{Field: "reason", Message: "is required"}}}
			}
			if r.URL.Path != "/v1/requests/"+erasable+"/erase" {
				return 404, problem{Status: 404, Code: "not_found", Detail: "no such request"}
			}
			*erased = append(*erased, in)
			if len(*erased) > 1 {
				return 409, problem{Status: 409, Code: "conflict", Detail: "erased before"}
			}
			return 200, caseJSON{ID: erasable, Status: "disbursed", Post: "BGD-DHAKA", Category: "shelter",
				Justification: "Amina Rahman needs shelter", Requester: "ana", AmountCents: 12_500}
		}
		return 404, problem{Status: 404, Code: "not_found", Detail: "no such resource"}
	})
}

// An admin erases a request's personal data on /admin/erase: the id, a
// reason and a confirmation are required at their fields and nothing is
// sent without them; the erasure is POSTed with the reason; the page
// then says the data was erased and shows the request's id, status, post
// and category, and nothing else of it. An unknown id and a second
// erasure are shown at the id's field. Other roles are refused; without
// the CSRF token nothing is sent.
func TestErasePage(t *testing.T) {
	var erased []map[string]string
	api := eraseAPIFake("admin", &erased)
	c := newClient(t, newSite(t, api, nil))
	signIn(t, c)
	if w := c.do("GET", "/admin", nil); !strings.Contains(w.Body.String(), `href="/admin/erase"`) {
		t.Fatalf("the Admin page has no link to the erase page: %s", w.Body)
	}
	w := c.do("GET", "/admin/erase?request="+erasable, nil)
	page := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("erase page: %d %s", w.Code, page)
	}
	for _, want := range []string{`action="/admin/erase"`, `<label for="erase-request">Request id</label>`,
		`id="erase-request" name="request" type="text" value="` + erasable + `"`, `<label for="erase-reason">Reason</label>`,
		`<label for="erase-confirm">`, `>Erase personal data</button>`, `<a href="/admin" aria-current="page">Admin</a>`} {
		if !strings.Contains(page, want) {
			t.Errorf("erase page lacks %s", want)
		}
	}
	csrf := csrfOf(t, page)
	calls := func() int {
		n := 0
		for _, c := range api.calls {
			if strings.HasSuffix(c, "/erase") {
				n++
			}
		}
		return n
	}

	// Not confirmed, no reason: refused at the fields, nothing sent.
	w = c.do("POST", "/admin/erase", url.Values{"csrf": {csrf}, "key": {"k1"}, "request": {erasable}, "reason": {""}})
	if w.Code != http.StatusBadRequest || calls() != 0 {
		t.Fatalf("unconfirmed: %d, %d calls", w.Code, calls())
	}
	for _, id := range []string{"erase-reason", "erase-confirm"} {
		if !strings.Contains(w.Body.String(), `id="`+id+`-error"`) {
			t.Errorf("no error at %s", id)
		}
	}
	// Without the CSRF token: 403, nothing sent.
	if w := c.do("POST", "/admin/erase", url.Values{"key": {"k2"}, "request": {erasable}, "reason": {"asked"}, "confirm": {"yes"}}); w.Code != http.StatusForbidden || calls() != 0 {
		t.Fatalf("no CSRF: %d, %d calls", w.Code, calls())
	}
	// An unknown id: at the id's field.
	w = c.do("POST", "/admin/erase", url.Values{"csrf": {csrf}, "key": {"k3"}, "request": {"0193a1b2-0000-7000-8000-000000000000"}, "reason": {"asked"}, "confirm": {"yes"}})
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "No request has this id.") || !strings.Contains(w.Body.String(), `id="erase-request-error"`) {
		t.Fatalf("unknown id: %d %s", w.Code, w.Body)
	}

	w = c.do("POST", "/admin/erase", url.Values{"csrf": {csrf}, "key": {"k4"}, "request": {" " + erasable + " "}, "reason": {"the beneficiary asked"}, "confirm": {"yes"}})
	page = w.Body.String()
	if w.Code != http.StatusOK || len(erased) != 1 || erased[0]["reason"] != "the beneficiary asked" {
		t.Fatalf("erase: %d, erased %v: %s", w.Code, erased, page)
	}
	for _, want := range []string{"The personal data of request " + erasable + " was erased.", `data-erased="` + erasable + `"`,
		`data-status="disbursed"`, "BGD-DHAKA", "Shelter"} {
		if !strings.Contains(page, want) {
			t.Errorf("after erasing, the page lacks %s", want)
		}
	}
	for _, never := range []string{"Amina", "needs shelter", "125.00"} {
		if strings.Contains(page, never) {
			t.Errorf("the erase page shows %q of the case", never)
		}
	}

	// Again: at the id's field.
	w = c.do("POST", "/admin/erase", url.Values{"csrf": {csrf}, "key": {"k5"}, "request": {erasable}, "reason": {"again"}, "confirm": {"yes"}})
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "was erased already") {
		t.Fatalf("second erasure: %d %s", w.Code, w.Body)
	}

	// Other roles: refused, with no form.
	for _, role := range []string{"approver", "auditor", "requester"} {
		var none []map[string]string
		c := newClient(t, newSite(t, eraseAPIFake(role, &none), nil))
		signIn(t, c)
		w := c.do("GET", "/admin/erase", nil)
		if w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), `action="/admin/erase"`) {
			t.Errorf("%s opens the erase page: %d", role, w.Code)
		}
		csrf := csrfOf(t, c.do("GET", "/requests", nil).Body.String())
		if w := c.do("POST", "/admin/erase", url.Values{"csrf": {csrf}, "key": {"k"}, "request": {erasable}, "reason": {"x"}, "confirm": {"yes"}}); w.Code != http.StatusForbidden || len(none) != 0 {
			t.Errorf("%s erases: %d, %v", role, w.Code, none)
		}
	}
}
