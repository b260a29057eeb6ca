package wire_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/cmd/eva/internal/wire/wiretest"
	"github.com/eva-org/eva/pkg/bench"
	"github.com/eva-org/eva/pkg/evatest"
)

// A running EVA's goroutines carry the profile labels that split a CPU
// profile by part (docs/architecture.md, Stores): the gateway's HTTP
// connections, each store's SQLite writer, each consumer of the log and
// the payout worker.
func TestARunningEVAsPartsAreLabeledInProfiles(t *testing.T) {
	s := wiretest.Start(t, wiretest.Options{Quiet: true})
	s.AwaitConsumers(t)
	resp, err := http.Get(s.URL + "/readyz") // its connection stays open, idle
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	want := map[string][]string{
		"eva-http":     {"gateway"},
		"eva-worker":   {"payouts"},
		"eva-db":       {"intake.db", "approval.db", "disbursement.db", "audit.db", "notify.db", "gateway.db"},
		"eva-consumer": wire.EventConsumers,
	}
	for key, values := range want {
		evatest.Await(t, 10*time.Second, "the label "+key, func() (bool, string) {
			got := evatest.GoroutineLabels(t, key)
			for _, v := range values {
				if !slices.Contains(got, v) {
					return false, fmt.Sprintf("%s labels %q, want %q among them", key, got, v)
				}
			}
			return true, ""
		})
	}
}

// eva bench's clients carry eva-bench=clients while they run, apart from
// the instance they drive in the same process.
func TestBenchClientsAreLabeledInProfiles(t *testing.T) {
	s := wiretest.Start(t, wiretest.Options{Quiet: true})
	s.AwaitConsumers(t)
	done := make(chan error, 1)
	go func() {
		res, err := bench.Run(t.Context(), bench.Options{URL: s.URL, Requests: 20, Clients: 2,
			Password: s.P.Config.DevPassword, RawDir: t.TempDir(), RawMessages: 1})
		if err == nil && (res.FilingErrors != 0 || res.LifecycleErrors != 0) {
			err = fmt.Errorf("filing errors %d, lifecycle errors %d", res.FilingErrors, res.LifecycleErrors)
		}
		done <- err
	}()
	seen := false
	for !seen {
		select {
		case err := <-done:
			t.Fatalf("the bench ended (%v) before its clients were seen labeled", err)
		case <-time.After(time.Millisecond):
			seen = slices.Contains(evatest.GoroutineLabels(t, "eva-bench"), "clients")
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
