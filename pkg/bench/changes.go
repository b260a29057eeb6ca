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

// settlements follows GET /v1/changes from now on and sends on the channel
// the id of each case whose payout settles, until ctx ends or the stream
// does. It returns once the stream is open, so every settlement after
// the call is seen.
func (c *client) settlements(ctx context.Context, token string, buffer int) (<-chan string, error) {
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
	out := make(chan string, buffer)
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
				Type   string `json:"type"`
				CaseID string `json:"case_id"`
			}
			if json.Unmarshal([]byte(data), &ev) != nil || ev.Type != "PayoutSettled" {
				continue
			}
			select {
			case out <- ev.CaseID:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// awaitSettled is awaitDisbursed driven by the change stream: each case is
// read once its payout settles (again a moment later while the read model
// has not caught up), and every pending case is polled every few seconds
// in case the stream ended early.
func (c *client) awaitSettled(ctx context.Context, token string, ids []string, settled <-chan string, conc int, limit time.Duration) ([]time.Duration, time.Time, int) {
	var (
		mu      sync.Mutex
		done    []time.Duration
		last    time.Time
		pending = make(map[string]bool, len(ids))
		wg      sync.WaitGroup
		slots   = make(chan struct{}, conc)
	)
	for _, id := range ids {
		pending[id] = true
	}
	// disbursed reads a case; true (and recorded) when it is disbursed.
	disbursed := func(ctx context.Context, id string) bool {
		var cs caseJSON
		if err := c.do(ctx, http.MethodGet, token, "/v1/requests/"+id, nil, &cs); err != nil || cs.Status != "disbursed" {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if pending[id] {
			delete(pending, id)
			done = append(done, cs.UpdatedAt.Sub(cs.CreatedAt))
			if cs.UpdatedAt.After(last) {
				last = cs.UpdatedAt
			}
		}
		return true
	}
	ended := make(chan struct{}, conc)
	check := func(id string) {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots; ended <- struct{}{} }()
			_ = retry.Do(ctx, retry.Policy{First: 20 * time.Millisecond, Max: 200 * time.Millisecond, Budget: 5 * time.Second}, retry.Always,
				func(ctx context.Context) error {
					if !disbursed(ctx, id) {
						return fmt.Errorf("%s not disbursed yet", id)
					}
					return nil
				})
		})
	}
	left := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Collect(maps.Keys(pending))
	}
	wanted := make(map[string]bool, len(ids))
	for _, id := range ids {
		wanted[id] = true
	}
	sweep := time.NewTicker(5 * time.Second)
	defer sweep.Stop()
	deadline := time.After(limit)
wait:
	for len(left()) > 0 {
		select {
		case id, ok := <-settled:
			if !ok {
				settled = nil // the stream ended: the sweeps go on
			} else if wanted[id] {
				check(id)
			}
		case <-ended: // a check ended: see what is left
		case <-sweep.C:
			for _, id := range left() {
				check(id)
			}
		case <-deadline:
			break wait
		}
	}
	go func() {
		for range ended {
		}
	}()
	wg.Wait()
	close(ended)
	return done, last, len(left())
}
