package main

import (
	"os"
	"strings"
	"testing"
)

// TestE2EBrowserPolicy: adm changes the policy on the Policy page in
// chromium with scripts off; a deadline under 1s is refused at its field
// (what was typed kept, aria-invalid, its message linked by
// aria-describedby) and changes nothing; a good one makes version 2, in
// force for the API and in the page's history; a requester has no link
// and is refused; the page keeps the weight budget and labels every
// control.
func TestE2EBrowserPolicy(t *testing.T) {
	path := chromium(t)
	t.Parallel()
	_, api := startDev(t, "eva-ui-policy", t.TempDir())
	browser := newBrowser(t, path)

	adm := newTab(t, browser, api.base, true)
	adm.signIn("adm")
	adm.open("/policy")
	if v := adm.attr("strong[data-policy-version]", "data-policy-version"); v != "default-1" {
		t.Fatalf("version in force %q", v)
	}
	if v := adm.attr("#policy-deadline_critical", "value"); v != "4h" {
		t.Fatalf("critical deadline shown as %q", v)
	}

	adm.fill("policy-deadline_critical", "500ms")
	adm.fill("policy-cap_medical", "-5.00")
	adm.click("form[action='/policy'] button[type=submit]")
	for _, id := range []string{"policy-deadline_critical", "policy-cap_medical"} {
		if got := adm.attr("#"+id, "aria-invalid"); got != "true" {
			t.Errorf("%s aria-invalid %q", id, got)
		}
		if desc := adm.attr("#"+id, "aria-describedby"); !strings.Contains(desc, id+"-error") || adm.attr("#"+id+"-error", "id") == "" {
			t.Errorf("%s described by %q", id, desc)
		}
	}
	if v := adm.attr("#policy-deadline_critical", "value"); v != "500ms" {
		t.Errorf("what was typed is not kept: %q", v)
	}
	if html := adm.html(); !strings.Contains(html, "at least 1s") || !strings.Contains(html, "Enter an amount above zero.") {
		t.Errorf("the refusals are not shown")
	}
	if p := get[map[string]any](api, "adm", "/v1/policy", 200); p["version"] != "default-1" {
		t.Fatalf("a refused form changed the policy: %v", p)
	}

	adm.fill("policy-deadline_critical", "2m")
	adm.fill("policy-cap_medical", "9,000.00")
	adm.click("form[action='/policy'] button[type=submit]")
	if !strings.HasSuffix(adm.url(), "/policy?done=policy") {
		t.Fatalf("after saving: %s\n%s", adm.url(), adm.html())
	}
	if v := adm.attr("strong[data-policy-version]", "data-policy-version"); v != "2" {
		t.Fatalf("version in force after saving %q", v)
	}
	if html := adm.html(); !strings.Contains(html, "Deadline, Critical: 4h → 2m") || !strings.Contains(html, "Cap, Medical care: 10,000.00 → 9,000.00") {
		t.Errorf("the history does not say what changed")
	}
	p := get[struct {
		Version   string            `json:"version"`
		Deadlines map[string]string `json:"deadlines"`
		Caps      map[string]int64  `json:"caps_usd_cents"`
	}](api, "adm", "/v1/policy", 200)
	if p.Version != "2" || p.Deadlines["critical"] != "2m0s" || p.Caps["medical"] != 900000 {
		t.Fatalf("the policy in force: %+v", p)
	}

	ana := newTab(t, browser, api.base, true)
	ana.signIn("ana")
	ana.open("/requests")
	if ana.attr("nav a[href='/policy']", "href") != "" {
		t.Error("a requester has a link to the Policy page")
	}
	ana.open("/policy")
	if ana.attr("form[action='/policy']", "action") != "" || !strings.Contains(ana.html(), "Not for your role") {
		t.Errorf("a requester opens the Policy page: %s", ana.url())
	}

	js := newTab(t, browser, api.base, false) // with scripts, to measure
	js.signIn("adm")
	checkPage(t, js, "/policy")
	if os.Getenv("EVA_SCREENSHOTS") == "1" {
		screenshot(t, js, "/policy", "policy")
	}
}
