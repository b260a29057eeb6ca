// Package wire is the composition root of EVA: it opens NATS (embedded or
// external), the database (embedded SQLite or PostgreSQL), the event log
// and the keyring, and runs the services, all in one process (`eva dev`) or
// one at a time (`eva serve <service>`).
package wire

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/retry"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/seal"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/gateway"
	"github.com/eva-org/eva/services/notify"
)

// Config is everything main reads from flags and the environment.
type Config struct {
	// DataDir holds the embedded NATS store, the embedded database and the
	// dev master key.
	DataDir string
	// HTTPAddr is where the gateway listens.
	HTTPAddr string
	// HTTPListener, when set, is served by the gateway instead of
	// listening on HTTPAddr (tests bind port 0 and hand the socket over).
	HTTPListener net.Listener
	// MetricsAddr, when set, serves /metrics there alone instead of on
	// HTTPAddr.
	MetricsAddr string
	// DatabaseURL: postgres://... or sqlite:<path>, shared by the
	// services; empty gives each service its own embedded database in
	// DataDir (<service>.db), so that their writes commit in parallel.
	DatabaseURL string
	// NATSURL: nats://...; empty starts an embedded server in DataDir.
	NATSURL string
	// NATSUser is who this process is on an external NATS (a service's
	// name, or admin for the tools); NATSKey is its NKey seed ("SU...").
	// Empty connects without credentials. A service attaches to the
	// streams; only admin makes them (eva migrate).
	NATSUser string
	NATSKey  string
	// NATSCA is the PEM file of the CA that signed the NATS servers'
	// certificates (TLS); empty uses the system's roots.
	NATSCA string
	// NATSListen, with an embedded server, also accepts clients there
	// (e.g. 127.0.0.1:4222); empty accepts in-process connections only.
	NATSListen string
	// Replicas of the streams: 1 standalone, 3 in a cluster.
	Replicas int
	// MasterKey is the base64 master key; empty reads or creates
	// DataDir/master.key (dev only).
	MasterKey string
	// AuditKey is the checkpoint signing key (note format,
	// PRIVATE+KEY+...); empty reads or creates DataDir/audit.key (dev
	// only).
	AuditKey string
	// ActorKey is the seed ("SA...") of the key the gateway signs the
	// actors of commands with; empty with no ActorPublicKeys reads or
	// creates DataDir/actor.key (dev only).
	ActorKey string
	// ActorPublicKeys are the keys ("A...") whose signatures the services
	// accept (two during a rotation); empty trusts ActorKey's own.
	ActorPublicKeys []string
	// DevPassword is the password of the demo accounts.
	DevPassword string
	// Policy is the decision policy.
	Policy assist.Policy
	// HoldTTL overrides how long an unrecorded approval's hold lives.
	HoldTTL time.Duration
	// PayoutWorkers bounds the payout steps run at once (0: disbursement's
	// default).
	PayoutWorkers int
	// SettleAfter is how long the simulated provider takes to settle.
	SettleAfter time.Duration
	// ProviderURL, when set, is the payment provider disbursement pays
	// through over HTTP (providerhttp); empty uses the in-process
	// simulator (ADR 27).
	ProviderURL string
	// ProviderCallbacks, when set with ProviderURL, is the host:port
	// where disbursement takes the provider's settlement callbacks (at
	// providerhttp.CallbackPath); empty relies on polling alone.
	ProviderCallbacks string
	// Notify configures webhook deliveries and e-mail.
	Notify notify.Config
	// CookieSecure marks the session cookie Secure (behind HTTPS).
	CookieSecure bool
	// QueueRefresh is the web UI queue's timed refresh (0: web's default).
	QueueRefresh time.Duration
	// RequireTOTP makes approver, finance and admin accounts sign in with
	// a second factor.
	RequireTOTP bool
	// OIDC turns on single sign-on (nil: off).
	OIDC *gateway.OIDCConfig
}

// Platform is an opened set of shared resources.
type Platform struct {
	Config Config
	Server *server.Server // nil with external NATS
	NC     *nats.Conn
	Log    *eventlog.Log
	Keys   *seal.Keyring
	// Signer signs command actors (nil where no ActorKey is configured);
	// Trust verifies them.
	Signer   *rpc.Signer
	Trust    *rpc.Verifier
	Logger   *zap.Logger
	Registry *prometheus.Registry

	mu  sync.Mutex
	dbs map[string]sqldb.DB // by service; one shared handle with DatabaseURL
	// stop ends what the platform runs in the background.
	stop   context.CancelFunc
	keeper *natsx.Keeper // of the embedded server
	// busSeeds are the NKey seeds of every identity on the embedded
	// server (nil with external NATS); buses are the services'
	// connections to it.
	busSeeds map[string]string
	buses    []*nats.Conn
	// broken is the last "the event log lost events" error logged.
	broken string
}

// Bus is a service's connection to NATS and its event log on it.
type Bus struct {
	NC  *nats.Conn
	Log *eventlog.Log
}

