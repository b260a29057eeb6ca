package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// policyAPIFake answers as the API would for a user of role signed in
// with the token eva_tok: two versions of the policy, and PUT /v1/policy
// refusing a deadline under 1s and a cap that is not positive, naming
// the field as the API does. puts records the bodies PUT.
func policyAPIFake(role string, puts *[]map[string]any) *fakeAPI {
	initial := policyJSON{Version: "default-1", CapsUSDCents: map[string]int64{"shelter": 500000, "medical": 1000000},
		CaseCapUSDCents: 2000000, SecondAbove: 500000, Deadlines: map[string]string{"critical": "4h0m0s", "urgent": "24h0m0s", "routine": "72h0m0s"},
		ClaimTTL: "30m0s"}
	second := initial
	second.Version, second.ChangedBy, second.ChangedAt = "2", "adm", "2026-03-01T11:00:00Z"
	second.Deadlines = map[string]string{"critical": "2m0s", "urgent": "24h0m0s", "routine": "72h0m0s"}
	second.CapsUSDCents = map[string]int64{"medical": 1000000}
	return signedInAPI(role, func(r *http.Request, body []byte) (int, any) {
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/requests":
			return 200, page[caseJSON]{}
		case "GET /v1/policy/history":
			if role != "admin" && role != "auditor" {
				return 403, problem{Status: 403, Code: "forbidden", Detail: "this needs the role admin or auditor"}
			}
			return 200, page[policyJSON]{Items: []policyJSON{initial, second}}
		case "PUT /v1/policy":
			if role != "admin" {
				return 403, problem{Status: 403, Code: "forbidden", Detail: "this needs the role admin"}
			}
			var in struct {
				Caps      map[string]int64  `json:"caps_usd_cents"`
				Deadlines map[string]string `json:"deadlines"`
			}
			var raw map[string]any
			_ = json.Unmarshal(body, &in)
			_ = json.Unmarshal(body, &raw)
			*puts = append(*puts, raw)
			var errs []fieldError
			if in.Deadlines["critical"] == "500ms" {
				errs = append(errs, fieldError{Field: "deadlines.critical", Message: "must be at least 1s"})
			}
			if c, ok := in.Caps["medical"]; ok && c <= 0 {
				errs = append(errs, fieldError{Field: "caps_usd_cents.medical", Message: "must be a positive number of cents"})
			}
			if errs != nil {
				return 400, problem{Status: 400, Code: "invalid", Detail: "invalid policy", Errors: errs}
			}
			return 200, second
		}
		return 404, problem{Status: 404, Code: "not_found", Detail: "no such resource"}
	})
}

