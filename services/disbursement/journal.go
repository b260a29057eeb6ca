package disbursement

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/listing"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

// The double-entry ledger (ADR 29) is a read model of the log, written by
// Journal in the ledger consumer's transaction, beside the consumer's
// record of the event: a redelivered event writes nothing twice (and each
// entry is keyed by the log position of its event besides). It is built
// from the events alone — never from the holds' or payouts' rows, which
// commands also write — so replaying the log from scratch builds the same
// ledger. The posting rules:
//
//	FundCreated            allocate  Dr fund:F:available  Cr allocation:F   the allocation
//	FundAllocationChanged  allocate  the same, or reversed for a cut        the difference
//	RequestApproved        hold      Dr fund:F:reserved   Cr fund:F:available  the amount
//	  (second approval)    void      Dr fund:F:available  Cr fund:F:reserved   what it lowered
//	PayoutSettled          post      Dr fund:F:paid       Cr fund:F:reserved   the hold's amount
//	FundsReleased          void      Dr fund:F:available  Cr fund:F:reserved   the hold's amount
//
// FundsReserved and PayoutSent move no money: they tell the ledger which
// hold a payout pays and what the provider calls it. A payout that failed
// stays reserved until finance retries it or cancels it (FundsReleased).

// journaled are the event types Journal reads; the others write nothing
// and need not be decoded to know it (ReplayLedger skips them).
// TestLedgerProperties replays with this filter a history of every type
// Journal reads and compares the result with the live ledger, which is
// written unfiltered.
var journaled = map[string]bool{
	"FundCreated": true, "FundAllocationChanged": true, "RequestApproved": true, "FundsReserved": true,
	"PayoutSent": true, "PayoutSettled": true, "FundsReleased": true,
}

// Ledger hold states.
const (
	ledgerHeld   = "held"
	ledgerPaid   = "paid"
	ledgerVoided = "voided"
)

// journalEvent is what an entry needs of the event that caused it.
type journalEvent struct {
	seq   uint64
	e     assist.Event
	caseI string // the case's id, empty for an event of a fund
}

func (j journalEvent) entry(kind, fund, debit, credit string, amount int64) disbursementapi.LedgerEntry {
	return disbursementapi.LedgerEntry{Seq: j.seq, EventID: j.e.ID, EventType: j.e.Type(), Kind: kind, FundID: fund,
		CaseID: j.caseI, Debit: debit, Credit: credit, AmountCents: amount, At: j.e.At, Actor: j.e.Actor.Username}
}

