// Package natsx starts an embedded NATS server with JetStream and connects
// to NATS, embedded or external, with EVA's connection options.
package natsx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// ServerConfig configures an embedded server.
type ServerConfig struct {
	// StoreDir holds JetStream's files.
	StoreDir string
	// Listen is "host:port" to accept clients on; empty accepts only
	// in-process connections. Port 0 picks a free port (see ClientURL).
	Listen string
	// Name of the server; in a cluster each must differ.
	Name string
	// Cluster, when set, joins a JetStream cluster.
	Cluster *ClusterConfig
	// Users, when set, are the only identities the server admits (NKeys),
	// each with its permissions; in-process connections authenticate too.
	Users []User
	// AuthFile, when set, is a nats-server configuration file whose
	// authorization (NKey users and permissions) the server takes, as an
	// external server would (see the wire's auth.conf).
	AuthFile string
	// TLS, when set, is required of clients and of cluster routes.
	TLS *TLSFiles
}

// TLSFiles are the PEM files of a server's TLS: its certificate and key
// (also used as a client certificate between cluster nodes) and the CA
// that signed the certificates of the other nodes.
type TLSFiles struct {
	Cert, Key, CA string
}

// ClusterConfig places an embedded server in a cluster.
type ClusterConfig struct {
	Name   string
	Listen string   // "host:port" for routes
	Routes []string // nats-route://host:port of the others
}

// StartServer starts an embedded nats-server with JetStream on file storage
// that fsyncs every write, and waits until it accepts connections.
func StartServer(cfg ServerConfig) (*server.Server, error) {
	opts := &server.Options{
		ServerName: cfg.Name,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: true,
		NoSigs:     true,
		// Keep the server's own logs out of the process's output.
		NoLog: true,
		// Event bodies are small; a generous cap still refuses garbage.
		MaxPayload: 1 << 20,
	}
	if len(cfg.Users) > 0 {
		opts.Nkeys = nkeyUsers(cfg.Users)
	}
	if cfg.AuthFile != "" {
		fo, err := server.ProcessConfigFile(cfg.AuthFile)
		if err != nil {
			return nil, fmt.Errorf("nats auth %s: %w", cfg.AuthFile, err)
		}
		opts.Nkeys, opts.Users = fo.Nkeys, fo.Users
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen %q: %w", cfg.Listen, err)
		}
		opts.Host, opts.Port = host, port
	}
	if c := cfg.Cluster; c != nil {
		host, port, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats cluster listen %q: %w", c.Listen, err)
		}
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port}
		for _, r := range c.Routes {
			opts.Routes = append(opts.Routes, server.RoutesFromStr(r)...)
		}
	}
	if t := cfg.TLS; t != nil {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.Cert, KeyFile: t.Key, CaFile: t.CA})
		if err != nil {
			return nil, fmt.Errorf("nats tls: %w", err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 5
		if cfg.Cluster != nil {
			// Routes verify each other's certificate.
			rc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: t.Cert, KeyFile: t.Key, CaFile: t.CA, Verify: true})
			if err != nil {
				return nil, fmt.Errorf("nats cluster tls: %w", err)
			}
			// Each node is also the client of the others' routes.
			rc.RootCAs = rc.ClientCAs
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = rc, 5
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server did not become ready")
	}
	return s, nil
}

// PullHeartbeat is how often the server says a consumer's open pull is
// still there while nothing comes (an event, a fired timer). Two missed,
// nats.go pulls again: a pull lost with a server that went away, or
// dropped by a cluster still forming, costs a consumer seconds, not the
// 30 s of nats.go's default (half the pull's 30 s expiry).
const PullHeartbeat = 2 * time.Second

// Connect dials url, or the embedded server s when s is not nil, with
// reconnects forever: a service must outlive a NATS restart.
func Connect(url string, s *server.Server, name string) (*nats.Conn, error) {
	return ConnectAs(url, s, name, Credentials{})
}

// ConnectAs is Connect with credentials, and more options (LogErrors).
func ConnectAs(url string, s *server.Server, name string, c Credentials, more ...nats.Option) (*nats.Conn, error) {
	auth, err := c.Options()
	if err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
	}
	if s != nil {
		opts = append(opts, nats.InProcessServer(s))
	}
	opts = append(opts, auth...)
	opts = append(opts, more...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", url, err)
	}
	return nc, nil
}

