package disbursement

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

var updateSteps = flag.Bool("update", false, "rewrite testdata/payout_steps from the ledger's answers")

// What the money path answers and what it costs, in statements (each a
// round trip to PostgreSQL): one payout's lifecycle with PlaceHold's
// answers and the ledger consumer's redeliveries, and then every event
// that moves a payout (FundsReserved, PayoutSent, PayoutFailed,
// PayoutSettled, PayoutRetried, of several attempts) against a payout at
// every stage and attempt it can be at, or none: whether the consumer
// applies it or waits for the event before it (a gap), what the payout,
// its hold, the ledger and the fund are left with, and how many
// statements the consumer's transaction ran (its seen-record included;
// begin and commit not). testdata/payout_steps holds the expected answers,
// the same on both stores, and the counts, SQLite's first and then
// PostgreSQL's where they differ (PlaceHold is one statement there); a
// change shows in its diff, and -update rewrites it from both stores.
func TestPayoutStepsAnswersAndStatements(t *testing.T) {
	golden := filepath.Join("testdata", "payout_steps")
	got := map[string]string{}
	for _, store := range ledgerStores {
		t.Run(store.name, func(t *testing.T) {
			got[store.name] = payoutSteps(t, store.open)
			b, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if want := countsOn(string(b), store.name); got[store.name] != want && !*updateSteps {
				t.Errorf("the money path's answers differ from %s (-update rewrites it):\n%s", golden, lineDiff(want, got[store.name]))
			}
		})
	}
	if *updateSteps {
		both, err := bothCounts(got["sqlite"], got["postgres"])
		if err != nil {
			t.Fatalf("-update: %v", err)
		}
		if err := os.WriteFile(golden, []byte(both), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// onPostgres is a count of statements of testdata/payout_steps that
// differs between the stores: SQLite's, then PostgreSQL's.
var onPostgres = regexp.MustCompile(`(?m)(\d+) statements \((\d+) on postgres\)$`)

// countsOn is testdata/payout_steps as the store's run writes it, with
// the store's counts only.
func countsOn(golden, store string) string {
	keep := "$1"
	if store == "postgres" {
		keep = "$2"
	}
	return onPostgres.ReplaceAllString(golden, keep+" statements")
}

// bothCounts writes the runs of both stores as one: their lines must be
// the same but for a count of statements, which is then written as
// onPostgres matches.
func bothCounts(sqlite, postgres string) (string, error) {
	if sqlite == "" || postgres == "" {
		return "", errors.New("it needs both stores' runs")
	}
	count := regexp.MustCompile(`^(.*) (\d+) statements$`)
	s, p := strings.Split(sqlite, "\n"), strings.Split(postgres, "\n")
	if len(s) != len(p) {
		return "", fmt.Errorf("the stores' runs differ:\n%s", lineDiff(sqlite, postgres))
	}
	for i := range s {
		sm, pm := count.FindStringSubmatch(s[i]), count.FindStringSubmatch(p[i])
		switch {
		case s[i] == p[i]:
		case sm != nil && pm != nil && sm[1] == pm[1]:
			s[i] = fmt.Sprintf("%s %s statements (%s on postgres)", sm[1], sm[2], pm[2])
		default:
			return "", fmt.Errorf("the stores answer differently at line %d:\n sqlite   %s\n postgres %s", i+1, s[i], p[i])
		}
	}
	return strings.Join(s, "\n"), nil
}

// lineDiff lists the lines of want and got that differ, by position.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d\n want %s\n  got %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// payoutSteps runs the histories of TestPayoutStepsAnswersAndStatements
// on a fresh database and writes down what they did.
func payoutSteps(t *testing.T, open func(testing.TB) sqldb.DB) string {
	s, payee := newLedgerSim(t, open, 1)
	counted := &sqldbtest.StatementCounter{DB: s.db}
	store := NewSQLStore(counted)
	f := s.funds[0]
	var out strings.Builder
	// run counts the statements of fn's transactions and writes a line.
	run := func(what string, fn func() (string, error)) {
		t.Helper()
		counted.N = 0
		got, err := fn()
		fmt.Fprintf(&out, "%-44s %-34s %d statements\n", what, or(got, answer(err)), counted.N)
	}
	deliver := func(m eventlog.Msg) func() (string, error) {
		return func() (string, error) {
			_, err := eventlog.Deliver(s.ctx, counted, Consumer(), s.svc.Apply, []eventlog.Msg{m})
			return "", err
		}
	}
	hold := func(holdID, fundID, payeeID string, amount int64) func() (string, error) {
		return func() (string, error) {
			h, err := store.PlaceHold(s.ctx, disbursementapi.PlaceHoldRequest{HoldID: holdID, FundID: fundID, CaseID: newID(),
				PayeeID: payeeID, AmountCents: amount}, s.at.Add(time.Hour), s.at)
			var ae *assist.Error
			switch {
			case err == nil:
				return fmt.Sprintf("%s %d, %d left", h.Status, h.AmountCents, h.AvailableCents), nil
			case errors.As(err, &ae) && ae.AvailableUSDCents != nil:
				return fmt.Sprintf("%s, %d left", ae.Code, *ae.AvailableUSDCents), nil
			case errors.As(err, &ae) && len(ae.Fields) > 0:
				return fmt.Sprintf("%s %s", ae.Code, ae.Fields[0].Field), nil
			}
			return "", err
		}
	}

	out.WriteString("# one payout's lifecycle\n")
	caseID, holdID := newID(), newID()
	run("PlaceHold", hold(holdID, f.id, payee, 100))
	run("PlaceHold again", hold(holdID, f.id, payee, 100))
	run("PlaceHold of an unknown payee", hold(newID(), f.id, newID(), 100))
	run("PlaceHold of an unknown fund", hold(newID(), newID(), payee, 100))
	run("PlaceHold of more than the fund has", hold(newID(), f.id, payee, f.allocated))
	approved := s.record(assist.KindCase, caseID, olu, assist.RequestApproved{AmountCents: 100, FundID: f.id, HoldID: holdID,
		PayeeID: payee, Step: assist.ApprovalOnly})
	run("RequestApproved", deliver(approved))
	run("RequestApproved redelivered", deliver(approved))
	run("RequestApproved again (another event)", deliver(s.record(assist.KindCase, caseID, olu, assist.RequestApproved{
		AmountCents: 100, FundID: f.id, HoldID: holdID, PayeeID: payee, Step: assist.ApprovalOnly})))
	run("RequestApproved of an unknown hold", deliver(s.record(assist.KindCase, newID(), olu, assist.RequestApproved{
		AmountCents: 100, FundID: f.id, HoldID: newID(), PayeeID: payee, Step: assist.ApprovalOnly})))
	var payout string
	if err := s.db.QueryRow(s.ctx, `SELECT id FROM disb_payouts WHERE hold_id = $1`, holdID).Scan(&payout); err != nil {
		t.Fatal(err)
	}
	for _, b := range []assist.Body{
		assist.FundsReserved{HoldID: holdID, FundID: f.id, AmountCents: 100, PayeeID: payee, PayoutID: payout},
		assist.PayoutSent{PayoutID: payout, PayeeID: payee, AmountCents: 100, ProviderRef: "REF-1", Attempt: 1},
		assist.PayoutSettled{PayoutID: payout, ProviderRef: "REF-1"},
	} {
		m := s.record(assist.KindCase, caseID, sysActor, b)
		run(b.Type(), deliver(m))
		run(b.Type()+" again (another event)", deliver(s.record(assist.KindCase, caseID, sysActor, b)))
	}
	fmt.Fprintf(&out, "%s\n", payoutState(t, s, payout, holdID))

	out.WriteString("\n# each payout event against each stage and attempt (or no payout)\n")
	states := []struct {
		stage   string
		attempt int
	}{{"", 0}, {stageReserve, 0}, {stagePay, 1}, {stageSent, 1}, {stageFailed, 1}, {stagePay, 2}, {stageSent, 2},
		{stageFailed, 2}, {stageSettled, 1}, {stageCancelled, 1}}
	type event struct {
		name string
		body func(payout string) assist.Body
	}
	events := []event{
		{"FundsReserved", func(p string) assist.Body { return assist.FundsReserved{PayoutID: p} }},
		{"PayoutSettled", func(p string) assist.Body { return assist.PayoutSettled{PayoutID: p, ProviderRef: "REF-S"} }},
	}
	for a := range 4 {
		events = append(events,
			event{fmt.Sprintf("PayoutSent %d", a), func(p string) assist.Body {
				return assist.PayoutSent{PayoutID: p, ProviderRef: fmt.Sprintf("REF-%d", a), Attempt: a}
			}},
			event{fmt.Sprintf("PayoutFailed %d", a), func(p string) assist.Body {
				return assist.PayoutFailed{PayoutID: p, Error: fmt.Sprintf("declined %d", a), Attempt: a}
			}})
	}
	for a := 2; a <= 3; a++ {
		events = append(events, event{fmt.Sprintf("PayoutRetried %d", a), func(p string) assist.Body {
			return assist.PayoutRetried{PayoutID: p, Attempt: a}
		}})
	}
	for _, st := range states {
		for _, ev := range events {
			caseID, holdID, payout := newID(), newID(), newID()
			before := "no payout"
			if st.stage != "" {
				if _, err := hold(holdID, f.id, payee, 1)(); err != nil {
					t.Fatal(err)
				}
				s.emit(assist.KindCase, caseID, olu, assist.RequestApproved{AmountCents: 1, FundID: f.id, HoldID: holdID, PayeeID: payee,
					Step: assist.ApprovalOnly})
				if err := s.db.QueryRow(s.ctx, `SELECT id FROM disb_payouts WHERE hold_id = $1`, holdID).Scan(&payout); err != nil {
					t.Fatal(err)
				}
				if st.stage != stageReserve {
					s.emit(assist.KindCase, caseID, sysActor, assist.FundsReserved{HoldID: holdID, FundID: f.id, AmountCents: 1,
						PayeeID: payee, PayoutID: payout})
				}
				if _, err := s.db.Exec(s.ctx, `UPDATE disb_payouts SET stage = $1, attempt = $2 WHERE id = $3`,
					st.stage, st.attempt, payout); err != nil {
					t.Fatal(err)
				}
				before = payoutState(t, s, payout, holdID)
			}
			b := ev.body(payout)
			if fr, ok := b.(assist.FundsReserved); ok {
				fr.HoldID, fr.FundID, fr.AmountCents, fr.PayeeID = holdID, f.id, 1, payee
				b = fr
			}
			fundBefore := fundRow(t, s, f.id)
			run(fmt.Sprintf("%s on %s@%d", ev.name, or(st.stage, "none"), st.attempt), deliver(s.record(assist.KindCase, caseID, sysActor, b)))
			fmt.Fprintf(&out, "    before: %s\n    after:  %s\n", before, payoutState(t, s, payout, holdID))
			if fundAfter := fundRow(t, s, f.id); fundAfter != fundBefore {
				fmt.Fprintf(&out, "    fund reserved %+d, paid %+d\n", fundAfter.ReservedCents-fundBefore.ReservedCents,
					fundAfter.PaidCents-fundBefore.PaidCents)
			}
		}
	}
	return out.String()
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// answer names an error by its kind, not its text.
func answer(err error) string {
	var ae *assist.Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, eventlog.ErrGap):
		return "gap"
	case eventlog.IsPoison(err):
		return "poison"
	case errors.As(err, &ae):
		return string(ae.Code)
	}
	return "error: " + err.Error()
}

// payoutState is what a payout's row, its hold's and the ledger's rows of
// them say, without ids and times.
func payoutState(t *testing.T, s *ledgerSim, payout, holdID string) string {
	t.Helper()
	var stage, ref, lastErr, holdStatus string
	var attempt int64
	var cmdIsStep bool
	var cmd string
	err := s.db.QueryRow(s.ctx, `SELECT p.stage, p.attempt, p.provider_ref, p.last_error, p.cmd_id, h.status
		FROM disb_payouts p JOIN disb_holds h ON h.id = p.hold_id WHERE p.id = $1`, payout).
		Scan(&stage, &attempt, &ref, &lastErr, &cmd, &holdStatus)
	if errors.Is(err, sqldb.ErrNoRows) {
		return "no payout"
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{stagePay, stageSent} {
		for a := range 4 {
			cmdIsStep = cmdIsStep || cmd == stepCmdID(payout, st, a)
		}
	}
	cmdOf := "other"
	if cmdIsStep {
		cmdOf = "step"
	}
	var ledger string
	var entries int
	if err := s.db.QueryRow(s.ctx, `SELECT COALESCE((SELECT state FROM disb_ledger_holds WHERE hold_id = $1), 'none'),
		(SELECT count(*) FROM disb_ledger_entries WHERE hold_id = $1)`, holdID).Scan(&ledger, &entries); err != nil {
		t.Fatal(err)
	}
	var ledgerRef string
	if err := s.db.QueryRow(s.ctx, `SELECT COALESCE((SELECT provider_ref FROM disb_ledger_payouts WHERE payout_id = $1), 'none')`,
		payout).Scan(&ledgerRef); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s@%d cmd=%s ref=%q error=%q; hold %s; ledger hold %s, %d entries, payout ref %q",
		stage, attempt, cmdOf, ref, lastErr, holdStatus, ledger, entries, ledgerRef)
}

func fundRow(t *testing.T, s *ledgerSim, id string) disbursementapi.Fund {
	t.Helper()
	f, err := s.svc.store.Fund(s.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
