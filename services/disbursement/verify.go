package disbursement

import (
	"context"
	"fmt"
	"sort"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
)

// PayeeRowCheck compares the payees' rows (disb_payees) with their events
// in the log. A payout pays the account its reservation recorded in the
// log, never the row (ADR 24), so a row edited outside the log redirects
// nothing; but an auditor should be told.
type PayeeRowCheck struct {
	OK bool `json:"ok"`
	// Payees counts the payees of the log, Rows the rows.
	Payees int `json:"payees"`
	Rows   int `json:"rows"`
	// Behind counts rows that hold an earlier account of the log than
	// its latest: the ledger consumer has not applied the change yet.
	Behind int `json:"behind"`
	// Differ names each payee whose row is no state the log ever gave it.
	Differ []PayeeRowDiff `json:"differ,omitempty"`
}

// PayeeRowDiff is one payee whose row differs from the log: which field,
// and why. The values are not printed (an account is sensitive).
type PayeeRowDiff struct {
	PayeeID string `json:"payee_id"`
	Field   string `json:"field"`
	Reason  string `json:"reason"`
}

// CheckPayeeRows reads every payee event of the log and every payee row
// of db (disbursement's database) and compares them: each row must hold
// the payee's name and country as created, and an account with the log
// position of the event that set it (the latest, or an earlier one while
// the consumer catches up); each payee of the log must have a row, and
// each row a payee in the log.
//
// Errors: the log's or the database's.
func CheckPayeeRows(ctx context.Context, db sqldb.DB, log *eventlog.Log) (PayeeRowCheck, error) {
	byPayee := map[string][]eventlog.Msg{}
	if _, err := log.Scan(ctx, 0, 0, func(m eventlog.Msg) error {
		if m.Kind == assist.KindPayee {
			byPayee[m.Of] = append(byPayee[m.Of], m)
		}
		return nil
	}); err != nil {
		return PayeeRowCheck{}, fmt.Errorf("payee events: %w", err)
	}
	type row struct {
		name, country, account string
		seq                    uint64
	}
	rows := map[string]row{}
	rs, err := db.Query(ctx, `SELECT id, name, country, account, account_seq FROM disb_payees`)
	if err != nil {
		return PayeeRowCheck{}, fmt.Errorf("payee rows: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var id string
		var r row
		var seq int64
		if err := rs.Scan(&id, &r.name, &r.country, &r.account, &seq); err != nil {
			return PayeeRowCheck{}, fmt.Errorf("payee rows: %w", err)
		}
		r.seq = uint64(max(seq, 0))
		rows[id] = r
	}
	if err := rs.Err(); err != nil {
		return PayeeRowCheck{}, fmt.Errorf("payee rows: %w", err)
	}

	res := PayeeRowCheck{Payees: len(byPayee), Rows: len(rows)}
	differ := func(id, field, format string, args ...any) {
		res.Differ = append(res.Differ, PayeeRowDiff{PayeeID: id, Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	for id, msgs := range byPayee {
		recs, err := eventlog.Decode(msgs)
		if err != nil {
			return PayeeRowCheck{}, fmt.Errorf("payee %s: %w", id, err)
		}
		p := assist.FoldPayee(recs)
		r, ok := rows[id]
		switch {
		case p == nil:
			differ(id, "id", "the log has events of this payee but no PayeeCreated")
			continue
		case !ok:
			differ(id, "id", "the payee is in the log (created at event %d) but has no row", recs[0].Seq)
			continue
		}
		if r.name != p.Name {
			differ(id, "name", "the row's name is not the name the log created the payee with")
		}
		if r.country != p.Country {
			differ(id, "country", "the row's country is not the country the log created the payee with")
		}
		// The account the log gave the payee at each event that set one.
		accounts := map[uint64]string{}
		for i := range recs {
			if q := assist.FoldPayee(recs[:i+1]); q != nil {
				accounts[q.AccountSeq] = q.Account
			}
		}
		switch a, set := accounts[r.seq]; {
		case !set:
			differ(id, "account", "the row says its account was set by event %d, which set no account of this payee (latest: event %d)", r.seq, p.AccountSeq)
		case a != r.account:
			differ(id, "account", "the row's account is not the one event %d set", r.seq)
		case r.seq < p.AccountSeq:
			res.Behind++
		}
	}
	for id := range rows {
		if _, ok := byPayee[id]; !ok {
			differ(id, "id", "the row has no payee in the log")
		}
	}
	sort.Slice(res.Differ, func(i, j int) bool {
		if res.Differ[i].PayeeID != res.Differ[j].PayeeID {
			return res.Differ[i].PayeeID < res.Differ[j].PayeeID
		}
		return res.Differ[i].Field < res.Differ[j].Field
	})
	res.OK = len(res.Differ) == 0
	return res, nil
}
