package disbursement

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

var ledgerSeeds = flag.Int("ledger.seeds", 40, "seeds of the ledger property test, per store")

// The ledger's properties under random histories (seeded: a failure names
// its seed, and -ledger.seeds runs more): random allocations and changes
// of them, holds with and without their approval recorded, single and
// two-step approvals (the second lower), rejections, payouts sent,
// settled, failed, retried and cancelled, and redeliveries of any event
// (through the consumer's seen-records and, raw, around them). After
// every step every entry balances (sum of debits = sum of credits), each
// fund's row equals its ledger (but for holds not recorded yet), nothing
// is negative, and the ledger equals an independent model of the money;
// at the end, replaying the events from scratch into an empty ledger
// builds the identical ledger. On both stores.
func TestLedgerProperties(t *testing.T) {
	for _, store := range ledgerStores {
		t.Run(store.name, func(t *testing.T) {
			for seed := range uint64(*ledgerSeeds) {
				t.Run(fmt.Sprintf("seed=%d", seed+1), func(t *testing.T) { runLedgerSeed(t, store.open, seed+1, 60) })
			}
		})
	}
}

// FuzzLedger runs the same history generator from fuzzed seeds, on SQLite:
// go test -fuzz FuzzLedger ./services/disbursement.
func FuzzLedger(f *testing.F) {
	for _, s := range []uint64{1, 7, 42, 1391, 90210} {
		f.Add(s, uint8(40))
	}
	f.Fuzz(func(t *testing.T, seed uint64, steps uint8) {
		runLedgerSeed(t, uniqueSQLite, seed, int(steps)%120+1)
	})
}

// uniqueSQLite is sqldbtest.SQLite in a directory of its own whose path
// has no '#': a fuzz input's TempDir is named after "seed#N", and
// sqldb.OpenSQLite puts the path in a file: URI unescaped, where '#' ends
// it (every input would share one file, without its pragmas).
func uniqueSQLite(tb testing.TB) sqldb.DB {
	tb.Helper()
	dir, err := os.MkdirTemp("", "eva-ledger-fuzz-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	db, err := sqldb.OpenSQLite(context.Background(), filepath.Join(dir, "eva.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	return db
}

// ledgerSim is one random history against a real store.
type ledgerSim struct {
	t     testing.TB
	ctx   context.Context
	db    sqldb.DB
	open  func(testing.TB) sqldb.DB
	svc   *Service
	rng   *rand.Rand
	seed  uint64
	msgs  []eventlog.Msg
	at    time.Time
	funds []*simFund
	holds []*simHold
	// The model: what each fund's ledger must hold.
}

type simFund struct {
	id                        string
	allocated, reserved, paid int64
}

type simHold struct {
	id, caseID, payoutID string
	fund                 *simFund
	amount               int64
	// stage: placed (not recorded), first (recorded, awaits its second),
	// reserved (recorded), sent, failed, settled, released.
	stage string
	try   int
}

func runLedgerSeed(t testing.TB, open func(testing.TB) sqldb.DB, seed uint64, steps int) *ledgerSim {
	s, payee := newLedgerSim(t, open, seed)
	for range steps {
		s.step(payee)
		s.check()
	}
	s.replay()
	return s
}

// newLedgerSim is a ledger on a fresh database with one payee and one
// fund, and the payee's id.
func newLedgerSim(t testing.TB, open func(testing.TB) sqldb.DB, seed uint64) (*ledgerSim, string) {
	ctx := context.Background()
	db := open(t)
	if err := sqldb.MigrateAll(ctx, db, eventlog.Migrations, Migrations); err != nil {
		t.Fatal(err)
	}
	s := &ledgerSim{t: t, ctx: ctx, db: db, open: open, rng: rand.New(rand.NewPCG(seed, 0x1ed9e7)), seed: seed,
		at:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(seed) * time.Hour),
		svc: New(Deps{Config: Config{HoldTTL: time.Hour}, DB: db, Logger: zap.NewNop()})}
	payee := newID()
	if err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		return s.svc.store.PutPayee(ctx, q, assist.Payee{ID: payee, Name: "payee " + payee, Account: "ACC", AccountSeq: 1, CreatedAt: s.at})
	}); err != nil {
		t.Fatal(err)
	}
	s.createFund()
	return s, payee
}

