package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestE2EBrowserErase: adm erases a request's personal data in chromium
// (scripts off) from the Admin page's link: without the confirmation
// nothing is erased; with it the page says the data was erased. Then the
// beneficiary answers 410 through the API and the approver's case page
// says it was erased. No page adm saw ever held the beneficiary's name;
// an approver has no erase page.
func TestE2EBrowserErase(t *testing.T) {
	path := chromium(t)
	t.Parallel()
	_, api := startDev(t, "eva-ui-erase", t.TempDir())
	const name = "Oksana Verhovyna-Brill"
	body := fileBody(api.payee().ID, "REF-UI-ERASE-1", 25_000)
	body["beneficiary"] = map[string]any{"reference": "REF-UI-ERASE-1", "name": name, "date_of_birth": "1996-05-01", "nationality": "UKR"}
	id := post[caseJSON](api, "ana", "/v1/requests", body, http.StatusCreated, nil).ID
	if r := api.do(req{user: "olu", method: http.MethodGet, path: "/v1/requests/" + id + "/beneficiary"}); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "Verhovyna") {
		t.Fatalf("beneficiary before: %s", r)
	}

	browser := newBrowser(t, path)
	adm := newTab(t, browser, api.base, true)
	var seen []string // every page adm saw
	look := func() string { h := adm.html(); seen = append(seen, adm.url()+"\n"+h); return h }
	adm.signIn("adm")
	adm.open("/admin")
	look()
	adm.click("a[href='/admin/erase']")
	look()
	adm.fill("erase-request", id)
	adm.fill("erase-reason", "the survivor asked (ticket 12)")
	adm.click("form[action='/admin/erase'] button[type=submit]")
	if got := adm.attr("#erase-confirm", "aria-invalid"); got != "true" || !strings.Contains(look(), "Tick the box to confirm.") {
		t.Fatalf("unconfirmed erasure not refused at its field (aria-invalid %q)", got)
	}
	if r := api.do(req{user: "olu", method: http.MethodGet, path: "/v1/requests/" + id + "/beneficiary"}); r.Status != http.StatusOK {
		t.Fatalf("an unconfirmed erasure erased: %s", r)
	}
	adm.do(chromedp.Click(chromedp.CSS("#erase-confirm")))
	adm.click("form[action='/admin/erase'] button[type=submit]")
	html := look()
	if !strings.Contains(html, "The personal data of request "+id+" was erased.") || adm.attr("[data-erased]", "data-erased") != id {
		t.Fatalf("after erasing, the page does not say so: %s", html)
	}

	// The beneficiary is gone for everyone; the approver's page says so.
	for _, user := range []string{"olu", "ana"} {
		if r := api.do(req{user: user, method: http.MethodGet, path: "/v1/requests/" + id + "/beneficiary"}); r.Status != http.StatusGone {
			t.Errorf("%s reads the beneficiary after erasure: %s, want 410", user, r)
		}
	}
	olu := newTab(t, browser, api.base, true)
	olu.signIn("olu")
	olu.open("/requests/" + id)
	olu.click("form[action='/requests/" + id + "/beneficiary'] button[type=submit]")
	if h := olu.html(); !strings.Contains(h, "The beneficiary&#39;s personal data was erased.") && !strings.Contains(h, "The beneficiary's personal data was erased.") {
		t.Errorf("the approver's case page does not say the data was erased: %s", h)
	}
	// Erasure changed nothing else an admin may read: the case page is
	// still not theirs.
	if r := api.do(req{user: "adm", method: http.MethodGet, path: "/v1/requests/" + id}); r.Status != http.StatusForbidden {
		t.Errorf("adm GET the case: %s, want 403", r)
	}
	adm.open("/requests/" + id)
	look()
	for _, page := range seen {
		if strings.Contains(page, "Verhovyna") || strings.Contains(page, "Oksana") {
			t.Errorf("a page adm saw holds the beneficiary's name: %.300s", page)
		}
	}

	olu.open("/admin/erase")
	if olu.attr("form[action='/admin/erase']", "action") != "" || !strings.Contains(olu.html(), "Not for your role") {
		t.Errorf("an approver opens the erase page")
	}
	js := newTab(t, browser, api.base, false)
	js.signIn("adm")
	checkPage(t, js, "/admin/erase")
}
