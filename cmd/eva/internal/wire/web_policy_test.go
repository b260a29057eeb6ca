package wire_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/eva-org/eva/cmd/eva/internal/wire/wiretest"
)

// TestWebPolicy changes the policy through the Policy page, without
// scripts, against the real API and services: the new version is in
// force (GET /v1/policy) and in the history with who changed what; a
// deadline under 1s or a negative cap is refused at its field with what
// was typed, and nothing changes; an auditor reads it, a requester is
// refused and has no link.
func TestWebPolicy(t *testing.T) {
	s := wiretest.Start(t, wiretest.Options{Quiet: true})
	adm := newBrowser(t, s.URL)
	adm.signIn("adm")
	status, page, _ := adm.get("/policy")
	if status != 200 || !strings.Contains(page, `data-policy-version="default-1"`) ||
		!strings.Contains(page, `id="policy-deadline_critical" name="deadline_critical" type="text" value="4h"`) ||
		!strings.Contains(page, `id="policy-cap_shelter" name="cap_shelter" type="text" value="5,000.00"`) {
		t.Fatalf("policy page: %d %s", status, page)
	}
	// The form as the page fills it, with the critical deadline and the
	// shelter cap changed.
	form := url.Values{"csrf": {token(t, csrfRE, page)}, "key": {token(t, keyRE, page)}}
	for _, m := range inputRE.FindAllStringSubmatch(page, -1) {
		if m[1] != "csrf" && m[1] != "key" && m[1] != "back" {
			form.Set(m[1], m[2])
		}
	}
	form.Set("deadline_critical", "2m")
	form.Set("cap_shelter", "6000.00")
	form.Set("cap_other", "")
	status, _, h := adm.post("/policy", form)
	if status != http.StatusSeeOther || h.Get("Location") != "/policy?done=policy" {
		t.Fatalf("save: %d %q", status, h.Get("Location"))
	}
	current := func() policyDoc {
		t.Helper()
		resp, err := adm.hc.Get(s.URL + "/v1/policy")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p policyDoc
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /v1/policy: %d %v", resp.StatusCode, err)
		}
		return p
	}
	p := current()
	if _, other := p.Caps["other"]; p.Version != "2" || p.Deadlines["critical"] != "2m0s" || p.Caps["shelter"] != 600000 || other ||
		p.Caps["medical"] != 1000000 || p.ClaimTTL != "30m0s" || p.SecondAbove != 500000 || p.CaseCap != 2000000 {
		t.Fatalf("the policy after the form: %+v", p)
	}
	_, page, _ = adm.get("/policy?done=policy")
	for _, want := range []string{`data-policy-version="2"`, "The new policy is in force.", "Deadline, Critical: 4h → 2m",
		"Cap, Shelter: 5,000.00 → 6,000.00", "Cap, Other: 2,000.00 → the cap of any request", `<td data-label="Who">adm</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("after saving, the page lacks %s", want)
		}
	}

	// Bad values: refused at their fields by the API, nothing changes.
	key := token(t, keyRE, page)
	for _, bad := range []struct{ field, value, msg string }{
		{"deadline_critical", "500ms", "Enter a duration of at least 1s"},
		{"cap_medical", "-5.00", "Enter an amount above zero."},
		{"claim_ttl", "soon", "Enter a duration like 30m or 90s."},
		{"second_above", "-1.00", "Enter zero or more."},
	} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		f.Set("key", key)
		f.Set(bad.field, bad.value)
		status, body, _ := adm.post("/policy", f)
		key = token(t, keyRE, body) // a refused form comes back with a fresh key
		id := "policy-" + bad.field
		if status != http.StatusBadRequest || !strings.Contains(body, `value="`+bad.value+`"`) ||
			!strings.Contains(body, `aria-invalid="true" aria-describedby="`+id+`-error`) ||
			!strings.Contains(body, `<span class="error" id="`+id+`-error">`+bad.msg) {
			t.Errorf("%s=%s: %d %s", bad.field, bad.value, status, body)
		}
		if p := current(); p.Version != "2" {
			t.Fatalf("%s=%s changed the policy: %+v", bad.field, bad.value, p)
		}
	}

	aud := newBrowser(t, s.URL)
	aud.signIn("aud")
	if status, page, _ := aud.get("/policy"); status != 200 || strings.Contains(page, `action="/policy"`) ||
		!strings.Contains(page, "Deadline, Critical: 4h → 2m") {
		t.Errorf("auditor's policy page: %d %s", status, page)
	}
	for _, u := range []string{"ana", "olu", "fin"} {
		b := newBrowser(t, s.URL)
		b.signIn(u)
		if _, page, _ := b.get("/requests"); strings.Contains(page, `href="/policy"`) {
			t.Errorf("%s has a link to the Policy page", u)
		}
		if status, _, _ := b.get("/policy"); status != http.StatusForbidden {
			t.Errorf("%s GET /policy: %d", u, status)
		}
	}
	// The auditor's forged form: the API refuses it.
	_, page, _ = aud.get("/requests")
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	f.Set("csrf", token(t, csrfRE, page))
	f.Set("key", "forged")
	if status, _, _ := aud.post("/policy", f); status != http.StatusForbidden {
		t.Errorf("an auditor's form: %d", status)
	}
	if p := current(); p.Version != "2" {
		t.Fatalf("an auditor changed the policy: %+v", p)
	}
}

// inputRE reads the text inputs of a page: name and value.
var inputRE = regexp.MustCompile(`<input id="[^"]*" name="([^"]+)" type="text" value="([^"]*)"`)

type policyDoc struct {
	Version     string            `json:"version"`
	Caps        map[string]int64  `json:"caps_usd_cents"`
	CaseCap     int64             `json:"case_cap_usd_cents"`
	SecondAbove int64             `json:"second_approval_above_usd_cents"`
	Deadlines   map[string]string `json:"deadlines"`
	ClaimTTL    string            `json:"claim_ttl"`
}
