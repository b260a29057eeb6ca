package main

// End-to-end tests: they build the real eva binary once, start it as child
// processes on free ports, and talk to it over HTTP only, as a client
// outside the project would (API.md). This file holds the shared helpers:
// the build, process control and a small API client.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
)

// evaBin is the binary TestMain builds.
var evaBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	// The tests wait on child processes far more than they compute: unless
	// -parallel was given, run more of them at once than there are CPUs.
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "8")
	}
	dir, err := os.MkdirTemp("", "eva-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	evaBin = filepath.Join(dir, "eva")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// The test runs in cmd/eva: build the package of this directory.
	build := exec.Command(goTool, "build", "-o", evaBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAILED to build the eva binary (go build -o %s .): %v\n%s\n", evaBin, err, out)
		return 1
	}
	return m.Run()
}

// devPassword is the password of the demo accounts the children seed.
func devPassword() string {
	if p := os.Getenv("EVA_DEV_PASSWORD"); p != "" {
		return p
	}
	return "demo"
}

// childEnv is this process's environment without any EVA_* setting (so
// that a developer's shell cannot change what the tests start), plus extra.
func childEnv(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "EVA_") })
	env = append(env, "EVA_DEV_PASSWORD="+devPassword())
	return append(env, extra...)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	max   int
	total int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += len(p)
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

// Total is how many bytes were ever written.
func (b *tailBuffer) Total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// Since is what was written after the first mark bytes, as far as the
// buffer still holds it.
func (b *tailBuffer) Since(mark int) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(b.total-mark, len(b.buf))
	return append([]byte(nil), b.buf[len(b.buf)-n:]...)
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.total > len(b.buf) {
		return fmt.Sprintf("[... %d bytes cut ...]\n%s", b.total-len(b.buf), b.buf)
	}
	return string(b.buf)
}

// proc is a running eva child process.
type proc struct {
	tb   testing.TB
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error // of Wait, once done is closed
	// URL is the gateway's base URL when the process serves HTTP.
	URL     string
	started time.Time
}

// startProc starts `eva args...` with env; the process is killed (if still
// running) after the test, and its output logged when the test failed.
func startProc(tb testing.TB, name string, env []string, args ...string) *proc {
	tb.Helper()
	return startBinary(tb, name, env, evaBin, args...)
}

// startBinary is startProc for another program than eva (a nats-server).
func startBinary(tb testing.TB, name string, env []string, bin string, args ...string) *proc {
	tb.Helper()
	p := &proc{tb: tb, name: name, out: &tailBuffer{max: 1 << 20}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Dir = tb.TempDir() // a stray relative path lands in a temp dir
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s (%s %s): %v", name, filepath.Base(bin), strings.Join(args, " "), err)
	}
	p.started = time.Now()
	tb.Logf("started %s: pid %d: %s %s", name, p.cmd.Process.Pid, filepath.Base(bin), strings.Join(args, " "))
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		logs := p.out.String()
		if tb.Failed() && !p.exited() && bin == evaBin {
			p.dumpGoroutines()
		}
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
			logs = p.out.String()
		}
		if cut := len(logs) - 256<<10; cut > 0 {
			logs = fmt.Sprintf("[... %d bytes cut ...]\n%s", cut, logs[cut:])
		}
		if tb.Failed() {
			tb.Logf("---- output of %s (pid %d, %s %s) ----\n%s---- end of %s ----",
				name, p.cmd.Process.Pid, filepath.Base(bin), strings.Join(args, " "), logs, name)
		}
	})
	return p
}

// dumpGoroutines has a failed test's eva print its goroutines (SIGQUIT)
// and keeps them in a file of their own, whose path it logs: what a
// process was waiting on when a test gave up on it (a consumer that
// stopped taking events, a call that never returned), without burying its
// log under the dump.
func (p *proc) dumpGoroutines() {
	mark := p.out.Total()
	if err := p.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		return
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		return
	}
	dir := filepath.Join(os.TempDir(), "eva-e2e-dumps")
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.txt", strings.ReplaceAll(p.tb.Name(), "/", "_"), p.cmd.Process.Pid))
	if os.MkdirAll(dir, 0o755) == nil && os.WriteFile(path, p.out.Since(mark), 0o644) == nil {
		p.tb.Logf("goroutines of %s at the failure: %s", p.name, path)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode is the process's exit code, -1 when killed by a signal.
func (p *proc) exitCode() int {
	<-p.done
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// wait waits up to d for the process to end and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.tb.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.tb.Fatalf("%s did not end within %s; killed it", p.name, d)
	}
	return p.exitCode()
}

