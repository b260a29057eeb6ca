package main

// Faults on the real binary: a dependency goes away under load, comes
// back, and the verdict is the same for every fault — every acknowledged
// request is there, no payout twice, no fund overspent, the audit
// verifies, no 5xx but 503, and EVA serves again within seconds.

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/netfault"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/jackc/pgx/v5"
)

// faultLoad drives whole lifecycles (file, claim, approve) from several
// workers while faults happen, retrying each step with its Idempotency-Key
// while EVA answers 503 or does not answer, and keeps the score.
type faultLoad struct {
	t           *testing.T
	c           *client
	fund, payee string
	stop        chan struct{}
	wg          sync.WaitGroup

	mu        sync.Mutex
	filed     []string // acknowledged filings
	approved  []string // acknowledged approvals
	statuses  map[int]int
	other5xx  []string // samples of 5xx other than 503
	n5xx      int      // 5xx other than 503
	transport int      // requests that got no answer
	wrong     []string // answers no step should get (a 4xx but 409 on a retried step)
	successes []time.Time
}

func newFaultLoad(t *testing.T, c *client) *faultLoad {
	return &faultLoad{t: t, c: c, fund: c.demoFund().ID, payee: c.payee().ID, stop: make(chan struct{}), statuses: map[int]int{}}
}

func (l *faultLoad) start(workers int) {
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				l.lifecycle(w, i)
			}
		}()
	}
}

// end stops the workers after their current step.
func (l *faultLoad) end() {
	close(l.stop)
	l.wg.Wait()
}

// lifecycle files, claims and approves one case.
func (l *faultLoad) lifecycle(w, i int) {
	key := fmt.Sprintf("fault-%d-%d-%d", time.Now().UnixNano(), w, i)
	var cs caseJSON
	if !l.step(req{user: "ana", method: http.MethodPost, path: "/v1/requests",
		body:   fileBody(l.payee, "REF-"+key, int64(1_000+i%500)),
		header: map[string]string{"Idempotency-Key": key + "-file"}}, http.StatusCreated, &cs) {
		return
	}
	l.record(&l.filed, cs.ID)
	user := []string{"olu", "mei"}[w%2]
	if !l.step(req{user: user, method: http.MethodPost, path: "/v1/requests/" + cs.ID + "/claim",
		header: map[string]string{"Idempotency-Key": key + "-claim"}}, http.StatusOK, nil) {
		return
	}
	if l.step(req{user: user, method: http.MethodPost, path: "/v1/requests/" + cs.ID + "/approve",
		body:   map[string]any{"amount_usd_cents": cs.AmountCents, "fund_id": l.fund},
		header: map[string]string{"Idempotency-Key": key + "-approve"}}, http.StatusOK, nil) {
		l.record(&l.approved, cs.ID)
	}
}

// step sends r until it gets an answer other than 503 (or none at all),
// for at most a minute, and reports whether it got want.
func (l *faultLoad) step(r req, want int, out any) bool {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := l.c.try(r)
		l.mu.Lock()
		switch {
		case err != nil:
			l.transport++
		default:
			l.statuses[resp.Status]++
			if resp.Status >= 500 && resp.Status != http.StatusServiceUnavailable {
				l.n5xx++
				if len(l.other5xx) < 10 {
					l.other5xx = append(l.other5xx, r.method+" "+r.path+": "+resp.String())
				}
			}
		}
		l.mu.Unlock()
		switch {
		case err != nil, resp.Status == http.StatusServiceUnavailable:
			time.Sleep(50 * time.Millisecond)
			continue
		case resp.Status == want:
			if out != nil {
				resp.decode(l.t, out)
			}
			l.mu.Lock()
			l.successes = append(l.successes, time.Now())
			l.mu.Unlock()
			return true
		default:
			l.mu.Lock()
			if len(l.wrong) < 10 {
				l.wrong = append(l.wrong, r.method+" "+r.path+": "+resp.String())
			}
			l.mu.Unlock()
			return false
		}
	}
	return false
}

func (l *faultLoad) record(list *[]string, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*list = append(*list, id)
}

func (l *faultLoad) counts() (filed, approved int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.filed), len(l.approved)
}

// waitProgress waits until n more filings were acknowledged.
func (l *faultLoad) waitProgress(n int) {
	l.t.Helper()
	from, _ := l.counts()
	evatest.Eventually(l.t, fmt.Sprintf("%d more filings", n), func() bool {
		filed, _ := l.counts()
		return filed >= from+n
	})
}

// recovered waits for the first command that succeeds after t and returns
// how long after t it succeeded.
func (l *faultLoad) recovered(t time.Time) time.Duration {
	l.t.Helper()
	var first time.Time
	evatest.Eventually(l.t, "a command to succeed after the fault", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, s := range l.successes {
			if s.After(t) {
				first = s
				return true
			}
		}
		return false
	})
	return first.Sub(t)
}

