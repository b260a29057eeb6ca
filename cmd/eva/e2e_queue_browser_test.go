package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/eva-org/eva/pkg/evatest"
)

// liveProbe runs before each document of a tab: it counts the script's
// fetches, keeps the EventSources it opens (the browser's own, only
// watched) and the messages they get, and lets the test say whether the
// document is hidden (a headless tab is always visible).
const liveProbe = `(() => {
	const probe = window.evaProbe = { fetches: 0, streams: [], messages: 0, hidden: false };
	const f = window.fetch;
	window.fetch = function () { probe.fetches++; return f.apply(this, arguments); };
	const ES = window.EventSource;
	if (ES) {
		window.EventSource = class extends ES {
			constructor(url, opts) {
				super(url, opts);
				probe.streams.push(this);
				this.addEventListener("message", () => probe.messages++);
			}
		};
	}
	Object.defineProperty(Document.prototype, "hidden", { configurable: true, get() { return probe.hidden; } });
})();`

// withoutEventSource makes a browser without EventSource, and
// shortens the queue's timed refresh to 1 s (the server's is an hour) as
// the page is parsed, before the deferred script reads it.
const withoutEventSource = `delete window.EventSource;` + shortRefresh

// shortRefresh sets the queue's timed refresh to 1 s as the page is
// parsed, before the deferred script reads it.
const shortRefresh = `
new MutationObserver((_, obs) => {
	if (document.body) { document.body.dataset.refresh = "1"; obs.disconnect(); }
}).observe(document, { childList: true, subtree: true });`

// refusedStream points the queue at a change stream the gateway refuses
// (400), with the 1 s timed refresh.
const refusedStream = shortRefresh + `
new MutationObserver((_, obs) => {
	const live = document.getElementById("queue-live");
	if (live) { live.dataset.changes = "/v1/changes?after=nonsense"; obs.disconnect(); }
}).observe(document, { childList: true, subtree: true });`

// addScript has the tab run js before every document it loads.
func (tb *tab) addScript(js string) {
	tb.t.Helper()
	tb.do(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js})
		return chromedp.Void{}, err
	})
}

