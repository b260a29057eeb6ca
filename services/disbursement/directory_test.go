package disbursement

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"go.uber.org/zap/zaptest"
)

// rows reads the funds' and payees' rows whole, in id order.
func (h *harness) rows() string {
	h.t.Helper()
	var b strings.Builder
	for _, query := range []string{
		`SELECT id || '|' || name || '|' || CAST(allocated AS TEXT) || '|' || CAST(reserved AS TEXT) || '|' || CAST(paid AS TEXT) ||
			'|' || created_by || '|' || CAST(created_at AS TEXT) || '|' || CAST(seq AS TEXT) FROM disb_funds ORDER BY id`,
		`SELECT id || '|' || name || '|' || country || '|' || account || '|' || created_by || '|' || CAST(created_at AS TEXT) ||
			'|' || CAST(account_seq AS TEXT) FROM disb_payees ORDER BY id`,
	} {
		rows, err := h.db.Query(h.ctx, query)
		if err != nil {
			h.t.Fatal(err)
		}
		for rows.Next() {
			var row string
			if err := rows.Scan(&row); err != nil {
				h.t.Fatal(err)
			}
			b.WriteString(row + "\n")
		}
		if err := rows.Err(); err != nil {
			h.t.Fatal(err)
		}
		rows.Close()
	}
	return b.String()
}

