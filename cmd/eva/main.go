// Command eva runs EVA: everything in one process (eva dev), one service
// (eva serve <service>), database migrations (eva migrate), the load
// benchmark (eva bench) and the offline audit check (eva audit verify).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/platform"
)

const usage = `usage: eva <command> [flags]

commands:
  dev                  run everything in one process (embedded NATS and database by default)
  serve <service>      run one service against external NATS and PostgreSQL (%v)
  migrate              apply database migrations
  seed                 create the demo accounts, fund and payees (needs disbursement running)
  bench                drive requests through the whole lifecycle and report rates
  audit verify         check the audit archive against its hash chain and the event log
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, usage, platform.Services())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "eva:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cmd string, args []string) error {
	fs := flag.NewFlagSet("eva "+cmd, flag.ExitOnError)
	cfg := platform.Config{Policy: assist.DefaultPolicy(), DevPassword: env("EVA_DEV_PASSWORD", "demo"),
		MasterKey: os.Getenv("EVA_MASTER_KEY")}
	fs.StringVar(&cfg.DataDir, "data", env("EVA_DATA", "./eva-data"), "data directory (embedded NATS store, embedded database, dev master key)")
	fs.StringVar(&cfg.HTTPAddr, "http", env("EVA_HTTP", "127.0.0.1:8080"), "HTTP listen address of the gateway")
	fs.StringVar(&cfg.DatabaseURL, "database", os.Getenv("EVA_DATABASE_URL"), "postgres://... (default: embedded SQLite in --data)")
	fs.StringVar(&cfg.NATSURL, "nats", os.Getenv("EVA_NATS_URL"), "nats://... (default: embedded server in --data)")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "", "with the embedded server, also accept NATS clients at host:port")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "stream replicas (3 in a JetStream cluster)")
	fs.DurationVar(&cfg.HoldTTL, "hold-ttl", 5*time.Minute, "how long a hold waits for its approval to be recorded")
	fs.DurationVar(&cfg.SettleAfter, "settle-after", 0, "simulated provider: time to settle a payout")
	fs.BoolVar(&cfg.CookieSecure, "cookie-secure", false, "mark session cookies Secure (behind HTTPS)")
	logLevel := fs.String("log-level", "info", "debug, info, warn, error")
	pprofAddr := fs.String("pprof", "", "serve Go profiles (net/http/pprof) at host:port")
	bench := benchFlags(fs)
	var service string
	if cmd == "serve" || cmd == "audit" {
		if len(args) == 0 {
			return fmt.Errorf("eva %s needs an argument", cmd)
		}
		service, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	zl, err := logger(cmd, *logLevel)
	if err != nil {
		return err
	}
	defer zl.Sync()
	if *pprofAddr != "" {
		go func() { zl.Warn("pprof", zap.Error(http.ListenAndServe(*pprofAddr, nil))) }()
	}
	switch cmd {
	case "dev":
		return withPlatform(ctx, cfg, zl, func(p *platform.Platform) error { return platform.Dev(ctx, p, os.Stdout) })
	case "serve":
		return withPlatform(ctx, cfg, zl, func(p *platform.Platform) error { return platform.Serve(ctx, p, service) })
	case "migrate":
		return withPlatform(ctx, cfg, zl, func(p *platform.Platform) error { return platform.Migrate(ctx, p) })
	case "seed":
		return withPlatform(ctx, cfg, zl, func(p *platform.Platform) error { return platform.Seed(ctx, p) })
	case "audit":
		if service != "verify" {
			return fmt.Errorf("unknown audit command %q (want verify)", service)
		}
		return withPlatform(ctx, cfg, zl, func(p *platform.Platform) error { return platform.AuditVerify(ctx, p, os.Stdout) })
	case "bench":
		return runBench(ctx, cfg, zl, bench)
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func withPlatform(ctx context.Context, cfg platform.Config, zl *zap.Logger, f func(*platform.Platform) error) error {
	p, err := platform.Open(ctx, cfg, zl)
	if err != nil {
		return err
	}
	defer p.Close()
	return f(p)
}

func logger(cmd, level string) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	if cmd == "dev" || cmd == "bench" {
		zc = zap.NewDevelopmentConfig()
		zc.DisableStacktrace = true
	}
	if err := zc.Level.UnmarshalText([]byte(level)); err != nil {
		return nil, err
	}
	return zc.Build()
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
