package approval_test

import (
	"context"
	"sync"
	"sync/atomic"
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
	"github.com/eva-org/eva/pkg/seal"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/intake"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

func newID() string { return uuid.Must(uuid.NewV7()).String() }

var (
	ana = assist.Actor{Username: "ana", Role: assist.RoleRequester, Post: "BGD-DHAKA"}
	bo  = assist.Actor{Username: "bo", Role: assist.RoleRequester, Post: "NPL-KTM"}
	olu = assist.Actor{Username: "olu", Role: assist.RoleApprover}
	pia = assist.Actor{Username: "pia", Role: assist.RoleApprover}
	// anaApprover is ana holding the approver role too: she must never
	// review what she filed.
	anaApprover = assist.Actor{Username: "ana", Role: assist.RoleApprover}
)

// harness runs approval (and intake, to file requests) on a real embedded
// JetStream and a real database. Consumers run only when a test starts
// them.
type harness struct {
	t      testing.TB
	ctx    context.Context
	db     sqldb.DB
	nc     *nats.Conn
	js     jetstream.JetStream
	log    *eventlog.Log
	keys   *seal.Keyring
	intake *intake.Service
	istore *intake.SQLStore
	store  *approval.SQLStore
	svc    *approval.Service
}

func newHarness(t testing.TB, db sqldb.DB, holds approval.Holds) *harness {
	t.Helper()
	el := eventlogtest.Open(t)
	nc, js, l := el.NC, el.JS, el.Log
	// A deadline, as every rpc handler has.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	migrate(t, db, eventlog.Migrations, intake.Migrations, approval.Migrations, disbursement.Migrations)
	keys, err := seal.NewKeyring(seal.NewMasterKey())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, ctx: ctx, db: db, nc: nc, js: js, log: l, keys: keys,
		istore: intake.NewSQLStore(db), store: approval.NewSQLStore(db)}
	h.intake = h.intakeAt(nil)
	h.svc = h.service(holds, nil)
	return h
}

// service returns an approval on the harness's log and database with its
// own holds and clock (nil: the real one).
func (h *harness) service(holds approval.Holds, now func() time.Time) *approval.Service {
	return approval.New(approval.Deps{Config: approval.Config{Policy: assist.DefaultPolicy()}, NC: h.nc, Log: h.log,
		DB: h.db, Holds: holds, Logger: zaptest.NewLogger(h.t), Now: now})
}

// intakeAt returns an intake whose clock is now (nil: the real one).
func (h *harness) intakeAt(now func() time.Time) *intake.Service {
	return intake.New(intake.Deps{Config: intake.Config{Policy: assist.DefaultPolicy()}, NC: h.nc, Log: h.log, DB: h.db,
		Keys: h.keys, Logger: zaptest.NewLogger(h.t), Now: now})
}

// consume runs intake's and approval's projections exactly as their Run
// does, but approval's without asking for sweeps (approval.Run's own
// projection asks); stop ends them and waits (it is also called after the
// test).
func (h *harness) consume() (stop func()) {
	return h.project(map[string]eventlog.Projection{"intake": h.istore, approval.ConsumerName: h.store})
}

// consumeIntake runs intake's projection only: for a test that runs
// approval.Run, which projects the queue itself.
func (h *harness) consumeIntake() (stop func()) {
	return h.project(map[string]eventlog.Projection{"intake": h.istore})
}

func (h *harness) project(projections map[string]eventlog.Projection) (stop func()) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx)
	var wg sync.WaitGroup
	for name, p := range projections {
		wg.Go(func() {
			if err := h.log.Project(ctx, h.db, eventlog.ConsumerConfig{Name: name}, p, zaptest.NewLogger(h.t)); err != nil {
				h.t.Errorf("consumer %s: %v", name, err)
			}
		})
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	h.t.Cleanup(stop)
	return stop
}