// Open opens NATS, the database, the event log and the keyring.
func Open(ctx context.Context, cfg Config, zl *zap.Logger) (*Platform, error) {
	p := &Platform{Config: cfg, Logger: zl, Registry: prometheus.NewRegistry(), dbs: map[string]sqldb.DB{}}
	p.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ok := false
	defer func() {
		if !ok {
			p.Close()
		}
	}()
	// The data dir is made only when something embedded needs it: a
	// service run against external NATS and PostgreSQL writes nothing
	// locally.
	if cfg.NATSURL == "" || cfg.DatabaseURL == "" || cfg.MasterKey == "" || cfg.devActorKey() {
		if cfg.DataDir == "" {
			return nil, errors.New("the embedded NATS server, databases and dev master key need a data dir")
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	var bg context.Context
	bg, p.stop = context.WithCancel(context.WithoutCancel(ctx))
	if cfg.NATSURL == "" {
		storeDir := filepath.Join(cfg.DataDir, "nats")
		// Every service connects as itself, with only its own subjects.
		var err error
		if p.busSeeds, err = busKeys(filepath.Join(cfg.DataDir, "nats-keys")); err != nil {
			return nil, err
		}
		users, err := busUsers(p.busSeeds)
		if err != nil {
			return nil, err
		}
		s, err := natsx.StartServer(natsx.ServerConfig{StoreDir: storeDir, Listen: cfg.NATSListen, Name: "eva", Users: users})
		if err != nil {
			return nil, err
		}
		p.Server = s
		// A full disk stops the event log's writes; they come back once
		// space is freed.
		p.keeper = natsx.Keep(s, storeDir, zl.Named("nats"))
		go p.keeper.Run(bg, time.Second)
	}
	creds := natsx.Credentials{User: cfg.NATSUser, Seed: cfg.NATSKey, CA: cfg.NATSCA}
	if p.busSeeds != nil {
		creds = natsx.Credentials{User: busAdmin, Seed: p.busSeeds[busAdmin]}
	}
	nc, err := natsx.ConnectAs(cfg.NATSURL, p.Server, "eva", creds, natsx.LogErrors(zl.Named("nats")))
	if err != nil {
		return nil, err
	}
	p.NC = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var healthy func() error
	if p.keeper != nil {
		healthy = p.keeper.Healthy
	}
	attach := creds.Seed != "" && creds.User != busAdmin
	if p.Log, err = openLog(ctx, js, eventlog.Config{Replicas: cfg.Replicas, Healthy: healthy, Attach: attach}); err != nil {
		return nil, err
	}
	if p.Keys, err = keyring(cfg); err != nil {
		return nil, err
	}
	if p.Signer, p.Trust, err = actorKeys(cfg); err != nil {
		return nil, err
	}
	ok = true
	return p, nil
}

// openLog opens the event log, waiting up to a minute for a JetStream
// that is still starting (a cluster electing its leaders); each attempt
// has its own short deadline.
func openLog(ctx context.Context, js jetstream.JetStream, cfg eventlog.Config) (*eventlog.Log, error) {
	return retry.DoValue(ctx, retry.Policy{First: 250 * time.Millisecond, Max: 2 * time.Second, Budget: time.Minute}, retry.Always,
		func(ctx context.Context) (*eventlog.Log, error) {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return eventlog.Open(actx, js, cfg)
		})
}

func keyring(cfg Config) (*seal.Keyring, error) {
	raw := cfg.MasterKey
	if raw == "" {
		path := filepath.Join(cfg.DataDir, "master.key")
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			data = []byte(base64.StdEncoding.EncodeToString(seal.NewMasterKey()))
			if err := os.WriteFile(path, data, 0o600); err != nil {
				return nil, fmt.Errorf("write master key: %w", err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("read master key: %w", err)
		}
		raw = string(data)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("master key is not base64: %w", err)
	}
	return seal.NewKeyring(key)
}

// Bus connects service to NATS as itself: on the embedded server, with
// its own credentials and event log; on external NATS, the process is
// the service and its connection is the platform's.
func (p *Platform) Bus(ctx context.Context, service string) (Bus, error) {
	if p.busSeeds == nil {
		return Bus{NC: p.NC, Log: p.Log}, nil
	}
	nc, err := natsx.ConnectAs("", p.Server, "eva-"+service, natsx.Credentials{User: service, Seed: p.busSeeds[service]},
		natsx.LogErrors(p.Logger.Named("nats")))
	if err != nil {
		return Bus{}, err
	}
	p.mu.Lock()
	p.buses = append(p.buses, nc)
	p.mu.Unlock()
	js, err := jetstream.New(nc)
	if err != nil {
		return Bus{}, err
	}
	var healthy func() error
	if p.keeper != nil {
		healthy = p.keeper.Healthy
	}
	log, err := openLog(ctx, js, eventlog.Config{Replicas: p.Config.Replicas, Healthy: healthy, Attach: true})
	if err != nil {
		return Bus{}, fmt.Errorf("event log of %s: %w", service, err)
	}
	return Bus{NC: nc, Log: log}, nil
}

// BusCredentials are the credentials of an identity on the embedded
// server (tests); false with external NATS.
func (p *Platform) BusCredentials(name string) (natsx.Credentials, bool) {
	seed, ok := p.busSeeds[name]
	return natsx.Credentials{User: name, Seed: seed}, ok
}

// devActorKey reports whether the actor key is the dev one in DataDir.
func (c Config) devActorKey() bool { return c.ActorKey == "" && len(c.ActorPublicKeys) == 0 }

// actorKeys makes the signer of command actors, when there is a key to
// sign with, and the verifier of the keys to trust.
func actorKeys(cfg Config) (*rpc.Signer, *rpc.Verifier, error) {
	seed := cfg.ActorKey
	if cfg.devActorKey() {
		path := filepath.Join(cfg.DataDir, "actor.key")
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			s, _, err := rpc.NewActorKey()
			if err != nil {
				return nil, nil, err
			}
			data = []byte(s)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				return nil, nil, fmt.Errorf("write actor key: %w", err)
			}
		} else if err != nil {
			return nil, nil, fmt.Errorf("read actor key: %w", err)
		}
		seed = string(data)
	}
	var signer *rpc.Signer
	trusted := cfg.ActorPublicKeys
	if seed != "" {
		var err error
		if signer, err = rpc.NewSigner(seed); err != nil {
			return nil, nil, err
		}
		if len(trusted) == 0 {
			trusted = []string{signer.PublicKey()}
		}
	}
	trust, err := rpc.NewVerifier(trusted...)
	if err != nil {
		return nil, nil, err
	}
	return signer, trust, nil
}

// DB returns the database of a service, opening it on first use.
func (p *Platform) DB(ctx context.Context, service string) (sqldb.DB, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key, url := service, p.Config.DatabaseURL
	if url == "" {
		url = "sqlite:" + filepath.Join(p.Config.DataDir, service+".db")
	} else {
		key = "" // one shared database
	}
	if db, ok := p.dbs[key]; ok {
		return db, nil
	}
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("database of %s: %w", service, err)
	}
	for _, c := range sqldb.GateMetrics(db) { // PostgreSQL's one pool
		if err := p.Registry.Register(c); err != nil {
			db.Close()
			return nil, fmt.Errorf("database of %s: metrics: %w", service, err)
		}
	}
	p.dbs[key] = db
	return db, nil
}

