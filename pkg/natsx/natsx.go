// Package natsx starts an embedded NATS server with JetStream and connects
// to NATS, embedded or external, with EVA's connection options.
package natsx

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
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

// Connect dials url, or the embedded server s when s is not nil, with
// reconnects forever: a service must outlive a NATS restart.
func Connect(url string, s *server.Server, name string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		// Every read of a case is a batched direct get on its own
		// synchronous subscription; the default queue (64k messages) is
		// allocated for each — half a megabyte per read. A batch is at
		// most a few hundred messages.
		nats.SyncQueueLen(4096),
	}
	if s != nil {
		opts = append(opts, nats.InProcessServer(s))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", url, err)
	}
	return nc, nil
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
