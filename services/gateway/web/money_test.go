package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const fundID = "01900000-0000-7000-8000-0000000000f1"

// fundAPIFake answers as the API would for a user of role signed in with
// the token eva_tok, about one fund whose allocation was raised from
// 1,000.00 to 1,500.00 an hour after its creation, with 300.00 paid. POST
// /v1/funds/{id}/allocation refuses a cut below what is paid as the API
// does (409 insufficient_funds naming allocated_usd_cents) and a missing
// reason (400); changes records the bodies it took and their keys.
func fundAPIFake(role string, changes *[]map[string]any) *fakeAPI {
	fund := fundJSON{ID: fundID, Name: "Relief", AllocatedCents: 150000, PaidCents: 30000, AvailableCents: 120000,
		CreatedAt: t0.Format(time.RFC3339)}
	return signedInAPI(role, func(r *http.Request, body []byte) (int, any) {
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/funds/" + fundID:
			return 200, fund
		case "GET /v1/funds/" + fundID + "/history":
			return 200, fundHistory{FundID: fundID, Items: []fundPoint{
				{At: t0.Format(time.RFC3339), AllocatedCents: 100000, AvailableCents: 100000},
				{At: t0.Add(30 * time.Minute).Format(time.RFC3339), AllocatedCents: 100000, PaidCents: 30000, AvailableCents: 70000},
				{At: t0.Add(time.Hour).Format(time.RFC3339), AllocatedCents: 150000, PaidCents: 30000, AvailableCents: 120000}}}
		case "GET /v1/funds/" + fundID + "/ledger":
			return 200, ledgerJSON{}
		case "POST /v1/funds/" + fundID + "/allocation":
			if role != "finance" {
				return 403, problem{Status: 403, Code: "forbidden", Detail: "this needs the role finance"}
			}
			var in map[string]any
			_ = json.Unmarshal(body, &in)
			in["key"] = r.Header.Get("Idempotency-Key")
			*changes = append(*changes, in)
			if in["reason"] == "" {
				return 400, problem{Status: 400, Code: "invalid", Detail: "invalid", Errors: []fieldError{{Field: "reason", Message: "is required"}}}
			}
			if a, _ := in["allocated_usd_cents"].(float64); a < 30000 {
				avail := int64(120000)
				return 409, problem{Status: 409, Code: "insufficient_funds", Detail: "fund Relief has 1,200.00 available",
					AvailableUSDCents: &avail, Errors: []fieldError{{Field: "allocated_usd_cents", Message: "must be at least 300.00 (what is reserved and paid)"}}}
			}
			return 200, fund
		}
		return 404, problem{Status: 404, Code: "not_found", Detail: "no such resource"}
	})
}

