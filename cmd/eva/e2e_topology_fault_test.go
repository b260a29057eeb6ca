package main

// Faults in the production topology, on the real binaries: three
// nats-server processes, PostgreSQL, each service its own process. Under
// the load of faultLoad, the stream leader is killed -9, the whole NATS
// cluster is killed and restarted, and each service process is killed -9
// at a random moment and restarted; after each fault, faultLoad's verdict.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit"
)

// natsServerBin builds the nats-server of go.mod's version once, for the
// tests that run it as a process.
var natsServerBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "eva-e2e-nats-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "nats-server")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nats-server: %v\n%s", err, out)
	}
	return bin, nil
})

// natsNode is one nats-server process of a cluster; it keeps its ports
// and store across restarts.
type natsNode struct {
	name   string
	client string // 127.0.0.1:port
	conf   string
	p      *proc
}

// natsCluster is a 3-node JetStream cluster of nats-server processes,
// with sync_interval always as EVA's deployment has it.
type natsCluster struct {
	tb    testing.TB
	bin   string
	nodes []*natsNode
}

func startNATSCluster(tb testing.TB, n int) *natsCluster {
	tb.Helper()
	bin, err := natsServerBin()
	if err != nil {
		tb.Fatal(err)
	}
	c := &natsCluster{tb: tb, bin: bin}
	routes := make([]string, n)
	for i := range n {
		routes[i] = "nats-route://" + evatest.FreeAddr(tb)
	}
	for i := range n {
		node := &natsNode{name: fmt.Sprintf("n%d", i+1), client: evatest.FreeAddr(tb)}
		dir := tb.TempDir()
		node.conf = filepath.Join(dir, "nats.conf")
		conf := fmt.Sprintf(`server_name: %s
listen: %q
jetstream { store_dir: %q, sync_interval: always }
cluster { name: eva-fault, listen: %q, routes: [%s] }
`, node.name, node.client, filepath.Join(dir, "js"), strings.TrimPrefix(routes[i], "nats-route://"),
			strings.Join(routes, ", "))
		if err := os.WriteFile(node.conf, []byte(conf), 0o600); err != nil {
			tb.Fatal(err)
		}
		c.nodes = append(c.nodes, node)
	}
	for _, node := range c.nodes {
		c.start(node)
	}
	return c
}

// start runs node's server and waits until it accepts connections.
func (c *natsCluster) start(node *natsNode) {
	c.tb.Helper()
	node.p = startBinary(c.tb, "nats-server "+node.name, os.Environ(), c.bin, "-c", node.conf)
	evatest.Await(c.tb, 30*time.Second, node.name+" to accept connections", func() (bool, string) {
		conn, err := net.DialTimeout("tcp", node.client, time.Second)
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	})
}

func (c *natsCluster) url() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = "nats://" + n.client
	}
	return strings.Join(urls, ",")
}

// streamLeader asks JetStream which node leads stream.
func (c *natsCluster) streamLeader(stream string) *natsNode {
	c.tb.Helper()
	nc, err := nats.Connect(c.url())
	if err != nil {
		c.tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.tb.Fatal(err)
	}
	var leader *natsNode
	evatest.Await(c.tb, 30*time.Second, "a leader of "+stream, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return false, err.Error()
		}
		info := st.CachedInfo()
		if info.Cluster == nil {
			return false, "no cluster info"
		}
		for _, n := range c.nodes {
			if n.name == info.Cluster.Leader {
				leader = n
				return true, ""
			}
		}
		return false, "leader " + info.Cluster.Leader
	})
	return leader
}

// topology is EVA in its production shape: each service a process.
type topology struct {
	t    *testing.T
	nats *natsCluster
	env  []string
	args []string // common flags: NATS, replicas, database
	svcs []*service
	gw   *service
	c    *client
}

// service is one service process and how to start it again.
type service struct {
	name string
	env  []string
	args []string
	p    *proc
}

func startTopology(t *testing.T) *topology {
	t.Helper()
	pgURL, schema := sqldbtest.Schema(t) // fails under CI / EVA_REQUIRE_POSTGRES, else skips loudly
	top := &topology{t: t, nats: startNATSCluster(t, 3)}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	// The gateway and seed sign command actors; the services hold only
	// the public key.
	actorSeed, actorPublic, err := rpc.NewActorKey()
	if err != nil {
		t.Fatal(err)
	}
	// A restarted audit signs checkpoints with the same key.
	auditKey, _, err := audit.GenerateKey("eva-fault/audit")
	if err != nil {
		t.Fatal(err)
	}
	top.env = childEnv("EVA_MASTER_KEY="+base64.StdEncoding.EncodeToString(key), "EVA_ACTOR_PUBLIC_KEYS="+actorPublic,
		"EVA_AUDIT_KEY="+auditKey)
	signing := append(slices.Clone(top.env), "EVA_ACTOR_KEY="+actorSeed)
	top.args = []string{"--nats", top.nats.url(), "--replicas", "3", "--database", sqldbtest.URLWithSchema(pgURL, schema)}
	if code := startProc(t, "eva migrate", top.env, top.cmd("migrate")...).wait(90 * time.Second); code != 0 {
		t.Fatalf("eva migrate exited with %d", code)
	}
	for _, svc := range []struct {
		name     string
		replicas int
	}{{"intake", 2}, {"approval", 2}, {"disbursement", 1}, {"audit", 1}} {
		for i := range svc.replicas {
			s := &service{name: fmt.Sprintf("%s #%d", svc.name, i+1), env: top.env, args: top.cmd("serve", svc.name)}
			s.p = startProc(t, "eva serve "+s.name, s.env, s.args...)
			top.svcs = append(top.svcs, s)
		}
	}
	gw := startHTTPProc(t, "eva serve gateway", signing, func(addr string) []string { return top.cmd("serve", "gateway", "--http", addr) })
	top.gw = &service{name: "gateway", env: signing, args: top.cmd("serve", "gateway", "--http", strings.TrimPrefix(gw.URL, "http://")), p: gw}
	top.svcs = append(top.svcs, top.gw)
	if code := startProc(t, "eva seed", signing, top.cmd("seed")...).wait(90 * time.Second); code != 0 {
		t.Fatalf("eva seed exited with %d", code)
	}
	top.c = newClient(t, gw.URL)
	return top
}

