package intake_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/rpc/rpctest"
	"github.com/eva-org/eva/pkg/seal"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/intake"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

func newID() string { return uuid.Must(uuid.NewV7()).String() }

var (
	ana   = assist.Actor{Username: "ana", Role: assist.RoleRequester, Post: "BGD-DHAKA"}
	amir  = assist.Actor{Username: "amir", Role: assist.RoleRequester, Post: "BGD-DHAKA"} // ana's colleague
	bo    = assist.Actor{Username: "bo", Role: assist.RoleRequester, Post: "NPL-KTM"}
	olu   = assist.Actor{Username: "olu", Role: assist.RoleApprover}
	audra = assist.Actor{Username: "audra", Role: assist.RoleAuditor}
	adm   = assist.Actor{Username: "adm", Role: assist.RoleAdmin}
)

// harness runs intake on a real embedded JetStream and a real database.
// The projection consumer runs only when a test starts it.
type harness struct {
	t    *testing.T
	ctx  context.Context
	db   sqldb.DB
	nc   *nats.Conn
	js   jetstream.JetStream
	log  *eventlog.Log
	keys *seal.Keyring
	// signer signs the actors of commands sent over NATS; trust, which
	// intake.Run is given, verifies them.
	signer *rpc.Signer
	trust  *rpc.Verifier
	store  *intake.SQLStore
	svc    *intake.Service
	// stopConsumer stops the projection that consume started.
	stopConsumer func()
}

func newHarness(t *testing.T, db sqldb.DB) *harness {
	t.Helper()
	el := eventlogtest.Open(t)
	nc, js, l := el.NC, el.JS, el.Log
	// A deadline, as every rpc handler has.
	// Calls sign their actors as a gateway would.
	signer, trust := rpctest.Keys(t)
	ctx, cancel := context.WithTimeout(rpc.ActingAsRequested(context.Background(), signer), 5*time.Minute)
	t.Cleanup(cancel)
	migrate(t, db)
	keys, err := seal.NewKeyring(seal.NewMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ctx: ctx, db: db, nc: nc, js: js, log: l, keys: keys, store: intake.NewSQLStore(db),
		signer: signer, trust: trust}
	h.svc = h.service(nil)
	return h
}

func (h *harness) deps(now func() time.Time) intake.Deps {
	return intake.Deps{Config: intake.Config{Policy: assist.DefaultPolicy()}, NC: h.nc, Trust: h.trust, Log: h.log, DB: h.db,
		Keys: h.keys, Logger: zaptest.NewLogger(h.t), Now: now}
}

// service returns another intake on the same log, database and keys, with
// its own clock (nil: the real one).
func (h *harness) service(now func() time.Time) *intake.Service { return intake.New(h.deps(now)) }

// consume runs the projection exactly as intake.Run does, until the test
// ends or stopConsumer.
func (h *harness) consume() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx)
	done := make(chan error, 1)
	go func() {
		done <- h.log.Project(ctx, h.db, eventlog.ConsumerConfig{Name: "intake"}, h.store, zaptest.NewLogger(h.t))
	}()
	var once sync.Once
	h.stopConsumer = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("consumer: %v", err)
			}
		})
	}
	h.t.Cleanup(h.stopConsumer)
}

// beneficiary is personal data that is easy to look for in raw bytes.
func beneficiary() intakeapi.Beneficiary {
	return intakeapi.Beneficiary{Reference: "UNHCR-QX-771942", Name: "Zubaida Quennell-Marsh", DateOfBirth: "1999-12-31",
		Nationality: "Xanadian", Contact: "+880-1711-424242 via Shanti shelter"}
}

func fileRequest(actor assist.Actor) intakeapi.FileRequest {
	return intakeapi.FileRequest{CommandID: newID(), Actor: actor, Post: actor.Post, Category: string(assist.Shelter),
		Urgency: string(assist.Critical), AmountCents: 25_000, Justification: "shelter tonight",
		Beneficiary: beneficiary(), PayeeID: payee1}
}

func (h *harness) file(actor assist.Actor) *assist.Case {
	h.t.Helper()
	c, err := h.svc.File(h.ctx, fileRequest(actor))
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) get(id string) *assist.Case {
	h.t.Helper()
	c, err := h.svc.Get(h.ctx, intakeapi.GetRequest{CaseID: id})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) events(id string) []assist.Recorded { return eventlogtest.Events(h.t, h.log, id) }

func (h *harness) lastSeq() uint64 { return eventlogtest.LastSeq(h.t, h.log) }

// exec appends an event decided by another service (approval), straight
// on the log, so that intake's tests need no other service.
func (h *harness) exec(caseID string, decide func(c *assist.Case, cmd assist.Cmd) (assist.Event, error), actor assist.Actor) *assist.Case {
	h.t.Helper()
	id := newID()
	c, err := h.log.Execute(h.ctx, eventlog.Command{CaseID: caseID, ID: id, Decide: func(c *assist.Case) (assist.Event, error) {
		return decide(c, assist.Cmd{ID: id, Actor: actor, At: time.Now().UTC()})
	}})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) claim(caseID string) *assist.Case {
	return h.exec(caseID, func(c *assist.Case, cmd assist.Cmd) (assist.Event, error) { return c.Claim(cmd, time.Hour) }, olu)
}

func (h *harness) requestInfo(caseID, question string) *assist.Case {
	h.claim(caseID)
	return h.exec(caseID, func(c *assist.Case, cmd assist.Cmd) (assist.Event, error) { return c.RequestInfo(cmd, question) }, olu)
}

// waitProjected waits until the projection holds the case as the log has
// it, and returns it.
func (h *harness) waitProjected(id string) *assist.Case {
	h.t.Helper()
	want := h.get(id)
	var got *assist.Case
	evatest.Eventually(h.t, "projection of "+id, func() bool {
		var err error
		got, err = h.store.Projected(h.ctx, h.db, id)
		if err != nil {
			h.t.Fatal(err)
		}
		return got != nil && got.Version >= want.Version
	})
	return got
}

// fixedClock is a settable clock.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func requireCode(tb testing.TB, err error, code assist.Code) {
	tb.Helper()
	if !assist.IsCode(err, code) {
		tb.Fatalf("err = %v, want %s", err, code)
	}
}

func containsAny(data []byte, secrets ...string) string {
	for _, s := range secrets {
		if bytes.Contains(data, []byte(s)) {
			return s
		}
	}
	return ""
}

// Payee ids the tests file with (no payee service runs: intake then checks
// only their form).
const (
	payee1 = "01900000-0000-7000-8000-00000000b001"
	payee2 = "01900000-0000-7000-8000-00000000b002"
)
