package bench

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/natsx"
)

// RawResult is the raw durable append rate, and the machine's CPU (every
// process, the server's and the publishers' work together) an append
// took at that rate: zero where /proc is not there to say.
type RawResult struct {
	PerSec           float64
	P50              time.Duration
	MachineCPUAppend time.Duration
}

// RawAppends measures durable JetStream appends on this machine: an
// embedded server with the event log's settings (file storage, fsync on
// every write), n messages of 256 bytes published synchronously by c
// publishers, each on its own subject. dir is where the store goes (the
// same disk as EVA's data); it is removed afterwards.
func RawAppends(ctx context.Context, dir string, n, c int) (RawResult, error) {
	tmp, err := os.MkdirTemp(dir, "eva-bench-raw-")
	if err != nil {
		return RawResult{}, err
	}
	defer os.RemoveAll(tmp)
	s, err := natsx.StartServer(natsx.ServerConfig{StoreDir: tmp})
	if err != nil {
		return RawResult{}, err
	}
	defer s.Shutdown()
	nc, err := natsx.Connect("", s, "eva-bench-raw")
	if err != nil {
		return RawResult{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return RawResult{}, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"},
		Storage: jetstream.FileStorage}); err != nil {
		return RawResult{}, err
	}
	payload := make([]byte, 256)
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	cpu0 := sampleCPU()
	start := time.Now()
	parallel(n, c, func(i int) {
		t0 := time.Now()
		if _, err := js.Publish(ctx, fmt.Sprintf("raw.%d", i), payload); err != nil {
			failed.Add(1)
		}
		lat[i] = time.Since(t0)
	})
	elapsed := time.Since(start)
	_, perAppend := perCase(cpu0, sampleCPU(), n)
	if f := failed.Load(); f > 0 {
		return RawResult{}, fmt.Errorf("%d of %d raw appends failed", f, n)
	}
	return RawResult{PerSec: float64(n) / elapsed.Seconds(), P50: Percentile(lat, 50), MachineCPUAppend: perAppend}, nil
}
