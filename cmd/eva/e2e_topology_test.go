package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/pkg/devcerts"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/pkg/rpc"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit"
)

// TestE2ETopology runs the production topology (DESIGN §4, §7) as
// processes: a 3-node JetStream cluster (embedded in the test process),
// one PostgreSQL schema, `eva migrate`, each service as its own
// `eva serve` process (two replicas of intake and approval), `eva seed`;
// then a case goes from filing to disbursed over HTTP, the audit
// verifies, the leader of the event log's stream is shut down, and a new
// case still goes all the way while the audit stays verified.
func TestE2ETopology(t *testing.T) {
	t.Parallel()
	pgURL, schema := sqldbtest.Schema(t) // fails under CI / EVA_REQUIRE_POSTGRES, else skips loudly
	dbURL := sqldbtest.URLWithSchema(pgURL, schema)

	// The bus as docker-compose runs it: TLS between clients and servers
	// and between the nodes, NKey users with EVA's permissions, all made
	// by eva dev-certs.
	certs := t.TempDir()
	if err := wire.DevCerts(certs, []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	tlsFiles := devcerts.In(certs)
	servers := natsxtest.Cluster(t, 3, func(c *natsx.ServerConfig) {
		c.AuthFile = filepath.Join(certs, "auth.conf")
		c.TLS = &natsx.TLSFiles{Cert: tlsFiles.Cert, Key: tlsFiles.Key, CA: tlsFiles.CA}
	})
	var urls []string
	for _, s := range servers {
		urls = append(urls, strings.Replace(s.ClientURL(), "nats://", "tls://", 1))
	}
	natsURL := strings.Join(urls, ",")
	// as is the environment of a process on the bus as name.
	as := func(env []string, name string) []string {
		return append(slices.Clone(env), "EVA_NATS_NKEY="+filepath.Join(certs, "nkeys", name+".nk"), "EVA_NATS_CA="+tlsFiles.CA)
	}

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	// The gateway and seed sign command actors; the services hold only
	// the public key.
	actorSeed, actorPublic, err := rpc.NewActorKey()
	if err != nil {
		t.Fatal(err)
	}
	auditKey, _, err := audit.GenerateKey("eva-topology-test")
	if err != nil {
		t.Fatal(err)
	}
	env := childEnv("EVA_MASTER_KEY="+base64.StdEncoding.EncodeToString(key), "EVA_ACTOR_PUBLIC_KEYS="+actorPublic,
		"EVA_AUDIT_KEY="+auditKey)
	signing := append(slices.Clone(env), "EVA_ACTOR_KEY="+actorSeed)
	common := []string{"--nats", natsURL, "--replicas", "3", "--database", dbURL}
	args := func(a ...string) []string { return append(a, common...) }

	if code := startProc(t, "eva migrate", as(env, "admin"), args("migrate")...).wait(90 * time.Second); code != 0 {
		t.Fatalf("eva migrate exited with %d", code)
	}
	var procs []*proc
	for _, svc := range []struct {
		name     string
		replicas int
	}{{"intake", 2}, {"approval", 2}, {"disbursement", 1}, {"audit", 1}, {"notify", 1}} {
		for i := range svc.replicas {
			procs = append(procs, startProc(t, fmt.Sprintf("eva serve %s #%d", svc.name, i+1), as(env, svc.name), args("serve", svc.name)...))
		}
	}
	gw := startHTTPProc(t, "eva serve gateway", as(signing, "gateway"), func(addr string) []string { return args("serve", "gateway", "--http", addr) })
	procs = append(procs, gw)
	if code := startProc(t, "eva seed", as(signing, "admin"), args("seed")...).wait(90 * time.Second); code != 0 {
		t.Fatalf("eva seed exited with %d", code)
	}
	for _, p := range procs {
		if p.exited() {
			t.Fatalf("%s ended (exit %d)", p.name, p.exitCode())
		}
	}

	// The streams are replicated on the three nodes.
	// Without credentials, no one is let on the bus.
	if nc, err := nats.Connect(natsURL, nats.RootCAs(tlsFiles.CA), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("a client without credentials connected to the cluster")
	}
	admin, err := os.ReadFile(filepath.Join(certs, "nkeys", "admin.nk"))
	if err != nil {
		t.Fatal(err)
	}
	adminOpts, err := natsx.Credentials{User: "admin", Seed: string(admin), CA: tlsFiles.CA}.Options()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(natsURL, adminOpts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	checkReplicas := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "EVA_EVENTS")
		if err != nil {
			t.Fatalf("stream EVA_EVENTS: %v", err)
		}
		info := st.CachedInfo()
		if info.Config.Replicas != 3 || info.Cluster == nil {
			t.Errorf("EVA_EVENTS: %d replicas, cluster %+v; want 3", info.Config.Replicas, info.Cluster)
		}
		if !info.Config.AllowAtomicPublish {
			t.Error("EVA_EVENTS takes no atomic batch (ADR 46)")
		}
	}
	checkReplicas()

	c := newClient(t, gw.URL)
	fund := retryGet[pageJSON[fundJSON]](c, "fin", "/v1/funds").Items
	payees := retryGet[pageJSON[payeeJSON]](c, "ana", "/v1/payees").Items
	if len(fund) == 0 || len(payees) == 0 {
		t.Fatalf("seeded funds %+v, payees %+v", fund, payees)
	}
	fundID, payeeID := fund[0].ID, payees[0].ID
	seeded := c.waitVerified(60 * time.Second).Events // the seeded fund's and payees' events
	paidBefore := fund[0].PaidCents

	// An auditor follows the changes throughout, through the loss of the
	// log's leader, reconnecting as a browser would.
	changes := c.followChanges("aud")
	first, n1, id1 := lifecycle(t, c, "topology-1", fundID, payeeID, 42_000)
	changes.checkLifecycle(id1)
	checkSettledInOneBatch(t, js, id1)
	v := c.waitVerified(60 * time.Second)
	if v.Events != seeded+uint64(n1) {
		t.Errorf("audit verify counts %d events; the seeds have %d and the one case %d", v.Events, seeded, n1)
	}

	// Shut the event log's stream leader down.
	var leader *server.Server
	evatest.Await(t, 10*time.Second, "a leader of EVA_EVENTS", func() (bool, string) {
		for _, s := range servers {
			if s.JetStreamIsStreamLeader("$G", "EVA_EVENTS") {
				leader = s
				return true, ""
			}
		}
		return false, "no leader"
	})
	t.Logf("shutting down %s, the leader of EVA_EVENTS", leader.Name())
	leader.Shutdown()
	leader.WaitForShutdown()

	second, n2, id2 := lifecycle(t, c, "topology-2", fundID, payeeID, 17_500)
	changes.checkLifecycle(id2)
	changes.checkOrder()
	changes.close() // before the gateway stops
	v2 := c.waitVerified(60 * time.Second)
	if v2.Events != seeded+uint64(n1+n2) {
		t.Errorf("audit verify counts %d events; the seeds have %d and the two cases %d", v2.Events, seeded, n1+n2)
	}
	for _, s := range servers {
		if s != leader && s.JetStreamIsStreamLeader("$G", "EVA_EVENTS") {
			t.Logf("%s leads EVA_EVENTS now", s.Name())
		}
	}
	for _, p := range procs {
		if p.exited() {
			t.Errorf("%s ended (exit %d) after the leader went away: %s", p.name, p.exitCode(), strings.TrimSpace(p.out.String()))
		}
	}
	f := get[fundJSON](c, "fin", "/v1/funds/"+fundID, http.StatusOK)
	if f.PaidCents != paidBefore+first+second || f.ReservedCents != 0 {
		t.Errorf("fund %+v: want paid %d", f, paidBefore+first+second)
	}
	// A service against external NATS and PostgreSQL writes nothing
	// locally.
	for _, p := range procs {
		if _, err := os.Stat(filepath.Join(p.cmd.Dir, "eva-data")); err == nil {
			t.Errorf("%s made a local data dir in %s", p.name, p.cmd.Dir)
		}
	}

	// Every replica is still up once it has run longer than nats.go's
	// 5 s API timeout: one that could not create its durable consumer has
	// given up by then. (Waiting, not asserting: nothing is expected to
	// happen in this time.)
	for _, p := range procs {
		if rest := 7*time.Second - time.Since(p.started); rest > 0 {
			time.Sleep(rest)
		}
		if p.exited() {
			t.Errorf("%s ended (exit %d) while running: %s", p.name, p.exitCode(), strings.TrimSpace(p.out.String()))
		}
	}

	// Stop everything gracefully; the offline check agrees.
	for _, p := range procs {
		if p.exited() {
			continue // reported above
		}
		if code := p.stop(); code != 0 {
			t.Errorf("%s exited with %d after SIGINT", p.name, code)
		}
	}
	verify := startProc(t, "eva audit verify", as(env, "admin"), args("audit", "verify")...)
	if code := verify.wait(60 * time.Second); code != 0 || !strings.Contains(verify.out.String(), `"ok": true`) {
		t.Errorf("eva audit verify: exit %d:\n%s", code, verify.out)
	}
}

