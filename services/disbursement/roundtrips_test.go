package disbursement

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// heldCase is a case's hold of 100 cents, placed on the ledger's fund
// for its payee.
type heldCase struct{ id, fundID, caseID, payee string }

// tracedHold is a ledger on PostgreSQL whose round trips are counted,
// with one case's hold placed.
func tracedHold(t *testing.T) (*ledgerSim, *sqldbtest.RoundTrips, heldCase) {
	t.Helper()
	var trips *sqldbtest.RoundTrips
	s, payee := newLedgerSim(t, func(tb testing.TB) sqldb.DB {
		db, rt := sqldbtest.TracedPostgres(tb)
		trips = rt
		return db
	}, 1)
	h := heldCase{id: newID(), fundID: s.funds[0].id, caseID: newID(), payee: payee}
	if _, err := s.svc.store.PlaceHold(s.ctx, disbursementapi.PlaceHoldRequest{HoldID: h.id, FundID: h.fundID, CaseID: h.caseID,
		PayeeID: payee, AmountCents: 100}, s.at.Add(time.Hour), s.at); err != nil {
		t.Fatal(err)
	}
	return s, trips, h
}

// The ledger's consumer applies each event of a payout's lifecycle, one
// event a transaction as at low load, in these round trips to
// PostgreSQL: a write whose result it does not read goes with the next
// statement or the COMMIT (sqldb.Defer), a read or a guarded write whose
// answer it needs is a round trip of its own. (Statements are counted,
// on both stores, by TestPayoutStepsAnswersAndStatements.)
func TestLedgerLifecycleRoundTrips(t *testing.T) {
	s, trips, hold := tracedHold(t)
	fundID, caseID, holdID, payee := hold.fundID, hold.caseID, hold.id, hold.payee
	var got []string
	deliver := func(b assist.Body) {
		t.Helper()
		actor := sysActor
		if _, ok := b.(assist.RequestApproved); ok {
			actor = olu
		}
		m := s.record(assist.KindCase, caseID, actor, b)
		got = append(got, trips.Step(b.Type(), func() {
			if failed, err := eventlog.Deliver(s.ctx, s.db, Consumer(), s.svc.Apply, []eventlog.Msg{m}); err != nil {
				t.Fatalf("%s: event %d failed: %v", b.Type(), failed, err)
			}
		}))
	}
	deliver(assist.RequestApproved{AmountCents: 100, FundID: fundID, HoldID: holdID, PayeeID: payee, Step: assist.ApprovalOnly})
	var payout string
	if err := s.db.QueryRow(s.ctx, `SELECT id FROM disb_payouts WHERE hold_id = $1`, holdID).Scan(&payout); err != nil {
		t.Fatal(err)
	}
	deliver(assist.FundsReserved{HoldID: holdID, FundID: fundID, AmountCents: 100, PayeeID: payee, PayoutID: payout})
	deliver(assist.PayoutSent{PayoutID: payout, PayeeID: payee, AmountCents: 100, ProviderRef: "REF-1", Attempt: 1})
	deliver(assist.PayoutSettled{PayoutID: payout, ProviderRef: "REF-1"})
	want := []string{
		// markSeen with the BEGIN; the hold reserved with the ledger's
		// hold and its entry (one statement); the fund's totals with the
		// payout's row and the COMMIT.
		"RequestApproved 3",
		// markSeen; the payout advanced with the ledger's payout record;
		// the COMMIT.
		"FundsReserved 3",
		"PayoutSent 3",
		// markSeen; the ledger's hold paid; the payout settled and its
		// hold paid (one statement), with the journal's entry; the fund's
		// totals with the COMMIT.
		"PayoutSettled 4",
	}
	sqldbtest.SameSteps(t, got, want)
	if st := payoutState(t, s, payout, holdID); !strings.HasPrefix(st, "settled@1") {
		t.Errorf("after the lifecycle: %s", st)
	}
}

