package wire_test

// The web UI on a whole EVA in the test process (wiretest): every page of
// every desk, as each demo user, over HTTP without scripts, with the real
// API and services behind it; and a benchmark of the pages' weight and
// time to first byte under 50 concurrent browsers.

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/cmd/eva/internal/wire/wiretest"
	"github.com/eva-org/eva/pkg/evatest"
)

// browser is an HTTP client with cookies that does not follow redirects.
type browser struct {
	tb   testing.TB
	base string
	hc   *http.Client
}

func newBrowser(tb testing.TB, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{tb: tb, base: base, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(path string) (int, string, http.Header) {
	b.tb.Helper()
	resp, err := b.hc.Get(b.base + path)
	if err != nil {
		b.tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

func (b *browser) post(path string, form url.Values) (int, string, http.Header) {
	b.tb.Helper()
	resp, err := b.hc.PostForm(b.base+path, form)
	if err != nil {
		b.tb.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

var (
	csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	keyRE  = regexp.MustCompile(`name="key" value="([^"]+)"`)
	caseRE = regexp.MustCompile(`^/requests/([0-9a-f-]{36})`)
)

func token(tb testing.TB, re *regexp.Regexp, html string) string {
	tb.Helper()
	m := re.FindStringSubmatch(html)
	if m == nil {
		tb.Fatalf("no %s in the page", re)
	}
	return m[1]
}

// signIn signs the browser in through the sign-in form.
func (b *browser) signIn(user string) {
	b.tb.Helper()
	_, page, _ := b.get("/login")
	status, _, h := b.post("/login", url.Values{"csrf": {token(b.tb, csrfRE, page)}, "username": {user}, "password": {"demo"}})
	if status != http.StatusSeeOther || h.Get("Location") != "/" {
		b.tb.Fatalf("%s signs in: %d %q", user, status, h.Get("Location"))
	}
}

// fileRequest files a request as a requester, through the form.
func (b *browser) fileRequest(ref string) string {
	b.tb.Helper()
	_, page, _ := b.get("/requests/new")
	status, body, h := b.post("/requests/new", url.Values{"csrf": {token(b.tb, csrfRE, page)}, "key": {token(b.tb, keyRE, page)},
		"post": {"BGD-DHAKA"}, "category": {"shelter"}, "urgency": {"urgent"}, "amount": {"250.00"},
		"justification": {"Two nights in a shelter"}, "ben_ref": {ref}, "payee": {""}})
	m := caseRE.FindStringSubmatch(h.Get("Location"))
	if status != http.StatusSeeOther || m == nil {
		b.tb.Fatalf("filing: %d %q %s", status, h.Get("Location"), body)
	}
	return m[1]
}

// TestWebDesks opens every page of every desk as its demo user, against
// the real API and services: each answers, with its marks, and the pages
// of other roles are refused with a page that says so.
func TestWebDesks(t *testing.T) {
	s := wiretest.Start(t, wiretest.Options{Quiet: true})
	ana := newBrowser(t, s.URL)
	ana.signIn("ana")
	id := ana.fileRequest("DHK-WEB-1")

	olu := newBrowser(t, s.URL)
	olu.signIn("olu")
	_, c, _ := olu.get("/requests/" + id)
	if status, _, _ := olu.post("/requests/"+id+"/claim", url.Values{"csrf": {token(t, csrfRE, c)}, "key": {"claim-1"}}); status != http.StatusSeeOther {
		t.Fatalf("claim: %d", status)
	}
	_, c, _ = olu.get("/requests/" + id)
	status, body, _ := olu.post("/requests/"+id+"/approve", url.Values{"csrf": {token(t, csrfRE, c)}, "key": {"approve-1"},
		"amount": {"250.00"}, "fund": {wire.DemoFundID}, "payee": {""}, "note": {"ok"}})
	// The request names no payee: the API's error is shown at the Payee field.
	if status != http.StatusBadRequest || !strings.Contains(body, `id="approve-payee" name="payee" aria-required="true" aria-invalid="true"`) {
		t.Fatalf("approve without a payee: %d", status)
	}
	payee := regexp.MustCompile(`<option value="([0-9a-f-]{36})">Safe Haven`).FindStringSubmatch(body)
	if payee == nil {
		t.Fatal("no payee to choose beside the approve form")
	}
	status, _, _ = olu.post("/requests/"+id+"/approve", url.Values{"csrf": {token(t, csrfRE, body)}, "key": {token(t, keyRE, body)},
		"amount": {"250.00"}, "fund": {wire.DemoFundID}, "payee": {payee[1]}, "note": {"ok"}})
	if status != http.StatusSeeOther {
		t.Fatalf("approve: %d", status)
	}
	evatest.Eventually(t, "the case to be disbursed", func() bool {
		_, page, _ := ana.get("/requests/" + id)
		return strings.Contains(page, `data-status="disbursed"`)
	})

	users := map[string]*browser{"ana": ana, "olu": olu}
	for _, u := range []string{"raj", "fin", "aud", "adm"} {
		users[u] = newBrowser(t, s.URL)
		users[u].signIn(u)
	}
	asOf := url.QueryEscape(time.Now().UTC().Format(time.RFC3339Nano))
	type want struct {
		status int
		marks  []string
	}
	pages := map[string]map[string]want{
		"ana": {
			"/requests":                            {200, []string{`data-case-id="` + id + `"`, `data-status="disbursed"`, ">File a request</a>"}},
			"/requests/new":                        {200, []string{">File request</button>", ">Beneficiary reference</label>"}},
			"/requests/" + id:                      {200, []string{`data-status="disbursed"`, ">History</h2>", "RequestSubmitted", "PayoutSettled", ">Show the beneficiary&#39;s data</button>"}},
			"/queue":                               {403, []string{"Not for your role"}},
			"/audit":                               {403, nil},
			"/requests/" + id + "/as-of?t=" + asOf: {403, nil},
		},
		"raj": {
			"/requests/" + id: {404, []string{"Not found"}},
			"/requests":       {200, []string{"No requests here."}},
		},
		"olu": {
			"/queue":          {200, []string{">Age of the queue by urgency</h2>", "<svg class=\"chart\""}},
			"/requests/" + id: {200, []string{`data-status="disbursed"`, ">Replay</button>"}},
			"/funds":          {200, []string{"EVA-DEMO"}},
			"/payouts":        {200, []string{`data-case-id="` + id + `"`}},
		},
		"fin": {
			"/funds":                    {200, []string{">Create fund</button>", "EVA-DEMO"}},
			"/funds/" + wire.DemoFundID: {200, []string{">Burn-down</h2>", `<path d="M`, "999,750.00"}},
			"/payees":                   {200, []string{">Add payee</button>", "Safe Haven Shelter Dhaka"}},
			"/payouts":                  {200, []string{`data-payout-status="settled"`}},
			"/queue":                    {403, nil},
			"/webhooks":                 {403, nil},
		},
		"aud": {
			"/audit":                               {200, []string{">Verify</button>", ">Export</button>", "RequestApproved", ">Access log</h2>"}},
			"/audit?access=" + id:                  {200, []string{"olu"}},
			"/requests/" + id + "/as-of?t=" + asOf: {200, []string{`data-asof-status="disbursed"`}},
			"/funds/" + wire.DemoFundID:            {200, []string{">Burn-down</h2>"}},
		},
		"adm": {
			"/admin":    {200, []string{">Dead letters</h2>", "No dead letters."}},
			"/users":    {200, []string{">Create account</button>", ">Username</label>", ">E-mail</label>", `type="email"`, `data-username="ana"`}},
			"/policy":   {200, []string{">Save policy</button>", `data-policy-version="default-1"`, ">Claim lease</label>"}},
			"/audit":    {403, nil},
			"/webhooks": {200, []string{">Register</button>", ">URL</label>", ">Events</label>", ">Secret</label>", "No webhooks yet."}},
		},
	}
	// olu read the beneficiary? The access log shows olu only after a
	// read: do one.
	_, c, _ = olu.get("/requests/" + id)
	if status, page, _ := olu.post("/requests/"+id+"/beneficiary", url.Values{"csrf": {token(t, csrfRE, c)}}); status != 200 || !strings.Contains(page, "DHK-WEB-1") {
		t.Fatalf("beneficiary: %d", status)
	}
	for user, ps := range pages {
		for path, w := range ps {
			status, page, h := users[user].get(path)
			if status != w.status {
				t.Errorf("%s GET %s: %d, want %d", user, path, status, w.status)
				continue
			}
			if !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(page, `<html lang="en">`) || !strings.Contains(page, "</html>") {
				t.Errorf("%s GET %s: not a whole page (%s)", user, path, h.Get("Content-Type"))
			}
			for _, m := range w.marks {
				if !strings.Contains(page, m) {
					t.Errorf("%s GET %s: no %q", user, path, m)
				}
			}
		}
	}
	// Verify and Export, as the auditor.
	aud := users["aud"]
	// Adm registers a webhook through the form: a short secret is shown
	// at its field, then a good one lists the webhook (never its secret).
	adm := users["adm"]
	_, wpage, _ := adm.get("/webhooks")
	form := url.Values{"csrf": {token(t, csrfRE, wpage)}, "key": {token(t, keyRE, wpage)},
		"url": {"https://hooks.example.org/eva"}, "events": {"RequestApproved, DeadlineMissed"}, "secret": {"short"}}
	status, r, _ := adm.post("/webhooks", form)
	if status != 400 || !strings.Contains(r, `id="webhook-secret-error"`) {
		t.Fatalf("short secret: %d %s", status, r)
	}
	form.Set("secret", "a-long-enough-secret")
	form.Set("key", token(t, keyRE, r)) // the page gives the corrected form a fresh key
	if status, _, h := adm.post("/webhooks", form); status != http.StatusSeeOther || h.Get("Location") != "/webhooks?done=webhook" {
		t.Fatalf("register: %d, Location %q", status, h.Get("Location"))
	}
	if status, r, _ := adm.get("/webhooks?done=webhook"); status != 200 || !strings.Contains(r, "https://hooks.example.org/eva") ||
		!strings.Contains(r, "RequestApproved, DeadlineMissed") || strings.Contains(r, "a-long-enough-secret") {
		t.Fatalf("the webhook listed: %d %s", status, r)
	}
	_, page, _ := aud.get("/audit")
	evatest.Eventually(t, "Verify to say ok", func() bool {
		_, r, _ := aud.post("/audit/verify", url.Values{"csrf": {token(t, csrfRE, page)}})
		return strings.Contains(r, `data-verify="ok"`)
	})
	resp, err := aud.hc.PostForm(s.URL+"/audit/export", url.Values{"csrf": {token(t, csrfRE, page)}, "format": {"csv"}})
	if err != nil {
		t.Fatal(err)
	}
	csv, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(csv), "seq,id,request_id,type") || !strings.Contains(string(csv), id) ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), "eva-audit.csv") {
		t.Fatalf("export: %d %q", resp.StatusCode, resp.Header)
	}
	// French for the requester, from Accept-Language.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/requests/"+id, nil)
	req.Header.Set("Accept-Language", "fr-FR,fr;q=0.9")
	r2, err := ana.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	fr, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if !strings.Contains(string(fr), `<html lang="fr">`) || !strings.Contains(string(fr), ">Historique</h2>") || !strings.Contains(string(fr), ">Payée</span>") {
		t.Fatalf("French case page: %.300s", fr)
	}
}

// BenchmarkWebPages measures each page as 50 concurrent browsers load it:
// the bytes transferred (gzip, the page with its stylesheet and script)
// and the time to first byte of the page. Run it with
//
//	go test ./cmd/eva/internal/wire -run '^$' -bench WebPages -benchtime 400x
func BenchmarkWebPages(b *testing.B) {
	s := wiretest.Start(b, wiretest.Options{Quiet: true})
	ana := newBrowser(b, s.URL)
	ana.signIn("ana")
	var id string
	for i := range 20 {
		id = ana.fileRequest(fmt.Sprintf("DHK-BENCH-%d", i))
	}
	users := map[string]*browser{"ana": ana}
	for _, u := range []string{"olu", "fin", "aud", "adm"} {
		users[u] = newBrowser(b, s.URL)
		users[u].signIn(u)
	}
	pages := []struct{ name, user, path string }{
		{"signin", "", "/login"},
		{"requests", "ana", "/requests"},
		{"file", "ana", "/requests/new"},
		{"case", "olu", "/requests/" + id},
		{"queue", "olu", "/queue"},
		{"funds", "fin", "/funds"},
		{"fund", "fin", "/funds/" + wire.DemoFundID},
		{"payees", "fin", "/payees"},
		{"payouts", "fin", "/payouts"},
		{"audit", "aud", "/audit"},
		{"admin", "adm", "/admin"},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			var jar http.CookieJar
			if p.user != "" {
				jar = users[p.user].hc.Jar
			}
			hc := &http.Client{Jar: jar, Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
			defer hc.CloseIdleConnections()
			assets := assetSizes(b, hc, s.URL+p.path)
			var mu sync.Mutex
			var ttfb []time.Duration
			var pageBytes int64
			b.SetParallelism(25) // × GOMAXPROCS: 50 browsers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d, n := load(b, hc, s.URL+p.path)
					mu.Lock()
					ttfb = append(ttfb, d)
					pageBytes = n
					mu.Unlock()
				}
			})
			b.StopTimer()
			slices.Sort(ttfb)
			b.ReportMetric(float64(pageBytes+assets), "gzip-B/page")
			b.ReportMetric(float64(ttfb[len(ttfb)/2].Microseconds())/1000, "ttfb-p50-ms")
			b.ReportMetric(float64(ttfb[len(ttfb)*95/100].Microseconds())/1000, "ttfb-p95-ms")
		})
	}
}

// load GETs a page as a browser does (gzip accepted) and returns the time
// to its first byte and the bytes transferred.
func load(tb testing.TB, hc *http.Client, u string) (time.Duration, int64) {
	var first time.Time
	start := time.Now()
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" {
		tb.Fatalf("GET %s: %d %q", u, resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	return first.Sub(start), n
}

// assetSizes is the gzip size of the stylesheet and script a page loads.
func assetSizes(tb testing.TB, hc *http.Client, u string) int64 {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	html, _ := io.ReadAll(zr)
	resp.Body.Close()
	base, _ := url.Parse(u)
	var total int64
	for _, m := range regexp.MustCompile(`(?:href|src)="(/static/[^"]+)"`).FindAllStringSubmatch(string(html), -1) {
		_, n := load(tb, hc, base.Scheme+"://"+base.Host+m[1])
		total += n
	}
	return total
}
