package main

// Browser tests: the real eva binary driven through Debian's chromium
// (headless, over the DevTools protocol with chromedp), as the people of
// UI.md use it. Outside CI they skip, loudly, when chromium is missing; in
// CI (CI=true) they fail instead. With EVA_SCREENSHOTS=1 they also write
// the screenshots of docs/screenshots/.

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/eva-org/eva/pkg/evatest"
)

// pageBudget is UI.md's weight of a page with everything it loads,
// transferred (compressed).
const pageBudget = 60 << 10

// chromium finds the browser, or skips (fails in CI) without it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("EVA_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "NO CHROMIUM: the browser tests of the web UI did not run. Install it with `apt-get install -y chromium` (or set EVA_CHROMIUM)."
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	fmt.Fprintln(os.Stderr, "\n*** "+msg+" ***")
	t.Skip(msg)
	return ""
}

// newBrowser starts a headless chromium with a fresh profile for the test.
func newBrowser(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "en-US"),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil { // start the browser
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// tab is a browser tab with its own cookies (a browser context of its own),
// signed in as one user or none.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
}

func newTab(t *testing.T, browser context.Context, base string, jsOff bool) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx, base: base}
	// The first action opens the tab, which lives as long as the context
	// of that action: it gets the tab's own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	tb.do(chromedp.EmulateViewport(1280, 900))
	if jsOff {
		tb.do(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
			return chromedp.Void{}, err
		})
	}
	return tb
}

func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v (at %s)", err, tb.url())
	}
}

// open loads a page and waits for it.
func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(tb.base + path))
}

// click clicks and waits for the page it loads.
func (tb *tab) click(sel string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
		tb.t.Fatalf("click %s: %v (at %s)", sel, err, tb.url())
	}
}

// fill types a value into a field (an input, a textarea or a select).
func (tb *tab) fill(id, value string) {
	tb.t.Helper()
	tb.do(chromedp.SetValue(chromedp.ID(id), value))
}

// url is the page's address, read from the tab's history (no script).
func (tb *tab) url() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	h, err := chromedp.Call(ctx, page.GetNavigationHistory, cdp.Empty{})
	if err != nil || h.CurrentIndex < 0 || int(h.CurrentIndex) >= len(h.Entries) {
		return "?"
	}
	return h.Entries[h.CurrentIndex].URL
}

// eval runs JavaScript in the page (the tab must have scripts on).
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("eval %s: %v (at %s)", js, err, tb.url())
	}
	return v
}

// attr is an attribute of the first element the CSS selector finds, ""
// when it or the element is missing (read through the DOM, so that it
// works with scripts off).
func (tb *tab) attr(sel, name string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSS(sel), chromedp.AtLeast(0)))
	if err != nil || len(nodes) == 0 {
		return ""
	}
	return nodes[0].AttributeValue(name)
}

// html is the page's markup (through the DOM). A read that met the
// document being replaced under it (the node it found is gone: the
// browser was still committing the page just loaded) is tried again for
// a few seconds.
func (tb *tab) html() string {
	tb.t.Helper()
	var s string
	var err error
	for try := 0; try < 20; try++ {
		if s, err = tb.tryHTML(); err == nil || !strings.Contains(err.Error(), "No node with given id") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		tb.t.Fatalf("read the page: %v", err)
	}
	return s
}

// tryHTML is the page's markup, or the error of a page still loading (a
// Refresh header's navigation replaces the document under the reader).
func (tb *tab) tryHTML() (string, error) {
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
}

// signIn signs the tab in as user through the sign-in page.
func (tb *tab) signIn(user string) {
	tb.t.Helper()
	tb.open("/login")
	tb.fill("login-username", user)
	tb.fill("login-password", devPassword())
	tb.click("form[action='/login'] button[type=submit]")
	if strings.Contains(tb.url(), "/login") {
		tb.t.Fatalf("%s could not sign in: %s", user, tb.html())
	}
}

