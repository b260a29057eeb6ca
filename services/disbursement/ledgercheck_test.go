package disbursement

import (
	"strconv"
	"strings"
	"testing"

	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// CheckLedger names what an edit of the live ledger in SQL changed: an
// entry whose amount was raised, an entry deleted and an entry the log
// never made, and the balances of the fund they touch, against the ledger
// replayed from the log.
func TestCheckLedgerNamesWhatDiffers(t *testing.T) {
	s := runLedgerSeed(t, sqldbtest.SQLite, 3, 60)
	replayed := s.replay()
	es := allEntries(t, s.ctx, s.db)
	if len(es) < 3 {
		t.Fatalf("seed 3 made %d entries", len(es))
	}
	first, second := es[0], es[1]
	for _, edit := range []struct {
		sql  string
		args []any
	}{
		{`UPDATE disb_ledger_entries SET amount = amount + 1 WHERE seq = $1 AND n = $2`, []any{int64(first.Seq), first.N}},
		{`DELETE FROM disb_ledger_entries WHERE seq = $1 AND n = $2`, []any{int64(second.Seq), second.N}},
		{`INSERT INTO disb_ledger_entries (` + entryCols + `) SELECT seq, n + 7, event_id, event_type, kind, fund_id, case_id,
			hold_id, payout_id, payee_id, provider_ref, debit, credit, amount, at, actor FROM disb_ledger_entries WHERE seq = $1 AND n = $2`,
			[]any{int64(first.Seq), first.N}},
	} {
		if n, err := s.db.Exec(s.ctx, edit.sql, edit.args...); err != nil || n != 1 {
			t.Fatalf("%s: %d rows, %v", edit.sql, n, err)
		}
	}
	c, err := CheckLedger(s.ctx, s.db, replayed, s.msgs[len(s.msgs)-1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if c.OK || c.DifferCount != 3 || len(c.Differ) != 3 {
		t.Fatalf("CheckLedger after three edits: %+v", c)
	}
	for _, want := range []string{"differs: live event " + strconv.FormatUint(first.Seq, 10) + "/0", "missing from the live ledger: event " + strconv.FormatUint(second.Seq, 10) + "/",
		"only in the live ledger: event " + strconv.FormatUint(first.Seq, 10) + "/7"} {
		found := false
		for _, d := range c.Differ {
			found = found || strings.HasPrefix(d, want)
		}
		if !found {
			t.Errorf("no difference begins %q: %q", want, c.Differ)
		}
	}
	for _, f := range c.Funds {
		if f.FundID == first.FundID && f.Equal {
			t.Errorf("fund %s reads equal after its entries were edited: %+v", f.FundID, f)
		}
	}
	t.Logf("%q", c.Differ)
}

// eva audit replay replays into a scratch SQLite database whatever the
// live store is: a ledger kept on PostgreSQL compares equal to its replay
// on SQLite.
func TestReplayLedgerOnSQLiteEqualsALedgerOnPostgres(t *testing.T) {
	s := runLedgerSeed(t, sqldbtest.Postgres, 11, 80)
	scratch := sqldbtest.SQLite(t)
	if err := Migrate(s.ctx, scratch); err != nil {
		t.Fatal(err)
	}
	_, last, err := ReplayLedger(s.ctx, scratch, s.scan)
	if err != nil {
		t.Fatal(err)
	}
	c, err := CheckLedger(s.ctx, s.db, scratch, last)
	if err != nil || !c.OK || c.Entries == 0 {
		t.Fatalf("CheckLedger(postgres, sqlite) = %+v, %v", c, err)
	}
}
