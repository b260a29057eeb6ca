package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
	_ "modernc.org/sqlite"
)

// TestE2EKill9MidPipeline crashes `eva dev` with SIGKILL at several
// moments and restarts it on the same data: an acknowledged request is
// never lost (invariant 1) and a payout is paid at most once per approval
// (invariant 4), checked against the simulated provider's own books.
func TestE2EKill9MidPipeline(t *testing.T) {
	t.Parallel()

	// Right after 20 approvals were acknowledged, while their payouts are
	// in flight (the provider takes 2 s to settle); then once more while
	// the restarted eva is paying.
	t.Run("after approvals", func(t *testing.T) {
		t.Parallel()
		const n = 20
		dataDir := t.TempDir()
		eva, c := startDev(t, "eva dev #1", dataDir, "--settle-after", "2s")
		fund, payee := c.demoFund(), c.payee()
		if fund.PaidCents != 0 || fund.ReservedCents != 0 {
			t.Fatalf("fresh demo fund: %+v", fund)
		}
		ids := make([]string, n)
		approved := map[string]int64{}
		var mu sync.Mutex
		parallelDo(t, n, 4, func(i int) error {
			requested := int64(10_000 + 1_111*i)
			cs, err := tryPost[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, fmt.Sprintf("REF-K9A-%d", i), requested), http.StatusCreated)
			if err != nil {
				return err
			}
			if _, err := tryPost[caseJSON](c, "olu", "/v1/requests/"+cs.ID+"/claim", nil, http.StatusOK); err != nil {
				return err
			}
			amount := requested - int64(7*i) // at most what was requested
			if _, err := tryPost[caseJSON](c, "olu", "/v1/requests/"+cs.ID+"/approve",
				map[string]any{"amount_usd_cents": amount, "fund_id": fund.ID}, http.StatusOK); err != nil {
				return err
			}
			mu.Lock()
			ids[i], approved[cs.ID] = cs.ID, amount
			mu.Unlock()
			return nil
		})
		eva.kill()

		eva, c = startDev(t, "eva dev #2", dataDir, "--settle-after", "2s")
		// Crash again once the restarted eva has a payment at the
		// provider that has not settled yet (if all settled first, the
		// crash comes after them, which is harmless to check too).
		var state string
		evatest.Await(t, 60*time.Second, "a payout sent and not settled", func() (bool, string) {
			pays := get[pageJSON[payoutJSON]](c, "fin", "/v1/payouts?limit=500", http.StatusOK).Items
			count := map[string]int{}
			for _, p := range pays {
				count[p.Status]++
			}
			state = fmt.Sprintf("%d payouts by status: %v", len(pays), count)
			return count["sent"] > 0 || count["settled"] == n, state
		})
		eva.kill()
		t.Logf("second crash with %s", state)

		eva, c = startDev(t, "eva dev #3", dataDir, "--settle-after", "2s")
		for _, id := range ids {
			if got := get[caseJSON](c, "ana", "/v1/requests/"+id, http.StatusOK); got.ApprovedCents != approved[id] {
				t.Errorf("request %s: approved %d, want %d", id, got.ApprovedCents, approved[id])
			}
		}
		for _, id := range ids {
			c.waitStatus(id, "disbursed", 90*time.Second)
		}
		var sum int64
		payouts := map[string]payoutJSON{} // by payout id
		for _, id := range ids {
			pays := c.settledPayouts(id)
			if len(pays) != 1 || pays[0].Status != "settled" || pays[0].AmountCents != approved[id] {
				t.Errorf("payouts of %s: %+v, want one settled of %d", id, pays, approved[id])
			}
			for _, p := range pays {
				payouts[p.ID] = p
			}
			sum += approved[id]
		}
		f := c.fund(fund.ID)
		if f.PaidCents != sum || f.ReservedCents != 0 || f.AvailableCents != f.AllocatedCents-sum {
			t.Errorf("fund %+v, want paid %d (the sum of the approvals), nothing reserved", f, sum)
		}
		c.waitVerified(30 * time.Second)
		if code := eva.stop(); code != 0 {
			t.Errorf("eva dev exited with %d after SIGINT", code)
		}

		// The provider's books: one payment per payout, of its amount.
		paid := providerBooks(t, dataDir)
		if len(paid) != n {
			t.Errorf("the provider booked %d payments, want %d: %v", len(paid), n, paid)
		}
		for _, p := range payouts {
			key := fmt.Sprintf("%s-%d", p.ID, p.Attempt)
			if got, ok := paid[key]; !ok || got.amount != p.AmountCents || got.payee != p.PayeeID {
				t.Errorf("payout %s (attempt %d) of %d: the provider booked %+v (ok %v)", p.ID, p.Attempt, p.AmountCents, got, ok)
			}
		}
		perPayout := map[string]int{}
		for key := range paid {
			if len(key) > 36 {
				perPayout[key[:36]]++
			}
		}
		for id, k := range perPayout {
			if k != 1 {
				t.Errorf("payout %s paid %d times", id, k)
			}
			if _, ok := payouts[id]; !ok {
				t.Errorf("the provider paid %s, which is no payout of these approvals", id)
			}
		}
	})

	// Right after a batch of filings that were all acknowledged: each one
	// is there after the crash, and nothing else is.
	t.Run("after filings", func(t *testing.T) {
		t.Parallel()
		const n = 15
		dataDir := t.TempDir()
		eva, c := startDev(t, "eva dev #1", dataDir)
		payee := c.payee()
		seeded := c.waitVerified(30 * time.Second).Events // the demo fund's and payees' events
		var acked []string
		for i := range n {
			cs := post[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, fmt.Sprintf("REF-K9F-%d", i), 5_000), http.StatusCreated, nil)
			acked = append(acked, cs.ID)
		}
		eva.kill()
		eva, c = startDev(t, "eva dev #2", dataDir)
		restarted := time.Now()
		checkAcknowledged(t, c, acked)
		if v := c.waitVerified(30 * time.Second); v.Events != seeded+n {
			t.Errorf("the log holds %d events after %d seeded and %d filings", v.Events, seeded, n)
		}
		waitListed(t, c, acked, n, restarted)
		eva.stop()
	})

	// While filings are in flight: only the acknowledged ones must exist
	// (an unacknowledged one may or may not).
	t.Run("filings in flight", func(t *testing.T) {
		t.Parallel()
		dataDir := t.TempDir()
		eva, c := startDev(t, "eva dev #1", dataDir)
		payee := c.payee()
		seeded := c.waitVerified(30 * time.Second).Events // the demo fund's and payees' events
		acked := inFlight(t, eva, 6, 30, func(worker, i int) (string, error) {
			cs, err := tryPost[caseJSON](c, "ana", "/v1/requests",
				fileBody(payee.ID, fmt.Sprintf("REF-K9I-%d-%d", worker, i), 5_000), http.StatusCreated)
			return cs.ID, err
		})
		eva, c = startDev(t, "eva dev #2", dataDir)
		restarted := time.Now()
		checkAcknowledged(t, c, acked)
		v := c.waitVerified(30 * time.Second)
		listed := waitListed(t, c, acked, int(v.Events-seeded), restarted)
		t.Logf("%d filings acknowledged before SIGKILL; %d requests and %d events after the restart", len(acked), len(listed), v.Events)
		eva.stop()
	})

	// While approvals are in flight: an acknowledged approval is paid
	// exactly once; one that was not recorded holds no money once its
	// hold expires (invariant 3); nothing is paid twice.
	t.Run("approvals in flight", func(t *testing.T) {
		t.Parallel()
		const n = 20
		dataDir := t.TempDir()
		eva, c := startDev(t, "eva dev #1", dataDir, "--hold-ttl", "3s")
		fund, payee := c.demoFund(), c.payee()
		ids := make([]string, n)
		parallelDo(t, n, 4, func(i int) error {
			cs, err := tryPost[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, fmt.Sprintf("REF-K9P-%d", i), int64(20_000+i)), http.StatusCreated)
			if err != nil {
				return err
			}
			ids[i] = cs.ID
			_, err = tryPost[caseJSON](c, "olu", "/v1/requests/"+cs.ID+"/claim", nil, http.StatusOK)
			return err
		})
		var next atomic.Int64
		acked := inFlight(t, eva, 4, n/3, func(_, _ int) (string, error) {
			i := int(next.Add(1)) - 1
			if i >= n {
				return "", errDone
			}
			_, err := tryPost[caseJSON](c, "olu", "/v1/requests/"+ids[i]+"/approve",
				map[string]any{"amount_usd_cents": int64(20_000 + i), "fund_id": fund.ID}, http.StatusOK)
			return ids[i], err
		})

		eva, c = startDev(t, "eva dev #2", dataDir, "--hold-ttl", "3s")
		restarted := time.Now()
		for _, id := range acked {
			c.waitStatus(id, "disbursed", 90*time.Second)
		}
		t.Logf("the acknowledged approvals were disbursed %s after the restart", time.Since(restarted).Round(time.Millisecond))
		// Every case settles down: disbursed, or still under review (its
		// approval never recorded); and no money stays held.
		var disbursed []string
		evatest.Await(t, 90*time.Second, "every case disbursed or under review, nothing reserved", func() (bool, string) {
			disbursed = disbursed[:0]
			var moving []string
			for _, id := range ids {
				cs := get[caseJSON](c, "olu", "/v1/requests/"+id, http.StatusOK)
				switch cs.Status {
				case "disbursed":
					disbursed = append(disbursed, id)
				case "under_review":
				default:
					moving = append(moving, id+":"+cs.Status)
				}
			}
			f := c.fund(fund.ID)
			return len(moving) == 0 && f.ReservedCents == 0, fmt.Sprintf("moving %v, fund %+v", moving, f)
		})
		t.Logf("settled %s after the restart", time.Since(restarted).Round(time.Millisecond))
		var sum int64
		var payoutIDs []string
		for _, id := range disbursed {
			cs := get[caseJSON](c, "olu", "/v1/requests/"+id, http.StatusOK)
			pays := c.settledPayouts(id)
			if len(pays) != 1 || pays[0].AmountCents != cs.ApprovedCents || pays[0].Status != "settled" {
				t.Errorf("payouts of %s (approved %d): %+v", id, cs.ApprovedCents, pays)
			}
			for _, p := range pays {
				payoutIDs = append(payoutIDs, fmt.Sprintf("%s-%d", p.ID, p.Attempt))
			}
			sum += cs.ApprovedCents
		}
		f := c.fund(fund.ID)
		if f.PaidCents != sum || f.ReservedCents != 0 || f.AvailableCents != f.AllocatedCents-sum {
			t.Errorf("fund %+v: want paid %d (%d disbursed cases), nothing reserved", f, sum, len(disbursed))
		}
		c.waitVerified(30 * time.Second)
		t.Logf("%d approvals acknowledged before SIGKILL; %d cases disbursed after the restart", len(acked), len(disbursed))
		eva.stop()
		paid := providerBooks(t, dataDir)
		keys := make([]string, 0, len(paid))
		for k := range paid {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		sort.Strings(payoutIDs)
		if !slices.Equal(keys, payoutIDs) {
			t.Errorf("the provider booked %v, the payouts are %v", keys, payoutIDs)
		}
	})
}