var caseURL = regexp.MustCompile(`/requests/([0-9a-f-]{36})`)

// TestE2EBrowser walks every desk through chromium against eva dev: a
// requester files with scripts off, an approver claims and approves, the
// case reaches disbursed on its page, an auditor verifies; bad input is
// shown at its field; another post's requester cannot open the case; the
// CSRF token is enforced; every page keeps the weight budget, fits 360 px
// and labels every control.
func TestE2EBrowser(t *testing.T) {
	path := chromium(t)
	t.Parallel()
	_, api := startDev(t, "eva-ui", t.TempDir())
	base := api.base
	browser := newBrowser(t, path)
	shots := os.Getenv("EVA_SCREENSHOTS") == "1"

	// Ana files with JavaScript turned off: plain forms only.
	ana := newTab(t, browser, base, true)
	ana.signIn("ana")
	ana.open("/requests/new")
	payees := api.payee()
	ana.fill("file-category", "shelter")
	ana.fill("file-urgency", "critical")
	ana.fill("file-amount", "450.00")
	ana.fill("file-justification", "Survivor found tonight; three nights in a safe shelter.")
	ana.fill("file-ben_ref", "DHK-UI-0042")
	ana.fill("file-ben_name", "A. B.")
	ana.fill("file-ben_dob", "1999-04-12")
	ana.fill("file-payee", payees.ID)
	ana.click("form[action='/requests/new'] button[type=submit]")
	m := caseURL.FindStringSubmatch(ana.url())
	if m == nil {
		t.Fatalf("filing did not land on a case: %s\n%s", ana.url(), ana.html())
	}
	id := m[1]
	if st := ana.attr("[data-status]", "data-status"); st != "submitted" {
		t.Fatalf("filed case shows status %q", st)
	}
	if !strings.Contains(ana.html(), "RequestSubmitted") {
		t.Fatal("the case's History does not list RequestSubmitted")
	}

	t.Run("bad input is shown at its field", func(t *testing.T) {
		ana.open("/requests/new")
		ana.fill("file-category", "shelter")
		ana.fill("file-amount", "4,50.0.0")
		ana.fill("file-justification", "x")
		ana.fill("file-ben_ref", "DHK-UI-BAD")
		ana.click("form[action='/requests/new'] button[type=submit]")
		if got := ana.attr("#file-amount", "aria-invalid"); got != "true" {
			t.Fatalf("amount aria-invalid %q", got)
		}
		desc := ana.attr("#file-amount", "aria-describedby")
		if !strings.Contains(desc, "file-amount-error") || ana.attr("#file-amount-error", "id") == "" {
			t.Fatalf("amount described by %q", desc)
		}
		if v := ana.attr("#file-amount", "value"); v != "4,50.0.0" {
			t.Fatalf("what was typed is not kept: %q", v)
		}
		// Above the category cap: the API's own error, at the field.
		ana.fill("file-amount", "999999.00")
		ana.click("form[action='/requests/new'] button[type=submit]")
		if ana.attr("#file-amount", "aria-invalid") != "true" || !strings.Contains(ana.html(), "category cap") {
			t.Fatalf("the API's cap error is not at the amount field")
		}
	})

	t.Run("the CSRF token is enforced", func(t *testing.T) {
		js := newTab(t, browser, base, false)
		js.signIn("ana")
		js.open("/requests/" + id)
		eval[chromedp.Void](js, `document.querySelector("form[action$='/withdraw'] input[name=csrf]").value = "forged";
			document.querySelector("form[action$='/withdraw'] textarea[name=reason]").value = "forged withdrawal"`)
		js.click("form[action$='/withdraw'] button[type=submit]")
		if !strings.Contains(js.html(), "Form expired") {
			t.Fatalf("a forged token was not refused: %s", js.url())
		}
		js.open("/requests/" + id)
		if st := js.attr("[data-status]", "data-status"); st != "submitted" {
			t.Fatalf("after a forged withdrawal the case is %q", st)
		}
	})

	t.Run("a re-sent filing form files once", func(t *testing.T) {
		js := newTab(t, browser, base, false)
		js.signIn("ana")
		js.open("/requests/new")
		js.fill("file-category", "medical")
		js.fill("file-amount", "120.00")
		js.fill("file-justification", "Clinic visit")
		js.fill("file-ben_ref", "DHK-UI-TWICE")
		urls := eval[[]string](js, `(async () => {
			const f = document.querySelector("form[action='/requests/new']");
			const body = new URLSearchParams(new FormData(f));
			const a = await fetch("/requests/new", {method: "POST", body});
			const b = await fetch("/requests/new", {method: "POST", body});
			return [a.url, b.url];
		})()`)
		if len(urls) != 2 || urls[0] != urls[1] || !caseURL.MatchString(urls[0]) {
			t.Fatalf("the same form sent twice landed on %v", urls)
		}
	})

	t.Run("another post's requester cannot open the case", func(t *testing.T) {
		raj := newTab(t, browser, base, false)
		raj.signIn("raj")
		raj.open("/requests/" + id)
		if raj.attr("[data-status]", "data-status") != "" || !strings.Contains(raj.html(), "Not found") {
			t.Fatalf("raj sees the case: %s", raj.url())
		}
	})

	// Olu claims and approves from the queue.
	olu := newTab(t, browser, base, false)
	olu.signIn("olu")
	olu.open("/queue")
	if olu.attr(fmt.Sprintf("tr[data-case-id='%s'] a", id), "href") != "/requests/"+id {
		t.Fatalf("the case is not in olu's queue")
	}
	olu.click(fmt.Sprintf("tr[data-case-id='%s'] a", id))
	olu.click("form[action$='/claim'] button")
	if st := olu.attr("[data-status]", "data-status"); st != "under_review" {
		t.Fatalf("after Claim: %q", st)
	}
	if !strings.Contains(olu.html(), "USD available") {
		t.Fatal("no available amount beside the approve form")
	}
	olu.fill("approve-amount", "400.00")
	olu.fill("approve-note", "lower rate negotiated")
	olu.click("form[action$='/approve'] button[type=submit]")
	evatest.Await(t, 60*time.Second, "the case to be disbursed on its page", func() (bool, string) {
		olu.open("/requests/" + id)
		st := olu.attr("[data-status]", "data-status")
		return st == "disbursed", st
	})
	ana.open("/requests/" + id)
	if st := ana.attr("[data-status]", "data-status"); st != "disbursed" {
		t.Fatalf("ana sees %q", st)
	}

	// Aud verifies.
	aud := newTab(t, browser, base, false)
	aud.signIn("aud")
	evatest.Await(t, 60*time.Second, "Verify to say ok", func() (bool, string) {
		aud.open("/audit")
		aud.click("form[action='/audit/verify'] button")
		v := aud.attr("[data-verify]", "data-verify")
		return v == "ok", v
	})

	// Every page: weight, width, labels, language, headings.
	fin := newTab(t, browser, base, false)
	fin.signIn("fin")
	adm := newTab(t, browser, base, false)
	adm.signIn("adm")
	anon := newTab(t, browser, base, false)
	asOf := url.QueryEscape(time.Now().UTC().Format(time.RFC3339Nano))
	fund := api.demoFund().ID
	pages := []struct {
		name string
		tab  *tab
		path string
	}{
		{"signin", anon, "/login"},
		{"requests", ana, "/requests"},
		{"file", ana, "/requests/new"},
		{"case-requester", ana, "/requests/" + id},
		{"queue", olu, "/queue"},
		{"case-approver", olu, "/requests/" + id},
		{"funds", fin, "/funds"},
		{"fund", fin, "/funds/" + fund},
		{"payees", fin, "/payees"},
		{"payouts", fin, "/payouts"},
		{"audit", aud, "/audit"},
		{"case-auditor", aud, "/requests/" + id + "/as-of?t=" + asOf},
		{"admin", adm, "/admin"},
		{"users", adm, "/users"},
		{"policy", adm, "/policy"},
	}
	ana = newTab(t, browser, base, false) // with scripts, to measure
	ana.signIn("ana")
	pages[1].tab, pages[2].tab, pages[3].tab = ana, ana, ana
	for _, p := range pages {
		t.Run("page "+p.name, func(t *testing.T) {
			p.tab.t = t
			checkPage(t, p.tab, p.path)
			if shots {
				screenshot(t, p.tab, p.path, p.name)
			}
		})
	}
}

