// Package bench drives requests through EVA's whole lifecycle over its HTTP
// API and measures it, next to the raw rate of durable JetStream appends on
// the same machine, so that the cost of everything above the log is
// visible.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eva-org/eva/pkg/retry"
	"github.com/google/uuid"
	"github.com/schollz/progressbar/v3"
)

// Options of a run.
type Options struct {
	URL         string // the gateway, e.g. http://127.0.0.1:8080
	Requests    int    // N: cases per phase
	Clients     int    // C: concurrent clients
	Password    string // of the demo accounts
	RawDir      string // where the raw append benchmark keeps its store
	Progress    io.Writer
	RawMessages int // messages of the raw append benchmark; default max(N, 2000)
}

// Result is what a run measured.
type Result struct {
	Requests, Clients int

	// Warm-up: filings made before the filing phase, not counted in it,
	// and their p99 (a fresh instance's first burst).
	WarmupFilings int
	WarmupP99     time.Duration

	FilingsPerSec float64
	FilingP50     time.Duration
	FilingP99     time.Duration
	FilingErrors  int64

	CompletedPerSec  float64
	ToDisbursedP50   time.Duration
	ToDisbursedP99   time.Duration
	LifecycleErrors  int64
	LifecycleMissing int
	// Followed says the settlements came from the change stream
	// (GET /v1/changes), not from polling every case.
	Followed bool
	// Steps is the time between consecutive events of the lifecycle, over
	// a sample of the lifecycle phase's cases.
	Steps []Step

	// CPU per lifecycle over the lifecycle phase (Linux; zero elsewhere):
	// this process's (EVA's, when the bench started it in process, with
	// its embedded NATS and the bench's clients), and the machine's, which
	// adds PostgreSQL and whatever else ran. Steadier than the rates on a
	// shared machine: work per case, not how fast the CPUs were lent.
	CPUPerLifecycle        time.Duration
	MachineCPUPerLifecycle time.Duration
	// Disk is what the block device under RawDir (EVA's data directory
	// when the bench started EVA) did over the lifecycle phase (Linux;
	// zero elsewhere): how fast each write and cache flush was, apart
	// from the CPUs, which the raw append rate, measured alone before the
	// phases, cannot say.
	Disk DiskPhase

	RawAppendsPerSec float64
	RawP50           time.Duration
	// RawMachineCPUAppend is the machine's CPU a raw append took.
	RawMachineCPUAppend time.Duration
	// EventsPerLifecycle is how many events a case settled appended to
	// the log, on average over the cases whose steps were measured.
	EventsPerLifecycle float64
}

// LogBound is the most lifecycles a second the event log allows at this
// run's raw append rate: each of a lifecycle's events is a durable
// append to the one stream, which syncs its messages one at a time, so
// that even if nothing else took any time, lifecycles could not complete
// faster than raw appends over events a lifecycle. The raw rate is a
// single-replica stream's on an otherwise idle disk, as `eva dev` runs
// it (a replicated stream groups its syncs): under EVA's own load the
// stream stores less, so the bound is optimistic. Zero when either is
// unknown.
func (r Result) LogBound() float64 {
	if r.EventsPerLifecycle == 0 {
		return 0
	}
	return r.RawAppendsPerSec / r.EventsPerLifecycle
}

// LogMachineCPU is the machine's CPU a lifecycle's appends would take at
// the raw append's cost: the part of a lifecycle's CPU that is the log's
// writing alone (server and client), before any of EVA's own work.
func (r Result) LogMachineCPU() time.Duration {
	return time.Duration(float64(r.RawMachineCPUAppend) * r.EventsPerLifecycle)
}

