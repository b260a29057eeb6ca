package main

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/eva-org/eva/cmd/eva/internal/wire/wiretest"
	"github.com/eva-org/eva/pkg/bench"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// TestMeasureLifecycleOnThreeReplicas runs eva bench's phases against
// every service in this process on a cluster of three nats-servers (also
// in this process), the event log and the other streams with three
// replicas, as in production, and the embedded databases; it logs the
// bench's JSON summary. EVA_BENCH_N (default 1000) and EVA_BENCH_C
// (default 16) set the cases per phase and the clients. A measurement,
// not a check: EVA_MEASURE=1 go test -v -run TestMeasureLifecycleOnThreeReplicas ./cmd/eva
func TestMeasureLifecycleOnThreeReplicas(t *testing.T) {
	evatest.Measurement(t, "./cmd/eva")
	n, c := envInt(t, "EVA_BENCH_N", 1000), envInt(t, "EVA_BENCH_C", 16)
	servers := natsxtest.Cluster(t, 3)
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	s := wiretest.Start(t, wiretest.Options{NATSURL: strings.Join(urls, ","), Replicas: 3, Quiet: true})
	// A cluster just formed may take seconds to create a consumer: the
	// cases would wait for it, and the wait would count as the system's.
	s.AwaitConsumers(t)
	res, err := bench.Run(context.Background(), bench.Options{URL: s.URL, Requests: n, Clients: c, Password: "demo",
		RawDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(res.Summary("embedded, 3 replicas", nil), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", out)
}

// envInt is the integer in the environment variable name, or def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	i, err := strconv.Atoi(v)
	if err != nil || i <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return i
}