// Ready reports whether NATS and the databases in use are reachable.
func (p *Platform) Ready(ctx context.Context) error {
	if !p.NC.IsConnected() {
		return errors.New("NATS is not connected")
	}
	if p.keeper != nil {
		if err := p.keeper.Healthy(); err != nil {
			return err
		}
	}
	if p.embedded() && natsx.FreeBytes(p.Config.DataDir) < minFree {
		return fmt.Errorf("the data directory's disk is full (less than %d KiB free)", minFree>>10)
	}
	if p.Log != nil {
		if err := p.Log.Intact(ctx); err != nil {
			p.logBroken(err)
			return err
		}
	}
	p.mu.Lock()
	dbs := maps.Clone(p.dbs)
	p.mu.Unlock()
	for name, db := range dbs {
		if err := db.Ping(ctx); err != nil {
			return fmt.Errorf("database %s: %w", name, err)
		}
	}
	return nil
}

// logBroken logs, as an error, a log that lost events, naming the
// sequences; once for each thing it finds missing.
func (p *Platform) logBroken(err error) {
	if !errors.Is(err, eventlog.ErrBroken) {
		return
	}
	p.mu.Lock()
	seen := p.broken == err.Error()
	p.broken = err.Error()
	p.mu.Unlock()
	if !seen {
		p.Logger.Error("the event log is not whole: not ready", zap.Error(err))
	}
}

// minFree is the space the embedded stores need to take writes.
const minFree = 1 << 20

// embedded reports whether something embedded keeps its data in the data
// directory.
func (p *Platform) embedded() bool { return p.Config.NATSURL == "" || p.Config.DatabaseURL == "" }

// ToolLog is the event log as the offline tools (`eva audit verify`,
// `eva audit replay`) read it: with the embedded server, which this
// process alone runs on the data directory, the stream is read straight
// from its files (eventlog.Log.WithFiles: no message built by the server
// and parsed by the client, a tenth of the CPU per event); with external
// NATS, through the server.
func (p *Platform) ToolLog() *eventlog.Log {
	if p.Server == nil {
		return p.Log
	}
	return p.Log.WithFiles(p.Server.StoreDir(), p.Server.GlobalAccount().Name)
}

// Close releases everything, the embedded server last.
func (p *Platform) Close() {
	if p.stop != nil {
		p.stop()
	}
	for _, db := range p.dbs {
		db.Close()
	}
	for _, nc := range p.buses {
		nc.Drain()
		nc.Close()
	}
	if p.NC != nil {
		p.NC.Drain()
		p.NC.Close()
	}
	if p.Server != nil {
		p.Server.Shutdown()
		p.Server.WaitForShutdown()
	}
}