// LogErrors is a connection option that logs the errors the server sends
// a connection on its own — a publish or subscription its permissions
// refuse, a subscriber too slow for its messages — to zl as warnings,
// where nats.go would print them on standard error.
func LogErrors(zl *zap.Logger) nats.Option {
	return nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		fields := []zap.Field{zap.String("connection", nc.Opts.Name), zap.Error(err)}
		if sub != nil {
			fields = append(fields, zap.String("subject", sub.Subject))
		}
		zl.Warn("nats: the server reported an error", fields...)
	})
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if port == 0 {
		// nats-server reads 0 as its default port (4222), not as "any".
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// Keeper keeps an embedded server's JetStream serving through a full
// disk. A write that fails for lack of space leaves a stream refusing
// every later write (the server's sticky write error), and may shut
// JetStream down; once space is freed, the keeper restarts JetStream from
// the same store, which reloads the streams whole. It learns of write
// failures from the server's own log, which it also forwards to zap
// (warnings and errors only).
type Keeper struct {
	s        *server.Server
	storeDir string
	zl       *zap.Logger
	broken   atomic.Bool // a write failed since JetStream last started
}

// Keep installs the keeper's logger on the server.
func Keep(s *server.Server, storeDir string, zl *zap.Logger) *Keeper {
	k := &Keeper{s: s, storeDir: storeDir, zl: zl}
	s.SetLoggerV2(serverLog{k}, false, false, false)
	return k
}

// Healthy reports whether JetStream is on and has not failed a write.
func (k *Keeper) Healthy() error {
	switch {
	case !k.s.JetStreamEnabled():
		return errors.New("JetStream is off (is its disk full?)")
	case k.broken.Load():
		return errors.New("JetStream failed to write (is its disk full?)")
	}
	return nil
}

// minFree is the free space the keeper waits for before it restarts
// JetStream after a failed write: enough for the store to reload and take
// a few writes. (It was 32 MiB, which a small disk holding the embedded
// databases beside the log may never see again once they have grown; a
// restart on too little space only fails again and is retried.)
const minFree = 4 << 20

// Run checks every interval, until ctx ends, whether JetStream needs a
// restart and whether it can have one (the disk has minFree bytes free).
func (k *Keeper) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	waiting := false // said once that it waits for space
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !k.s.Running() {
			return
		}
		if k.Healthy() == nil {
			waiting = false
			continue
		}
		if free := freeBytes(k.storeDir); free < minFree {
			if !waiting {
				k.zl.Warn("JetStream needs a restart: waiting for free space",
					zap.Uint64("free_bytes", free), zap.Uint64("need_bytes", minFree))
			}
			waiting = true
			continue
		}
		waiting = false
		if k.s.JetStreamEnabled() {
			if err := k.s.ShutdownJetStream(); err != nil {
				k.zl.Warn("restart JetStream: shut down", zap.Error(err))
				continue
			}
		}
		k.broken.Store(false)
		if err := k.s.EnableJetStream(&server.JetStreamConfig{StoreDir: k.storeDir}); err != nil {
			k.broken.Store(true)
			k.zl.Warn("restart JetStream: start", zap.Error(err))
			continue
		}
		k.zl.Info("JetStream restarted after a failed write: the event log takes writes again")
	}
}

// FreeBytes is the space left for an unprivileged writer on the file
// system holding dir (0 when it cannot tell).
func FreeBytes(dir string) uint64 { return freeBytes(dir) }

func freeBytes(dir string) uint64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return st.Bavail * uint64(st.Bsize)
}

// serverLog forwards the embedded server's warnings and errors to zap and
// tells the keeper of failed writes.
type serverLog struct{ k *Keeper }

// writeFailures are how the server's log says a write to its store
// failed.
var writeFailures = []string{"critical write error", "failed to store a msg", "out of resources", "no space left"}

func (l serverLog) Noticef(string, ...any) {}
func (l serverLog) Debugf(string, ...any)  {}
func (l serverLog) Tracef(string, ...any)  {}
func (l serverLog) Warnf(format string, v ...any) {
	l.k.zl.Warn("nats-server: " + fmt.Sprintf(format, v...))
}
func (l serverLog) Fatalf(format string, v ...any) {
	l.k.zl.Error("nats-server (fatal): " + fmt.Sprintf(format, v...))
}
func (l serverLog) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	for _, f := range writeFailures {
		if strings.Contains(strings.ToLower(msg), f) {
			l.k.broken.Store(true)
			break
		}
	}
	l.k.zl.Error("nats-server: " + msg)
}

// IsWrongLastSequence reports a publish that JetStream refused for its
// expected last sequence: the plain mismatch (10071), or, in a cluster,
// another write to the same subject in flight (10164).
func IsWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