// lifecycle files a case as ana, has olu claim and approve it, waits
// until it is disbursed, and returns the approved amount, the number of
// events of its archived history and its id. Every call is
// retried with the same Idempotency-Key while the answer is 503 or the
// connection fails (a cluster electing, a service starting).
func lifecycle(t *testing.T, c *client, name, fundID, payeeID string, cents int64) (int64, int, string) {
	t.Helper()
	cs := retryPost[caseJSON](c, "ana", "/v1/requests", fileBody(payeeID, "REF-"+name, cents), name+"-file", http.StatusCreated)
	retryPost[caseJSON](c, "olu", "/v1/requests/"+cs.ID+"/claim", nil, name+"-claim", http.StatusOK)
	retryPost[caseJSON](c, "olu", "/v1/requests/"+cs.ID+"/approve",
		map[string]any{"amount_usd_cents": cents, "fund_id": fundID}, name+"-approve", http.StatusOK)
	c.waitStatus(cs.ID, "disbursed", 60*time.Second)
	pays := c.settledPayouts(cs.ID)
	if len(pays) != 1 || pays[0].Status != "settled" || pays[0].AmountCents != cents {
		t.Errorf("%s: payouts %+v, want one settled of %d", name, pays, cents)
	}
	var types []string
	evatest.Await(t, 30*time.Second, name+": the archived history", func() (bool, string) {
		types = eventTypes(c.history(cs.ID))
		return len(types) > 0 && types[len(types)-1] == "PayoutSettled", strings.Join(types, ",")
	})
	return cents, len(types), cs.ID
}

