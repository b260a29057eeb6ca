// Package natsxtest starts a real embedded nats-server (JetStream, file
// storage, fsync always) for tests.
package natsxtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/natsx"
)

// Server starts an in-process server in a temporary directory; it is shut
// down after the test.
func Server(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := natsx.StartServer(natsx.ServerConfig{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect opens an in-process connection to s, closed after the test.
func Connect(tb testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := natsx.Connect("", s, tb.Name())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// JetStream starts a server and connects to it.
func JetStream(tb testing.TB) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	return Connect(tb, Server(tb))
}

// Cluster starts n embedded servers in one JetStream cluster, each with
// its own store and free ports, and waits until JetStream has a leader.
// They are shut down after the test. Each option adjusts every server's
// configuration (authentication, TLS).
func Cluster(tb testing.TB, n int, opts ...func(*natsx.ServerConfig)) []*server.Server {
	tb.Helper()
	routes := make([]string, n)
	for i := range routes {
		routes[i] = evatest.FreeAddr(tb)
	}
	servers := make([]*server.Server, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range servers {
		var others []string
		for j, r := range routes {
			if j != i {
				others = append(others, "nats-route://"+r)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := natsx.ServerConfig{StoreDir: tb.TempDir(), Listen: "127.0.0.1:0",
				Name:    fmt.Sprintf("n%d", i+1),
				Cluster: &natsx.ClusterConfig{Name: "eva-test", Listen: routes[i], Routes: others}}
			for _, o := range opts {
				o(&cfg)
			}
			servers[i], errs[i] = natsx.StartServer(cfg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tb.Fatalf("server %d: %v", i+1, err)
		}
		s := servers[i]
		tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	}
	deadline := time.Now().Add(30 * time.Second)
	for !slices.ContainsFunc(servers, func(s *server.Server) bool { return s.JetStreamIsLeader() }) {
		if time.Now().After(deadline) {
			tb.Fatal("the cluster elected no JetStream leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return servers
}
