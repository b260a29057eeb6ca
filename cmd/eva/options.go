package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"net/url"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/audit/witness"
	"github.com/eva-org/eva/services/disbursement/providerhttp"
	"github.com/eva-org/eva/services/gateway/web"
	"github.com/eva-org/eva/services/notify"
)

// options are the flags of one command, read into the wiring's Config.
type options struct {
	cfg      wire.Config
	envErr   error // a bad value in the environment
	logLevel string
	pprof    string
	bench    benchOptions
	audit    wire.AuditVerifyOptions
	replay   wire.AuditReplayOptions
	// exportOut and exportIn are the files of audit export and
	// check-export.
	exportOut, exportIn string
	// reconcile says where audit reconcile reads the statement.
	reconcile wire.ReconcileOptions
	origin    string
	witness   witness.Witness
	sim       simOptions
	provsim   wire.ProvSimOptions
	oidc      *oidcOptions
	// smtp is --smtp's URL (it may hold a password: never a flag default,
	// never echoed); publicURL is --public-url's.
	smtp, publicURL string
}

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// newOptions declares the flags cmd takes on fs; nil for an unknown
// command. Every flag with an environment variable reads it as its
// default.
func newOptions(fs *flag.FlagSet, cmd string) *options {
	o := &options{cfg: wire.Config{Policy: assist.DefaultPolicy(), DevPassword: env("EVA_DEV_PASSWORD", "demo"),
		MasterKey: os.Getenv("EVA_MASTER_KEY"), AuditKey: os.Getenv("EVA_AUDIT_KEY")}}
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn, error")
	stores := func() {
		fs.StringVar(&o.cfg.DataDir, "data", env("EVA_DATA", "./eva-data"), "data directory (embedded NATS store, embedded databases, dev master key)")
		fs.StringVar(&o.cfg.DatabaseURL, "database", os.Getenv("EVA_DATABASE_URL"), "postgres://... (default: embedded SQLite in --data)")
		fs.StringVar(&o.cfg.NATSURL, "nats", os.Getenv("EVA_NATS_URL"), "nats://... (default: embedded server in --data)")
		fs.IntVar(&o.cfg.Replicas, "replicas", 1, "stream replicas (3 in a JetStream cluster)")
		fs.Func("nats-nkey", "NATS user NKey seed (SU...) of this process, or a file holding it (env EVA_NATS_NKEY; eva serve <svc> connects as <svc>, the tools as admin)",
			func(v string) error { return o.natsKey(v) })
		if err := o.natsKey(os.Getenv("EVA_NATS_NKEY")); err != nil {
			o.envErr = err
		}
		fs.StringVar(&o.cfg.NATSCA, "nats-ca", os.Getenv("EVA_NATS_CA"), "PEM file of the CA of the NATS servers' TLS certificates (see eva dev-certs)")
		fs.StringVar(&o.cfg.ActorKey, "actor-key", os.Getenv("EVA_ACTOR_KEY"),
			"seed (SA...) of the key the gateway and seed sign commands' actors with (default: --data/actor.key, made on first run)")
		fs.Func("actor-public-keys", "comma-separated public keys (A...) whose actor signatures the services accept; two during a rotation (env EVA_ACTOR_PUBLIC_KEYS; default: --actor-key's)",
			func(v string) error { o.cfg.ActorPublicKeys = splitList(v); return nil })
		o.cfg.ActorPublicKeys = splitList(os.Getenv("EVA_ACTOR_PUBLIC_KEYS"))
	}
	services := func() {
		fs.StringVar(&o.cfg.HTTPAddr, "http", env("EVA_HTTP", "127.0.0.1:8080"), "HTTP listen address of the gateway")
		fs.StringVar(&o.cfg.MetricsAddr, "metrics-listen", os.Getenv("EVA_METRICS_LISTEN"),
			"serve /metrics at host:port alone instead of beside the API (default: beside the API)")
		fs.DurationVar(&o.cfg.HoldTTL, "hold-ttl", 5*time.Minute, "how long a hold waits for its approval to be recorded")
		fs.IntVar(&o.cfg.PayoutWorkers, "payout-workers", 128, "payout steps run at once (also how many payments the provider is asked for at once)")
		fs.DurationVar(&o.cfg.SettleAfter, "settle-after", 0, "simulated provider: time to settle a payout")
		fs.StringVar(&o.cfg.ProviderURL, "provider", os.Getenv("EVA_PROVIDER_URL"),
			"pay through the payment provider at this URL over HTTP, e.g. http://127.0.0.1:8090 (eva provsim) (default: the in-process simulator)")
		fs.StringVar(&o.cfg.ProviderCallbacks, "provider-callbacks", os.Getenv("EVA_PROVIDER_CALLBACKS"),
			"with --provider: take the provider's settlement callbacks at host:port, path "+providerhttp.CallbackPath+" (default: poll only)")
		fs.BoolVar(&o.cfg.CookieSecure, "cookie-secure", false, "mark session cookies Secure (behind HTTPS)")
		fs.DurationVar(&o.cfg.QueueRefresh, "queue-refresh", web.DefaultQueueRefresh,
			"how often the web UI's queue refreshes itself by the clock; with the change stream open (GET /v1/changes) it refreshes on each change and by the clock 4 times less often")
		fs.BoolVar(&o.cfg.RequireTOTP, "require-totp", os.Getenv("EVA_REQUIRE_TOTP") == "1",
			"approver, finance and admin accounts sign in with a TOTP second factor")
		fs.StringVar(&o.pprof, "pprof", "", "serve Go profiles (net/http/pprof) at host:port")
		o.oidc = oidcFlags(fs)
		fs.Func("smtp", "notify's mail server, smtp://user:password@host:587?from=eva@example.org (STARTTLS when offered) "+
			"or smtps://... (implicit TLS); env EVA_SMTP; default: no e-mail",
			func(v string) error { o.smtp = v; return nil })
		fs.StringVar(&o.publicURL, "public-url", os.Getenv("EVA_PUBLIC_URL"),
			"EVA's address as its users reach it, for the links in e-mails (eva dev: http://<--http>)")
		fs.DurationVar(&o.cfg.Notify.Keep, "notify-keep", 7*24*time.Hour,
			"how long delivered webhook deliveries and mails stay in notify's outbox")
	}
	switch cmd {
	case "dev":
		stores()
		services()
		fs.StringVar(&o.cfg.NATSListen, "nats-listen", "", "with the embedded server, also accept NATS clients at host:port")
	case "serve":
		stores()
		services()
	case "migrate", "seed":
		stores()
	case "audit":
		stores()
		fs.Var((*stringList)(&o.audit.Checkpoints), "checkpoint", "verify: a file of signed checkpoints saved earlier (repeatable)")
		fs.StringVar(&o.audit.Key, "key", "", "verify, check-export: the verifier key, as GET /v1/audit/key prints it (verify's default: this installation's)")
		fs.StringVar(&o.replay.Service, "service", "", fmt.Sprintf("replay: rebuild only this service's read models, or check only the ledger (%v)", wire.ReplayServices()))
		fs.StringVar(&o.replay.Case, "case", "", "replay: print this case's timeline from the log, rebuild nothing")
		fs.StringVar(&o.exportOut, "out", "eva-audit.export", "export: the file to write (- for stdout)")
		fs.StringVar(&o.exportIn, "in", "eva-audit.export", "check-export: the export to check")
		fs.StringVar(&o.reconcile.Statement, "statement", "", "reconcile: the provider's statement, JSON lines (- for standard input)")
		fs.StringVar(&o.reconcile.Provider, "provider", "", "reconcile: fetch the statement from the provider at this URL (GET /v1/statement), e.g. http://127.0.0.1:8090")
		fs.StringVar(&o.origin, "origin", "", "keygen: the log's name, e.g. audit.eva.example.org")
		fs.StringVar(&o.witness.BaseURL, "url", os.Getenv("EVA_URL"), "witness: EVA's address, e.g. https://eva.example.org")
		fs.StringVar(&o.witness.Dir, "dir", "./eva-witness", "witness: where the checkpoints seen are kept")
		o.witness.Token = os.Getenv("EVA_AUDIT_TOKEN")
	case "bench":
		fs.StringVar(&o.cfg.DatabaseURL, "database", os.Getenv("EVA_DATABASE_URL"), "postgres://... for the instance the bench starts (default: embedded SQLite)")
		fs.StringVar(&o.pprof, "pprof", "", "serve Go profiles (net/http/pprof) at host:port")
		o.bench = benchFlags(fs)
	case "sim":
		o.sim = simFlags(fs)
	case "provsim":
		p := &o.provsim
		fs.StringVar(&p.Listen, "listen", env("EVA_PROVSIM_LISTEN", "127.0.0.1:8090"), "host:port to serve the provider's API at (port 0: any free one)")
		fs.StringVar(&p.DataDir, "data", env("EVA_DATA", "./eva-data"), "directory of the simulator's books (provsim.db)")
		fs.StringVar(&p.DatabaseURL, "database", os.Getenv("EVA_PROVSIM_DATABASE_URL"), "postgres://... for the books (default: SQLite in --data)")
		fs.DurationVar(&p.Sim.Latency, "latency", 0, "added to every call")
		fs.DurationVar(&p.Sim.SettleAfter, "settle-after", 2*time.Second, "time for an accepted payment to settle")
		fs.Float64Var(&p.Sim.FailureRate, "failure-rate", 0, "share (0-1) of calls failed with 5xx, half of them after booking the payment")
		fs.Float64Var(&p.Sim.DeclineRate, "decline-rate", 0, "share (0-1) of new payments declined")
		fs.StringVar(&p.Sim.CallbackURL, "callback", os.Getenv("EVA_PROVSIM_CALLBACK"),
			"POST settlement callbacks here, e.g. http://disbursement:8091"+providerhttp.CallbackPath+" (default: none; EVA polls)")
		fs.IntVar(&p.Sim.Duplicates, "duplicates", 0, "send each callback this many more times")
		fs.DurationVar(&p.Sim.CallbackJitter, "callback-jitter", 0, "delay each callback by up to this much (late, out of order)")
		fs.Uint64Var(&p.Sim.Seed, "seed", 1, "seed of the failures, declines and delays drawn")
	default:
		return nil
	}
	return o
}

