package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
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
}

func benchFlags(fs *flag.FlagSet) benchOptions {
	return benchOptions{
		url:      fs.String("url", "", "gateway of a running instance (default: start one in this process)"),
		requests: fs.Int("n", 1000, "requests per phase"),
		clients:  fs.Int("c", 50, "concurrent clients"),
	}
}

// runBench benchmarks a running instance, or one it starts in this process
// in a temporary data directory (then it also reports memory).
func runBench(ctx context.Context, cfg wire.Config, zl *zap.Logger, o benchOptions) error {
	opts := bench.Options{URL: *o.url, Requests: *o.requests, Clients: *o.clients, Password: cfg.DevPassword,
		Progress: os.Stderr, RawDir: os.TempDir()}
	if opts.URL != "" {
		res, err := bench.Run(ctx, opts)
		res.Print(os.Stdout)
		return err
	}
	dir, err := os.MkdirTemp("", "eva-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg.DataDir, opts.RawDir = dir, dir
	if cfg.HTTPAddr, err = freeAddr(); err != nil {
		return err
	}
	p, err := wire.Open(ctx, cfg, zl.WithOptions(zap.IncreaseLevel(zap.WarnLevel)))
	if err != nil {
		return err
	}
	defer p.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	devErr := make(chan error, 1)
	go func() { devErr <- wire.Dev(ctx, p, os.Stderr) }()
	opts.URL = "http://" + cfg.HTTPAddr
	if err := waitReady(ctx, opts.URL+"/readyz", devErr); err != nil {
		return err
	}
	time.Sleep(time.Second) // let start-up garbage settle before reading idle memory
	idle, _ := bench.RSS()
	res, err := bench.Run(ctx, opts)
	_, peak := bench.RSS()
	res.Print(os.Stdout)
	fmt.Printf("  memory (this process: EVA, its embedded NATS and database, and the bench clients): idle RSS %d MB, peak RSS %d MB\n",
		idle>>20, peak>>20)
	return err
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
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