// pageFacts are what checkPage measures in the browser.
type pageFacts struct {
	Bytes      float64  `json:"bytes"`
	Resources  []string `json:"resources"`
	Width      int      `json:"width"`
	Unlabelled []string `json:"unlabelled"`
	Lang       string   `json:"lang"`
	Headings   []int    `json:"headings"`
	H1         int      `json:"h1"`
}

// checkPage loads path and checks UI.md's principles: at most
// 60 KB transferred with everything it loads; no sideways scroll at
// 360 px; a label on every control; <html lang>; headings in order.
func checkPage(t *testing.T, tb *tab, path string) {
	t.Helper()
	tb.do(chromedp.EmulateViewport(360, 740))
	defer tb.do(chromedp.EmulateViewport(1280, 900))
	tb.open(path)
	f := eval[pageFacts](tb, `(() => {
		const nav = performance.getEntriesByType("navigation")[0];
		const res = performance.getEntriesByType("resource");
		const controls = [...document.querySelectorAll("input:not([type=hidden]), select, textarea")];
		return {
			// A resource the browser kept from an earlier page counts
			// as if fetched again: its compressed body at least.
			bytes: nav.transferSize + res.reduce((n, r) => n + Math.max(r.transferSize, r.encodedBodySize + 300), 0),
			resources: res.map(r => r.name),
			width: document.documentElement.scrollWidth,
			unlabelled: controls.filter(c => !(c.labels && c.labels.length) && !c.getAttribute("aria-label") && !c.getAttribute("aria-labelledby")).map(c => c.name || c.id),
			lang: document.documentElement.lang,
			headings: [...document.querySelectorAll("h1,h2,h3,h4,h5,h6")].map(h => +h.tagName[1]),
			h1: document.querySelectorAll("h1").length,
		};
	})()`)
	if f.Bytes <= 0 || f.Bytes > pageBudget {
		t.Errorf("%s: %.0f bytes transferred with %v, budget %d", path, f.Bytes, f.Resources, pageBudget)
	}
	if f.Width > 360 {
		t.Errorf("%s: %d px wide at 360 px: it scrolls sideways", path, f.Width)
	}
	if len(f.Unlabelled) > 0 {
		t.Errorf("%s: controls without a label: %v", path, f.Unlabelled)
	}
	if f.Lang != "en" {
		t.Errorf("%s: <html lang=%q>", path, f.Lang)
	}
	if f.H1 != 1 {
		t.Errorf("%s: %d h1", path, f.H1)
	}
	for i := 1; i < len(f.Headings); i++ {
		if f.Headings[i] > f.Headings[i-1]+1 {
			t.Errorf("%s: heading levels jump: %v", path, f.Headings)
			break
		}
	}
	t.Logf("%s: %.1f KB transferred (%d resources), %d px wide", path, f.Bytes/1024, len(f.Resources)+1, f.Width)
}

// screenshot writes docs/screenshots/<name>.png of the page at desktop
// width (and of the queue and the filing form at 360 px too).
func screenshot(t *testing.T, tb *tab, path, name string) {
	t.Helper()
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	take := func(w int64, file string) {
		tb.do(chromedp.EmulateViewport(w, 900))
		tb.open(path)
		buf, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(90))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	take(1280, name+".png")
	if name == "queue" || name == "file" || name == "case-approver" {
		take(360, name+"-360.png")
	}
	tb.do(chromedp.EmulateViewport(1280, 900))
}