// notify reads --smtp (else EVA_SMTP) and --public-url into notify's
// configuration. Errors never repeat the URL (it may hold a password).
func (o *options) notify(cmd string) error {
	raw := o.smtp
	if raw == "" {
		raw = os.Getenv("EVA_SMTP")
	}
	var err error
	if o.cfg.Notify.SMTP, err = notify.ParseSMTP(raw); err != nil {
		return fmt.Errorf("--smtp: %w", err)
	}
	pub := o.publicURL
	if pub == "" && cmd == "dev" {
		pub = "http://" + o.cfg.HTTPAddr
	}
	if pub != "" {
		u, err := url.Parse(pub)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
			return fmt.Errorf("--public-url %q: want http(s)://host[:port][/path]", pub)
		}
	}
	o.cfg.Notify.PublicURL = pub
	return nil
}

func (o *options) withPlatform(ctx context.Context, zl *zap.Logger, f func(*wire.Platform) error) error {
	p, err := wire.Open(ctx, o.cfg, zl)
	if err != nil {
		return err
	}
	defer p.Close()
	return f(p)
}

func (o *options) logger(cmd string) (*zap.Logger, error) {
	zc := zap.NewProductionConfig()
	if cmd == "dev" || cmd == "bench" {
		zc = zap.NewDevelopmentConfig()
		zc.DisableStacktrace = true
	}
	if err := zc.Level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, err
	}
	return zc.Build()
}

// servePprof serves Go's profiles when --pprof is set.
func (o *options) servePprof(zl *zap.Logger) {
	if o.pprof != "" {
		go func() { zl.Warn("pprof", zap.Error(http.ListenAndServe(o.pprof, nil))) }()
	}
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(v string) []string {
	var l []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			l = append(l, s)
		}
	}
	return l
}

// natsKey reads an NKey seed, or the file that holds one.
func (o *options) natsKey(v string) error {
	v = strings.TrimSpace(v)
	if v == "" || strings.HasPrefix(v, "SU") {
		o.cfg.NATSKey = v
		return nil
	}
	data, err := os.ReadFile(v)
	if err != nil {
		return fmt.Errorf("nats nkey: %w", err)
	}
	o.cfg.NATSKey = strings.TrimSpace(string(data))
	return nil
}