func (s *ledgerSim) fail(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("seed %d: %s", s.seed, fmt.Sprintf(format, args...))
}

// emit appends an event to the simulated log and delivers it to the
// consumer's handler, as the consumer would.
func (s *ledgerSim) emit(kind assist.Kind, of string, actor assist.Actor, body assist.Body) {
	s.t.Helper()
	s.deliver(s.record(kind, of, actor, body))
}

// record appends an event to the simulated log without delivering it.
func (s *ledgerSim) record(kind assist.Kind, of string, actor assist.Actor, body assist.Body) eventlog.Msg {
	s.t.Helper()
	s.at = s.at.Add(time.Duration(1+s.rng.IntN(90)) * time.Second)
	id := newID()
	e := assist.Event{ID: id, CaseID: of, At: s.at, Actor: actor, CommandID: id, Body: body}
	data, err := eventcodec.Encode(e)
	if err != nil {
		s.fail("encode: %v", err)
	}
	m := eventlog.Msg{Seq: uint64(len(s.msgs) + 1), Subject: eventlog.SubjectOf(kind, of, body.Type()), Kind: kind, Of: of,
		Type: body.Type(), ID: id, Time: s.at, Data: data}
	if kind == assist.KindCase {
		m.CaseID = of
	}
	s.msgs = append(s.msgs, m)
	return m
}

func (s *ledgerSim) deliver(m eventlog.Msg) {
	s.t.Helper()
	if _, err := eventlog.Deliver(s.ctx, s.db, Consumer(), s.svc.Apply, []eventlog.Msg{m}); err != nil {
		s.fail("deliver %d %s: %v", m.Seq, m.Type, err)
	}
}

func (s *ledgerSim) createFund() {
	f := &simFund{id: newID(), allocated: int64(1_000 + s.rng.IntN(50_000))}
	s.funds = append(s.funds, f)
	s.emit(assist.KindFund, f.id, fin, assist.FundCreated{Name: "fund " + f.id, AllocatedCents: f.allocated})
}

func (s *ledgerSim) available(f *simFund) int64 {
	var unrecorded int64
	for _, h := range s.holds {
		if h.fund == f && h.stage == "placed" {
			unrecorded += h.amount
		}
	}
	return f.allocated - f.reserved - f.paid - unrecorded
}

func (s *ledgerSim) pick(stages ...string) *simHold {
	var hs []*simHold
	for _, h := range s.holds {
		for _, st := range stages {
			if h.stage == st {
				hs = append(hs, h)
			}
		}
	}
	if len(hs) == 0 {
		return nil
	}
	return hs[s.rng.IntN(len(hs))]
}