// Summary is a run as JSON (--json): rates per second, times in
// milliseconds, memory in MiB, and the peer beside EVA when one ran.
type Summary struct {
	Requests                 int     `json:"requests"`
	Clients                  int     `json:"clients"`
	Store                    string  `json:"store"`
	WarmupFilings            int     `json:"warmup_filings"`
	WarmupP99Ms              float64 `json:"warmup_filing_p99_ms"`
	FilingsPerSec            float64 `json:"filings_per_sec"`
	FilingP50Ms              float64 `json:"filing_p50_ms"`
	FilingP99Ms              float64 `json:"filing_p99_ms"`
	FilingErrors             int64   `json:"filing_errors"`
	LifecyclesPerSec         float64 `json:"lifecycles_per_sec"`
	ToDisbursedP50Ms         float64 `json:"filing_to_disbursed_p50_ms"`
	ToDisbursedP99Ms         float64 `json:"filing_to_disbursed_p99_ms"`
	LifecycleErrors          int64   `json:"lifecycle_errors"`
	NotDisbursed             int     `json:"not_disbursed"`
	FollowedChanges          bool    `json:"followed_changes"`
	Steps                    []Step  `json:"steps,omitempty"`
	CPUMsPerLifecycle        float64 `json:"cpu_ms_per_lifecycle,omitempty"`
	MachineCPUMsPerLifecycle float64 `json:"machine_cpu_ms_per_lifecycle,omitempty"`
	DiskWritesPerSec         float64 `json:"disk_writes_per_sec,omitempty"`
	DiskWriteMs              float64 `json:"disk_write_ms,omitempty"`
	DiskFlushesPerSec        float64 `json:"disk_flushes_per_sec,omitempty"`
	DiskFlushMs              float64 `json:"disk_flush_ms,omitempty"`
	RawAppendsPerSec         float64 `json:"raw_appends_per_sec"`
	RawP50Ms                 float64 `json:"raw_append_p50_ms"`
	MachineCPUMsPerRawAppend float64 `json:"machine_cpu_ms_per_raw_append,omitempty"`
	FilingsOverRaw           float64 `json:"filings_over_raw_appends"`
	EventsPerLifecycle       float64 `json:"events_per_lifecycle,omitempty"`
	LogBound                 float64 `json:"log_bound_lifecycles_per_sec,omitempty"`
	LogMachineCPUMs          float64 `json:"log_machine_cpu_ms_per_lifecycle,omitempty"`
	IdleRSSMiB               int64   `json:"idle_rss_mib,omitempty"`
	PeakRSSMiB               int64   `json:"peak_rss_mib,omitempty"`
	Peer                     *Peer   `json:"peer,omitempty"`
	LifecyclesOverPeer       float64 `json:"lifecycles_over_peer_workflows,omitempty"`
	LogBoundOverPeer         float64 `json:"log_bound_over_peer_workflows,omitempty"`
}