// stop ends the process gracefully (SIGINT, as Ctrl-C) and returns its
// exit code; it fails the test if it does not end within 30 s.
func (p *proc) stop() int {
	p.tb.Helper()
	if p.exited() {
		return p.exitCode()
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil && !p.exited() {
		p.tb.Fatalf("interrupt %s: %v", p.name, err)
	}
	return p.wait(30 * time.Second)
}

// kill ends the process with SIGKILL, as a crash would.
func (p *proc) kill() {
	p.tb.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.tb.Logf("killed %s (pid %d) with SIGKILL", p.name, p.cmd.Process.Pid)
}

// waitOutput waits until the process has printed s.
func (p *proc) waitOutput(s string, d time.Duration) {
	p.tb.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.out.String(), s) {
		if p.exited() {
			p.tb.Fatalf("%s ended (exit %d) before printing %q", p.name, p.exitCode(), s)
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("%s did not print %q within %s", p.name, s, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tryReady polls GET /readyz until 200 (true), or until the process ends
// or d passes (false).
func (p *proc) tryReady(d time.Duration) bool {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	for {
		resp, err := hc.Get(p.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		if p.exited() || time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startDev starts `eva dev` on dataDir on port 0 (it listens before
// anything else and names the port in its banner, so no other process can
// take the port meanwhile), waits until it has seeded its demo data and is
// ready, and returns it with a client.
func startDev(tb testing.TB, name, dataDir string, extra ...string) (*proc, *client) {
	tb.Helper()
	p := startProc(tb, name, childEnv(), append([]string{"dev", "--data", dataDir, "--http", "127.0.0.1:0"}, extra...)...)
	// The banner comes after the demo fund and payees are created.
	const running = "EVA is running: "
	p.waitOutput(running, 60*time.Second)
	out := p.out.String()
	url, _, _ := strings.Cut(out[strings.Index(out, running)+len(running):], "\n")
	p.URL = strings.TrimSpace(url)
	if !p.tryReady(60 * time.Second) {
		tb.Fatalf("%s at %s was not ready within a minute", name, p.URL)
	}
	return p, newClient(tb, p.URL)
}

// startHTTPProc starts a process that serves HTTP at a free address and
// waits until it is ready. A free port can be taken by someone else
// between the test's check and the child's listen: the start is then
// retried on another port.
func startHTTPProc(tb testing.TB, name string, env []string, args func(addr string) []string) *proc {
	tb.Helper()
	for attempt := 1; ; attempt++ {
		addr := evatest.FreeAddr(tb)
		p := startProc(tb, name, env, args(addr)...)
		p.URL = "http://" + addr
		if p.tryReady(60 * time.Second) {
			return p
		}
		if !p.exited() {
			tb.Fatalf("%s was not ready within a minute", name)
		}
		if attempt == 3 || !strings.Contains(p.out.String(), "address already in use") {
			tb.Fatalf("%s ended (exit %d) before it was ready: %s", name, p.exitCode(), strings.TrimSpace(p.out.String()))
		}
		tb.Logf("%s: %s was taken; trying another port", name, addr)
	}
}

// response is an HTTP answer, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *response) String() string {
	return fmt.Sprintf("%d %s", r.Status, bytes.TrimSpace(r.Body))
}

// decode parses the body as JSON into v.
func (r *response) decode(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("decode %q: %v", r.Body, err)
	}
}

// client is a small API client; it signs in the demo users on demand.
type client struct {
	tb     testing.TB
	base   string
	hc     *http.Client
	mu     sync.Mutex
	tokens map[string]string
}

func newClient(tb testing.TB, base string) *client {
	return &client{tb: tb, base: base, hc: &http.Client{Timeout: 30 * time.Second}, tokens: map[string]string{}}
}

// req is one request; body is sent as is when it is a string or []byte,
// else as JSON. Content-Type is application/json for a non-nil body unless
// header sets it ("" in header removes it).
type req struct {
	user   string // "" sends no token
	method string
	path   string
	body   any
	header map[string]string
	// rawHeader adds header values as given (for repeated headers).
	rawHeader http.Header
}

// try sends r and returns the answer or the transport error.
func (c *client) try(r req) (*response, error) {
	var body io.Reader
	if r.body != nil {
		switch b := r.body.(type) {
		case string:
			body = strings.NewReader(b)
		case []byte:
			body = bytes.NewReader(b)
		default:
			data, err := json.Marshal(b)
			if err != nil {
				return nil, err
			}
			body = bytes.NewReader(data)
		}
	}
	hr, err := http.NewRequest(r.method, c.base+r.path, body)
	if err != nil {
		return nil, err
	}
	if r.body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.user != "" {
		tok, err := c.token(r.user)
		if err != nil {
			return nil, err
		}
		hr.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, v := range r.header {
		if v == "" && k == "Content-Type" {
			hr.Header.Del(k)
			continue
		}
		hr.Header.Set(k, v)
	}
	for k, vs := range r.rawHeader {
		for _, v := range vs {
			hr.Header.Add(k, v)
		}
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// do sends r and fails the test on a transport error.
func (c *client) do(r req) *response {
	c.tb.Helper()
	resp, err := c.try(r)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	return resp
}

// token signs user in (once) with the demo password.
func (c *client) token(user string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tokens[user]; ok {
		return t, nil
	}
	data, _ := json.Marshal(map[string]string{"username": user, "password": devPassword()})
	resp, err := c.hc.Post(c.base+"/v1/auth/token", "application/json", bytes.NewReader(data))
	if err != nil {
		return "", fmt.Errorf("sign in %s: %w", user, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("sign in %s: %d %s", user, resp.StatusCode, body)
	}
	var tr struct{ Token string }
	if err := json.Unmarshal(body, &tr); err != nil || tr.Token == "" {
		return "", fmt.Errorf("sign in %s: no token in %s", user, body)
	}
	c.tokens[user] = tr.Token
	return tr.Token, nil
}

// get is GET path as user, expecting want; it returns the body decoded
// into a T.
func get[T any](c *client, user, path string, want int) T {
	c.tb.Helper()
	resp := c.do(req{user: user, method: http.MethodGet, path: path})
	if resp.Status != want {
		c.tb.Fatalf("GET %s as %s: %s, want %d", path, user, resp, want)
	}
	var v T
	resp.decode(c.tb, &v)
	return v
}

// post is POST path as user with body, expecting want; it returns the
// body decoded into a T.
func post[T any](c *client, user, path string, body any, want int, header map[string]string) T {
	c.tb.Helper()
	resp := c.do(req{user: user, method: http.MethodPost, path: path, body: body, header: header})
	if resp.Status != want {
		c.tb.Fatalf("POST %s as %s: %s, want %d", path, user, resp, want)
	}
	var v T
	resp.decode(c.tb, &v)
	return v
}

// API shapes (API.md).
type (
	caseJSON struct {
		ID            string `json:"id"`
		Status        string `json:"status"`
		Post          string `json:"post"`
		Category      string `json:"category"`
		Urgency       string `json:"urgency"`
		AmountCents   int64  `json:"amount_usd_cents"`
		ApprovedCents int64  `json:"approved_usd_cents"`
		CreatedAt     string `json:"created_at"`
		UpdatedAt     string `json:"updated_at"`
		Version       uint64 `json:"version"`
		Escalated     bool   `json:"escalated"`
		FundID        string `json:"fund_id"`
		PayoutID      string `json:"payout_id"`
		PayeeID       string `json:"payee_id"`
	}
	fundJSON struct {
		ID             string `json:"id"`
		Name           string `json:"name"`
		AllocatedCents int64  `json:"allocated_usd_cents"`
		ReservedCents  int64  `json:"reserved_usd_cents"`
		PaidCents      int64  `json:"paid_usd_cents"`
		AvailableCents int64  `json:"available_usd_cents"`
	}
	payeeJSON struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Country string `json:"country"`
	}
	payoutJSON struct {
		ID          string `json:"id"`
		RequestID   string `json:"request_id"`
		FundID      string `json:"fund_id"`
		PayeeID     string `json:"payee_id"`
		AmountCents int64  `json:"amount_usd_cents"`
		Status      string `json:"status"`
		Attempt     int    `json:"attempt"`
	}
	eventJSON struct {
		Seq       uint64 `json:"seq"`
		ID        string `json:"id"`
		RequestID string `json:"request_id"`
		Type      string `json:"type"`
		At        string `json:"at"`
	}
	verifyJSON struct {
		OK       bool    `json:"ok"`
		Events   uint64  `json:"events"`
		FirstBad *uint64 `json:"first_bad"`
		Reason   string  `json:"reason"`
		Lag      uint64  `json:"lag"`
	}
	pageJSON[T any] struct {
		Items      []T    `json:"items"`
		NextCursor string `json:"next_cursor"`
	}
	problemJSON struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
		Errors []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
)

// demoFund returns the EVA-DEMO fund.
func (c *client) demoFund() fundJSON {
	c.tb.Helper()
	for _, f := range get[pageJSON[fundJSON]](c, "fin", "/v1/funds?limit=500", http.StatusOK).Items {
		if f.Name == "EVA-DEMO" {
			return f
		}
	}
	c.tb.Fatal("no fund EVA-DEMO in GET /v1/funds")
	return fundJSON{}
}

func (c *client) fund(id string) fundJSON {
	c.tb.Helper()
	return get[fundJSON](c, "fin", "/v1/funds/"+id, http.StatusOK)
}

// payee returns a demo payee.
func (c *client) payee() payeeJSON {
	c.tb.Helper()
	ps := get[pageJSON[payeeJSON]](c, "ana", "/v1/payees", http.StatusOK).Items
	if len(ps) == 0 {
		c.tb.Fatal("no payees in GET /v1/payees")
	}
	return ps[0]
}

// fileBody is a valid filing at ana's post.
func fileBody(payeeID, ref string, cents int64) map[string]any {
	return map[string]any{
		"post": "BGD-DHAKA", "category": "shelter", "urgency": "urgent", "amount_usd_cents": cents,
		"justification": "Survivor found tonight; needs a safe shelter for two weeks.",
		"beneficiary":   map[string]any{"reference": ref, "name": "A. Survivor", "date_of_birth": "1999-04-12", "nationality": "BGD"},
		"payee_id":      payeeID,
	}
}

// waitStatus waits until the case has status want.
func (c *client) waitStatus(id, want string, d time.Duration) caseJSON {
	c.tb.Helper()
	var cs caseJSON
	evatest.Await(c.tb, d, "request "+id+" to be "+want, func() (bool, string) {
		resp := c.do(req{user: "olu", method: http.MethodGet, path: "/v1/requests/" + id})
		if resp.Status != http.StatusOK {
			return false, resp.String()
		}
		resp.decode(c.tb, &cs)
		return cs.Status == want, cs.Status
	})
	return cs
}

// checkpoint reads the latest signed checkpoint (text) and its tree size.
func (c *client) checkpoint() (size uint64, note string) {
	c.tb.Helper()
	resp := c.do(req{user: "aud", method: http.MethodGet, path: "/v1/audit/checkpoint"})
	if resp.Status != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		c.tb.Fatalf("GET /v1/audit/checkpoint: %s", resp)
	}
	lines := strings.Split(string(resp.Body), "\n")
	if len(lines) < 4 {
		c.tb.Fatalf("GET /v1/audit/checkpoint: not a checkpoint: %q", resp.Body)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		c.tb.Fatalf("GET /v1/audit/checkpoint: size %q: %v", lines[1], err)
	}
	return size, string(resp.Body)
}

// waitVerified waits until GET /v1/audit/verify is ok with the archive
// caught up with the log, and returns it.
func (c *client) waitVerified(d time.Duration) verifyJSON {
	c.tb.Helper()
	var v verifyJSON
	evatest.Await(c.tb, d, "audit verify ok with no lag", func() (bool, string) {
		resp := c.do(req{user: "aud", method: http.MethodGet, path: "/v1/audit/verify"})
		if resp.Status != http.StatusOK {
			return false, resp.String()
		}
		resp.decode(c.tb, &v)
		if !v.OK && v.FirstBad != nil {
			c.tb.Fatalf("audit verify is not ok: %s", resp)
		}
		return v.OK && v.Lag == 0, resp.String()
	})
	return v
}

// settledPayouts waits (up to 30 s) until the request has payouts and all
// are settled, and returns them as last listed: the payout list is the
// disbursement service's read model, which follows the log a moment after
// the case itself shows disbursed.
func (c *client) settledPayouts(id string) []payoutJSON {
	c.tb.Helper()
	var pays []payoutJSON
	evatest.Await(c.tb, 30*time.Second, "the payouts of "+id+" to settle", func() (bool, string) {
		resp := c.do(req{user: "fin", method: http.MethodGet, path: "/v1/payouts?request=" + id})
		if resp.Status != http.StatusOK {
			return false, resp.String()
		}
		var p pageJSON[payoutJSON]
		resp.decode(c.tb, &p)
		pays = p.Items
		settled := len(pays) > 0
		for _, p := range pays {
			settled = settled && p.Status == "settled"
		}
		return settled, fmt.Sprintf("%+v", pays)
	})
	return pays
}

// history returns a case's archived events (as the auditor).
func (c *client) history(id string) []eventJSON {
	c.tb.Helper()
	return get[pageJSON[eventJSON]](c, "aud", "/v1/requests/"+id+"/history", http.StatusOK).Items
}

func eventTypes(evs []eventJSON) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}