// Funds and payees are events with their actor, and every change of a
// payee's account too; their rows are read models: dropped and replayed
// from the log by a new consumer, they come back exactly. A fund and a
// payee stored before they were events (an older installation) are
// recorded in the log when disbursement starts, once.
func TestFundsAndPayeesAreEventsAndTheirRowsReplay(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, newCountingProvider())
		ctx := h.ctx
		// An older installation's rows, without events.
		t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		oldFund, oldPayee := newID(), newID()
		if _, err := db.Exec(ctx, `INSERT INTO disb_funds (id, name, allocated, created_by, created_at) VALUES ($1, 'OLD', 500, 'eva-seed', $2)`,
			oldFund, sqldb.Micros(t0)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO disb_payees (id, name, country, account, created_by, created_at)
			VALUES ($1, 'Old clinic', 'BD', 'OLD-ACC', 'eva-seed', $2)`, oldPayee, sqldb.Micros(t0)); err != nil {
			t.Fatal(err)
		}
		for range 2 { // a restart records nothing again
			if err := h.svc.recordUnlogged(ctx); err != nil {
				t.Fatal(err)
			}
		}
		p, err := h.svc.ChangePayeeAccount(ctx, disbursementapi.ChangeAccountRequest{CommandID: newID(), Actor: fin, ID: h.payee.ID,
			Account: " ACC-2 ", Reason: "the shelter moved banks"})
		if err != nil || p.Account != "ACC-2" {
			t.Fatalf("change account: %+v, %v", p, err)
		}

		history := func(kind assist.Kind, id string) []assist.Recorded {
			t.Helper()
			recs, err := h.log.History(ctx, kind, id)
			if err != nil {
				t.Fatal(err)
			}
			return recs
		}
		describe := func(recs []assist.Recorded) string {
			var out []string
			for _, r := range recs {
				out = append(out, fmt.Sprintf("%s by %s (%s) %q", r.Event.Type(), r.Event.Actor.Username, r.Event.Actor.Role, r.Event.Reason))
			}
			return strings.Join(out, "; ")
		}
		for _, c := range []struct {
			kind assist.Kind
			id   string
			want string
		}{
			{assist.KindFund, h.fund.ID, `FundCreated by fin (finance) ""`},
			{assist.KindPayee, h.payee.ID, `PayeeCreated by fin (finance) ""; PayeeAccountChanged by fin (finance) "the shelter moved banks"`},
			{assist.KindFund, oldFund, `FundCreated by eva (system) "` + upgradeReason("eva-seed") + `"`},
			{assist.KindPayee, oldPayee, `PayeeCreated by eva (system) "` + upgradeReason("eva-seed") + `"`},
		} {
			if got := describe(history(c.kind, c.id)); got != c.want {
				t.Errorf("%s %s: %s, want %s", c.kind, c.id, got, c.want)
			}
		}
		if b := history(assist.KindPayee, h.payee.ID)[1].Event.Body.(assist.PayeeAccountChanged); b != (assist.PayeeAccountChanged{Account: "ACC-2", Previous: "ACC-1"}) {
			t.Errorf("account change %+v", b)
		}

		// Bad changes are refused naming the field, and change nothing.
		before := len(history(assist.KindPayee, h.payee.ID))
		for _, c := range []struct {
			name                string
			actor               assist.Actor
			id, account, reason string
			code                assist.Code
			field               string
		}{
			{"empty account", fin, h.payee.ID, "  ", "r", assist.CodeInvalid, "account"},
			{"control character", fin, h.payee.ID, "ACC\x01", "r", assist.CodeInvalid, "account"},
			{"bidi override", fin, h.payee.ID, "ACC\u202e", "r", assist.CodeInvalid, "account"},
			{"too long", fin, h.payee.ID, strings.Repeat("a", 129), "r", assist.CodeInvalid, "account"},
			{"the same account", fin, h.payee.ID, "ACC-2", "r", assist.CodeInvalid, "account"},
			{"no reason", fin, h.payee.ID, "ACC-3", " ", assist.CodeInvalid, "reason"},
			{"unknown payee", fin, newID(), "ACC-3", "r", assist.CodeNotFound, ""},
			{"not an id", fin, "EVA", "ACC-3", "r", assist.CodeNotFound, ""},
			{"an approver", olu, h.payee.ID, "ACC-3", "r", assist.CodeForbidden, ""},
		} {
			_, err := h.svc.ChangePayeeAccount(ctx, disbursementapi.ChangeAccountRequest{CommandID: newID(), Actor: c.actor, ID: c.id,
				Account: c.account, Reason: c.reason})
			var ae *assist.Error
			if !assist.IsCode(err, c.code) || (c.field != "" && !(errors.As(err, &ae) && slices.ContainsFunc(ae.Fields,
				func(f assist.FieldError) bool { return f.Field == c.field }))) {
				t.Errorf("%s: %v, want %s naming %q", c.name, err, c.code, c.field)
			}
		}
		if n := len(history(assist.KindPayee, h.payee.ID)); n != before {
			t.Errorf("refused changes appended events: %d, were %d", n, before)
		}
		if got, _ := h.svc.Payee(ctx, disbursementapi.GetRequest{ID: h.payee.ID}); got.Account != "ACC-2" {
			t.Errorf("account after refused changes %q", got.Account)
		}

		// Drop the rows; a new consumer replays the log into them.
		want := h.rows()
		for _, s := range []string{`DELETE FROM disb_payees`, `DELETE FROM disb_funds`} {
			if _, err := db.Exec(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		go h.log.Consume(ctx, db, eventlog.ConsumerConfig{Name: "replay", Filters: ledgerSubjects}, h.svc.Apply, zaptest.NewLogger(t))
		evatest.Await(t, evatest.Patience, "the replay", func() (bool, string) {
			got := h.rows()
			return got == want, fmt.Sprintf("rows\n%s\nwant\n%s", got, want)
		})
		if !strings.Contains(want, "|ACC-2|") || !strings.Contains(want, "|OLD-ACC|") {
			t.Fatalf("rows without the accounts:\n%s", want)
		}
	})
}

// A payout pays the account the log recorded for its reservation: an edit
// of the payee's row in SQL (not through the log) changes nothing, and a
// change of the account through the log after the reservation does not
// redirect it either.
func TestPayoutPaysTheLoggedAccountNotTheRow(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		bank := newCountingProvider()
		h := newHarness(t, db, bank)
		ctx := h.ctx
		// Tampered before the reservation: the account comes from the
		// payee's events.
		caseID := h.approved(1_000)
		if _, err := db.Exec(ctx, `UPDATE disb_payees SET account = 'EVIL-1' WHERE id = $1`, h.payee.ID); err != nil {
			t.Fatal(err)
		}
		h.drive(h.svc, caseID, assist.StateDisbursed)
		c, err := h.log.Case(ctx, caseID)
		if err != nil {
			t.Fatal(err)
		}
		if c.PayoutAccount != "ACC-1" {
			t.Fatalf("FundsReserved recorded %q", c.PayoutAccount)
		}
		// Reserved, then the account changes through the log and the
		// row is tampered again: the reserved account is paid.
		second := h.approved(2_000)
		evatest.Await(t, evatest.Patience, "funds reserved", func() (bool, string) {
			c, err := h.log.Case(ctx, second)
			if err != nil {
				t.Fatal(err)
			}
			if c.PayoutID == "" {
				h.svc.RunDue(ctx) // the worker appends FundsReserved, and may pay at once
				return false, "not reserved"
			}
			return true, ""
		})
		if _, err := h.svc.ChangePayeeAccount(ctx, disbursementapi.ChangeAccountRequest{CommandID: newID(), Actor: fin, ID: h.payee.ID,
			Account: "ACC-2", Reason: "new bank"}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(ctx, `UPDATE disb_payees SET account = 'EVIL-2' WHERE id = $1`, h.payee.ID); err != nil {
			t.Fatal(err)
		}
		h.drive(h.svc, second, assist.StateDisbursed)
		bank.mu.Lock()
		defer bank.mu.Unlock()
		var paid []string
		for _, a := range bank.accounts {
			paid = append(paid, a)
		}
		slices.Sort(paid)
		if !slices.Equal(paid, []string{"ACC-1", "ACC-1"}) {
			t.Fatalf("the bank paid %v, want ACC-1 twice", paid)
		}
	})
}

// A change of the payee's account through the log is recorded by the next
// reservation, although the worker read (and holds) the payee as it was
// for an earlier one.
func TestReservationRecordsTheAccountChangedSinceTheLastOne(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, newCountingProvider())
		ctx := h.ctx
		for _, account := range []string{"ACC-1", "ACC-2", "ACC-3"} {
			if account != "ACC-1" {
				if _, err := h.svc.ChangePayeeAccount(ctx, disbursementapi.ChangeAccountRequest{CommandID: newID(), Actor: fin,
					ID: h.payee.ID, Account: account, Reason: "new bank"}); err != nil {
					t.Fatal(err)
				}
			}
			caseID := h.approved(1_000)
			h.drive(h.svc, caseID, assist.StateDisbursed)
			c, err := h.log.Case(ctx, caseID)
			if err != nil {
				t.Fatal(err)
			}
			if c.PayoutAccount != account {
				t.Fatalf("FundsReserved recorded %q, want %q", c.PayoutAccount, account)
			}
		}
	})
}