// Journal writes the ledger entries of the event at log position seq, in
// the consumer's transaction q. Applied again, it writes nothing.
func (s *SQLStore) Journal(ctx context.Context, q sqldb.Querier, seq uint64, e assist.Event) error {
	j := journalEvent{seq: seq, e: e}
	if e.Kind() == assist.KindCase {
		j.caseI = e.CaseID
	}
	switch b := e.Body.(type) {
	case assist.FundCreated:
		return deferEntry(ctx, q, j.entry(disbursementapi.EntryAllocate, e.CaseID,
			disbursementapi.AccountAvailable(e.CaseID), disbursementapi.AccountAllocation(e.CaseID), b.AllocatedCents))
	case assist.FundAllocationChanged:
		return deferEntry(ctx, q, allocationEntry(j, b))
	case assist.RequestApproved:
		return journalApproval(ctx, q, s.db.Dialect() == sqldb.Postgres, j, b)
	case assist.FundsReserved:
		return sqldb.Defer(ctx, q, `INSERT INTO disb_ledger_payouts (payout_id, hold_id, payee_id) VALUES ($1, $2, $3)
			ON CONFLICT (payout_id) DO NOTHING`, b.PayoutID, b.HoldID, b.PayeeID)
	case assist.PayoutSent:
		return sqldb.Defer(ctx, q, `UPDATE disb_ledger_payouts SET provider_ref = $1,
				payee_id = CASE WHEN payee_id = '' THEN $2 ELSE payee_id END WHERE payout_id = $3`,
			b.ProviderRef, b.PayeeID, b.PayoutID)
	case assist.PayoutSettled:
		// The payout's hold, found by the ledger's record of the payout
		// in the same statement: a payout reserved before the ledger
		// existed is not in it, and its hold neither. The record is read
		// by subqueries, not joined with UPDATE ... FROM: SQLite's
		// RETURNING cannot name the FROM clause's tables.
		var h ledgerHold
		var holdID, payee, ref string
		err := q.QueryRow(ctx, `UPDATE disb_ledger_holds SET state = $1
			WHERE hold_id = (SELECT hold_id FROM disb_ledger_payouts WHERE payout_id = $2) AND state = $3
			RETURNING hold_id, fund_id, payee_id, amount,
				(SELECT payee_id FROM disb_ledger_payouts WHERE payout_id = $2),
				(SELECT provider_ref FROM disb_ledger_payouts WHERE payout_id = $2)`,
			ledgerPaid, b.PayoutID, ledgerHeld).Scan(&holdID, &h.fund, &h.payee, &h.amount, &payee, &ref)
		if errors.Is(err, sqldb.ErrNoRows) {
			return nil // not in the ledger, or posted before
		}
		if err != nil {
			return err
		}
		if b.ProviderRef != "" {
			ref = b.ProviderRef
		}
		en := j.entry(disbursementapi.EntryPost, h.fund, disbursementapi.AccountPaid(h.fund), disbursementapi.AccountReserved(h.fund), h.amount)
		en.HoldID, en.PayoutID, en.ProviderRef, en.PayeeID = holdID, b.PayoutID, ref, payee
		if en.PayeeID == "" {
			en.PayeeID = h.payee
		}
		return deferEntry(ctx, q, en)
	case assist.FundsReleased:
		// A hold the log never recorded (its approval was not appended)
		// was never in the ledger: nothing to void.
		return closeHold(ctx, q, j, b.HoldID, ledgerVoided, func(h ledgerHold) disbursementapi.LedgerEntry {
			return j.entry(disbursementapi.EntryVoid, h.fund, disbursementapi.AccountAvailable(h.fund), disbursementapi.AccountReserved(h.fund), h.amount)
		})
	}
	return nil
}

type ledgerHold struct {
	fund, payee string
	amount      int64
}

// closeHold moves a held ledger hold to state and writes the entry that
// entry makes of it; a hold the ledger does not hold writes nothing.
func closeHold(ctx context.Context, q sqldb.Querier, j journalEvent, holdID, state string,
	entry func(ledgerHold) disbursementapi.LedgerEntry) error {
	var h ledgerHold
	err := q.QueryRow(ctx, `UPDATE disb_ledger_holds SET state = $1 WHERE hold_id = $2 AND state = $3
		RETURNING fund_id, payee_id, amount`, state, holdID, ledgerHeld).Scan(&h.fund, &h.payee, &h.amount)
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	en := entry(h)
	en.HoldID = holdID
	return deferEntry(ctx, q, en)
}