func (s *ledgerSim) step(payee string) {
	s.t.Helper()
	f := s.funds[s.rng.IntN(len(s.funds))]
	system := assist.Actor{Username: "eva", Role: assist.RoleSystem}
	switch op := s.rng.IntN(15); op {
	case 0:
		s.createFund()
	case 1: // raise or cut the allocation
		if s.rng.IntN(2) == 0 {
			by := int64(1 + s.rng.IntN(20_000))
			s.emit(assist.KindFund, f.id, fin, assist.FundAllocationChanged{AllocatedCents: f.allocated + by, PreviousCents: f.allocated})
			f.allocated += by
			return
		}
		cut := int64(1 + s.rng.IntN(int(f.allocated)))
		hold := newID()
		_, err := s.svc.store.PlaceCut(s.ctx, f.id, hold, cut, s.at.Add(time.Hour), s.at)
		if cut > s.available(f) || cut >= f.allocated {
			if cut < f.allocated && !assist.IsCode(err, assist.CodeInsufficientFunds) {
				s.fail("a cut of %d with %d available: %v, want insufficient funds", cut, s.available(f), err)
			}
			if err == nil { // the whole allocation: give it back
				if err := s.db.Tx(s.ctx, func(q sqldb.Querier) error { return s.svc.store.ReleaseHold(s.ctx, q, hold, s.at) }); err != nil {
					s.fail("release cut: %v", err)
				}
			}
			return
		}
		if err != nil {
			s.fail("a cut of %d with %d available: %v", cut, s.available(f), err)
		}
		s.emit(assist.KindFund, f.id, fin, assist.FundAllocationChanged{AllocatedCents: f.allocated - cut, PreviousCents: f.allocated, HoldID: hold})
		f.allocated -= cut
	case 2, 3: // an approver holds money for an approval
		amount := int64(1 + s.rng.IntN(8_000))
		h := &simHold{id: newID(), caseID: newID(), fund: f, amount: amount, stage: "placed"}
		_, err := s.svc.store.PlaceHold(s.ctx, disbursementapi.PlaceHoldRequest{HoldID: h.id, FundID: f.id, CaseID: h.caseID,
			PayeeID: payee, AmountCents: amount}, s.at.Add(time.Hour), s.at)
		if amount > s.available(f) {
			if !assist.IsCode(err, assist.CodeInsufficientFunds) {
				s.fail("a hold of %d with %d available: %v", amount, s.available(f), err)
			}
			return
		}
		if err != nil {
			s.fail("hold: %v", err)
		}
		s.holds = append(s.holds, h)
	case 4, 5: // the approval is recorded: single or first of two
		h := s.pick("placed")
		if h == nil {
			return
		}
		step := assist.ApprovalOnly
		h.stage = "reserved"
		if s.rng.IntN(3) == 0 {
			step, h.stage = assist.ApprovalFirst, "first"
		}
		h.fund.reserved += h.amount
		s.emit(assist.KindCase, h.caseID, olu, assist.RequestApproved{AmountCents: h.amount, FundID: h.fund.id, HoldID: h.id,
			PayeeID: payee, Step: step})
	case 6: // the second approval, at the same amount or lower; or a rejection
		h := s.pick("first")
		if h == nil {
			return
		}
		if s.rng.IntN(3) == 0 {
			s.emit(assist.KindCase, h.caseID, olu, assist.RequestRejected{HoldID: h.id})
			s.emit(assist.KindCase, h.caseID, system, assist.FundsReleased{HoldID: h.id, FundID: h.fund.id, AmountCents: h.amount,
				Cause: assist.ReleaseNotApproved})
			h.fund.reserved -= h.amount
			h.stage = "released"
			return
		}
		lower := h.amount - int64(s.rng.IntN(int(h.amount)))
		s.emit(assist.KindCase, h.caseID, assist.Actor{Username: "mei", Role: assist.RoleApprover}, assist.RequestApproved{
			AmountCents: lower, FundID: h.fund.id, HoldID: h.id, PayeeID: payee, Step: assist.ApprovalSecond})
		h.fund.reserved -= h.amount - lower
		h.amount, h.stage = lower, "reserved"
	case 7: // an unrecorded hold expires
		h := s.pick("placed")
		if h == nil {
			return
		}
		s.emit(assist.KindCase, h.caseID, system, assist.FundsReleased{HoldID: h.id, FundID: h.fund.id, AmountCents: h.amount,
			Cause: assist.ReleaseHoldExpired})
		h.stage = "released"
	case 8: // the worker reserves and pays
		h := s.pick("reserved")
		if h == nil {
			return
		}
		if err := s.db.QueryRow(s.ctx, `SELECT id FROM disb_payouts WHERE hold_id = $1`, h.id).Scan(&h.payoutID); err != nil {
			s.fail("payout of hold %s: %v", h.id, err)
		}
		s.emit(assist.KindCase, h.caseID, system, assist.FundsReserved{HoldID: h.id, FundID: h.fund.id, AmountCents: h.amount,
			PayeeID: payee, PayoutID: h.payoutID})
		h.try = 1
		s.emit(assist.KindCase, h.caseID, system, assist.PayoutSent{PayoutID: h.payoutID, PayeeID: payee, AmountCents: h.amount,
			ProviderRef: fmt.Sprintf("REF-%s-%d", h.payoutID, h.try), Attempt: h.try})
		h.stage = "sent"
	case 9: // settled, or failed
		h := s.pick("sent")
		if h == nil {
			return
		}
		if s.rng.IntN(4) == 0 {
			s.emit(assist.KindCase, h.caseID, system, assist.PayoutFailed{PayoutID: h.payoutID, Error: "declined", Attempt: h.try})
			h.stage = "failed"
			return
		}
		s.emit(assist.KindCase, h.caseID, system, assist.PayoutSettled{PayoutID: h.payoutID, ProviderRef: fmt.Sprintf("REF-%s-%d", h.payoutID, h.try)})
		h.fund.reserved -= h.amount
		h.fund.paid += h.amount
		h.stage = "settled"
	case 10: // finance retries or cancels a failed payout
		h := s.pick("failed")
		if h == nil {
			return
		}
		if s.rng.IntN(2) == 0 {
			h.try++
			s.emit(assist.KindCase, h.caseID, fin, assist.PayoutRetried{PayoutID: h.payoutID, Attempt: h.try})
			s.emit(assist.KindCase, h.caseID, system, assist.PayoutSent{PayoutID: h.payoutID, PayeeID: payee, AmountCents: h.amount,
				ProviderRef: fmt.Sprintf("REF-%s-%d", h.payoutID, h.try), Attempt: h.try})
			h.stage = "sent"
			return
		}
		s.emit(assist.KindCase, h.caseID, fin, assist.FundsReleased{HoldID: h.id, FundID: h.fund.id, AmountCents: h.amount,
			Cause: assist.ReleasePayoutCancelled})
		h.fund.reserved -= h.amount
		h.stage = "released"
	default: // redeliveries: through the seen-records, and raw
		if len(s.msgs) == 0 {
			return
		}
		m := s.msgs[s.rng.IntN(len(s.msgs))]
		s.deliver(m)
		e, err := eventcodec.Decode(m.Type, m.Data)
		if err != nil {
			s.fail("decode: %v", err)
		}
		if err := s.db.Tx(s.ctx, func(q sqldb.Querier) error {
			if err := s.svc.store.ApplyAllocation(s.ctx, q, m.Seq, e); err != nil {
				return err
			}
			return s.svc.store.Journal(s.ctx, q, m.Seq, e)
		}); err != nil {
			s.fail("journal %d %s again: %v", m.Seq, m.Type, err)
		}
	}
}