// checkSettledInOneBatch checks that the case's payment, which the
// simulator settles at once, was recorded sent and settled in one atomic
// batch, as the worker does on a replicated stream (ADR 46): PayoutSettled
// follows PayoutSent at the next sequence and names it as its batch's
// previous event.
func checkSettledInOneBatch(t *testing.T, js jetstream.JetStream, caseID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, eventlog.Stream)
	if err != nil {
		t.Fatal(err)
	}
	settled, err := st.GetLastMsgForSubject(ctx, eventlog.Subject(caseID, "PayoutSettled"))
	if err != nil {
		t.Fatalf("the case's PayoutSettled: %v", err)
	}
	sent, err := st.GetLastMsgForSubject(ctx, eventlog.Subject(caseID, "PayoutSent"))
	if err != nil {
		t.Fatalf("the case's PayoutSent: %v", err)
	}
	if p := settled.Header.Get(eventlog.HeaderPrev); p != eventlog.PrevInBatch || sent.Sequence != settled.Sequence-1 {
		t.Errorf("PayoutSent at %d, PayoutSettled at %d with %s %q; want them in one batch (%q)",
			sent.Sequence, settled.Sequence, eventlog.HeaderPrev, p, eventlog.PrevInBatch)
	}
}

// retryWindow is how long a call is retried on 503 or a failed connection.
const retryWindow = 30 * time.Second

func retryPost[T any](c *client, user, path string, body any, key string, want int) T {
	c.tb.Helper()
	r := req{user: user, method: http.MethodPost, path: path, body: body, header: map[string]string{"Idempotency-Key": key}}
	resp := retryUnavailable(c, r)
	if resp.Status != want {
		c.tb.Fatalf("POST %s as %s: %s, want %d", path, user, resp, want)
	}
	var v T
	resp.decode(c.tb, &v)
	return v
}

func retryGet[T any](c *client, user, path string) T {
	c.tb.Helper()
	resp := retryUnavailable(c, req{user: user, method: http.MethodGet, path: path})
	if resp.Status != http.StatusOK {
		c.tb.Fatalf("GET %s as %s: %s", path, user, resp)
	}
	var v T
	resp.decode(c.tb, &v)
	return v
}

func retryUnavailable(c *client, r req) *response {
	c.tb.Helper()
	var resp *response
	tries := 0
	evatest.Await(c.tb, retryWindow, r.method+" "+r.path+" to answer other than 503", func() (bool, string) {
		tries++
		var err error
		if resp, err = c.try(r); err != nil {
			return false, err.Error()
		}
		return resp.Status != http.StatusServiceUnavailable, resp.String()
	})
	if tries > 1 {
		c.tb.Logf("%s %s: %d after %d tries", r.method, r.path, resp.Status, tries)
	}
	return resp
}