// verdict checks what must hold after any fault.
func (l *faultLoad) verdict() {
	t, c := l.t, l.c
	t.Helper()
	l.mu.Lock()
	filed, approved := append([]string(nil), l.filed...), append([]string(nil), l.approved...)
	t.Logf("answers %v, %d without an answer; %d filings and %d approvals acknowledged", l.statuses, l.transport, len(filed), len(approved))
	if len(l.other5xx) > 0 {
		t.Errorf("5xx other than 503: %s", strings.Join(l.other5xx, "\n"))
	}
	if len(l.wrong) > 0 {
		t.Errorf("unexpected answers: %s", strings.Join(l.wrong, "\n"))
	}
	n5xx := l.n5xx
	l.mu.Unlock()
	// Every acknowledged filing is a request; every acknowledged approval
	// is paid, once, with what was approved.
	lost, twice := 0, 0
	for _, id := range filed {
		resp := retryUnavailable(c, req{user: "olu", method: http.MethodGet, path: "/v1/requests/" + id})
		if resp.Status != http.StatusOK {
			lost++
			t.Errorf("acknowledged filing %s: %s", id, resp)
		}
	}
	var sum int64
	for _, id := range approved {
		cs := c.waitStatus(id, "disbursed", 2*time.Minute)
		pays := c.settledPayouts(id)
		if len(pays) > 1 {
			twice++
		}
		if len(pays) != 1 || pays[0].AmountCents != cs.ApprovedCents {
			t.Errorf("payouts of %s (approved %d): %+v", id, cs.ApprovedCents, pays)
		}
		sum += cs.ApprovedCents
	}
	t.Logf("verdict: 5xx other than 503: %d; acknowledged requests lost: %d; paid twice: %d", n5xx, lost, twice)
	// No fund overspent; no money left held once everything settled.
	var f fundJSON
	evatest.Await(t, time.Minute, "the fund to settle", func() (bool, string) {
		f = c.fund(l.fund)
		return f.ReservedCents == 0 && f.PaidCents >= sum, fmt.Sprintf("%+v, want paid ≥ %d", f, sum)
	})
	if f.AvailableCents < 0 || f.PaidCents+f.ReservedCents > f.AllocatedCents || f.AvailableCents != f.AllocatedCents-f.PaidCents {
		t.Errorf("fund %+v overspent or out of balance", f)
	}
	c.waitVerified(time.Minute)
}

// PostgreSQL restarted under load, cleanly then by crash: nothing
// acknowledged is lost, nothing paid twice, no 5xx but 503, and EVA
// serves again within seconds of the database's return.
func TestE2EFaultPostgresRestarts(t *testing.T) {
	t.Parallel()
	pg := startPGServer(t)
	eva, c := startDev(t, "eva dev on a private PostgreSQL", t.TempDir(), "--database", pg.URL())
	load := newFaultLoad(t, c)
	load.start(8)
	load.waitProgress(20)
	for _, mode := range []string{"fast", "immediate"} {
		began := time.Now()
		pg.restart(mode)
		back := time.Now()
		took := load.recovered(back)
		t.Logf("PostgreSQL restart (%s): down %s; first successful command %s after it was back",
			mode, back.Sub(began).Round(time.Millisecond), took.Round(time.Millisecond))
		if took > 10*time.Second {
			t.Errorf("after a %s restart EVA served again only %s after PostgreSQL was back", mode, took)
		}
		load.waitProgress(20)
	}
	load.end()
	load.verdict()
	eva.stop()
	if out := eva.out.String(); strings.Count(out, "request failed") > 0 {
		t.Errorf("internal errors were logged:\n%s", grepLines(out, "request failed", 5))
	}
}

