package sim

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// fakeBank is a fake payment provider, a disbursement.Provider whose books
// the checks read: every payment it made, by idempotency key. It keeps a
// key's first answer, as the contract says, and injects the provider's
// faults: no answer (nothing done), a timeout after the payment was made,
// a declined payment, slow answers (the caller parks again while others
// go on, and the clock may jump past the worker's lease), and settlement
// that takes a while. Its books survive EVA's crashes.
type fakeBank struct {
	w        *world
	payments map[string]*payment
	refs     int
}

type payment struct {
	disbursement.Payment
	ref      string
	status   string
	settleAt time.Time
}

func newFakeBank(w *world) *fakeBank { return &fakeBank{w: w, payments: map[string]*payment{}} }

// Pay implements disbursement.Provider.
func (b *fakeBank) Pay(ctx context.Context, p disbursement.Payment) (disbursement.Receipt, error) {
	yield(ctx, "provider pay")
	if b.w.fault(faultProviderBefore) != 0 {
		return disbursement.Receipt{}, fmt.Errorf("fake bank: no answer: %w", context.DeadlineExceeded)
	}
	pm, ok := b.payments[p.Key]
	if !ok {
		b.refs++
		// A quarter of the payments settle at once (an instant rail): the
		// worker records them sent and settled in one atomic batch.
		settleAfter := time.Duration(b.w.rng.IntN(120)) * time.Second
		if b.w.rng.IntN(4) == 0 {
			settleAfter = 0
		}
		pm = &payment{Payment: p, ref: fmt.Sprintf("BANK-%d", b.refs), status: disbursement.ReceiptSent,
			settleAt: b.w.clock.now().Add(settleAfter)}
		if b.w.fault(faultProviderDecline) != 0 {
			pm.status = disbursement.ReceiptFailed
		}
		b.payments[p.Key] = pm
		b.w.dirty = true
	}
	for b.w.fault(faultProviderSlow) != 0 {
		yield(ctx, "provider pay (slow)")
	}
	if b.w.fault(faultProviderAfter) != 0 {
		return disbursement.Receipt{}, fmt.Errorf("fake bank: paid, answer lost: %w", context.DeadlineExceeded)
	}
	return b.receipt(pm), nil
}

// Status implements disbursement.Provider.
func (b *fakeBank) Status(ctx context.Context, key string) (disbursement.Receipt, error) {
	yield(ctx, "provider status")
	if b.w.fault(faultProviderBefore) != 0 {
		return disbursement.Receipt{}, fmt.Errorf("fake bank: no answer: %w", context.DeadlineExceeded)
	}
	pm, ok := b.payments[key]
	if !ok {
		return disbursement.Receipt{}, disbursement.ErrUnknownPayment
	}
	return b.receipt(pm), nil
}

func (b *fakeBank) receipt(pm *payment) disbursement.Receipt {
	if pm.status == disbursement.ReceiptSent && !b.w.clock.now().Before(pm.settleAt) {
		pm.status = disbursement.ReceiptSettled
	}
	r := disbursement.Receipt{Ref: pm.ref, Status: pm.status}
	if pm.status == disbursement.ReceiptFailed {
		r.Error = "declined by the fake bank"
	}
	return r
}

// paid lists the payments that moved money (sent or settled), by key.
func (b *fakeBank) paid() []*payment {
	var out []*payment
	for _, pm := range b.payments {
		if pm.status != disbursement.ReceiptFailed {
			out = append(out, pm)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// payoutOf is the payout id in a payment key (<payout>-<attempt>).
func payoutOf(key string) string {
	if i := strings.LastIndexByte(key, '-'); i > 0 {
		return key[:i]
	}
	return key
}

// yieldingDB is the database as the services see it: each call outside a
// transaction is a yield point, before it and after it, so that a node can
// crash between any two of its writes (a transaction is all or nothing:
// a crash inside it is a crash before it). Calls inside a transaction do
// not yield, as they hold the embedded driver's one writer.
type yieldingDB struct {
	sqldb.DB
	w *world
}

func (d yieldingDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	yield(ctx, "db exec")
	d.w.dirty = true
	n, err := d.DB.Exec(ctx, q, args...)
	yield(ctx, "db exec done")
	return n, err
}

func (d yieldingDB) Query(ctx context.Context, q string, args ...any) (sqldb.Rows, error) {
	yield(ctx, "db query")
	return d.DB.Query(ctx, q, args...)
}

func (d yieldingDB) QueryRow(ctx context.Context, q string, args ...any) sqldb.Row {
	yield(ctx, "db query")
	return d.DB.QueryRow(ctx, q, args...)
}

func (d yieldingDB) Tx(ctx context.Context, fn func(sqldb.Querier) error) error {
	yield(ctx, "db tx")
	d.w.dirty = true
	err := d.DB.Tx(ctx, fn)
	yield(ctx, "db tx done")
	return err
}

// holdsCall is approval's call to disbursement's hold endpoints, as over
// request/reply: the request may get no answer (nothing done) or its
// answer may be lost after the hold was placed; both reach approval as
// unavailable, as the rpc client reports a timeout.
type holdsCall struct {
	w    *world
	node *node
}

func (h holdsCall) PlaceHold(ctx context.Context, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
	yield(ctx, "rpc place hold")
	if h.w.fault(faultRPCBefore) != 0 {
		return disbursementapi.Hold{}, assist.Errorf(assist.CodeUnavailable, "disbursement did not answer")
	}
	hold, err := h.node.money.PlaceHold(ctx, r)
	yield(ctx, "rpc place hold answer")
	if h.w.fault(faultRPCAfter) != 0 {
		return disbursementapi.Hold{}, assist.Errorf(assist.CodeUnavailable, "disbursement's answer was lost")
	}
	return hold, err
}

func (h holdsCall) ReleaseHold(ctx context.Context, r disbursementapi.ReleaseHoldRequest) (disbursementapi.Hold, error) {
	yield(ctx, "rpc release hold")
	if h.w.fault(faultRPCBefore) != 0 {
		return disbursementapi.Hold{}, assist.Errorf(assist.CodeUnavailable, "disbursement did not answer")
	}
	hold, err := h.node.money.ReleaseHold(ctx, r)
	yield(ctx, "rpc release hold answer")
	return hold, err
}