// Finance changes a fund's allocation on the fund's page: the form's
// labelled fields go to POST /v1/funds/{id}/allocation in cents with the
// form's idempotency key; a refusal of the API (a cut below what is paid)
// comes back at its field with what was typed, aria-invalid and its
// message linked; an empty field never reaches the API; success goes back
// to the fund with a flash.
func TestFundAllocationForm(t *testing.T) {
	var changes []map[string]any
	c := newClient(t, newSite(t, fundAPIFake("finance", &changes), nil))
	signIn(t, c)
	w := c.do("GET", "/funds/"+fundID, nil)
	page := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("fund page: %d %s", w.Code, page)
	}
	for _, want := range []string{`<h2 id="alloc-h">Change the allocation</h2>`, `action="/funds/` + fundID + `/allocation"`,
		`<label for="alloc-allocated">New allocation (USD)</label>`, `<label for="alloc-reason">Reason</label>`,
		`A cut cannot go below what is reserved and paid: 300.00.`, `>Change allocation</button>`} {
		if !strings.Contains(page, want) {
			t.Errorf("fund page lacks %s", want)
		}
	}
	csrf := csrfOf(t, page)

	// Nothing typed: refused at both fields, nothing sent.
	w = c.do("POST", "/funds/"+fundID+"/allocation", url.Values{"csrf": {csrf}, "key": {"k1"}, "allocated": {""}, "reason": {" "}})
	if w.Code != http.StatusBadRequest || len(changes) != 0 ||
		!strings.Contains(w.Body.String(), `id="alloc-allocated" name="allocated" type="text" value="" inputmode="decimal" aria-required="true" aria-invalid="true" aria-describedby="alloc-allocated-error alloc-allocated-hint"`) ||
		!strings.Contains(w.Body.String(), `id="alloc-reason-error"`) {
		t.Fatalf("an empty form: %d, %d calls %s", w.Code, len(changes), w.Body)
	}

	// A cut below what is paid: the API's refusal at the amount.
	w = c.do("POST", "/funds/"+fundID+"/allocation", url.Values{"csrf": {csrf}, "key": {"k2"}, "allocated": {"100.00"}, "reason": {"donor cut"}})
	body := w.Body.String()
	if w.Code != http.StatusBadRequest || len(changes) != 1 || changes[0]["allocated_usd_cents"] != float64(10000) || changes[0]["key"] != "k2" {
		t.Fatalf("a cut below what is paid: %d %v", w.Code, changes)
	}
	for _, want := range []string{`value="100.00" inputmode="decimal" aria-required="true" aria-invalid="true" aria-describedby="alloc-allocated-error alloc-allocated-hint"`,
		`<span class="error" id="alloc-allocated-error">must be at least 300.00 (what is reserved and paid)</span>`, `>donor cut</textarea>`,
		`href="#alloc-allocated"`} {
		if !strings.Contains(body, want) {
			t.Errorf("refused form lacks %s", want)
		}
	}
	if keyRE.FindStringSubmatch(body)[1] == "k2" {
		t.Error("the refused form carries its spent key again")
	}

	w = c.do("POST", "/funds/"+fundID+"/allocation", url.Values{"csrf": {csrf}, "key": {"k3"}, "allocated": {"1,500.00"}, "reason": {"a new grant"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/funds/"+fundID+"?done=allocation" {
		t.Fatalf("a raise: %d %q %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	if got := changes[len(changes)-1]; got["allocated_usd_cents"] != float64(150000) || got["reason"] != "a new grant" || got["key"] != "k3" {
		t.Fatalf("the API got %v", got)
	}
	if w := c.do("GET", "/funds/"+fundID+"?done=allocation", nil); !strings.Contains(w.Body.String(), "The allocation was changed.") {
		t.Fatal("no flash after the change")
	}
}

// Only finance has the form; anyone else's post is refused as the API
// refuses it.
func TestFundAllocationFormByRole(t *testing.T) {
	var changes []map[string]any
	c := newClient(t, newSite(t, fundAPIFake("approver", &changes), nil))
	signIn(t, c)
	w := c.do("GET", "/funds/"+fundID, nil)
	if w.Code != http.StatusOK || strings.Contains(w.Body.String(), "/allocation") {
		t.Fatalf("an approver's fund page: %d %s", w.Code, w.Body)
	}
	w = c.do("POST", "/funds/"+fundID+"/allocation", url.Values{"csrf": {csrfOf(t, w.Body.String())}, "key": {"k"},
		"allocated": {"1.00"}, "reason": {"r"}})
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "this needs the role finance") {
		t.Fatalf("an approver's post: %d %s", w.Code, w.Body)
	}
}

// The burn-down follows the allocation: its dashed line steps from the
// allocation before a change to the one after, at the change, and the
// chart's numbers list the allocation at each point.
func TestBurnDownFollowsTheAllocation(t *testing.T) {
	cat, err := newCatalog()
	if err != nil {
		t.Fatal(err)
	}
	l := cat.loc("en")
	f := fundJSON{ID: fundID, Name: "Relief", AllocatedCents: 150000, PaidCents: 30000, AvailableCents: 120000, CreatedAt: t0.Format(time.RFC3339)}
	pts := []fundPoint{
		{At: t0.Format(time.RFC3339), AllocatedCents: 100000, AvailableCents: 100000},
		{At: t0.Add(time.Hour).Format(time.RFC3339), AllocatedCents: 150000, AvailableCents: 150000},
		{At: t0.Add(2 * time.Hour).Format(time.RFC3339), AllocatedCents: 150000, PaidCents: 30000, AvailableCents: 120000}}
	ch := burnDownChart(l, f, pts, t0.Add(2*time.Hour))
	// x runs from X0 (t0) to X1 (t0+2h); y from Y0 (0) up to Y1 (1,500.00).
	y := func(cents int64) float64 { return ch.Y0 - (ch.Y0-ch.Y1)*float64(cents)/150000 }
	xMid := (ch.X0 + ch.X1) / 2
	want := "M" + pair(ch.X0, y(100000)) + " L" + pair(xMid, y(100000)) + " L" + pair(xMid, y(150000)) +
		" L" + pair(ch.X1, y(150000)) + " L" + pair(ch.X1, y(150000))
	if ch.Allocated != want {
		t.Errorf("allocated line %s, want %s", ch.Allocated, want)
	}
	if !strings.HasPrefix(ch.Available, "M"+pair(ch.X0, y(100000))+" L"+pair(xMid, y(100000))+" L"+pair(xMid, y(150000))) {
		t.Errorf("available line %s does not rise with the allocation", ch.Available)
	}
	if len(ch.Rows) != 3 || ch.Rows[0].Allocated != 100000 || ch.Rows[1].Allocated != 150000 {
		t.Errorf("rows %+v", ch.Rows)
	}
}