// grepLines returns up to n lines of out that contain s.
func grepLines(out, s string, n int) string {
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, s) {
			lines = append(lines, line)
			if len(lines) == n {
				break
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// PostgreSQL made slow (80 ms each way on every chunk) and its connections
// dropped twice under load, through a TCP proxy: the same verdict, and EVA
// serves again within seconds once the network is healthy.
func TestE2EFaultSlowAndDroppingDatabase(t *testing.T) {
	t.Parallel()
	url, schema := sqldbtest.Schema(t)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := netfault.Start(net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	dbURL := sqldbtest.URLWithSchema(fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", cfg.User, proxy.Addr(), cfg.Database), schema)
	eva, c := startDev(t, "eva dev behind a faulty network", t.TempDir(), "--database", dbURL)
	load := newFaultLoad(t, c)
	load.start(8)
	load.waitProgress(10)
	proxy.SetLatency(80 * time.Millisecond)
	load.waitProgress(10)
	for range 2 {
		proxy.CutAll()
		load.waitProgress(5)
	}
	proxy.SetLatency(0)
	healthy := time.Now()
	took := load.recovered(healthy)
	t.Logf("after the slow, dropping network: first successful command %s after it was healthy", took.Round(time.Millisecond))
	load.waitProgress(10)
	load.end()
	load.verdict()
	eva.stop()
	if out := eva.out.String(); strings.Contains(out, "request failed") {
		t.Errorf("internal errors were logged:\n%s", grepLines(out, "request failed", 5))
	}
}

// mountTmpfs mounts a small tmpfs for the test (root only); without the
// right to mount it skips loudly, or fails in CI.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs (%v: %s)", err, strings.TrimSpace(string(out)))
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip("SKIPPING: " + msg)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fillDisk takes every free byte of the file system holding dir (most in
// one allocation, the rest written until the disk refuses), and returns a
// function that frees it.
func fillDisk(t *testing.T, dir string) (free func()) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	bulk, rest := filepath.Join(dir, "filler"), filepath.Join(dir, "filler-rest")
	if avail := st.Bavail * uint64(st.Bsize); avail > 8<<20 {
		if out, err := exec.Command("fallocate", "-l", strconv.FormatUint(avail-8<<20, 10), bulk).CombinedOutput(); err != nil {
			t.Fatalf("fallocate: %v %s", err, out)
		}
	}
	f, err := os.Create(rest)
	if err == nil {
		chunk := make([]byte, 16<<10)
		for err == nil {
			_, err = f.Write(chunk)
		}
		f.Close()
	}
	return func() {
		for _, p := range []string{bulk, rest} {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
	}
}

// The disk of the event log and the embedded databases fills up under
// load: EVA answers 503 while it is full, never 500, loses nothing it
// acknowledged, and takes writes again within seconds of space coming
// back.
func TestE2EFaultDiskFull(t *testing.T) {
	t.Parallel()
	disk := mountTmpfs(t, "96m")
	dataDir := filepath.Join(disk, "data")
	t.Cleanup(func() {
		if t.Failed() { // what filled the small disk
			out, _ := exec.Command("du", "-ak", "--max-depth=3", dataDir).CombinedOutput()
			t.Logf("disk use of %s (KiB):\n%s", dataDir, out)
		}
	})
	eva, c := startDev(t, "eva dev on a small disk", dataDir)
	load := newFaultLoad(t, c)
	load.start(8)
	load.waitProgress(20)
	free := fillDisk(t, disk)
	full := time.Now()
	evatest.Await(t, time.Minute, "readyz to say not ready while the disk is full", func() (bool, string) {
		resp, err := c.try(req{method: http.MethodGet, path: "/readyz"})
		if err != nil {
			return false, err.Error()
		}
		return resp.Status == http.StatusServiceUnavailable, resp.String()
	})
	// Filings without an Idempotency-Key write nothing but the event log:
	// they meet the event log's full disk.
	var keyless []string
	for i := range 10 {
		resp, err := c.try(req{user: "ana", method: http.MethodPost, path: "/v1/requests",
			body: fileBody(load.payee, fmt.Sprintf("REF-FULL-%d", i), 2_000)})
		switch {
		case err != nil:
			t.Errorf("keyless filing %d: %v", i, err)
		case resp.Status == http.StatusCreated:
			var cs caseJSON
			resp.decode(t, &cs)
			keyless = append(keyless, cs.ID)
		case resp.Status != http.StatusServiceUnavailable:
			t.Errorf("keyless filing %d on a full disk: %s", i, resp)
		}
	}
	time.Sleep(time.Until(full.Add(3 * time.Second))) // the fault lasts three seconds at least
	free()
	freed := time.Now()
	took := load.recovered(freed)
	evatest.Await(t, 30*time.Second, "a keyless filing to be acknowledged after space came back", func() (bool, string) {
		resp, err := c.try(req{user: "ana", method: http.MethodPost, path: "/v1/requests", body: fileBody(load.payee, "REF-AFTER", 2_000)})
		if err != nil {
			return false, err.Error()
		}
		return resp.Status == http.StatusCreated, resp.String()
	})
	t.Logf("keyless filings on the full disk: %d of 10 acknowledged; a keyless filing acknowledged %s after space came back",
		len(keyless), time.Since(freed).Round(time.Millisecond))
	for _, id := range keyless {
		get[caseJSON](c, "olu", "/v1/requests/"+id, http.StatusOK)
	}
	t.Logf("disk full for %s; first successful command %s after space came back", freed.Sub(full).Round(time.Millisecond),
		took.Round(time.Millisecond))
	if took > 15*time.Second {
		t.Errorf("EVA served again only %s after space came back", took)
	}
	load.waitProgress(20)
	load.end()
	load.verdict()
	eva.stop()
}
