package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// changeFollower follows GET /v1/changes as a browser's EventSource
// would: when the stream ends or fails, it reconnects with the last id
// seen in Last-Event-ID, so it should see every event once, in order,
// through restarts of what serves it.
type changeFollower struct {
	tb          testing.TB
	mu          sync.Mutex
	seqs        []uint64
	types       map[string][]string // by case
	reconnected int
	stop        context.CancelFunc
	done        chan struct{}
}

// followChanges starts following as user from now on; it returns once the
// first stream is open.
func (c *client) followChanges(user string) *changeFollower {
	c.tb.Helper()
	token, err := c.token(user)
	if err != nil {
		c.tb.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	f := &changeFollower{tb: c.tb, types: map[string][]string{}, stop: stop, done: make(chan struct{})}
	c.tb.Cleanup(f.close)
	open := func(last string) (*http.Response, error) {
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/changes", nil)
		if err != nil {
			return nil, err
		}
		r.Header.Set("Authorization", "Bearer "+token)
		if last != "" {
			r.Header.Set("Last-Event-ID", last)
		}
		resp, err := http.DefaultClient.Do(r)
		if err == nil && resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, &http.ProtocolError{ErrorString: "GET /v1/changes: " + resp.Status}
		}
		return resp, err
	}
	var resp *http.Response
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if resp, err = open(""); err == nil {
			break
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("follow the changes: %v", err)
		}
	}
	go func() {
		defer close(f.done)
		last := ""
		for {
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				line := sc.Text()
				if id, ok := strings.CutPrefix(line, "id: "); ok {
					last = id
				}
				if data, ok := strings.CutPrefix(line, "data: "); ok {
					var ev struct {
						Type   string `json:"type"`
						CaseID string `json:"case_id"`
						Seq    uint64 `json:"seq"`
					}
					if err := json.Unmarshal([]byte(data), &ev); err != nil {
						f.tb.Errorf("change %q: %v", data, err)
						continue
					}
					f.mu.Lock()
					f.seqs = append(f.seqs, ev.Seq)
					f.types[ev.CaseID] = append(f.types[ev.CaseID], ev.Type)
					f.mu.Unlock()
				}
			}
			resp.Body.Close()
			for {
				if ctx.Err() != nil {
					return
				}
				time.Sleep(200 * time.Millisecond) // EventSource's retry
				var err error
				if resp, err = open(last); err == nil {
					f.mu.Lock()
					f.reconnected++
					f.mu.Unlock()
					break
				}
			}
		}
	}()
	return f
}

func (f *changeFollower) close() {
	f.stop()
	<-f.done
}

// caseTypes waits until the case's events seen end with the type last,
// and returns them.
func (f *changeFollower) caseTypes(caseID, last string) []string {
	f.tb.Helper()
	var types []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		f.mu.Lock()
		types = append([]string(nil), f.types[caseID]...)
		f.mu.Unlock()
		if len(types) > 0 && types[len(types)-1] == last || time.Now().After(deadline) {
			return types
		}
	}
}

// checkOrder fails the test unless every event was seen once, in log
// order.
func (f *changeFollower) checkOrder() {
	f.tb.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tb.Logf("change stream: %d events, %d reconnections", len(f.seqs), f.reconnected)
	for i := 1; i < len(f.seqs); i++ {
		if f.seqs[i] <= f.seqs[i-1] {
			f.tb.Errorf("change stream: seq %d after %d (a repeat or out of order); reconnected %d times",
				f.seqs[i], f.seqs[i-1], f.reconnected)
			return
		}
	}
}

// wantLifecycle is what a case with one payout shows on the change stream.
var wantLifecycle = []string{"RequestSubmitted", "ReviewClaimed", "RequestApproved", "FundsReserved", "PayoutSent", "PayoutSettled"}

// checkLifecycle fails the test unless the stream showed the case's whole
// lifecycle (the types of wantLifecycle, in order, among others).
func (f *changeFollower) checkLifecycle(caseID string) {
	f.tb.Helper()
	types := f.caseTypes(caseID, "PayoutSettled")
	i := 0
	for _, typ := range types {
		if i < len(wantLifecycle) && typ == wantLifecycle[i] {
			i++
		}
	}
	if i != len(wantLifecycle) {
		f.tb.Errorf("change stream of %s: %v, want %v in order", caseID, types, wantLifecycle)
	}
}
