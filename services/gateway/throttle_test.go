package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// testThrottle is the conformance suite of the sign-in throttle.
func testThrottle(t *testing.T, s Store) {
	ctx := context.Background()
	p := ThrottlePolicy{PairFree: 3, AddrFree: 6, AccountFree: 8, Window: 15 * time.Minute, MaxDelay: time.Minute,
		KnownFor: time.Hour}
	now := t0
	count := func(user, addr string) time.Duration {
		t.Helper()
		wait, err := s.CountLoginAttempt(ctx, LoginAttempt{Username: user, Addr: addr}, p, now)
		if err != nil {
			t.Fatal(err)
		}
		return wait
	}

	t.Run("per account and address", func(t *testing.T) {
		for i := range p.PairFree {
			if w := count("olu", "10.0.0.1"); w != 0 {
				t.Fatalf("attempt %d waits %v", i+1, w)
			}
		}
		if w := count("olu", "10.0.0.1"); w != time.Second {
			t.Fatalf("attempt after the allowance waits %v, want 1s", w)
		}
		// Refused attempts are not counted: the wait does not grow.
		if w := count("olu", "10.0.0.1"); w != time.Second {
			t.Fatalf("again: %v, want 1s", w)
		}
		// The same account from elsewhere, another account from here.
		if w := count("olu", "10.0.0.2"); w != 0 {
			t.Fatalf("other address waits %v", w)
		}
		if w := count("mei", "10.0.0.1"); w != 0 {
			t.Fatalf("other account waits %v", w)
		}
		// The wait doubles with each failure after it, up to MaxDelay.
		for _, want := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second} {
			now = now.Add(time.Second * 100)
			if w := count("olu", "10.0.0.1"); w != 0 {
				t.Fatalf("after the wait: %v", w)
			}
			if w := count("olu", "10.0.0.1"); w != want {
				t.Fatalf("wait %v, want %v", w, want)
			}
		}
		// A success clears the pair.
		ok := LoginAttempt{Username: "mei", Addr: "10.0.0.5"}
		count(ok.Username, ok.Addr)
		count(ok.Username, ok.Addr)
		if err := s.LoginSucceeded(ctx, ok, now); err != nil {
			t.Fatal(err)
		}
		for i := range p.PairFree {
			if w := count(ok.Username, ok.Addr); w != 0 {
				t.Fatalf("after a success, attempt %d waits %v", i+1, w)
			}
		}
		// A counter is forgotten a window after its last failure.
		for range p.PairFree + 1 {
			count("ghost", "10.0.0.9")
		}
		now = now.Add(p.Window + time.Second)
		for i := range p.PairFree {
			if w := count("ghost", "10.0.0.9"); w != 0 {
				t.Fatalf("after the window, attempt %d waits %v", i+1, w)
			}
		}
	})

	t.Run("per address", func(t *testing.T) {
		now = now.Add(time.Hour)
		for i := range p.AddrFree {
			if w := count(fmt.Sprintf("spray-%d", i), "10.1.0.1"); w != 0 {
				t.Fatalf("account %d waits %v", i, w)
			}
		}
		if w := count("spray-new", "10.1.0.1"); w == 0 {
			t.Fatal("an address that tried many accounts is not slowed")
		}
		if w := count("spray-new", "10.1.0.2"); w != 0 {
			t.Fatalf("another address waits %v", w)
		}
	})

	t.Run("per account, known addresses exempt", func(t *testing.T) {
		now = now.Add(time.Hour)
		// The user signs in from home.
		count("fin", "10.2.0.1")
		if err := s.LoginSucceeded(ctx, LoginAttempt{Username: "fin", Addr: "10.2.0.1"}, now); err != nil {
			t.Fatal(err)
		}
		// Many addresses guess, each within its own allowance.
		for i := range p.AccountFree {
			if w := count("fin", fmt.Sprintf("10.3.0.%d", i)); w != 0 {
				t.Fatalf("guesser %d waits %v", i, w)
			}
		}
		if w := count("fin", "10.3.1.1"); w == 0 {
			t.Fatal("a new address is not slowed on an account under attack")
		}
		if w := count("fin", "10.2.0.1"); w != 0 {
			t.Fatalf("the user's known address waits %v", w)
		}
	})

	t.Run("concurrent attempts never exceed the allowance", func(t *testing.T) {
		now = now.Add(time.Hour)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			allowed int
		)
		for range 20 {
			wg.Go(func() {
				wait, err := s.CountLoginAttempt(ctx, LoginAttempt{Username: "race", Addr: "10.4.0.1"}, p, now)
				if err != nil {
					t.Error(err)
					return
				}
				if wait == 0 {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if allowed != p.PairFree {
			t.Fatalf("%d of 20 concurrent attempts allowed, want %d", allowed, p.PairFree)
		}
	})

	t.Run("sweep", func(t *testing.T) {
		n, err := s.DeleteStaleThrottles(ctx, p, now)
		if err != nil || n == 0 {
			t.Fatalf("sweep: %d, %v", n, err)
		}
		// Counters with recent failures are kept.
		if w := count("race", "10.4.0.1"); w == 0 {
			t.Fatal("a live counter was swept")
		}
	})
}

// clientFrom returns an HTTP client whose connections come from the local
// address ip, so that the gateway sees that client address.
func clientFrom(tb testing.TB, ip string) *http.Client {
	tb.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func postLogin(tb testing.TB, c *http.Client, url, username, password string) *http.Response {
	tb.Helper()
	res, err := c.Post(url+"/v1/auth/token", "application/json",
		strings.NewReader(`{"username":`+strconv.Quote(username)+`,"password":`+strconv.Quote(password)+`}`))
	if err != nil {
		tb.Fatal(err)
	}
	res.Body.Close()
	return res
}

// An attacker at 127.0.0.2 sends 20 wrong passwords at once: no more than
// the allowance is checked, the rest get 429 with Retry-After; the user
// at 127.0.0.1 signs in all the same.
func TestLoginThrottleOverTheNetwork(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		srv := httptest.NewServer(h.h)
		t.Cleanup(srv.Close)
		attacker, user := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.1")

		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			statuses = map[int]int{}
		)
		for range 20 {
			wg.Go(func() {
				res := postLogin(t, attacker, srv.URL, "olu", "wrong")
				mu.Lock()
				defer mu.Unlock()
				statuses[res.StatusCode]++
				if res.StatusCode == http.StatusTooManyRequests {
					if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 {
						t.Errorf("Retry-After %q", res.Header.Get("Retry-After"))
					}
				}
			})
		}
		wg.Wait()
		free := DefaultThrottlePolicy.PairFree
		if statuses[http.StatusUnauthorized] != free || statuses[http.StatusTooManyRequests] != 20-free {
			t.Fatalf("statuses of 20 concurrent wrong passwords: %v; want %d × 401, %d × 429", statuses, free, 20-free)
		}
		// The attacker now waits even with the right password...
		if res := postLogin(t, attacker, srv.URL, "olu", "pw"); res.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("attacker with the right password: %d, want 429", res.StatusCode)
		}
		// ...and the user, elsewhere, does not.
		if res := postLogin(t, user, srv.URL, "olu", "pw"); res.StatusCode != http.StatusOK {
			t.Fatalf("the user at another address: %d, want 200", res.StatusCode)
		}
		// After the wait, the attacker may try again, and waits longer after.
		h.clock.Advance(time.Second)
		if res := postLogin(t, attacker, srv.URL, "olu", "wrong"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("after the wait: %d, want 401", res.StatusCode)
		}
		res := postLogin(t, attacker, srv.URL, "olu", "wrong")
		if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "2" {
			t.Fatalf("next: %d, Retry-After %q; want 429, 2", res.StatusCode, res.Header.Get("Retry-After"))
		}
	})
}

func TestClientAddr(t *testing.T) {
	for remote, want := range map[string]string{
		"127.0.0.2:5555":             "127.0.0.2",
		"[::ffff:10.0.0.1]:1":        "10.0.0.1",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"in-process":                 "in-process",
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		if got := clientAddr(r); got != want {
			t.Errorf("%s: %s, want %s", remote, got, want)
		}
	}
	// The web UI's calls count against the browser's address.
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "in-process"
	r = r.WithContext(context.WithValue(r.Context(), clientAddrKey{}, "192.0.2.7"))
	if got := clientAddr(r); got != "192.0.2.7" {
		t.Errorf("in-process call: %s, want the page's address", got)
	}
}
