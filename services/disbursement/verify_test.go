package disbursement

import (
	"strings"
	"testing"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// CheckPayeeRows passes rows the log built, counts a row still at an
// earlier account of the log as behind, and names the payee of a row
// edited in SQL (its account, its log position, its name), of a row
// deleted and of a row the log never had.
func TestCheckPayeeRowsNamesAnEditedRow(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, newCountingProvider())
		ctx := h.ctx
		if _, err := h.svc.ChangePayeeAccount(ctx, disbursementapi.ChangeAccountRequest{CommandID: newID(), Actor: fin, ID: h.payee.ID,
			Account: "ACC-2", Reason: "new bank"}); err != nil {
			t.Fatal(err)
		}
		var firstSeq, lastSeq int64
		evatest.Await(t, evatest.Patience, "the row at the new account", func() (bool, string) {
			var a string
			if err := db.QueryRow(ctx, `SELECT account, account_seq FROM disb_payees WHERE id = $1`, h.payee.ID).Scan(&a, &lastSeq); err != nil {
				t.Fatal(err)
			}
			return a == "ACC-2", a
		})
		// The command wrote the row; the ledger consumer applies the
		// event too (moving the row forward only): let it be done before
		// the row is edited.
		h.awaitConsumer()
		check := func(want bool, field, says string) PayeeRowCheck {
			t.Helper()
			res, err := CheckPayeeRows(ctx, db, h.log)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != want {
				t.Fatalf("check %+v, want ok %v", res, want)
			}
			if !want {
				if len(res.Differ) != 1 || res.Differ[0].Field != field || !strings.Contains(res.Differ[0].Reason, says) {
					t.Fatalf("check %+v, want payee %s's %s named: %q", res, h.payee.ID, field, says)
				}
				if res.Differ[0].PayeeID != h.payee.ID && field != "id" {
					t.Fatalf("check names %s, want %s", res.Differ[0].PayeeID, h.payee.ID)
				}
			}
			return res
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := db.Exec(ctx, q, args...); err != nil {
				t.Fatal(err)
			}
		}
		if res := check(true, "", ""); res.Payees != 1 || res.Rows != 1 || res.Behind != 0 {
			t.Fatalf("untouched: %+v", res)
		}
		recs, err := h.log.History(ctx, "payee", h.payee.ID)
		if err != nil || len(recs) != 2 {
			t.Fatalf("payee history %v %v", recs, err)
		}
		firstSeq = int64(recs[0].Seq)

		exec(`UPDATE disb_payees SET account = 'EVIL' WHERE id = $1`, h.payee.ID)
		check(false, "account", "is not the one event")
		// Back at the first account, with its position: behind, not bad.
		exec(`UPDATE disb_payees SET account = 'ACC-1', account_seq = $1 WHERE id = $2`, firstSeq, h.payee.ID)
		if res := check(true, "", ""); res.Behind != 1 {
			t.Fatalf("a row at an earlier account: %+v", res)
		}
		// The old account claimed at the new position, or at none.
		exec(`UPDATE disb_payees SET account = 'ACC-1', account_seq = $1 WHERE id = $2`, lastSeq, h.payee.ID)
		check(false, "account", "is not the one event")
		exec(`UPDATE disb_payees SET account = 'ACC-2', account_seq = 0 WHERE id = $1`, h.payee.ID)
		check(false, "account", "set no account of this payee")
		exec(`UPDATE disb_payees SET account = 'ACC-2', account_seq = $1, name = 'Other' WHERE id = $2`, lastSeq, h.payee.ID)
		check(false, "name", "not the name")
		exec(`UPDATE disb_payees SET name = 'Shelter' WHERE id = $1`, h.payee.ID)
		check(true, "", "")

		exec(`DELETE FROM disb_payees WHERE id = $1`, h.payee.ID)
		check(false, "id", "has no row")
		exec(`INSERT INTO disb_payees (id, name, country, account, account_seq, created_by, created_at)
			VALUES ($1, 'Shelter', '', 'ACC-2', $2, 'fin', 0)`, h.payee.ID, lastSeq)
		if res := check(true, "", ""); res.Rows != 1 {
			t.Fatalf("restored: %+v", res)
		}
		ghost := newID()
		exec(`INSERT INTO disb_payees (id, name, country, account, account_seq, created_by, created_at) VALUES ($1, 'Ghost', '', 'G-1', 0, 'x', 0)`, ghost)
		if res := check(false, "id", "no payee in the log"); res.Differ[0].PayeeID != ghost {
			t.Fatalf("ghost row: %+v", res)
		}
	})
}
