package wire_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/timers"
	"github.com/eva-org/eva/services/approval"
)

// busClient is a NATS client over TCP with the credentials of name on
// p's embedded server; it collects the server's permission errors.
type busClient struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu   sync.Mutex
	errs []string
}

func dialAs(t *testing.T, p *wire.Platform, name string) *busClient {
	t.Helper()
	creds, ok := p.BusCredentials(name)
	if !ok {
		t.Fatalf("no credentials for %s", name)
	}
	opts, err := creds.Options()
	if err != nil {
		t.Fatal(err)
	}
	c := &busClient{}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.errs = append(c.errs, err.Error())
	}))
	if c.nc, err = nats.Connect(p.Server.ClientURL(), opts...); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(c.nc.Close)
	if c.js, err = jetstream.New(c.nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// refused waits until the server has refused subject to c.
func (c *busClient) refused(t *testing.T, subject string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, e := range c.errs {
			if strings.Contains(strings.ToLower(e), "permissions violation") && strings.Contains(e, subject) {
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("the server did not refuse %s (errors: %v)", subject, c.errs)
}

// With the bus reachable over TCP (--nats-listen), nobody gets on it
// without credentials, and each identity is held to its own subjects: a
// service cannot send another's commands, take another's requests, read
// another's replies or append another's events; the gateway appends
// only user events. Nothing refused reaches the event log (issue 7: "the NATS
// command bus has no authentication").
func TestBusAuthenticatesAndConfines(t *testing.T) {
	p, err := wire.Open(context.Background(), wire.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0", Replicas: 1,
		Policy: assist.DefaultPolicy()}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := p.Server.ClientURL()

	// No credentials, or a key the server does not know: refused.
	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("a client without credentials connected")
	}
	stranger, _, _ := natsx.NewUserKey()
	if opts, err := (natsx.Credentials{User: "intake", Seed: stranger}).Options(); err != nil {
		t.Fatal(err)
	} else if nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0))...); err == nil {
		nc.Close()
		t.Error("a client with an unknown NKey connected")
	}

	stream, err := p.Log.JetStream().Stream(ctx, eventlog.Stream)
	if err != nil {
		t.Fatal(err)
	}
	count := func() uint64 {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	before := count()

	// The admin watches every command subject: nothing refused arrives.
	watch, err := p.NC.SubscribeSync("eva.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.NC.Flush(); err != nil {
		t.Fatal(err)
	}

	intake := dialAs(t, p, "intake")
	caseID := uuid.Must(uuid.NewV7()).String()
	for _, subject := range []string{
		"eva.approval.approve",                           // another service's command
		"eva.disbursement.funds_create",                  // only the gateway creates funds
		eventlog.Subject(caseID, "RequestApproved"),      // approval's event
		eventlog.SubjectOf(assist.KindFund, caseID, "x"), // disbursement's kind
	} {
		if err := intake.nc.Publish(subject, []byte(`{"actor":{"username":"ghost","role":"approver"}}`)); err != nil {
			t.Fatal(err)
		}
		intake.refused(t, subject)
	}
	// Nor may it take approval's requests or read the gateway's replies.
	for _, subject := range []string{"eva.approval.approve", "_INBOX_gateway.>", "_INBOX.>"} {
		if _, err := intake.nc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		intake.refused(t, subject)
	}
	// An append through JetStream is refused as well.
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := intake.js.Publish(pctx, eventlog.Subject(caseID, "RequestApproved"), []byte("x")); err == nil {
		t.Error("intake appended an approval")
	}
	pcancel()

	gateway := dialAs(t, p, "gateway")
	for _, subject := range []string{eventlog.Subject(caseID, "RequestSubmitted"), eventlog.DLQPrefix + "x",
		"eva.disbursement.hold_place"} {
		if err := gateway.nc.Publish(subject, []byte("x")); err != nil {
			t.Fatal(err)
		}
		gateway.refused(t, subject)
	}
	// Nor may the gateway change or delete the streams.
	if err := gateway.nc.Publish("$JS.API.STREAM.DELETE."+eventlog.Stream, nil); err != nil {
		t.Fatal(err)
	}
	gateway.refused(t, "$JS.API.STREAM.DELETE."+eventlog.Stream)

	if err := p.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := watch.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("a refused message arrived: %s", m.Subject)
	}
	if after := count(); after != before {
		t.Errorf("refused publishes appended %d events", after-before)
	}

	// The gateway may ask what the API offers, a payee included (intake
	// asks it too, but it is no internal call).
	payees, err := p.NC.SubscribeSync("eva.disbursement.payees_get")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := gateway.nc.Publish("eva.disbursement.payees_get", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := payees.NextMsg(2 * time.Second); err != nil {
		t.Errorf("the gateway cannot look a payee up: %v", err)
	}

	// Approval may delete the log's consumer it ran before ADR 45, named
	// otherwise than after it; not the timers stream's consumer of the
	// same name, and intake may delete neither.
	approvalConn := dialAs(t, p, "approval")
	if _, err := p.Log.JetStream().CreateOrUpdateConsumer(ctx, eventlog.Stream,
		jetstream.ConsumerConfig{Durable: approval.FormerSchedulerName}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		conn    *busClient
		subject string
	}{
		{approvalConn, "$JS.API.CONSUMER.DELETE." + timers.Stream + "." + approval.FormerSchedulerName},
		{intake, "$JS.API.CONSUMER.DELETE." + eventlog.Stream + "." + approval.FormerSchedulerName},
	} {
		if err := c.conn.nc.Publish(c.subject, nil); err != nil {
			t.Fatal(err)
		}
		c.conn.refused(t, c.subject)
	}
	if err := approvalConn.js.DeleteConsumer(ctx, eventlog.Stream, approval.FormerSchedulerName); err != nil {
		t.Errorf("approval cannot delete its former scheduler: %v", err)
	}

	// The access log (who read which case's personal data), the dead
	// letters and the timers are read only by the services that need
	// them: not by intake, which writes the access log, nor the gateway.
	for _, c := range []struct {
		conn    *busClient
		subject string
	}{
		{intake, "$JS.API.DIRECT.GET." + eventlog.AccessStream},
		{intake, "$JS.API.CONSUMER.CREATE." + eventlog.DLQStream},
		{gateway, "$JS.API.STREAM.INFO." + timers.Stream},
		{gateway, "$JS.API.CONSUMER.CREATE." + eventlog.AccessStream + ".peek.eva.access.>"},
		{approvalConn, "$JS.API.STREAM.MSG.GET." + eventlog.AccessStream},
	} {
		if err := c.conn.nc.Publish(c.subject, nil); err != nil {
			t.Fatal(err)
		}
		c.conn.refused(t, c.subject)
	}
	audit := dialAs(t, p, "audit")
	// Approval makes its timers when it starts; none runs here.
	if _, err := p.Log.JetStream().CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: timers.Stream,
		Subjects: []string{"eva.timer.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		who    string
		js     jetstream.JetStream
		stream string
	}{
		{"audit", audit.js, eventlog.AccessStream}, {"audit", audit.js, eventlog.DLQStream},
		{"approval", approvalConn.js, timers.Stream}, {"gateway", gateway.js, eventlog.Stream},
		{"intake", intake.js, eventlog.Stream},
	} {
		if _, err := c.js.Stream(ctx, c.stream); err != nil {
			t.Errorf("%s cannot read %s: %v", c.who, c.stream, err)
		}
	}

	// The owner may append its own event type: the refusals above are
	// the permissions, not a broken connection.
	if _, err := intake.js.Publish(ctx, eventlog.Subject(caseID, "RequestSubmitted"), []byte("x")); err != nil {
		t.Errorf("intake cannot append its own event: %v", err)
	}
}

// Every event type has exactly one service allowed to append it.
func TestEveryEventTypeHasAnOwner(t *testing.T) {
	for _, typ := range assist.EventTypes {
		subject := eventlog.SubjectOf(assist.TypeKind(typ), uuid.Must(uuid.NewV7()).String(), typ)
		if owners := wire.Appenders(subject); len(owners) != 1 {
			t.Errorf("%s: appended by %v, want exactly one service", typ, owners)
		}
	}
}