// journalApproval records an approval's hold: the whole amount for a
// single or first approval, and for a second approval the part of the
// first's hold that it gave back. On PostgreSQL (pg) a new hold and its
// entry are one statement.
func journalApproval(ctx context.Context, q sqldb.Querier, pg bool, j journalEvent, b assist.RequestApproved) error {
	if b.Step == assist.ApprovalSecond {
		var fund string
		var was int64
		err := q.QueryRow(ctx, `SELECT fund_id, amount FROM disb_ledger_holds WHERE hold_id = $1 AND state = $2`,
			b.HoldID, ledgerHeld).Scan(&fund, &was)
		if err != nil && !errors.Is(err, sqldb.ErrNoRows) {
			return err
		}
		if err == nil {
			if was <= b.AmountCents {
				return nil
			}
			if _, err := q.Exec(ctx, `UPDATE disb_ledger_holds SET amount = $1 WHERE hold_id = $2`, b.AmountCents, b.HoldID); err != nil {
				return err
			}
			en := j.entry(disbursementapi.EntryVoid, fund, disbursementapi.AccountAvailable(fund), disbursementapi.AccountReserved(fund), was-b.AmountCents)
			en.HoldID, en.PayeeID = b.HoldID, b.PayeeID
			return deferEntry(ctx, q, en)
		}
		// The first approval is not in the ledger (recorded before it
		// existed): the second records the hold at its amount.
	}
	en := j.entry(disbursementapi.EntryHold, b.FundID, disbursementapi.AccountReserved(b.FundID), disbursementapi.AccountAvailable(b.FundID), b.AmountCents)
	en.HoldID, en.PayeeID = b.HoldID, b.PayeeID
	hold := []any{b.HoldID, b.FundID, j.caseI, b.PayeeID, b.AmountCents, ledgerHeld}
	if pg && en.AmountCents > 0 {
		// The hold and its entry in one statement, sent with the next:
		// the entry only when the hold is new (a hold recorded before,
		// by this event or another approval of it, has its entry).
		return sqldb.Defer(ctx, q, `WITH h AS (INSERT INTO disb_ledger_holds (hold_id, fund_id, case_id, payee_id, amount, state)
				VALUES ($17, $18, $19, $20, $21, $22) ON CONFLICT (hold_id) DO NOTHING RETURNING hold_id)
			INSERT INTO disb_ledger_entries (`+entryCols+`)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16 FROM h
			ON CONFLICT (seq, n) DO NOTHING`, append(entryArgs(en), hold...)...)
	}
	n, err := q.Exec(ctx, `INSERT INTO disb_ledger_holds (hold_id, fund_id, case_id, payee_id, amount, state)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hold_id) DO NOTHING`, hold...)
	if err != nil || n == 0 {
		return err // recorded before
	}
	return deferEntry(ctx, q, en)
}

func allocationEntry(j journalEvent, b assist.FundAllocationChanged) disbursementapi.LedgerEntry {
	fund := j.e.CaseID
	delta := b.AllocatedCents - b.PreviousCents
	en := j.entry(disbursementapi.EntryAllocate, fund, disbursementapi.AccountAvailable(fund), disbursementapi.AccountAllocation(fund), delta)
	if delta < 0 {
		en.Debit, en.Credit, en.AmountCents = en.Credit, en.Debit, -delta
		en.HoldID = b.HoldID
	}
	return en
}

// ApplyAllocation applies an allocation change (the event at log position
// seq) to the fund's row and writes its ledger entry: the first time only,
// for the entry, keyed by the event's position, is the record that it was
// applied. A raise adds to the allocation; a cut takes its hold (placed
// before the event was appended) out of reserved and the allocation
// together, so the fund's available money does not move and no approval
// can have taken it meanwhile. The command applies the event right after
// appending it and the consumer again (before Journal): once either way.
func (s *SQLStore) ApplyAllocation(ctx context.Context, q sqldb.Querier, seq uint64, e assist.Event) error {
	b, ok := e.Body.(assist.FundAllocationChanged)
	if !ok {
		return nil
	}
	j := journalEvent{seq: seq, e: e}
	fund := e.CaseID
	delta := b.AllocatedCents - b.PreviousCents
	if delta == 0 {
		return nil
	}
	inserted, err := insertEntry(ctx, q, allocationEntry(j, b))
	if err != nil || !inserted {
		return err
	}
	iseq := int64(seq)
	if delta > 0 {
		n, err := q.Exec(ctx, `UPDATE disb_funds SET allocated = allocated + $1, seq = CASE WHEN seq < $2 THEN $2 ELSE seq END
			WHERE id = $3`, delta, iseq, fund)
		if err == nil && n == 0 {
			err = fmt.Errorf("allocation change of fund %s before its creation", fund)
		}
		return err
	}
	var held int64
	err = q.QueryRow(ctx, `UPDATE disb_holds SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4 RETURNING amount`,
		disbursementapi.HoldReleased, sqldb.Micros(j.e.At), b.HoldID, disbursementapi.HoldHeld).Scan(&held)
	switch {
	case err == nil:
		_, err = q.Exec(ctx, `UPDATE disb_funds SET allocated = allocated + $1, reserved = reserved - $2,
			seq = CASE WHEN seq < $3 THEN $3 ELSE seq END WHERE id = $4`, delta, held, iseq, fund)
		return err
	case errors.Is(err, sqldb.ErrNoRows):
		// The cut's hold went back before the event was applied (its
		// command outlived the hold): cut what is still available.
		n, err := q.Exec(ctx, `UPDATE disb_funds SET allocated = allocated + $1, seq = CASE WHEN seq < $2 THEN $2 ELSE seq END
			WHERE id = $3 AND allocated - reserved - paid >= $4`, delta, iseq, fund, -delta)
		if err == nil && n == 0 {
			err = fmt.Errorf("allocation cut of fund %s (event %d): the fund no longer has %s available and its hold %s is gone",
				fund, j.seq, assist.FormatUSD(-delta), b.HoldID)
		}
		return err
	default:
		return err
	}
}

