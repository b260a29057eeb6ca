package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eva-org/eva/pkg/retry"
)

// settlement is a case whose payout settled, and when the log stored the
// event (by the server's clock).
type settlement struct {
	CaseID string
	At     time.Time
}

// settlements follows GET /v1/changes from now on and sends on the channel
// each case whose payout settles, until ctx ends or the stream does. It
// returns once the stream is open, so every settlement after the call is
// seen.
func (c *client) settlements(ctx context.Context, token string, buffer int) (<-chan settlement, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/changes", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	// The stream outlives the API client's time-out.
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET /v1/changes: %s", resp.Status)
	}
	out := make(chan settlement, buffer)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var ev struct {
				Type   string    `json:"type"`
				CaseID string    `json:"case_id"`
				At     time.Time `json:"at"`
			}
			if json.Unmarshal([]byte(data), &ev) != nil || ev.Type != "PayoutSettled" {
				continue
			}
			select {
			case out <- settlement{CaseID: ev.CaseID, At: ev.At}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// awaitDisbursed waits until each case of created (its id and its
// filing's time) is disbursed, or limit passes, and returns each one's
// filing→disbursed time (by the server's clock), the last disbursement's
// time and how many never were. A case that settled names is disbursed
// when the log stored its settlement, with no read. (The case page's
// updated_at is the settlement's own time, decided just before it was
// stored: reading it cost a request a lifecycle, which the CPU measured
// counted against EVA.)
// Every case still pending at a sweep is read, so a nil settled (no
// change stream) is polling every sweep. One read of a case runs at a
// time, conc at most in all.
func (c *client) awaitDisbursed(ctx context.Context, token string, created map[string]time.Time, settled <-chan settlement, conc int, sweep, limit time.Duration) ([]time.Duration, time.Time, int) {
	var (
		mu       sync.Mutex
		done     []time.Duration
		last     time.Time
		pending  = make(map[string]bool, len(created))
		inflight = map[string]bool{}
		wg       sync.WaitGroup
		slots    = make(chan struct{}, conc)
		ended    = make(chan struct{}, 1)
	)
	for id := range created {
		pending[id] = true
	}
	left := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(pending)
	}
	// record notes a case disbursed at at, filed at from, once.
	record := func(id string, from, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if pending[id] {
			delete(pending, id)
			done = append(done, at.Sub(from))
			if at.After(last) {
				last = at
			}
		}
	}
	// disbursed reads a case; true (and recorded) when it is disbursed.
	disbursed := func(ctx context.Context, id string) bool {
		var cs caseJSON
		if err := c.do(ctx, http.MethodGet, token, "/v1/requests/"+id, nil, &cs); err != nil || cs.Status != "disbursed" {
			return false
		}
		record(id, cs.CreatedAt, cs.UpdatedAt)
		return true
	}
	// check reads a pending case not being read, until it is disbursed
	// (5 s at most).
	check := func(id string) {
		mu.Lock()
		if !pending[id] || inflight[id] {
			mu.Unlock()
			return
		}
		inflight[id] = true
		mu.Unlock()
		slots <- struct{}{}
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(inflight, id)
				mu.Unlock()
				<-slots
				// Never waits: the loop below, busy starting the reads of
				// a sweep, would hold every read that ended meanwhile (at
				// 10,000 cases, 1,100 goroutines and 40 MB of stacks).
				select {
				case ended <- struct{}{}:
				default: // the loop has a wake-up waiting already
				}
			}()
			_ = retry.Do(ctx, retry.Policy{First: 20 * time.Millisecond, Max: 200 * time.Millisecond, Budget: 5 * time.Second}, retry.Always,
				func(ctx context.Context) error {
					if !disbursed(ctx, id) {
						return fmt.Errorf("%s not disbursed yet", id)
					}
					return nil
				})
		})
	}
	tick := time.NewTicker(sweep)
	defer tick.Stop()
	deadline := time.After(limit)
wait:
	for left() > 0 {
		select {
		case st, ok := <-settled:
			switch from, known := created[st.CaseID]; {
			case !ok:
				settled = nil // the stream ended: the sweeps go on
			case known && !from.IsZero() && !st.At.IsZero():
				record(st.CaseID, from, st.At)
			default:
				check(st.CaseID)
			}
		case <-ended: // a read ended: see what is left
		case <-tick.C:
			mu.Lock()
			ids := slices.Collect(maps.Keys(pending))
			mu.Unlock()
			for _, id := range ids {
				check(id)
			}
		case <-deadline:
			break wait
		}
	}
	wg.Wait()
	return done, last, left()
}
