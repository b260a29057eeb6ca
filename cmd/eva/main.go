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
	"runtime"
	"strconv"
	"strings"
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
  audit replay         rebuild the read models from the log (--service NAME: one service's), with a progress
                       bar on stderr, and rebuild the money ledger apart to check the live one equals it
                       (--service ledger: only that); --case ID prints that case's timeline instead
  audit export         write the log with each event's leaf and inclusion proof against the latest signed
                       checkpoint, and the checkpoint (--out FILE), for an outside verifier
  audit check-export   check an export (--in FILE) with nothing but the verifier key (--key KEY)
  audit reconcile      check a provider's statement against the ledger: from a file (--statement FILE, JSON
                       lines) or fetched from the provider (--provider URL)
  audit keygen         make a checkpoint signing key (--origin NAME) and print its verifier key
  audit witness        fetch the checkpoint (--url URL --key KEY, token in EVA_AUDIT_TOKEN), check it
                       extends the last one kept in --dir, keep it (run it from cron, elsewhere)
  dev-certs --out DIR  write a dev CA, NATS server certificate, NKeys and nats-server auth.conf (docker-compose)
  actor-key            print a new actor signing key as EVA_ACTOR_KEY and EVA_ACTOR_PUBLIC_KEYS lines
  sim                  run the money path's seeded fault simulator (replay a seed with -seed N -seeds 1 -v)
  provsim              serve the payment provider simulator over HTTP (--listen ADDR; latency, failures, declines,
                       duplicate callbacks); point disbursement at it with --provider URL
  webhook-sink         receive webhooks (--listen ADDR --secret S): check each signature, print each delivery
  mail-sink            take e-mail over SMTP (--listen ADDR, default 127.0.0.1:2525) and print each message

Run "eva <command> -h" for the command's flags.
`

func main() {
	setProcs()
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

// minProcs is the least GOMAXPROCS eva runs with (ADR 0031).
const minProcs = 4

// setProcs lets Go run at least minProcs goroutines at once, and twice
// the CPUs on a larger machine, unless GOMAXPROCS is set. Every durable
// write ends in an fsync that blocks its thread (the stream's message
// blocks, SQLite's WAL through its libc), and a thread in a blocking
// system call keeps its P until the runtime's monitor takes it back: on
// 2 CPUs with GOMAXPROCS 2 runnable goroutines waited behind fsyncs
// while the CPUs were a third idle (ADR 0031 has the measurements).
func setProcs() {
	if n, err := strconv.Atoi(os.Getenv("GOMAXPROCS")); err == nil && n > 0 {
		return
	}
	runtime.GOMAXPROCS(max(minProcs, 2*runtime.NumCPU()))
}

// run parses the command's own flags and runs it.
func run(ctx context.Context, cmd string, args []string) error {
	switch cmd {
	case "actor-key":
		return printActorKey(os.Stdout)
	case "dev-certs":
		return devCerts(args)
	case "webhook-sink":
		return webhookSink(ctx, args, os.Stdout)
	case "mail-sink":
		return mailSink(ctx, args, os.Stdout)
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
	if cmd == "dev" || cmd == "serve" {
		if err := o.notify(cmd); err != nil {
			return err
		}
		if o.cfg.PayoutWorkers < 1 {
			return fmt.Errorf("--payout-workers %d: want at least 1", o.cfg.PayoutWorkers)
		}
	}
	var err error
	if o.cfg.OIDC, err = o.oidc.config(); err != nil {
		return err
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
		case "replay":
			return o.withPlatform(ctx, zl, func(p *wire.Platform) error { return wire.AuditReplay(ctx, p, o.replay, os.Stdout, os.Stderr) })
		case "export":
			return o.withPlatform(ctx, zl, func(p *wire.Platform) error { return wire.AuditExport(ctx, p, o.exportOut, os.Stdout, os.Stderr) })
		case "reconcile":
			return o.withPlatform(ctx, zl, func(p *wire.Platform) error {
				return wire.AuditReconcile(ctx, p, o.reconcile, os.Stdin, os.Stdout)
			})
		case "check-export":
			return wire.AuditCheckExport(o.exportIn, o.audit.Key, os.Stdout, os.Stderr)
		case "keygen":
			return wire.AuditKeygen(o.origin, os.Stdout)
		case "witness":
			o.witness.Key = o.audit.Key
			saw, err := o.witness.Check(ctx)
			if err != nil {
				return fmt.Errorf("audit witness: %w", err)
			}
			fmt.Println(saw)
			return nil
		}
		return errors.New("unknown audit command " + arg + " (want verify, replay, export, check-export, reconcile, keygen or witness)")
	case "sim":
		return runSim(ctx, o.sim, os.Stdout)
	case "provsim":
		return wire.ProvSim(ctx, o.provsim, zl, os.Stdout)
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

// devCerts writes the NATS certificates, keys and authorization of a
// development deployment (docker-compose.yml mounts them).
func devCerts(args []string) error {
	fs := flag.NewFlagSet("eva dev-certs", flag.ExitOnError)
	out := fs.String("out", "deploy/dev-certs", "directory to write to")
	hosts := fs.String("hosts", "nats1,nats2,nats3,localhost,127.0.0.1", "comma-separated names and addresses of the NATS servers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := wire.DevCerts(*out, strings.Split(*hosts, ",")); err != nil {
		return err
	}
	fmt.Printf("wrote %s: ca.pem, nats.pem, nats-key.pem, nkeys/*.nk, nkeys.env, auth.conf\n", *out)
	return nil
}