// Summary is the result as JSON, with the peer's numbers beside it when
// peer is not nil.
func (r Result) Summary(store string, peer *Peer) Summary {
	s := Summary{Requests: r.Requests, Clients: r.Clients, Store: store,
		WarmupFilings: r.WarmupFilings, WarmupP99Ms: ms(r.WarmupP99), FilingsPerSec: r.FilingsPerSec,
		FilingP50Ms: ms(r.FilingP50), FilingP99Ms: ms(r.FilingP99), FilingErrors: r.FilingErrors,
		LifecyclesPerSec: r.CompletedPerSec, ToDisbursedP50Ms: ms(r.ToDisbursedP50), ToDisbursedP99Ms: ms(r.ToDisbursedP99),
		LifecycleErrors: r.LifecycleErrors, NotDisbursed: r.LifecycleMissing, FollowedChanges: r.Followed, Steps: r.Steps, RawAppendsPerSec: r.RawAppendsPerSec,
		CPUMsPerLifecycle: ms(r.CPUPerLifecycle), MachineCPUMsPerLifecycle: ms(r.MachineCPUPerLifecycle),
		RawP50Ms: ms(r.RawP50), MachineCPUMsPerRawAppend: ms(r.RawMachineCPUAppend), FilingsOverRaw: r.Ratio(),
		EventsPerLifecycle: r.EventsPerLifecycle, LogBound: r.LogBound(), LogMachineCPUMs: ms(r.LogMachineCPU()), Peer: peer}
	if r.Disk.WritesPerSec > 0 {
		s.DiskWritesPerSec, s.DiskWriteMs = r.Disk.WritesPerSec, ms(r.Disk.WriteLatency)
		s.DiskFlushesPerSec, s.DiskFlushMs = r.Disk.FlushesPerSec, ms(r.Disk.FlushLatency)
	}
	if peer != nil && peer.WorkflowsPerSec > 0 {
		s.LifecyclesOverPeer = r.CompletedPerSec / peer.WorkflowsPerSec
		s.LogBoundOverPeer = r.LogBound() / peer.WorkflowsPerSec
	}
	return s
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Ratio is filings per second over raw durable appends per second.
func (r Result) Ratio() float64 {
	if r.RawAppendsPerSec == 0 {
		return 0
	}
	return r.FilingsPerSec / r.RawAppendsPerSec
}

// Print writes the result as a small report.
func (r Result) Print(w io.Writer) {
	fmt.Fprintf(w, `
EVA bench: %d requests per phase, %d concurrent clients
  warm-up           %8d filings      p99 %-9v (not counted: a fresh instance's first burst)
  filing            %8.0f filings/s    p50 %-9v p99 %-9v errors %d
  lifecycle         %8.1f completed/s  filing→disbursed p50 %-9v p99 %-9v errors %d, not disbursed %d
  raw JetStream     %8.0f appends/s    p50 %v   (file storage, fsync always, %d publishers)
  filings / raw appends = %.2f
`, r.Requests, r.Clients, r.WarmupFilings, r.WarmupP99.Round(10*time.Microsecond),
		r.FilingsPerSec, r.FilingP50.Round(10*time.Microsecond), r.FilingP99.Round(10*time.Microsecond), r.FilingErrors,
		r.CompletedPerSec, r.ToDisbursedP50.Round(time.Millisecond), r.ToDisbursedP99.Round(time.Millisecond), r.LifecycleErrors, r.LifecycleMissing,
		r.RawAppendsPerSec, r.RawP50.Round(10*time.Microsecond), r.Clients, r.Ratio())
	if r.MachineCPUPerLifecycle > 0 {
		fmt.Fprintf(w, "  CPU per lifecycle %8.2f ms this process, %.2f ms the machine (all processes)\n",
			ms(r.CPUPerLifecycle), ms(r.MachineCPUPerLifecycle))
	}
	if r.Disk.WritesPerSec > 0 {
		fmt.Fprintf(w, "  disk (lifecycle)  %8.0f writes/s     %v each, %.0f cache flushes/s %v each\n",
			r.Disk.WritesPerSec, r.Disk.WriteLatency.Round(time.Microsecond), r.Disk.FlushesPerSec, r.Disk.FlushLatency.Round(time.Microsecond))
	}
	if r.LogBound() > 0 {
		fmt.Fprintf(w, "  the log's bound   %8.1f lifecycles/s (raw appends/s over %.2f events a lifecycle)\n", r.LogBound(), r.EventsPerLifecycle)
	}
	if r.LogMachineCPU() > 0 {
		fmt.Fprintf(w, "  log CPU           %8.2f ms a lifecycle's appends take the machine at the raw append's %.3f ms each\n",
			ms(r.LogMachineCPU()), ms(r.RawMachineCPUAppend))
	}
	if len(r.Steps) > 0 {
		fmt.Fprintln(w, "  lifecycle steps (event to next event, a sample of the cases):")
		printSteps(w, r.Steps)
	}
}

// unsynced hides an *os.File behind another type, so that the progress
// bars write to it without syncing: progressbar fsyncs a file after each
// render, about ten times a second, and with stderr sent to a file those
// fsyncs queued on the disk beside the ones the bench measures.
func unsynced(w io.Writer) io.Writer {
	return struct{ io.Writer }{w}
}

// Run benchmarks the instance at o.URL: the raw append rate, then 2×C
// filings to warm it up (not counted), then a filing
// phase (N filings by C clients), then a lifecycle phase (N cases each
// filed, claimed and approved by C clients, and followed until disbursed).
//
// Its goroutines carry the profile label eva-bench=clients, so that a
// profile of a process that runs both tells the clients' work from the
// instance's.
func Run(ctx context.Context, o Options) (res Result, err error) {
	pprof.Do(ctx, pprof.Labels("eva-bench", "clients"), func(ctx context.Context) { res, err = run(ctx, o) })
	return res, err
}

func run(ctx context.Context, o Options) (Result, error) {
	if o.Requests <= 0 || o.Clients <= 0 {
		return Result{}, fmt.Errorf("need requests > 0 and clients > 0")
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	o.Progress = unsynced(o.Progress)
	res := Result{Requests: o.Requests, Clients: o.Clients}
	raw, err := RawAppends(ctx, o.RawDir, max(o.RawMessages, o.Requests, 2000), o.Clients)
	if err != nil {
		return res, fmt.Errorf("raw appends: %w", err)
	}
	res.RawAppendsPerSec, res.RawP50, res.RawMachineCPUAppend = raw.PerSec, raw.P50, raw.MachineCPUAppend

	c := newClient(o.URL, o.Clients)
	ana, err := c.login(ctx, "ana", o.Password)
	if err != nil {
		return res, err
	}
	approvers := make([]string, 2)
	for i, u := range []string{"olu", "mei"} {
		if approvers[i], err = c.login(ctx, u, o.Password); err != nil {
			return res, err
		}
	}
	var fund, payee string
	// The instance may still be seeding.
	err = retry.Do(ctx, retry.Policy{First: 100 * time.Millisecond, Max: time.Second, Budget: 10 * time.Second}, retry.Always,
		func(ctx context.Context) (err error) {
			fund, payee, err = c.money(ctx, approvers[0])
			return err
		})
	if err != nil {
		return res, err
	}

	// Warm-up, not counted: a fresh instance opens its database
	// connections as the first burst needs them, and PostgreSQL starts
	// their backends one after another (about 24 ms each on the machine of
	// docs/benchmarks.md), so the filing phase's first 25 filings at 50
	// clients waited up to 0.6 s. Two filings per client open what a burst
	// of C needs; their p99 is reported apart.
	res.WarmupFilings = 2 * o.Clients
	warm, _ := c.filings(ctx, ana, payee, res.WarmupFilings, o.Clients, func() {}) // a failure shows in the phases
	res.WarmupP99 = Percentile(warm, 99)

	// Phase 1: filings only.
	bar := progressbar.NewOptions(o.Requests, progressbar.OptionSetWriter(o.Progress), progressbar.OptionSetDescription("filing   "),
		progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond))
	start := time.Now()
	lat, errs := c.filings(ctx, ana, payee, o.Requests, o.Clients, func() { _ = bar.Add(1) })
	elapsed := time.Since(start)
	_ = bar.Finish()
	fmt.Fprintln(o.Progress)
	res.FilingsPerSec = float64(o.Requests) / elapsed.Seconds()
	res.FilingP50, res.FilingP99 = Percentile(lat, 50), Percentile(lat, 99)
	res.FilingErrors = errs

	// Phase 2: the whole lifecycle. The change stream, opened first, says
	// when each case settles; an instance without it is polled.
	followCtx, stopFollowing := context.WithCancel(ctx)
	defer stopFollowing()
	settled, err := c.settlements(followCtx, approvers[0], o.Requests)
	if err != nil {
		fmt.Fprintf(o.Progress, "no change stream (%v): polling the cases instead\n", err)
	}
	bar = progressbar.NewOptions(o.Requests, progressbar.OptionSetWriter(o.Progress), progressbar.OptionSetDescription("lifecycle"),
		progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond))
	var lerrs atomic.Int64
	var mu sync.Mutex
	var (
		ids     []string
		created = map[string]time.Time{}
	)
	cpu0, disk0 := sampleCPU(), sampleDisk(o.RawDir)
	start = time.Now().UTC()
	parallel(o.Requests, o.Clients, func(i int) {
		defer func() { _ = bar.Add(1) }()
		cs, err := c.file(ctx, ana, payee)
		if err != nil {
			lerrs.Add(1)
			return
		}
		approver := approvers[i%2]
		if err := c.post(ctx, approver, "/v1/requests/"+cs.ID+"/claim", nil, nil); err != nil {
			lerrs.Add(1)
			return
		}
		body := map[string]any{"amount_usd_cents": cs.Amount, "fund_id": fund, "note": "bench"}
		if err := c.post(ctx, approver, "/v1/requests/"+cs.ID+"/approve", body, nil); err != nil {
			lerrs.Add(1)
			return
		}
		mu.Lock()
		ids, created[cs.ID] = append(ids, cs.ID), cs.CreatedAt
		mu.Unlock()
	})
	_ = bar.Finish()
	fmt.Fprintln(o.Progress)
	// Following, the sweeps only catch what the stream missed.
	sweep := 100 * time.Millisecond
	if res.Followed = settled != nil; res.Followed {
		sweep = 5 * time.Second
	}
	done, last, missing := c.awaitDisbursed(ctx, approvers[0], created, settled, o.Clients, sweep, 2*time.Minute)
	stopFollowing()
	res.CPUPerLifecycle, res.MachineCPUPerLifecycle = perCase(cpu0, sampleCPU(), len(done))
	res.Disk = diskPhase(disk0, sampleDisk(o.RawDir))
	// Completed cases per second, by the server's clock: from the start of
	// the phase to the last case disbursed (not to when polling saw it).
	if span := last.Sub(start); len(done) > 0 && span > 0 {
		res.CompletedPerSec = float64(len(done)) / span.Seconds()
	}
	res.ToDisbursedP50, res.ToDisbursedP99 = Percentile(done, 50), Percentile(done, 99)
	res.LifecycleErrors, res.LifecycleMissing = lerrs.Load(), missing
	res.Steps, res.EventsPerLifecycle = c.steps(ctx, approvers[0], ids, 200, o.Clients)
	return res, nil
}

