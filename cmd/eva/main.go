// Command eva runs EVA: everything in one process (eva dev), one service
// (eva serve <service>), database migrations (eva migrate), the demo data
// (eva seed), the load benchmark (eva bench) and the offline audit check
// (eva audit verify) and the money path's fault simulator (eva sim).
// Configuration is read here only, from flags and the
// environment, and handed to the wiring in internal/wire.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/pkg/rpc"
)

const usage = `usage: eva <command> [flags]

commands:
  dev                  run everything in one process (embedded NATS and database by default)
  serve <service>      run one service against external NATS and PostgreSQL (%v)
  migrate              apply database migrations
  seed                 create the demo accounts, fund and payees (needs disbursement running)
  bench                drive requests through the whole lifecycle and report rates
  audit verify         check the audit log: archive, hash chain, Merkle tree, signed checkpoints
                       (--checkpoint FILE --key KEY: one saved earlier) and the event log
  audit keygen         make a checkpoint signing key (--origin NAME) and print its verifier key
  actor-key            print a new actor signing key as EVA_ACTOR_KEY and EVA_ACTOR_PUBLIC_KEYS lines
  sim                  run the money path's seeded fault simulator (replay a seed with -seed N -seeds 1 -v)

Run "eva <command> -h" for the command's flags.
`

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprintf(os.Stderr, usage, wire.Services())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "eva:", err)
		os.Exit(1)
	}
}

// run parses the command's own flags and runs it.
func run(ctx context.Context, cmd string, args []string) error {
	if cmd == "actor-key" {
		return printActorKey(os.Stdout)
	}
	var arg string
	if cmd == "serve" || cmd == "audit" {
		if len(args) == 0 || len(args[0]) == 0 || args[0][0] == '-' {
			return fmt.Errorf("eva %s needs an argument", cmd)
		}
		arg, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("eva "+cmd, flag.ExitOnError)
	o := newOptions(fs, cmd)
	if o == nil {
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("eva %s: unexpected argument %q", cmd, fs.Arg(0))
	}
	if o.envErr != nil {
		return o.envErr
	}
	// On the bus, a service is itself; the tools are admin.
	o.cfg.NATSUser = "admin"
	if cmd == "serve" {
		o.cfg.NATSUser = arg
	}
	zl, err := o.logger(cmd)
	if err != nil {
		return err
	}
	defer zl.Sync()
	o.servePprof(zl)
	switch cmd {
	case "dev":
		return o.withPlatform(ctx, zl, func(p *wire.Platform) error { return wire.Dev(ctx, p, os.Stdout) })
	case "serve":
		return o.withPlatform(ctx, zl, func(p *wire.Platform) error { return wire.Serve(ctx, p, arg) })
	case "migrate":
		return o.withPlatform(ctx, zl, func(p *wire.Platform) error { return wire.Migrate(ctx, p) })
	case "seed":
		return o.withPlatform(ctx, zl, func(p *wire.Platform) error { return wire.Seed(ctx, p) })
	case "audit":
		switch arg {
		case "verify":
			return o.withPlatform(ctx, zl, func(p *wire.Platform) error { return wire.AuditVerify(ctx, p, o.audit, os.Stdout) })
		case "keygen":
			return wire.AuditKeygen(o.origin, os.Stdout)
		}
		return errors.New("unknown audit command " + arg + " (want verify or keygen)")
	case "sim":
		return runSim(ctx, o.sim, os.Stdout)
	default: // bench
		return runBench(ctx, o.cfg, zl, o.bench)
	}
}

// printActorKey prints a new actor signing key in .env form: the seed for
// the gateway (and seed), the public key for every service.
func printActorKey(out io.Writer) error {
	seed, public, err := rpc.NewActorKey()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "EVA_ACTOR_KEY=%s\nEVA_ACTOR_PUBLIC_KEYS=%s\n", seed, public)
	return err
}