const entryCols = `seq, n, event_id, event_type, kind, fund_id, case_id, hold_id, payout_id, payee_id, provider_ref, debit, credit, amount, at, actor`

// insertEntry writes an entry unless its event wrote it before; inserted
// says whether it did.
func insertEntry(ctx context.Context, q sqldb.Querier, e disbursementapi.LedgerEntry) (inserted bool, err error) {
	if e.AmountCents <= 0 {
		return false, nil
	}
	n, err := q.Exec(ctx, insertEntrySQL, entryArgs(e)...)
	return n == 1, err
}

// deferEntry is insertEntry for a caller that need not know whether the
// entry was there: the insert goes with the transaction's next statement
// (sqldb.Defer), one round trip fewer.
func deferEntry(ctx context.Context, q sqldb.Querier, e disbursementapi.LedgerEntry) error {
	if e.AmountCents <= 0 {
		return nil
	}
	return sqldb.Defer(ctx, q, insertEntrySQL, entryArgs(e)...)
}

const insertEntrySQL = `INSERT INTO disb_ledger_entries (` + entryCols + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (seq, n) DO NOTHING`

func entryArgs(e disbursementapi.LedgerEntry) []any {
	return []any{int64(e.Seq), e.N, e.EventID, e.EventType, e.Kind, e.FundID, e.CaseID, e.HoldID, e.PayoutID, e.PayeeID,
		e.ProviderRef, e.Debit, e.Credit, e.AmountCents, sqldb.Micros(e.At), e.Actor}
}

func scanEntry(r sqldb.Row) (disbursementapi.LedgerEntry, error) {
	var e disbursementapi.LedgerEntry
	var seq, at int64
	err := r.Scan(&seq, &e.N, &e.EventID, &e.EventType, &e.Kind, &e.FundID, &e.CaseID, &e.HoldID, &e.PayoutID, &e.PayeeID,
		&e.ProviderRef, &e.Debit, &e.Credit, &e.AmountCents, &at, &e.Actor)
	e.Seq, e.At = uint64(seq), sqldb.Time(at)
	return e, err
}

// balanceSQL is the balance (debits minus credits) of account $n over the
// fund's ($1) entries up to log position $2.
func balanceSQL(n int) string {
	a := "$" + strconv.Itoa(n)
	return `(SELECT CAST(COALESCE(SUM(CASE WHEN debit = ` + a + ` THEN amount WHEN credit = ` + a + ` THEN -amount ELSE 0 END), 0) AS BIGINT)
		FROM disb_ledger_entries WHERE fund_id = $1 AND seq <= $2 AND (debit = ` + a + ` OR credit = ` + a + `))`
}

// balancesUpTo reads a fund's ledger balances up to log position seq, the
// fund's row and the holds it has that the log has not recorded, in one
// statement (one snapshot).
func balancesUpTo(ctx context.Context, q sqldb.Querier, fundID string, seq uint64) (disbursementapi.Balances, disbursementapi.Fund, int64, error) {
	var b disbursementapi.Balances
	var alloc, unrecorded int64
	var f disbursementapi.Fund
	var at int64
	err := q.QueryRow(ctx, `SELECT f.id, f.name, f.allocated, f.reserved, f.paid, f.created_at, `+
		balanceSQL(3)+`, `+balanceSQL(4)+`, `+balanceSQL(5)+`, `+balanceSQL(6)+`,
		(SELECT CAST(COALESCE(SUM(h.amount), 0) AS BIGINT) FROM disb_holds h WHERE h.fund_id = $1 AND h.status = $7
			AND NOT EXISTS (SELECT 1 FROM disb_ledger_holds l WHERE l.hold_id = h.id))
		FROM disb_funds f WHERE f.id = $1`,
		fundID, int64(min(seq, uint64(1)<<62)), disbursementapi.AccountAllocation(fundID), disbursementapi.AccountAvailable(fundID),
		disbursementapi.AccountReserved(fundID), disbursementapi.AccountPaid(fundID), disbursementapi.HoldHeld).
		Scan(&f.ID, &f.Name, &f.AllocatedCents, &f.ReservedCents, &f.PaidCents, &at,
			&alloc, &b.AvailableCents, &b.ReservedCents, &b.PaidCents, &unrecorded)
	if errors.Is(err, sqldb.ErrNoRows) {
		return b, f, 0, assist.Errorf(assist.CodeNotFound, "no fund %q", fundID)
	}
	f.CreatedAt = sqldb.Time(at)
	f.AvailableCents = f.AllocatedCents - f.ReservedCents - f.PaidCents
	b.AllocatedCents = -alloc
	return b, f, unrecorded, err
}

// Ledger reads a page of a fund's ledger: the entries after log position
// r.After, each with the fund's balances right after it, and the balances
// of the whole ledger beside the fund's row. Errors: CodeNotFound.
func (s *SQLStore) Ledger(ctx context.Context, r disbursementapi.LedgerRequest) (disbursementapi.Ledger, error) {
	limit := r.Limit
	if limit <= 0 {
		limit = listing.DefaultLimit
	}
	limit = min(limit, listing.MaxLimit)
	out := disbursementapi.Ledger{FundID: r.ID, Entries: []disbursementapi.LedgerEntry{}}
	var err error
	out.Balances, out.Fund, out.UnrecordedHoldsCents, err = balancesUpTo(ctx, s.db, r.ID, 1<<62)
	if err != nil {
		return disbursementapi.Ledger{}, err
	}
	run, _, _, err := balancesUpTo(ctx, s.db, r.ID, r.After)
	if err != nil {
		return disbursementapi.Ledger{}, err
	}
	rows, err := s.db.Query(ctx, `SELECT `+entryCols+` FROM disb_ledger_entries WHERE fund_id = $1 AND seq > $2
		ORDER BY seq, n LIMIT $3`, r.ID, int64(min(r.After, uint64(1)<<62)), limit+1)
	if err != nil {
		return disbursementapi.Ledger{}, err
	}
	entries, err := collect(rows, scanEntry)
	if err != nil {
		return disbursementapi.Ledger{}, err
	}
	if len(entries) > limit {
		entries = entries[:limit]
		out.NextAfter = entries[limit-1].Seq
	}
	for _, e := range entries {
		run = run.Apply(e)
		e.Balances = run
		out.Entries = append(out.Entries, e)
	}
	return out, nil
}

// PlaceCut implements Store.
func (s *SQLStore) PlaceCut(ctx context.Context, fundID, holdID string, amount int64, expires, now time.Time) (disbursementapi.Hold, error) {
	var h disbursementapi.Hold
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		var err error
		if h, err = getHold(ctx, q, holdID); err == nil || !assist.IsCode(err, assist.CodeNotFound) {
			return err // placed before: the same cut again
		}
		f, err := scanFund(q.QueryRow(ctx, `SELECT `+fundCols+` FROM disb_funds WHERE id = $1`, fundID))
		if errors.Is(err, sqldb.ErrNoRows) {
			return assist.Errorf(assist.CodeNotFound, "no fund %q", fundID)
		}
		if err != nil {
			return err
		}
		if _, err := q.Exec(ctx, `INSERT INTO disb_holds (id, fund_id, case_id, payee_id, amount, status, expires_at, created_at, updated_at)
			VALUES ($1, $2, $2, '', $3, $4, $5, $6, $6)`,
			holdID, fundID, amount, disbursementapi.HoldHeld, sqldb.Micros(expires), sqldb.Micros(now)); err != nil {
			return err
		}
		// As for an approval's hold: the check and the hold are one
		// statement, the transaction's last.
		var avail int64
		err = q.QueryRow(ctx, `UPDATE disb_funds SET reserved = reserved + $1
			WHERE id = $2 AND allocated - reserved - paid >= $1 RETURNING allocated - reserved - paid`, amount, fundID).Scan(&avail)
		if errors.Is(err, sqldb.ErrNoRows) {
			avail = f.AvailableCents
			if err := q.QueryRow(ctx, `SELECT allocated - reserved - paid FROM disb_funds WHERE id = $1`, fundID).Scan(&avail); err != nil {
				return err
			}
			return &assist.Error{Code: assist.CodeInsufficientFunds, AvailableUSDCents: &avail,
				Message: fmt.Sprintf("fund %s has %s available: its allocation can drop by that much at most, "+
					"not by %s (reserved and paid money stays allocated)", f.Name, assist.FormatUSD(avail), assist.FormatUSD(amount)),
				Fields: []assist.FieldError{{Field: "allocated_usd_cents",
					Message: fmt.Sprintf("must be at least %s (what is reserved and paid)", assist.FormatUSD(f.AllocatedCents-avail))}}}
		}
		if err != nil {
			return err
		}
		h = disbursementapi.Hold{ID: holdID, FundID: fundID, CaseID: fundID, AmountCents: amount, Status: disbursementapi.HoldHeld,
			ExpiresAt: sqldb.Time(sqldb.Micros(expires)), AvailableCents: avail}
		return nil
	})
	if sqldb.IsUniqueViolation(err) {
		return getHold(ctx, s.db, holdID)
	}
	return h, err
}

// Posted lists the payouts of the ledger, for reconciliation: every
// payout it posted (settled), with its fund, payee, amount and provider
// reference, and every payout sent to the provider and not settled yet.
func (s *SQLStore) Posted(ctx context.Context) ([]reconcile.Posted, error) {
	rows, err := s.db.Query(ctx, `SELECT payout_id, fund_id, payee_id, provider_ref, amount, at, 1 FROM disb_ledger_entries
			WHERE kind = $1 AND payout_id <> ''
		UNION ALL
		SELECT p.payout_id, h.fund_id, CASE WHEN p.payee_id = '' THEN h.payee_id ELSE p.payee_id END, p.provider_ref, h.amount, 0, 0
			FROM disb_ledger_payouts p JOIN disb_ledger_holds h ON h.hold_id = p.hold_id
			WHERE h.state = $2 AND p.provider_ref <> ''
		ORDER BY 1`, disbursementapi.EntryPost, ledgerHeld)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r sqldb.Row) (reconcile.Posted, error) {
		var p reconcile.Posted
		var at, settled int64
		err := r.Scan(&p.PayoutID, &p.FundID, &p.PayeeID, &p.ProviderRef, &p.AmountCents, &at, &settled)
		p.Settled = settled == 1
		if p.Settled {
			p.At = sqldb.Time(at)
		}
		return p, err
	})
}