// filings files n cases by conc clients and returns each filing's time
// and how many failed; done is called after each.
func (c *client) filings(ctx context.Context, token, payee string, n, conc int, done func()) ([]time.Duration, int64) {
	lat := make([]time.Duration, n)
	var errs atomic.Int64
	parallel(n, conc, func(i int) {
		t0 := time.Now()
		if _, err := c.file(ctx, token, payee); err != nil {
			errs.Add(1)
		}
		lat[i] = time.Since(t0)
		done()
	})
	return lat, errs.Load()
}

// parallel runs f(0..n-1) on c goroutines.
func parallel(n, c int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

// Percentile is the p-th percentile of d (nearest rank).
func Percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

type client struct {
	base string
	http *http.Client
}

func newClient(base string, conns int) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = conns*2, conns*2
	return &client{base: strings.TrimRight(base, "/"), http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

type caseJSON struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"`
	Amount    int64     `json:"amount_usd_cents"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (c *client) do(ctx context.Context, method, token, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil || method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", uuid.NewString())
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (c *client) post(ctx context.Context, token, path string, body, out any) error {
	if body == nil {
		body = map[string]any{}
	}
	return c.do(ctx, http.MethodPost, token, path, body, out)
}

func (c *client) login(ctx context.Context, user, password string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	if err := c.do(ctx, http.MethodPost, "", "/v1/auth/token", map[string]string{"username": user, "password": password}, &out); err != nil {
		return "", fmt.Errorf("login %s: %w", user, err)
	}
	return out.Token, nil
}

// money finds the demo fund and a payee.
func (c *client) money(ctx context.Context, token string) (fund, payee string, err error) {
	var funds, payees struct {
		Items []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"items"`
	}
	if err := c.do(ctx, http.MethodGet, token, "/v1/funds?limit=500", nil, &funds); err != nil {
		return "", "", err
	}
	if err := c.do(ctx, http.MethodGet, token, "/v1/payees?limit=500", nil, &payees); err != nil {
		return "", "", err
	}
	for _, f := range funds.Items {
		if f.Name == "EVA-DEMO" {
			fund = f.ID
		}
	}
	if fund == "" || len(payees.Items) == 0 {
		return "", "", fmt.Errorf("the instance has no EVA-DEMO fund or no payee: is it `eva dev`?")
	}
	return fund, payees.Items[0].ID, nil
}

func (c *client) file(ctx context.Context, token, payee string) (caseJSON, error) {
	var out caseJSON
	err := c.post(ctx, token, "/v1/requests", map[string]any{
		"post": "BGD-DHAKA", "category": "shelter", "urgency": "critical", "amount_usd_cents": 2500,
		"justification": "bench: shelter for one night", "payee_id": payee,
		"beneficiary": map[string]string{"reference": "BENCH-" + uuid.NewString()[:8], "name": "Bench Person"},
	}, &out)
	return out, err
}

// RSS returns this process's resident and peak resident memory in bytes,
// from /proc (Linux); zeros elsewhere.
func RSS() (current, peak int64) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			current = kb * 1024
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
			peak = kb * 1024
		}
	}
	return current, peak
}
