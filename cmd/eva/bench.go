package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/pkg/bench"
	"github.com/eva-org/eva/pkg/retry"
)

type benchOptions struct {
	url      *string
	requests *int
	clients  *int
	json     *bool
	peer     *string
}

func benchFlags(fs *flag.FlagSet) benchOptions {
	return benchOptions{
		url:      fs.String("url", "", "gateway of a running instance (default: start one in this process)"),
		requests: fs.Int("n", 1000, "requests per phase"),
		clients:  fs.Int("c", 50, "concurrent clients"),
		json:     fs.Bool("json", false, "print a JSON summary instead of the report"),
		peer:     fs.String("peer", "", "a peer benchmark's command line, run after EVA's (e.g. the DBOS peer: \"./dbos-peer -n 2000 -c 16\"); its workflows/s is printed beside EVA's"),
	}
}

// runBench benchmarks a running instance, or one it starts in this process
// in a temporary data directory (then it also reports memory); then the
// peer, when given, so that one command shows the ratio.
func runBench(ctx context.Context, cfg wire.Config, zl *zap.Logger, o benchOptions) error {
	opts := bench.Options{URL: *o.url, Requests: *o.requests, Clients: *o.clients, Password: cfg.DevPassword,
		Progress: os.Stderr, RawDir: os.TempDir()}
	store := "embedded"
	if cfg.DatabaseURL != "" {
		store = "postgres"
	}
	var idle, peak int64
	res, err := benchEVA(ctx, cfg, zl, opts, &idle, &peak)
	if err != nil {
		return err
	}
	var peer *bench.Peer
	if *o.peer != "" {
		p, err := bench.RunPeer(ctx, *o.peer, os.Stderr)
		if err != nil {
			return err
		}
		peer = &p
	}
	sum := res.Summary(store, peer)
	sum.IdleRSSMiB, sum.PeakRSSMiB = idle>>20, peak>>20
	if *o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	res.Print(os.Stdout)
	if idle > 0 {
		fmt.Printf("  memory (this process: EVA, its embedded NATS and database, and the bench clients): idle RSS %d MB, peak RSS %d MB\n",
			sum.IdleRSSMiB, sum.PeakRSSMiB)
	}
	if peer != nil {
		fmt.Printf("  peer              %8.1f workflows/s  p50 %.1f ms  p99 %.1f ms  (%s)\n",
			peer.WorkflowsPerSec, peer.P50Ms, peer.P99Ms, peer.Command)
		if peer.MachineCPUMsPerWorkflow > 0 {
			fmt.Printf("  peer's machine CPU a workflow %.2f ms (over its whole command, setup and checks included)\n",
				peer.MachineCPUMsPerWorkflow)
		}
		fmt.Printf("  EVA lifecycles / peer workflows = %.2f\n", sum.LifecyclesOverPeer)
		if sum.LogBoundOverPeer > 0 {
			fmt.Printf("  the log's bound / peer workflows = %.2f\n", sum.LogBoundOverPeer)
		}
	}
	return nil
}

// benchEVA runs the bench against opts.URL, or against an instance it
// starts in this process (then it reads memory into idle and peak).
func benchEVA(ctx context.Context, cfg wire.Config, zl *zap.Logger, opts bench.Options, idle, peak *int64) (bench.Result, error) {
	if opts.URL != "" {
		return bench.Run(ctx, opts)
	}
	dir, err := os.MkdirTemp("", "eva-bench-")
	if err != nil {
		return bench.Result{}, err
	}
	defer os.RemoveAll(dir)
	cfg.DataDir, opts.RawDir = dir, dir
	// The bench listens and hands the socket over: a port found free and
	// then listened on by the gateway could be taken in between.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return bench.Result{}, err
	}
	defer ln.Close() // the gateway closes it first; closing again does nothing
	cfg.HTTPAddr, cfg.HTTPListener = ln.Addr().String(), ln
	sl := zl
	if zl.Core().Enabled(zap.InfoLevel) {
		// The services' info lines would bury the bench's report; a
		// quieter --log-level stays as given (zap refuses to lower it).
		sl = zl.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	}
	p, err := wire.Open(ctx, cfg, sl)
	if err != nil {
		return bench.Result{}, err
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	devErr := make(chan error, 1)
	go func() { devErr <- wire.Dev(ctx, p, io.Discard) }()
	opts.URL = "http://" + cfg.HTTPAddr
	if err := waitReady(ctx, opts.URL+"/readyz", devErr); err != nil {
		return bench.Result{}, err
	}
	// No case of the bench waits for a consumer still being created.
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	err = p.AwaitConsumers(actx)
	cancel()
	if err != nil {
		return bench.Result{}, err
	}
	time.Sleep(time.Second) // let start-up garbage settle before reading idle memory
	*idle, _ = bench.RSS()
	res, err := bench.Run(ctx, opts)
	_, *peak = bench.RSS()
	return res, err
}

// errStopped ends waitReady early: the instance stopped.
var errStopped = errors.New("eva stopped")

func waitReady(ctx context.Context, url string, devErr <-chan error) error {
	err := retry.Do(ctx, retry.Policy{First: 100 * time.Millisecond, Max: time.Second, Budget: time.Minute},
		func(err error) bool { return !errors.Is(err, errStopped) },
		func(context.Context) error {
			select {
			case err := <-devErr:
				return fmt.Errorf("%w: %w", errStopped, err)
			default:
			}
			if !ready(url) {
				return errors.New("eva did not become ready within a minute")
			}
			return nil
		})
	return err
}

func ready(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