// The worker leases its due steps in one round trip to PostgreSQL: the
// lease is one statement, committed on its own rather than in a
// transaction (BEGIN with it, then a COMMIT of its own: two). A claim
// that finds nothing due costs the same.
func TestClaimWorkIsOneRoundTrip(t *testing.T) {
	s, trips, hold := tracedHold(t)
	fundID, caseID, holdID, payee := hold.fundID, hold.caseID, hold.id, hold.payee
	// Before any payout: nothing to claim (and the statement is prepared
	// on the connection, a round trip of its own once).
	if w, err := s.svc.store.ClaimWork(s.ctx, s.at, time.Minute, 4); err != nil || len(w) != 0 {
		t.Fatalf("claim before any payout: %d steps, %v", len(w), err)
	}
	s.emit(assist.KindCase, caseID, olu, assist.RequestApproved{AmountCents: 100, FundID: fundID, HoldID: holdID, PayeeID: payee,
		Step: assist.ApprovalOnly})
	claim := func(at time.Time) (int, int64) {
		t.Helper()
		trips.Reset()
		w, err := s.svc.store.ClaimWork(s.ctx, at, time.Minute, 4)
		if err != nil {
			t.Fatal(err)
		}
		return len(w), trips.N()
	}
	due := time.Now().Add(time.Hour) // the payout is due from its creation, at the service's clock
	if n, rt := claim(due); n != 1 || rt != 1 {
		t.Errorf("claim of the due payout: %d steps in %d round trips, want 1 in 1", n, rt)
	}
	if n, rt := claim(due); n != 0 || rt != 1 {
		t.Errorf("claim again while leased: %d steps in %d round trips, want 0 in 1", n, rt)
	}
	if n, rt := claim(due.Add(2 * time.Minute)); n != 1 || rt != 1 {
		t.Errorf("claim once the lease ran out: %d steps in %d round trips, want 1 in 1", n, rt)
	}
}

// PlaceHold is one round trip to PostgreSQL: the check of a hold placed
// before, of its payee and fund, the fund's guarded update and the hold's
// row are one statement, committed on its own, where a transaction cost
// three (the BEGIN with the check, the hold with the fund's update, the
// COMMIT) and kept the fund's row locked across the last. Only a fund
// with too little reads again, for what it has.
func TestPlaceHoldIsOneRoundTrip(t *testing.T) {
	s, trips, hold := tracedHold(t)
	place := func(r disbursementapi.PlaceHoldRequest) (string, int64) {
		t.Helper()
		trips.Reset()
		h, err := s.svc.store.PlaceHold(s.ctx, r, s.at.Add(time.Hour), s.at)
		if err != nil {
			return string(assist.ErrorCode(err)), trips.N()
		}
		return fmt.Sprintf("%s %d", h.Status, h.AmountCents), trips.N()
	}
	request := func(holdID, fundID, payee string, amount int64) disbursementapi.PlaceHoldRequest {
		return disbursementapi.PlaceHoldRequest{HoldID: holdID, FundID: fundID, CaseID: newID(), PayeeID: payee, AmountCents: amount}
	}
	for _, tc := range []struct {
		what   string
		r      disbursementapi.PlaceHoldRequest
		answer string
		trips  int64
	}{
		{"a hold", request(newID(), hold.fundID, hold.payee, 100), "held 100", 1},
		{"a hold placed before", request(hold.id, hold.fundID, hold.payee, 100), "held 100", 1},
		{"an unknown payee", request(newID(), hold.fundID, newID(), 100), string(assist.CodeInvalid), 1},
		{"an unknown fund", request(newID(), newID(), hold.payee, 100), string(assist.CodeInvalid), 1},
		{"more than the fund has", request(newID(), hold.fundID, hold.payee, s.funds[0].allocated), string(assist.CodeInsufficientFunds), 2},
	} {
		if answer, rt := place(tc.r); answer != tc.answer || rt != tc.trips {
			t.Errorf("%s: %s in %d round trips, want %s in %d", tc.what, answer, rt, tc.answer, tc.trips)
		}
	}
}
