package main

import (
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// chartY reads the y of each point of an SVG path ("M x,y L x,y ...").
var chartY = regexp.MustCompile(`,(-?[0-9.]+)`)

// TestE2EBrowserFundAllocation: fin changes the demo fund's allocation on
// its page in chromium with scripts off. The allocation it has already is
// refused by the API at the field (what was typed kept, aria-invalid, its
// message linked by aria-describedby) and changes nothing; a raise is
// recorded, shown in the fund's figures, in its ledger and in its
// burn-down, whose allocation line steps up at the change. An approver
// has no form. The page keeps the weight budget and labels every control.
func TestE2EBrowserFundAllocation(t *testing.T) {
	path := chromium(t)
	t.Parallel()
	_, api := startDev(t, "eva-ui-allocation", t.TempDir())
	browser := newBrowser(t, path)
	fund := api.demoFund()
	page := "/funds/" + fund.ID

	fin := newTab(t, browser, api.base, true)
	fin.signIn("fin")
	fin.open(page)
	submit := "form[action='" + page + "/allocation'] button[type=submit]"
	fin.fill("alloc-allocated", "1,000,000.00")
	fin.fill("alloc-reason", "no change at all")
	fin.click(submit)
	if got := fin.attr("#alloc-allocated", "aria-invalid"); got != "true" {
		t.Errorf("the same allocation: aria-invalid %q at %s", got, fin.url())
	}
	if desc := fin.attr("#alloc-allocated", "aria-describedby"); !strings.Contains(desc, "alloc-allocated-error") || fin.attr("#alloc-allocated-error", "id") == "" {
		t.Errorf("the refusal is not linked to its field: %q", desc)
	}
	if v := fin.attr("#alloc-allocated", "value"); v != "1,000,000.00" {
		t.Errorf("what was typed is not kept: %q", v)
	}
	if !strings.Contains(fin.html(), "allocation already") {
		t.Errorf("the API's refusal is not shown")
	}
	if f := api.fund(fund.ID); f.AllocatedCents != fund.AllocatedCents {
		t.Fatalf("a refused form changed the allocation: %+v", f)
	}

	fin.fill("alloc-allocated", "1,200,000.00")
	fin.fill("alloc-reason", "the donor added a grant")
	fin.click(submit)
	if !strings.HasSuffix(fin.url(), page+"?done=allocation") {
		t.Fatalf("after the change: %s\n%s", fin.url(), fin.html())
	}
	html := fin.html()
	for _, want := range []string{"The allocation was changed.", "1,200,000.00", `data-kind="allocate"`} {
		if !strings.Contains(html, want) {
			t.Errorf("the fund's page after the change lacks %s", want)
		}
	}
	if f := api.fund(fund.ID); f.AllocatedCents != 120_000_000 {
		t.Fatalf("the fund after the change: %+v", f)
	}
	// The burn-down's allocation line: at 1,000,000.00 until the change,
	// then at the top.
	var ys []string
	for _, m := range chartY.FindAllStringSubmatch(fin.attr("path[data-allocated]", "d"), -1) {
		if !slices.Contains(ys, m[1]) {
			ys = append(ys, m[1])
		}
	}
	if len(ys) != 2 {
		t.Errorf("the allocation line has the heights %v, want two (before and after the change)", ys)
	}
	h := get[struct {
		Items []struct {
			AllocatedCents int64 `json:"allocated_usd_cents"`
		} `json:"items"`
	}](api, "fin", "/v1"+page+"/history", http.StatusOK)
	if n := len(h.Items); n < 2 || h.Items[0].AllocatedCents != fund.AllocatedCents || h.Items[n-1].AllocatedCents != 120_000_000 {
		t.Errorf("the fund's history: %+v", h.Items)
	}

	olu := newTab(t, browser, api.base, true)
	olu.signIn("olu")
	olu.open(page)
	if olu.attr("#alloc-allocated", "id") != "" {
		t.Error("an approver has the allocation form")
	}

	js := newTab(t, browser, api.base, false) // with scripts, to measure
	js.signIn("fin")
	checkPage(t, js, page)
}