func (top *topology) cmd(a ...string) []string { return append(a, top.args...) }

// restart starts a killed service again, as its supervisor would.
func (top *topology) restart(s *service) {
	top.t.Helper()
	s.p = startProc(top.t, "eva serve "+s.name, s.env, s.args...)
	if s == top.gw {
		s.p.URL = top.c.base
	}
}

// running fails the test for any process that ended by itself.
func (top *topology) running() {
	top.t.Helper()
	for _, s := range top.svcs {
		if s.p.exited() {
			top.t.Errorf("%s ended (exit %d): %s", s.name, s.p.exitCode(), strings.TrimSpace(s.p.out.String()))
		}
	}
}

// TestE2EFaultTopology: in the 3-node topology under load, the event
// log's stream leader killed -9 (and restarted), the whole NATS cluster
// killed -9 and restarted, and each service process killed -9 at a random
// moment and restarted. After each fault, the verdict of faultLoad, and
// the time from the end of the fault to the first successful command.
//
// It runs in about three minutes: the service kills share one load and
// one verdict. EVA_FAULT_LONG=1 gives each kill its own load and verdict;
// with -short, only the leader is killed.
func TestE2EFaultTopology(t *testing.T) {
	t.Parallel()
	top := startTopology(t)
	c := top.c
	retryGet[pageJSON[fundJSON]](c, "fin", "/v1/funds") // the services answer
	const workers = 4

	// phase runs faults under a fresh load, then the verdict; each fault
	// returns when it ended.
	phase := func(name string, faults ...func(t *testing.T, load *faultLoad) (string, time.Time)) {
		t.Run(name, func(t *testing.T) {
			load := newFaultLoad(t, newClient(t, c.base))
			load.start(workers)
			load.waitProgress(5)
			for _, fault := range faults {
				what, ended := fault(t, load)
				took := load.recovered(ended)
				t.Logf("%s: first successful command %s after the fault ended", what, took.Round(time.Millisecond))
				if took > 15*time.Second {
					t.Errorf("%s: EVA served again only %s after the fault ended", what, took)
				}
				load.waitProgress(5)
			}
			load.end()
			load.verdict()
			top.running()
		})
	}

	phase("stream leader killed", func(t *testing.T, load *faultLoad) (string, time.Time) {
		leader := top.nats.streamLeader("EVA_EVENTS")
		leader.p.kill()
		killed := time.Now()
		t.Logf("killed %s, the leader of EVA_EVENTS; first successful command %s after the kill",
			leader.name, load.recovered(killed).Round(time.Millisecond))
		load.waitProgress(5)
		top.nats.start(leader)
		return "stream leader killed and restarted", time.Now()
	})
	if testing.Short() {
		return
	}
	phase("NATS cluster restarted", func(t *testing.T, load *faultLoad) (string, time.Time) {
		for _, n := range top.nats.nodes {
			n.p.kill()
		}
		time.Sleep(time.Second) // the cluster stays down a second
		var wg sync.WaitGroup
		for _, n := range top.nats.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				top.nats.start(n)
			}()
		}
		wg.Wait()
		restarted := time.Now()
		// JetStream elects its meta leader, then the stream's (Raft
		// election timeouts of 4–9 s in nats-server): commands succeed
		// once the stream has a leader.
		top.nats.streamLeader("EVA_EVENTS")
		elected := time.Now()
		after := load.recovered(elected)
		t.Logf("EVA_EVENTS had a leader %s after the restart; first successful command %s after that",
			elected.Sub(restarted).Round(time.Millisecond), after.Round(time.Millisecond))
		if after > 5*time.Second {
			t.Errorf("the first command succeeded only %s after the stream had a leader", after)
		}
		return "NATS cluster killed and restarted", restarted
	})
	kills := make([]func(*testing.T, *faultLoad) (string, time.Time), len(top.svcs))
	for i, s := range top.svcs {
		kills[i] = func(t *testing.T, load *faultLoad) (string, time.Time) {
			at := mrand.N(1500 * time.Millisecond) // a random moment under load
			time.Sleep(at)
			s.p.kill()
			time.Sleep(500 * time.Millisecond) // a supervisor's restart delay
			top.restart(s)
			return fmt.Sprintf("%s killed (%s into the load) and restarted", s.name, at.Round(time.Millisecond)), time.Now()
		}
	}
	if os.Getenv("EVA_FAULT_LONG") == "" {
		phase("each service killed", kills...)
		return
	}
	for i, s := range top.svcs {
		phase(s.name+" killed", kills[i])
	}
}