// The Policy page shows the policy in force as a form in dollars and Go
// durations, sets the next version through PUT /v1/policy, shows a
// refused value at its field with what was typed, and lists the history
// with what each version changed.
func TestPolicyPage(t *testing.T) {
	var puts []map[string]any
	c := newClient(t, newSite(t, policyAPIFake("admin", &puts), nil))
	signIn(t, c)
	w := c.do("GET", "/policy", nil)
	page := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("policy page: %d %s", w.Code, page)
	}
	for _, want := range []string{`data-policy-version="2"`, `<label for="policy-case_cap">Cap of any request (USD)</label>`,
		`id="policy-case_cap" name="case_cap" type="text" value="20,000.00"`, `<label for="policy-cap_medical">Medical care</label>`,
		`id="policy-cap_medical" name="cap_medical" type="text" value="10,000.00"`, `id="policy-cap_shelter" name="cap_shelter" type="text" value=""`,
		`<label for="policy-deadline_critical">Critical</label>`, `id="policy-deadline_critical" name="deadline_critical" type="text" value="2m"`,
		`id="policy-claim_ttl" name="claim_ttl" type="text" value="30m"`, `id="policy-second_above" name="second_above" type="text" value="5,000.00"`,
		`>Save policy</button>`, `action="/policy"`, "Deadline, Critical: 4h → 2m", "Cap, Shelter: 5,000.00 → the cap of any request",
		"The installation&#39;s initial policy", `<a href="/policy" aria-current="page">Policy</a>`} {
		if !strings.Contains(page, want) {
			t.Errorf("policy page lacks %s", want)
		}
	}
	csrf := csrfOf(t, page)
	form := url.Values{"csrf": {csrf}, "key": {"k1"}, "case_cap": {"20,000.00"}, "second_above": {"7500.50"},
		"cap_medical": {"9000"}, "cap_shelter": {""}, "deadline_critical": {"90s"}, "deadline_urgent": {"24h"},
		"deadline_routine": {"72h"}, "claim_ttl": {"10m"}}

	// Without the CSRF token nothing reaches the API.
	noCSRF := url.Values{}
	for k, v := range form {
		noCSRF[k] = v
	}
	noCSRF.Del("csrf")
	if w := c.do("POST", "/policy", noCSRF); w.Code != http.StatusForbidden || len(puts) != 0 {
		t.Fatalf("no CSRF token: %d, %d PUTs", w.Code, len(puts))
	}

	w = c.do("POST", "/policy", form)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/policy?done=policy" {
		t.Fatalf("save: %d %q %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	got := puts[len(puts)-1]
	caps := got["caps_usd_cents"].(map[string]any)
	dl := got["deadlines"].(map[string]any)
	if got["case_cap_usd_cents"] != float64(2000000) || got["second_approval_above_usd_cents"] != float64(750050) ||
		len(caps) != 1 || caps["medical"] != float64(900000) || dl["critical"] != "90s" || dl["routine"] != "72h" || got["claim_ttl"] != "10m" {
		t.Fatalf("PUT /v1/policy got %v", got)
	}
	if w := c.do("GET", "/policy?done=policy", nil); !strings.Contains(w.Body.String(), "The new policy is in force.") {
		t.Fatal("no flash after saving")
	}

	// A deadline under 1s and a negative cap: the API's refusals at their
	// fields, with what was typed.
	form.Set("key", "k2")
	form.Set("deadline_critical", "500ms")
	form.Set("cap_medical", "-5.00")
	w = c.do("POST", "/policy", form)
	body := w.Body.String()
	if w.Code != http.StatusBadRequest {
		t.Fatalf("bad values: %d %s", w.Code, body)
	}
	if got := puts[len(puts)-1]["caps_usd_cents"].(map[string]any)["medical"]; got != float64(-500) {
		t.Fatalf("a negative cap was sent as %v", got)
	}
	for _, want := range []string{`id="policy-deadline_critical" name="deadline_critical" type="text" value="500ms" autocomplete="off" aria-required="true" aria-invalid="true" aria-describedby="policy-deadline_critical-error"`,
		`<span class="error" id="policy-deadline_critical-error">Enter a duration of at least 1s, like 90s, 30m or 4h.</span>`,
		`value="-5.00" inputmode="decimal" aria-invalid="true" aria-describedby="policy-cap_medical-error"`,
		`<span class="error" id="policy-cap_medical-error">Enter an amount above zero.</span>`, `href="#policy-deadline_critical"`} {
		if !strings.Contains(body, want) {
			t.Errorf("refused form lacks %s", want)
		}
	}
	if keyRE.FindStringSubmatch(body)[1] == "k2" {
		t.Error("the refused form carries its spent key again")
	}

	// An amount that is not one never reaches the API.
	n := len(puts)
	form.Set("key", "k3")
	form.Set("case_cap", "lots")
	w = c.do("POST", "/policy", form)
	if w.Code != http.StatusBadRequest || len(puts) != n || !strings.Contains(w.Body.String(), `id="policy-case_cap-error">Enter an amount in US dollars, like 250.00.`) {
		t.Fatalf("a bad amount: %d, %d PUTs %s", w.Code, len(puts)-n, w.Body)
	}

	c.lang = "fr"
	if w := c.do("GET", "/policy", nil); !strings.Contains(w.Body.String(), `<label for="policy-claim_ttl">Durée d&#39;une prise en charge</label>`) {
		t.Fatalf("French policy page: %s", w.Body)
	}
}

// An auditor reads the policy and its history, without a form; anyone
// else is refused by the API and has no link to the page.
func TestPolicyPageByRole(t *testing.T) {
	var puts []map[string]any
	aud := newClient(t, newSite(t, policyAPIFake("auditor", &puts), nil))
	signIn(t, aud)
	w := aud.do("GET", "/policy", nil)
	page := w.Body.String()
	if w.Code != http.StatusOK || strings.Contains(page, `action="/policy"`) || !strings.Contains(page, "Deadline, Critical: 4h → 2m") ||
		!strings.Contains(page, ">Policy in force</h2>") || !strings.Contains(page, "the cap of any request") {
		t.Fatalf("auditor's policy page: %d %s", w.Code, page)
	}
	for _, role := range []string{"requester", "approver", "finance"} {
		c := newClient(t, newSite(t, policyAPIFake(role, &puts), nil))
		signIn(t, c)
		if w := c.do("GET", "/requests", nil); strings.Contains(w.Body.String(), `href="/policy"`) {
			t.Errorf("%s has a link to /policy", role)
		}
		w := c.do("GET", "/policy", nil)
		if w.Code != http.StatusForbidden {
			t.Errorf("%s GET /policy: %d", role, w.Code)
		}
	}
	// A form posted anyway is refused as the API refuses it.
	csrf := csrfOf(t, page)
	w = aud.do("POST", "/policy", url.Values{"csrf": {csrf}, "key": {"k"}, "case_cap": {"1.00"}, "second_above": {"0"},
		"deadline_critical": {"1h"}, "deadline_urgent": {"1h"}, "deadline_routine": {"1h"}, "claim_ttl": {"1h"}})
	if w.Code != http.StatusForbidden || len(puts) != 0 || !strings.Contains(w.Body.String(), "this needs the role admin") {
		t.Fatalf("an auditor's form: %d, %d PUTs %s", w.Code, len(puts), w.Body)
	}
}

func TestShortDuration(t *testing.T) {
	for in, want := range map[string]string{"4h0m0s": "4h", "30m0s": "30m", "1h30m0s": "1h30m", "1m30s": "1m30s", "1s": "1s",
		"1.5s": "1.5s", "72h0m0s": "72h", "x": "x", "": ""} {
		if got := shortDuration(in); got != want {
			t.Errorf("shortDuration(%q) = %q, want %q", in, got, want)
		}
	}
}