// waitCaughtUp waits until both consumers have applied (and acked) every
// event of the log.
func (h *harness) waitCaughtUp() {
	h.t.Helper()
	last, err := h.log.LastSeq(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, consumer := range []string{"intake", approval.ConsumerName} {
		evatest.Eventually(h.t, consumer+" to apply the log", func() bool {
			c, err := h.js.Consumer(h.ctx, eventlog.Stream, consumer)
			if err != nil {
				return false
			}
			info, err := c.Info(h.ctx)
			return err == nil && info.AckFloor.Stream >= last
		})
	}
}

func fileRequest(actor assist.Actor) intakeapi.FileRequest {
	return intakeapi.FileRequest{CommandID: newID(), Actor: actor, Post: actor.Post, Category: string(assist.Shelter),
		Urgency: string(assist.Urgent), AmountCents: 25_000, Justification: "shelter tonight",
		Beneficiary: intakeapi.Beneficiary{Reference: "REF-" + newID(), Name: "N"}, PayeeID: payee1}
}

func (h *harness) fileWith(svc *intake.Service, r intakeapi.FileRequest) *assist.Case {
	h.t.Helper()
	c, err := svc.File(h.ctx, r)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) file(actor assist.Actor) *assist.Case {
	return h.fileWith(h.intake, fileRequest(actor))
}

func (h *harness) claim(caseID string, actor assist.Actor) *assist.Case {
	h.t.Helper()
	c, err := h.svc.Claim(h.ctx, approvalapi.CaseCommand{CommandID: newID(), Actor: actor, CaseID: caseID})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) get(id string) *assist.Case {
	h.t.Helper()
	c, err := h.log.Case(h.ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func (h *harness) events(id string) []assist.Recorded { return eventlogtest.Events(h.t, h.log, id) }

func (h *harness) lastSeq() uint64 { return eventlogtest.LastSeq(h.t, h.log) }

func (h *harness) requireNoNewEvent(seq uint64) {
	h.t.Helper()
	if got := h.lastSeq(); got != seq {
		h.t.Fatalf("the log grew from %d to %d", seq, got)
	}
}

func countType(recs []assist.Recorded, typ string) int {
	n := 0
	for _, r := range recs {
		if r.Event.Type() == typ {
			n++
		}
	}
	return n
}

// queue reads the whole queue through the service.
func (h *harness) queue() []approvalapi.QueueItem {
	h.t.Helper()
	page, err := h.svc.Queue(h.ctx, approvalapi.QueueRequest{Limit: 500})
	if err != nil {
		h.t.Fatal(err)
	}
	return page.Items
}

func queuedIDs(items []approvalapi.QueueItem) map[string]approvalapi.QueueItem {
	out := map[string]approvalapi.QueueItem{}
	for _, it := range items {
		out[it.CaseID] = it
	}
	return out
}

// fakeHolds is a fake of disbursement's holds for unit-level tests of
// Approve: a set function field answers, an unset one fails the call (and
// the test, through the error it returns). It counts the calls.
type fakeHolds struct {
	placeHold   func(ctx context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error)
	releaseHold func(ctx context.Context, r disbursementapi.ReleaseHoldRequest) (disbursementapi.Hold, error)
	placed      atomic.Int64
	released    atomic.Int64
}

func (f *fakeHolds) PlaceHold(ctx context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
	f.placed.Add(1)
	if f.placeHold == nil {
		return disbursementapi.Hold{}, assist.Errorf(assist.CodeInternal, "fakeHolds: PlaceHold was not expected")
	}
	return f.placeHold(ctx, r)
}

func (f *fakeHolds) ReleaseHold(ctx context.Context, r disbursementapi.ReleaseHoldRequest) (disbursementapi.Hold, error) {
	f.released.Add(1)
	if f.releaseHold == nil {
		return disbursementapi.Hold{}, assist.Errorf(assist.CodeInternal, "fakeHolds: ReleaseHold was not expected")
	}
	return f.releaseHold(ctx, r)
}

// heldAsAsked is a fake PlaceHold that holds what it is asked for, with
// available left on the fund.
func heldAsAsked(available int64) func(context.Context, disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
	return func(_ context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
		return disbursementapi.Hold{ID: r.HoldID, FundID: r.FundID, CaseID: r.CaseID, AmountCents: r.AmountCents,
			Status: disbursementapi.HoldHeld, ExpiresAt: time.Now().Add(time.Hour), AvailableCents: available}, nil
	}
}

// payee1 is the payee the tests' requests name.
const payee1 = "01900000-0000-7000-8000-00000000b001"
