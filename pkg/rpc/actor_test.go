package rpc_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/pkg/rpc"
)

// payReq is a command that acts for a user.
type payReq struct {
	CommandID string       `json:"command_id"`
	Actor     assist.Actor `json:"actor"`
	Cents     int64        `json:"cents"`
}

func (r payReq) Acting() (string, assist.Actor) { return r.CommandID, r.Actor }

var pay = rpc.Endpoint[payReq, echoResp]{Subject: "test.pay"}

func newSigner(tb testing.TB) *rpc.Signer {
	tb.Helper()
	seed, _, err := rpc.NewActorKey()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := rpc.NewSigner(seed)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkSign signs a command's actor, as the gateway does for every
// command it sends.
func BenchmarkSign(b *testing.B) {
	s := newSigner(b)
	m := nats.NewMsg(pay.Subject)
	m.Data, _ = json.Marshal(payReq{CommandID: "c", Actor: olu, Cents: 100})
	b.ReportAllocs()
	for b.Loop() {
		s.Sign(m, oluUser, "c", time.Minute)
	}
}

var (
	olu     = assist.Actor{Username: "olu", Role: assist.RoleApprover}
	oluUser = rpc.Principal{Username: "olu", Roles: []string{assist.RoleApprover}}
)

// Every way a command's actor can fail to be vouched for is refused with
// CodeForbidden before the handler runs; the signed command is served.
func TestSignedActors(t *testing.T) {
	nc, _ := natsxtest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gateway, rotated, intruder := newSigner(t), newSigner(t), newSigner(t)
	trust, err := rpc.NewVerifier(gateway.PublicKey(), rotated.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	var served atomic.Int64
	srv, err := rpc.Serve(ctx, nc, trust, "pay", "test", zaptest.NewLogger(t),
		rpc.On(pay, func(ctx context.Context, r payReq) (echoResp, error) {
			served.Add(1)
			return echoResp{Text: r.Actor.Username}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	// A correctly signed command, by either trusted key, is served.
	for _, s := range []*rpc.Signer{gateway, rotated} {
		if got, err := pay.Call(rpc.ActingFor(ctx, s, oluUser), nc, payReq{CommandID: "c1", Actor: olu}); err != nil || got.Text != "olu" {
			t.Fatalf("signed command: %v %v", got, err)
		}
	}
	served.Store(0)

	// raw sends a request with the given headers.
	raw := func(r payReq, h nats.Header) error {
		m := nats.NewMsg(pay.Subject)
		m.Data, _ = json.Marshal(r)
		m.Header = h
		reply, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return err
		}
		if code := reply.Header.Get("Nats-Service-Error-Code"); code != "" {
			return &assist.Error{Code: assist.Code(code), Message: reply.Header.Get("Nats-Service-Error")}
		}
		return nil
	}
	// signed returns the headers of r signed by s for p.
	signed := func(s *rpc.Signer, p rpc.Principal, r payReq) nats.Header {
		m := nats.NewMsg(pay.Subject)
		m.Data, _ = json.Marshal(r)
		s.Sign(m, p, r.CommandID, time.Minute)
		return m.Header
	}
	ghost := assist.Actor{Username: "ghost", Role: assist.RoleApprover}
	a := payReq{CommandID: "c2", Actor: olu, Cents: 100}
	tampered := signed(gateway, oluUser, a)
	tampered.Set(rpc.KeyHeader, rotated.PublicKey()) // trusted, but not the signer
	cases := []struct {
		name string
		send func() error
		why  string
	}{
		{"missing", func() error { _, err := pay.Call(ctx, nc, a); return err }, "not signed"},
		{"forged by an untrusted key", func() error {
			_, err := pay.Call(rpc.ActingFor(ctx, intruder, oluUser), nc, a)
			return err
		}, "untrusted key"},
		{"signature claimed for another trusted key", func() error { return raw(a, tampered) }, "not valid"},
		{"actor changed after signing", func() error {
			return raw(payReq{CommandID: a.CommandID, Actor: ghost, Cents: a.Cents}, signed(gateway, oluUser, a))
		}, "another command"},
		{"replayed for another command", func() error {
			return raw(payReq{CommandID: "c3", Actor: olu, Cents: a.Cents}, signed(gateway, oluUser, a))
		}, "another command"},
		{"amount changed after signing", func() error {
			return raw(payReq{CommandID: a.CommandID, Actor: olu, Cents: 1_000_000}, signed(gateway, oluUser, a))
		}, "another command"},
		{"replayed to another subject", func() error {
			m := nats.NewMsg("test.other")
			m.Data, _ = json.Marshal(a)
			gateway.Sign(m, oluUser, a.CommandID, time.Minute)
			return raw(a, m.Header)
		}, "another command"},
		{"expired", func() error {
			old := gateway.WithClock(func() time.Time { return time.Now().Add(-time.Hour) })
			_, err := pay.Call(rpc.ActingFor(ctx, old, oluUser), nc, a)
			return err
		}, "expired"},
		{"a role the user does not hold", func() error {
			ana := rpc.Principal{Username: "olu", Roles: []string{assist.RoleRequester}}
			_, err := pay.Call(rpc.ActingFor(ctx, gateway, ana), nc, a)
			return err
		}, "not the signed one"},
		{"another user", func() error {
			_, err := pay.Call(rpc.ActingFor(ctx, gateway, oluUser), nc, payReq{CommandID: "c4", Actor: ghost})
			return err
		}, "not the signed one"},
	}
	for _, c := range cases {
		err := c.send()
		if !assist.IsCode(err, assist.CodeForbidden) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("%s: %v, want forbidden: ...%s", c.name, err, c.why)
		}
	}
	if n := served.Load(); n != 0 {
		t.Errorf("the handler ran %d times for refused commands", n)
	}
}

// A service with no key to trust refuses every command that acts for a
// user, and an endpoint whose request carries an actor it cannot check is
// not registered.
func TestNoTrustRefuses(t *testing.T) {
	nc, _ := natsxtest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := rpc.Serve(ctx, nc, nil, "pay", "test", zaptest.NewLogger(t),
		rpc.On(pay, func(ctx context.Context, r payReq) (echoResp, error) { return echoResp{}, nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if _, err := pay.Call(rpc.ActingFor(ctx, newSigner(t), oluUser), nc, payReq{CommandID: "c", Actor: olu}); !assist.IsCode(err, assist.CodeForbidden) {
		t.Errorf("no trust: %v, want forbidden", err)
	}
	type unchecked struct{ Actor assist.Actor }
	_, err = rpc.Serve(ctx, nc, nil, "bad", "test", zaptest.NewLogger(t),
		rpc.On(rpc.Endpoint[unchecked, echoResp]{Subject: "test.unchecked"},
			func(ctx context.Context, r unchecked) (echoResp, error) { return echoResp{}, nil }))
	if err == nil || !strings.Contains(err.Error(), "rpc.Acting") {
		t.Errorf("an endpoint with an unchecked actor was registered: %v", err)
	}
}

func TestKeys(t *testing.T) {
	seed, public, err := rpc.NewActorKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(seed, "SA") || !strings.HasPrefix(public, "A") {
		t.Errorf("key = %s %s, want an account NKey", seed, public)
	}
	if _, err := rpc.NewSigner("SUAxxx"); err == nil {
		t.Error("a malformed seed was accepted")
	}
	signer, err := rpc.NewSigner(" " + seed + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if signer.PublicKey() != public {
		t.Errorf("signer's public key = %s, want the seed's %s", signer.PublicKey(), public)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	userSeed, err := user.Seed()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rpc.NewSigner(string(userSeed)); err == nil || !strings.Contains(err.Error(), "not an account seed") {
		t.Errorf("a user seed: err = %v, want not an account seed", err)
	}
	if _, err := rpc.NewVerifier(); err == nil {
		t.Error("a verifier with no key was made")
	}
	if _, err := rpc.NewVerifier(seed); err == nil {
		t.Error("a seed was accepted as a public key")
	}
}