// errDone ends an inFlight worker without an error.
var errDone = fmt.Errorf("done")

// inFlight runs workers that call op in a loop, SIGKILLs eva once atLeast
// calls were acknowledged (while the others are in flight), and returns
// the ids of the acknowledged calls. A worker stops at its first error.
func inFlight(t *testing.T, eva *proc, workers, atLeast int, op func(worker, i int) (string, error)) []string {
	t.Helper()
	var (
		mu      sync.Mutex
		acked   []string
		wg      sync.WaitGroup
		errs    = make(chan error, workers)
		reached = make(chan struct{})
		ended   = make(chan struct{})
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id, err := op(w, i)
				if err != nil {
					if err != errDone {
						errs <- err
					}
					return
				}
				mu.Lock()
				acked = append(acked, id)
				if len(acked) == atLeast {
					close(reached)
				}
				mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-reached:
	case <-ended:
	case <-time.After(60 * time.Second):
		t.Errorf("fewer than %d calls acknowledged within a minute", atLeast)
	}
	eva.kill()
	wg.Wait()
	close(errs)
	for err := range errs {
		// A transport error is the crash; an HTTP error before it is not.
		if !isTransportError(err) {
			t.Errorf("a call failed before the crash: %v", err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(acked)
}

// httpError is an unexpected HTTP answer.
type httpError struct{ what, resp string }

func (e *httpError) Error() string { return e.what + ": " + e.resp }

func isTransportError(err error) bool {
	_, ok := err.(*httpError)
	return !ok
}

// tryPost is post for goroutines: it returns an error instead of failing.
func tryPost[T any](c *client, user, path string, body any, want int) (T, error) {
	var v T
	resp, err := c.try(req{user: user, method: http.MethodPost, path: path, body: body})
	if err != nil {
		return v, err
	}
	if resp.Status != want {
		return v, &httpError{what: fmt.Sprintf("POST %s as %s (want %d)", path, user, want), resp: resp.String()}
	}
	if err := json.Unmarshal(resp.Body, &v); err != nil {
		return v, &httpError{what: "decode " + path, resp: err.Error()}
	}
	return v, nil
}

// parallelDo runs f(0..n-1) on workers goroutines and fails on any error.
func parallelDo(t *testing.T, n, workers int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := f(i); err != nil {
					errs <- fmt.Errorf("#%d: %w", i, err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// checkAcknowledged checks that every acknowledged request exists, is
// readable by its requester and is in the audit archive.
func checkAcknowledged(t *testing.T, c *client, acked []string) {
	t.Helper()
	if len(acked) == 0 {
		t.Fatal("no filing was acknowledged")
	}
	for _, id := range acked {
		if r := c.do(req{user: "ana", method: http.MethodGet, path: "/v1/requests/" + id}); r.Status != http.StatusOK {
			t.Errorf("acknowledged request %s after the crash: %s, want 200", id, r)
		}
	}
	c.waitVerified(30 * time.Second)
	for _, id := range acked {
		if h := eventTypes(c.history(id)); len(h) == 0 || h[0] != "RequestSubmitted" {
			t.Errorf("acknowledged request %s: archived history %v", id, h)
		}
	}
}

// waitListed waits until GET /v1/requests (intake's read model, which
// follows the log) lists every acknowledged request, and as many requests
// as the log has filings; it reports how long that took after the restart.
func waitListed(t *testing.T, c *client, acked []string, filings int, restarted time.Time) []string {
	t.Helper()
	var listed []string
	evatest.Await(t, 60*time.Second, "the list of requests to catch up with the log", func() (bool, string) {
		listed = listAll(c)
		var missing []string
		for _, id := range acked {
			if !slices.Contains(listed, id) {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0 && len(listed) == filings,
			fmt.Sprintf("%d listed, %d filings in the log, acknowledged but not listed: %v", len(listed), filings, missing)
	})
	if d := time.Since(restarted); d > 5*time.Second {
		t.Logf("the list of requests caught up with the log %s after the restart", d.Round(time.Millisecond))
	}
	return listed
}

// listAll lists every request's id (as an approver), following cursors.
func listAll(c *client) []string {
	c.tb.Helper()
	var ids []string
	cursor := ""
	for {
		p := get[pageJSON[caseJSON]](c, "olu", "/v1/requests?limit=500&cursor="+cursor, http.StatusOK)
		for _, cs := range p.Items {
			ids = append(ids, cs.ID)
		}
		if p.NextCursor == "" {
			return ids
		}
		cursor = p.NextCursor
	}
}

type booked struct {
	amount int64
	payee  string
	status string
}

// providerBooks reads the simulated provider's payments, by key, from the
// disbursement database of a stopped eva.
func providerBooks(t *testing.T, dataDir string) map[string]booked {
	t.Helper()
	path := filepath.Join(dataDir, "disbursement.db")
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT key, amount, payee_id, status FROM provsim_payments`)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	defer rows.Close()
	out := map[string]booked{}
	for rows.Next() {
		var k string
		var b booked
		if err := rows.Scan(&k, &b.amount, &b.payee, &b.status); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[k]; dup {
			t.Errorf("key %s booked twice", k)
		}
		if len(k) < 38 || !strings.Contains(k[36:], "-") {
			t.Errorf("payment key %q is not <payout id>-<attempt>", k)
		}
		out[k] = b
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