// TestE2EBrowserLiveQueue: the approver's queue follows GET /v1/changes
// in chromium. With the timed refresh at an hour, a request filed through
// the API appears in the open queue within seconds, without a reload, and
// the count is announced; a burst of changes makes one fetch (and one
// more when the first showed no change; 4 in all while a request the
// stream said was filed is not listed); a hidden
// page fetches nothing until it shows again, and one hidden long closes
// its stream and opens a new one when it shows; a list with the keyboard in
// it is not replaced until the keyboard leaves; pagehide closes the
// stream. Without EventSource, or with the stream refused, the timed
// refresh alone brings new requests in.
func TestE2EBrowserLiveQueue(t *testing.T) {
	path := chromium(t)
	t.Parallel()
	_, api := startDev(t, "eva-ui-live", t.TempDir(), "--queue-refresh", "1h")
	payee := api.payee().ID
	browser := newBrowser(t, path)
	filed := 0
	file := func(t *testing.T) string {
		t.Helper()
		filed++
		return post[caseJSON](api, "ana", "/v1/requests", fileBody(payee, fmt.Sprintf("REF-UI-LIVE-%d", filed), 10_000), http.StatusCreated, nil).ID
	}
	probe := func(tb *tab, field string) int { return eval[int](tb, "window.evaProbe."+field) }
	shown := func(tb *tab, id string) bool {
		return eval[bool](tb, fmt.Sprintf(`!!document.querySelector("#queue-live tr[data-case-id='%s']")`, id))
	}
	awaitShown := func(t *testing.T, tb *tab, id, how string) {
		t.Helper()
		evatest.Await(t, 10*time.Second, "case "+id+" in the open queue "+how, func() (bool, string) {
			return shown(tb, id), fmt.Sprintf("%d fetches", probe(tb, "fetches"))
		})
	}
	// settle gives the script time to act (its debounce is 400 ms).
	settle := func() { time.Sleep(1500 * time.Millisecond) }
	// quiet waits until the tab has fetched nothing for 3 s (a filing's
	// later events, a second fetch 2 s after one that changed nothing).
	quiet := func(t *testing.T, tb *tab) {
		t.Helper()
		n, since := probe(tb, "fetches"), time.Now()
		evatest.Await(t, 30*time.Second, "the queue to be quiet", func() (bool, string) {
			if m := probe(tb, "fetches"); m != n {
				n, since = m, time.Now()
			}
			return time.Since(since) >= 3*time.Second, fmt.Sprint(n, " fetches")
		})
	}

	olu := newTab(t, browser, api.base, false)
	olu.do(func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
		return chromedp.Void{}, err
	})
	olu.addScript(liveProbe)
	olu.signIn("olu")
	olu.open("/queue")
	if got := olu.attr("#queue-live", "data-changes"); got != "/v1/changes" {
		t.Fatalf("#queue-live data-changes %q", got)
	}
	if got := olu.attr("body", "data-refresh"); got != "3600" {
		t.Fatalf("body data-refresh %q with --queue-refresh 1h", got)
	}
	evatest.Await(t, 10*time.Second, "the change stream to open", func() (bool, string) {
		s := eval[[]int](olu, "window.evaProbe.streams.map(s => s.readyState)")
		return len(s) == 1 && s[0] == 1, fmt.Sprint(s)
	})
	// The one refresh on opening (what changed since the page was read).
	evatest.Await(t, 10*time.Second, "the refresh on opening", func() (bool, string) {
		n := probe(olu, "fetches")
		return n >= 1, fmt.Sprint(n)
	})
	quiet(t, olu)
	if n := probe(olu, "fetches"); n != 1 {
		t.Fatalf("%d fetches on opening the stream, want 1", n)
	}
	eval[chromedp.Void](olu, "window.evaMark = 'same document'")
	// run runs a subtest on olu's tab, which fails the subtest.
	run := func(name string, f func(t *testing.T)) {
		parent := olu.t
		t.Run(name, func(t *testing.T) {
			olu.t = t
			defer func() { olu.t = parent }()
			f(t)
		})
	}

	run("a filed request appears", func(t *testing.T) {
		before := probe(olu, "fetches")
		start := time.Now()
		id := file(t)
		awaitShown(t, olu, id, "by the stream")
		t.Logf("filed → shown in the queue in %s", time.Since(start).Round(time.Millisecond))
		if m, f := probe(olu, "messages"), probe(olu, "fetches"); m < 1 || f <= before {
			t.Fatalf("shown with %d messages and %d fetches (%d before)", m, f, before)
		}
		if mark := eval[string](olu, "String(window.evaMark)"); mark != "same document" {
			t.Fatalf("the page was reloaded (mark %q)", mark)
		}
		count := eval[string](olu, `document.querySelector("#queue-live [data-open]").textContent`)
		if st := eval[string](olu, `document.getElementById("live-status").textContent`); st == "" || st != count {
			t.Fatalf("live-status %q, count %q", st, count)
		}
	})

	run("a burst of changes makes one fetch", func(t *testing.T) {
		quiet(t, olu)
		before := probe(olu, "fetches")
		eval[chromedp.Void](olu, `for (let i = 0; i < 10; i++) window.evaProbe.streams[0].dispatchEvent(new MessageEvent("message", { data: "{}" }))`)
		settle()
		if got := probe(olu, "fetches") - before; got != 1 {
			t.Fatalf("10 messages in a burst made %d fetches, want 1", got)
		}
		// Nothing changed in the list: one more fetch, 2 s later, in
		// case the queue was behind the log.
		evatest.Await(t, 10*time.Second, "the second fetch", func() (bool, string) {
			n := probe(olu, "fetches") - before
			return n == 2, fmt.Sprint(n)
		})
		settle()
		if got := probe(olu, "fetches") - before; got != 2 {
			t.Fatalf("10 messages in a burst that changed nothing made %d fetches, want 2", got)
		}
	})

	run("a filed request not listed yet is fetched again", func(t *testing.T) {
		quiet(t, olu)
		before := probe(olu, "fetches")
		// The stream says a request was filed that the queue does not
		// list (as when the queue is behind the log): 1 fetch, then 3
		// more at 1, 2 and 4 s, then the clock's.
		eval[chromedp.Void](olu, `window.evaProbe.streams[0].dispatchEvent(new MessageEvent("message",
			{ data: JSON.stringify({ type: "RequestSubmitted", case_id: "01900000-0000-7000-8000-00000000dead" }) }))`)
		evatest.Await(t, 20*time.Second, "4 fetches", func() (bool, string) {
			n := probe(olu, "fetches") - before
			return n == 4, fmt.Sprint(n)
		})
		quiet(t, olu)
		if got := probe(olu, "fetches") - before; got != 4 {
			t.Fatalf("a filed request never listed made %d fetches, want 4", got)
		}
	})

	run("a hidden page refreshes when it shows", func(t *testing.T) {
		quiet(t, olu)
		before, msgs := probe(olu, "fetches"), probe(olu, "messages")
		eval[chromedp.Void](olu, "window.evaProbe.hidden = true")
		id := file(t)
		evatest.Await(t, 10*time.Second, "the stream to tell", func() (bool, string) {
			return probe(olu, "messages") > msgs, ""
		})
		settle()
		if shown(olu, id) || probe(olu, "fetches") != before {
			t.Fatalf("a hidden page fetched (%d fetches, %d before)", probe(olu, "fetches"), before)
		}
		eval[chromedp.Void](olu, `window.evaProbe.hidden = false; document.dispatchEvent(new Event("visibilitychange"))`)
		awaitShown(t, olu, id, "once the page shows")
	})

	run("a page hidden long gives its stream back and follows again when it shows", func(t *testing.T) {
		quiet(t, olu)
		streams := probe(olu, "streams.length")
		eval[chromedp.Void](olu, `document.getElementById("queue-live").dataset.release = "1";
			window.evaProbe.hidden = true; document.dispatchEvent(new Event("visibilitychange"))`)
		evatest.Await(t, 10*time.Second, "the hidden page's stream to close", func() (bool, string) {
			s := eval[int](olu, "window.evaProbe.streams.at(-1).readyState")
			return s == 2, fmt.Sprint("readyState ", s)
		})
		id := file(t)
		settle()
		if shown(olu, id) {
			t.Fatal("a hidden page without its stream refreshed")
		}
		eval[chromedp.Void](olu, `window.evaProbe.hidden = false; document.dispatchEvent(new Event("visibilitychange"))`)
		evatest.Await(t, 10*time.Second, "a new stream to open", func() (bool, string) {
			n := probe(olu, "streams.length")
			return n == streams+1 && eval[int](olu, "window.evaProbe.streams.at(-1).readyState") == 1, fmt.Sprint(n, " streams")
		})
		awaitShown(t, olu, id, "filed while the page was hidden, once it shows")
		eval[chromedp.Void](olu, `delete document.getElementById("queue-live").dataset.release`)
	})

	run("the list is not replaced under the keyboard", func(t *testing.T) {
		quiet(t, olu)
		msgs := probe(olu, "messages")
		if !eval[bool](olu, `(() => { const a = document.querySelector("#queue-live tr[data-case-id] a"); a.focus(); return document.activeElement === a; })()`) {
			t.Fatal("could not focus a link of the queue")
		}
		id := file(t)
		evatest.Await(t, 10*time.Second, "the stream to tell", func() (bool, string) {
			return probe(olu, "messages") > msgs, ""
		})
		settle()
		if shown(olu, id) {
			t.Fatal("the list was replaced with the keyboard in it")
		}
		eval[chromedp.Void](olu, "document.activeElement.blur()")
		awaitShown(t, olu, id, "once the keyboard left")
	})

	run("pagehide closes the stream", func(t *testing.T) {
		eval[chromedp.Void](olu, `window.dispatchEvent(new PageTransitionEvent("pagehide", { persisted: false }))`)
		if s := eval[int](olu, "window.evaProbe.streams.at(-1).readyState"); s != 2 {
			t.Fatalf("after pagehide the stream's readyState is %d, want 2 (CLOSED)", s)
		}
	})

	// The timed refresh alone: without EventSource, and with the stream
	// refused (400: readyState CLOSED, no reconnection).
	for _, c := range []struct{ name, script string }{
		{"without EventSource the clock refreshes", withoutEventSource},
		{"with the stream refused the clock refreshes", refusedStream},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := newTab(t, browser, api.base, false)
			tb.addScript(c.script)
			tb.addScript(liveProbe)
			tb.signIn("olu")
			tb.open("/queue")
			if got := tb.attr("body", "data-refresh"); got != "1" {
				t.Fatalf("body data-refresh %q, want the test's 1", got)
			}
			if c.script == withoutEventSource {
				if eval[bool](tb, "'EventSource' in window") {
					t.Fatal("EventSource is still there")
				}
			} else {
				evatest.Await(t, 10*time.Second, "the refused stream to close", func() (bool, string) {
					s := eval[[]int](tb, "window.evaProbe.streams.map(s => s.readyState)")
					return len(s) == 1 && s[0] == 2, fmt.Sprint(s)
				})
			}
			eval[chromedp.Void](tb, "window.evaMark = 'same document'")
			id := file(t)
			awaitShown(t, tb, id, "by the clock")
			if mark := eval[string](tb, "String(window.evaMark)"); mark != "same document" {
				t.Fatalf("the page was reloaded (mark %q)", mark)
			}
		})
	}
}
