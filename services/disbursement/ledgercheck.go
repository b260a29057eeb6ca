package disbursement

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// ReplayLedger builds the double-entry ledger from the events scan
// hands it, in log order, into db: an empty database migrated with
// Migrate (never the live one). The ledger reads nothing but its own
// tables and the events (journal.go), so this is the ledger the log
// makes, whatever the live one holds. It is written in one transaction.
// It returns how many events it read and the last one's position.
//
// Errors: those of scan and of db; an event that does not decode,
// naming its position.
func ReplayLedger(ctx context.Context, db sqldb.DB, scan func(func(eventlog.Msg) error) (uint64, error)) (events int, last uint64, err error) {
	st := NewSQLStore(db)
	err = db.Tx(ctx, func(q sqldb.Querier) error {
		events = 0
		last, err = scan(func(m eventlog.Msg) error {
			events++
			if !journaled[m.Type] {
				return nil
			}
			e, err := eventcodec.Decode(m.Type, m.Data)
			if err != nil {
				return fmt.Errorf("ledger replay: event %d (%s) does not decode: %w", m.Seq, m.Type, err)
			}
			return st.Journal(ctx, q, m.Seq, e)
		})
		return err
	})
	return events, last, err
}

// LedgerCheck compares the live ledger with one replayed from the log,
// both up to log position Last.
type LedgerCheck struct {
	// OK: the same entries, hence the same balances of every fund.
	OK   bool   `json:"ok"`
	Last uint64 `json:"last"`
	// Entries and LiveEntries count the entries of either ledger.
	Entries     int         `json:"entries"`
	LiveEntries int         `json:"live_entries"`
	Funds       []FundCheck `json:"funds"`
	// Differ are the first entries that differ (at most MaxDiffer), and
	// DifferCount how many do.
	Differ      []string `json:"differ,omitempty"`
	DifferCount int      `json:"differ_count"`
}

// FundCheck is one fund's balances in the live ledger and in the
// replayed one.
type FundCheck struct {
	FundID string                   `json:"fund_id"`
	Live   disbursementapi.Balances `json:"live"`
	Log    disbursementapi.Balances `json:"log"`
	Equal  bool                     `json:"equal"`
}

// MaxDiffer bounds the differing entries a LedgerCheck names.
const MaxDiffer = 10

// CheckLedger compares the entries of the live ledger and of the replayed
// one up to log position last, entry by entry, and every fund's balances.
// Entries the live ledger has beyond last (applied since the replay read
// the log) are left out; a live ledger still behind last differs.
//
// Errors: those of either database.
func CheckLedger(ctx context.Context, live, replayed sqldb.DB, last uint64) (LedgerCheck, error) {
	have, err := entriesUpTo(ctx, live, last)
	if err != nil {
		return LedgerCheck{}, fmt.Errorf("the live ledger: %w", err)
	}
	want, err := entriesUpTo(ctx, replayed, last)
	if err != nil {
		return LedgerCheck{}, fmt.Errorf("the replayed ledger: %w", err)
	}
	c := LedgerCheck{Last: last, Entries: len(want), LiveEntries: len(have), Funds: []FundCheck{}}
	c.compareEntries(have, want)
	liveB, logB := balancesOf(have), balancesOf(want)
	funds := make([]string, 0, len(logB))
	for f := range logB {
		funds = append(funds, f)
	}
	for f := range liveB {
		if _, ok := logB[f]; !ok {
			funds = append(funds, f)
		}
	}
	slices.Sort(funds)
	for _, f := range funds {
		c.Funds = append(c.Funds, FundCheck{FundID: f, Live: liveB[f], Log: logB[f], Equal: liveB[f] == logB[f]})
	}
	c.OK = c.DifferCount == 0
	return c, nil
}

// compareEntries walks both ledgers in (seq, n) order and notes each
// entry that is in one only, or differs.
func (c *LedgerCheck) compareEntries(live, log []disbursementapi.LedgerEntry) {
	note := func(s string) {
		c.DifferCount++
		if len(c.Differ) < MaxDiffer {
			c.Differ = append(c.Differ, s)
		}
	}
	i, j := 0, 0
	for i < len(live) || j < len(log) {
		switch {
		case j == len(log) || (i < len(live) && entryBefore(live[i], log[j])):
			note("only in the live ledger: " + describeEntry(live[i]))
			i++
		case i == len(live) || entryBefore(log[j], live[i]):
			note("missing from the live ledger: " + describeEntry(log[j]))
			j++
		default:
			if !sameEntry(live[i], log[j]) {
				note("differs: live " + describeEntry(live[i]) + "; the log makes " + describeEntry(log[j]))
			}
			i++
			j++
		}
	}
}

func entryBefore(a, b disbursementapi.LedgerEntry) bool {
	return a.Seq < b.Seq || (a.Seq == b.Seq && a.N < b.N)
}

func sameEntry(a, b disbursementapi.LedgerEntry) bool {
	if !a.At.Equal(b.At) {
		return false
	}
	a.At, b.At = time.Time{}, time.Time{}
	return a == b
}

func describeEntry(e disbursementapi.LedgerEntry) string {
	var b strings.Builder
	account := func(a string) string {
		return strings.TrimPrefix(strings.TrimPrefix(a, "fund:"+e.FundID+":"), "allocation:"+e.FundID)
	}
	fmt.Fprintf(&b, "event %d/%d %s: %s %s %s → %s", e.Seq, e.N, e.EventType, e.Kind, assist.FormatUSD(e.AmountCents),
		cmp.Or(account(e.Credit), "allocation"), cmp.Or(account(e.Debit), "allocation"))
	for _, f := range [][2]string{{"fund", e.FundID}, {"hold", e.HoldID}, {"payout", e.PayoutID}, {"payee", e.PayeeID}, {"ref", e.ProviderRef}} {
		if f[1] != "" {
			fmt.Fprintf(&b, " %s %s", f[0], f[1])
		}
	}
	return b.String()
}

// balancesOf sums entries into each fund's balances.
func balancesOf(entries []disbursementapi.LedgerEntry) map[string]disbursementapi.Balances {
	out := map[string]disbursementapi.Balances{}
	for _, e := range entries {
		out[e.FundID] = out[e.FundID].Apply(e)
	}
	return out
}

func entriesUpTo(ctx context.Context, db sqldb.DB, last uint64) ([]disbursementapi.LedgerEntry, error) {
	rows, err := db.Query(ctx, `SELECT `+entryCols+` FROM disb_ledger_entries WHERE seq <= $1 ORDER BY seq, n`,
		int64(min(last, uint64(1)<<62)))
	if err != nil {
		return nil, err
	}
	return collect(rows, scanEntry)
}