// allEntries reads every entry of the ledger in log order.
func allEntries(t testing.TB, ctx context.Context, db sqldb.DB) []disbursementapi.LedgerEntry {
	rows, err := db.Query(ctx, `SELECT `+entryCols+` FROM disb_ledger_entries ORDER BY seq, n`)
	if err != nil {
		t.Fatal(err)
	}
	es, err := collect(rows, scanEntry)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func (s *ledgerSim) check() {
	s.t.Helper()
	es := allEntries(s.t, s.ctx, s.db)
	var debits, credits int64
	bal := map[string]disbursementapi.Balances{}
	for _, e := range es {
		if e.AmountCents <= 0 || e.Debit == e.Credit || e.Debit == "" || e.Credit == "" {
			s.fail("entry %+v does not balance", e)
		}
		debits += e.AmountCents
		credits += e.AmountCents
		bal[e.FundID] = bal[e.FundID].Apply(e)
		if b := bal[e.FundID]; b.AvailableCents < 0 || b.ReservedCents < 0 || b.PaidCents < 0 || b.AllocatedCents <= 0 {
			s.fail("after entry %d (%s) fund %s has %+v", e.Seq, e.EventType, e.FundID, b)
		}
		if sum := bal[e.FundID]; sum.AvailableCents+sum.ReservedCents+sum.PaidCents != sum.AllocatedCents {
			s.fail("after entry %d fund %s: available+reserved+paid != allocated: %+v", e.Seq, e.FundID, sum)
		}
	}
	if debits != credits {
		s.fail("debits %d != credits %d", debits, credits)
	}
	for _, f := range s.funds {
		l, err := s.svc.store.Ledger(s.ctx, disbursementapi.LedgerRequest{ID: f.id, Limit: 1})
		if err != nil {
			s.fail("ledger of %s: %v", f.id, err)
		}
		want := disbursementapi.Balances{AllocatedCents: f.allocated, ReservedCents: f.reserved, PaidCents: f.paid,
			AvailableCents: f.allocated - f.reserved - f.paid}
		if l.Balances != want || bal[f.id] != want {
			s.fail("fund %s: ledger %+v (summed %+v), the model %+v", f.id, l.Balances, bal[f.id], want)
		}
		row := l.Fund
		if row.AllocatedCents != want.AllocatedCents || row.PaidCents != want.PaidCents ||
			row.ReservedCents != want.ReservedCents+l.UnrecordedHoldsCents || row.AvailableCents != want.AvailableCents-l.UnrecordedHoldsCents ||
			row.AvailableCents < 0 {
			s.fail("fund %s: row %+v, ledger %+v with %d unrecorded", f.id, row, l.Balances, l.UnrecordedHoldsCents)
		}
		if unrecorded := f.allocated - f.reserved - f.paid - s.available(f); l.UnrecordedHoldsCents != unrecorded {
			s.fail("fund %s: %d unrecorded, the model %d", f.id, l.UnrecordedHoldsCents, unrecorded)
		}
	}
}

// replay builds the ledger again from the events alone, on an empty
// database of the same kind (ReplayLedger, as eva audit replay does),
// compares it entry for entry, and checks that CheckLedger finds the two
// equal, fund by fund. It returns the replayed database.
func (s *ledgerSim) replay() sqldb.DB {
	s.t.Helper()
	fresh := s.open(s.t)
	if err := Migrate(s.ctx, fresh); err != nil {
		s.t.Fatal(err)
	}
	events, last, err := ReplayLedger(s.ctx, fresh, s.scan)
	if err != nil || events != len(s.msgs) {
		s.fail("replay: %d of %d events: %v", events, len(s.msgs), err)
	}
	got, want := allEntries(s.t, s.ctx, fresh), allEntries(s.t, s.ctx, s.db)
	if len(want) == 0 || !reflect.DeepEqual(got, want) {
		s.fail("replayed ledger differs:\n got %d entries %+v\nwant %d entries %+v", len(got), got, len(want), want)
	}
	c, err := CheckLedger(s.ctx, s.db, fresh, last)
	if err != nil || !c.OK || c.Entries != len(want) || c.LiveEntries != len(want) || len(c.Funds) != len(s.funds) {
		s.fail("CheckLedger of equal ledgers (%d entries, %d funds): %+v, %v", len(want), len(s.funds), c, err)
	}
	for _, f := range c.Funds {
		if !f.Equal || f.Live.AllocatedCents <= 0 {
			s.fail("CheckLedger: fund %+v", f)
		}
	}
	return fresh
}

// scan hands the simulated log's events to f in order, as Log.Scan does.
func (s *ledgerSim) scan(f func(eventlog.Msg) error) (uint64, error) {
	var last uint64
	for _, m := range s.msgs {
		if err := f(m); err != nil {
			return last, err
		}
		last = m.Seq
	}
	return last, nil
}

// A payout's retry that reaches the ledger before the failure it retries
// waits for it (ErrGap). Applied first, it found no failed row and was
// lost; the failure then left the row failed at the old attempt for good
// while the case went on with the new one, and finance could not retry
// it again ("only a failed payout can be retried"). The events of a case
// can arrive out of order when a batch's earlier event fails.
func TestRetryBeforeItsFailureWaitsForIt(t *testing.T) {
	for _, store := range ledgerStores {
		t.Run(store.name, func(t *testing.T) {
			s, payee := newLedgerSim(t, store.open, 1)
			caseID, payout := s.reservedPayout(payee, 500)
			s.emit(assist.KindCase, caseID, sysActor, assist.PayoutSent{PayoutID: payout, PayeeID: payee, AmountCents: 500, ProviderRef: "REF-1", Attempt: 1})
			failed := s.record(assist.KindCase, caseID, sysActor, assist.PayoutFailed{PayoutID: payout, Error: "declined", Attempt: 1})
			retried := s.record(assist.KindCase, caseID, fin, assist.PayoutRetried{PayoutID: payout, Attempt: 2})
			if _, err := eventlog.Deliver(s.ctx, s.db, Consumer(), s.svc.Apply, []eventlog.Msg{retried}); !errors.Is(err, eventlog.ErrGap) {
				t.Fatalf("the retry before its failure: %v, want a gap", err)
			}
			s.deliver(failed)
			s.deliver(retried)
			stage, attempt, _, err := s.svc.store.PayoutStage(s.ctx, s.db, payout)
			if err != nil || stage != stagePay || attempt != 2 {
				t.Fatalf("payout after its failure and retry: stage %q attempt %d (%v), want %q attempt 2", stage, attempt, err, stagePay)
			}
		})
	}
}

// A failure of an attempt that reaches the ledger after the payout moved
// on to the next attempt changes nothing: two workers that both paid
// attempt 1 can each record its failure, and the second, applied after
// finance's retry, moved attempt 2's row to failed while the case waited
// on attempt 2, which finance could then not retry (the money-path
// simulator, seed 3261 at 500 steps).
func TestFailureOfAnEarlierAttemptMovesNothing(t *testing.T) {
	for _, store := range ledgerStores {
		t.Run(store.name, func(t *testing.T) {
			s, payee := newLedgerSim(t, store.open, 1)
			caseID, payout := s.reservedPayout(payee, 500)
			s.emit(assist.KindCase, caseID, sysActor, assist.PayoutFailed{PayoutID: payout, Error: "declined", Attempt: 1})
			s.emit(assist.KindCase, caseID, fin, assist.PayoutRetried{PayoutID: payout, Attempt: 2})
			s.emit(assist.KindCase, caseID, sysActor, assist.PayoutFailed{PayoutID: payout, Error: "declined again", Attempt: 1})
			s.emit(assist.KindCase, caseID, sysActor, assist.PayoutSent{PayoutID: payout, PayeeID: payee, AmountCents: 500, ProviderRef: "REF-1", Attempt: 1})
			stage, attempt, _, err := s.svc.store.PayoutStage(s.ctx, s.db, payout)
			if err != nil || stage != stagePay || attempt != 2 {
				t.Fatalf("payout after attempt 1's late failure and sending: stage %q attempt %d (%v), want %q attempt 2", stage, attempt, err, stagePay)
			}
		})
	}
}

// ledgerStores are the stores the ledger's tests run on.
var ledgerStores = []struct {
	name string
	open func(testing.TB) sqldb.DB
}{{"sqlite", sqldbtest.SQLite}, {"postgres", sqldbtest.Postgres}}

// reservedPayout places a hold of amount on the first fund for a new
// case, records its approval and its reservation, and returns the case
// and its payout.
func (s *ledgerSim) reservedPayout(payee string, amount int64) (caseID, payout string) {
	s.t.Helper()
	f, hold := s.funds[0], newID()
	caseID = newID()
	if _, err := s.svc.store.PlaceHold(s.ctx, disbursementapi.PlaceHoldRequest{HoldID: hold, FundID: f.id, CaseID: caseID,
		PayeeID: payee, AmountCents: amount}, s.at.Add(time.Hour), s.at); err != nil {
		s.fail("hold: %v", err)
	}
	s.emit(assist.KindCase, caseID, olu, assist.RequestApproved{AmountCents: amount, FundID: f.id, HoldID: hold, PayeeID: payee,
		Step: assist.ApprovalOnly})
	if err := s.db.QueryRow(s.ctx, `SELECT id FROM disb_payouts WHERE hold_id = $1`, hold).Scan(&payout); err != nil {
		s.fail("payout of hold %s: %v", hold, err)
	}
	s.emit(assist.KindCase, caseID, sysActor, assist.FundsReserved{HoldID: hold, FundID: f.id, AmountCents: amount, PayeeID: payee, PayoutID: payout})
	return caseID, payout
}

// sysActor is EVA itself, as the worker and the sweeper act.
var sysActor = assist.Actor{Username: "eva", Role: assist.RoleSystem}
