package disbursement

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/listing"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

//go:embed migrations
var migrationFS embed.FS

// Migrations is disbursement's schema.
var Migrations = sqldb.Embedded("disbursement", migrationFS)

// Payout stages, which drive the payout worker.
const (
	stageReserve   = "reserve"   // approval recorded; FundsReserved to append
	stagePay       = "pay"       // funds reserved; the provider to be paid
	stageSent      = "sent"      // the provider accepted; waiting for settlement
	stageSettled   = "settled"   // done
	stageFailed    = "failed"    // the provider failed it; finance retries or cancels
	stageCancelled = "cancelled" // given up; funds released
)

// statusOf maps a stage to the API's payout status.
func statusOf(stage string) string {
	switch stage {
	case stageReserve, stagePay:
		return disbursementapi.PayoutPending
	case stageSent:
		return disbursementapi.PayoutSent
	case stageSettled:
		return disbursementapi.PayoutSettled
	case stageFailed:
		return disbursementapi.PayoutFailed
	default:
		return disbursementapi.PayoutCancelled
	}
}

// Work is a payout step for the worker.
type Work struct {
	disbursementapi.Payout
	Stage string
	CmdID string
}

// Store is disbursement's ledger: funds, holds, payees and payouts.
type Store interface {
	// CreateFund stores a fund (its name reserved and PutFund, in a
	// transaction of its own, at log position 0); the same id again
	// returns the stored fund. Errors: CodeConflict when another fund
	// holds the name.
	CreateFund(ctx context.Context, f disbursementapi.Fund, by string) (disbursementapi.Fund, error)
	// PutFund stores a fund as its events make it (its Version is the
	// log position of its last event): inserted, or updated when the
	// stored one is from an earlier position; the same again changes
	// nothing. It reserves the fund's name for it unless another holds
	// it, and stores the row either way: the read model holds what the
	// log holds, even two funds of one name (ADR 30).
	PutFund(ctx context.Context, q sqldb.Querier, f assist.Fund) error
	// ReserveName gives a fund's or payee's (kind) name to id unless
	// another id holds it, and says who holds it then.
	ReserveName(ctx context.Context, kind assist.Kind, name, id string, now time.Time) (NameHolder, error)
	// TakeName gives a name held by from to to, unless it moved
	// meanwhile; took says whether it did.
	TakeName(ctx context.Context, kind assist.Kind, name, from, to string, now time.Time) (took bool, err error)
	// Unlogged lists the funds and payees stored before they were
	// events (log position 0), for disbursement to record them.
	Unlogged(ctx context.Context) ([]assist.Fund, []assist.Payee, error)
	// Fund reads a fund. Errors: CodeNotFound.
	Fund(ctx context.Context, id string) (disbursementapi.Fund, error)
	Funds(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.FundsPage, error)
	// FundHistory is the fund's money after each change, in time order,
	// starting at its creation. Errors: CodeNotFound.
	FundHistory(ctx context.Context, id string) ([]disbursementapi.FundPoint, error)
	// CreatePayee stores a payee (its name reserved and PutPayee); the
	// same id again returns it. Errors: CodeConflict when another payee
	// holds the name.
	CreatePayee(ctx context.Context, p disbursementapi.Payee, by string) (disbursementapi.Payee, error)
	// PutPayee stores a payee as its events make it: inserted, or
	// updated when the stored account is from an earlier log position
	// than p.AccountSeq. Its name is reserved as PutFund reserves a
	// fund's.
	PutPayee(ctx context.Context, q sqldb.Querier, p assist.Payee) error
	// SetPayeeAccount sets a payee's account from the event at log
	// position seq, unless a later one is stored. It fails (to be tried
	// again) when the payee is not stored yet.
	SetPayeeAccount(ctx context.Context, q sqldb.Querier, id, account string, seq uint64) error
	// Payee reads a payee. Errors: CodeNotFound.
	Payee(ctx context.Context, id string) (disbursementapi.Payee, error)
	Payees(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.PayeesPage, error)

	// PlaceHold atomically holds r.AmountCents on the fund unless the
	// fund cannot cover it; the same hold id again returns the stored
	// hold. Errors: CodeInsufficientFunds with the available amount,
	// CodeInvalid naming fund_id or payee_id when unknown.
	PlaceHold(ctx context.Context, r disbursementapi.PlaceHoldRequest, expires, now time.Time) (disbursementapi.Hold, error)
	// Hold reads a hold. Errors: CodeNotFound.
	Hold(ctx context.Context, id string) (disbursementapi.Hold, error)
	// ExpiredHolds lists held holds whose expiry has passed.
	ExpiredHolds(ctx context.Context, now time.Time, limit int) ([]disbursementapi.Hold, error)

	// The ledger effects of events, inside a consumer's transaction. Each
	// is idempotent: applied twice, the second changes nothing.

	// ReserveHold marks the hold as backing a recorded approval and
	// creates its payout, leased until leaseUntil (zero: not leased); a
	// hold reserved before (or paid, or released) changes nothing. It
	// returns the payout's first step when it created the payout, nil
	// when it changed nothing. Errors: CodeNotFound for an unknown hold.
	ReserveHold(ctx context.Context, q sqldb.Querier, holdID string, p disbursementapi.Payout, cmdID string, leaseUntil time.Time) (*Work, error)
	// KeepHold keeps a held hold until a decision ends it: it backs a
	// first approval that awaits its second, so it must not expire.
	KeepHold(ctx context.Context, q sqldb.Querier, holdID string, now time.Time) error
	// ExpireHoldNow makes a held hold due for the sweeper, which gives it
	// back through the case's log: its first approval was rejected or
	// withdrawn before the second.
	ExpireHoldNow(ctx context.Context, q sqldb.Querier, holdID string, now time.Time) error
	// ShrinkHold lowers a held hold to amount, giving the difference back
	// to its fund: the second approval granted less than the first.
	ShrinkHold(ctx context.Context, q sqldb.Querier, holdID string, amount int64, now time.Time) error
	// Advance moves a payout at one of from (and, when set.Of is not 0,
	// at attempt set.Of or an earlier one) to stage to, due now or when
	// it was put off to, whichever is later; moved says whether it did. A
	// lease that has not run out stays: the worker that holds it may be
	// doing the new stage already (it goes on from one step to the next),
	// and it ends its run with a terminal event or a deferral, which
	// gives the lease back; leased says whether one still holds it.
	Advance(ctx context.Context, q sqldb.Querier, payoutID string, from []string, to string, set Advance) (moved, leased bool, err error)
	// Settle marks a sent (or paying) payout settled and moves its hold's
	// amount from reserved to paid; settled says whether it did.
	Settle(ctx context.Context, q sqldb.Querier, payoutID string, now time.Time) (settled bool, err error)
	// PayoutStage returns a payout's stage and attempt; found is false
	// when no such payout is recorded.
	PayoutStage(ctx context.Context, q sqldb.Querier, payoutID string) (stage string, attempt int, found bool, err error)
	// ReleaseHold returns a held or reserved hold's amount to its fund and
	// cancels a failed payout it backed.
	ReleaseHold(ctx context.Context, q sqldb.Querier, holdID string, now time.Time) error
	// RetryPayout puts a failed payout back to be paid as attempt, once:
	// only when it failed at the attempt before (applied before, or not
	// failed, it does nothing); retried says whether it did.
	RetryPayout(ctx context.Context, q sqldb.Querier, payoutID string, attempt int, cmdID string, now time.Time) (retried bool, err error)

	// Journal writes the double-entry ledger's entries of the event at
	// log position seq (journal.go), from the events alone; applied
	// again, it writes nothing.
	Journal(ctx context.Context, q sqldb.Querier, seq uint64, e assist.Event) error
	// ApplyAllocation applies a FundAllocationChanged at log position seq
	// to the fund's row and writes its entry, once (before Journal).
	ApplyAllocation(ctx context.Context, q sqldb.Querier, seq uint64, e assist.Event) error
	// Ledger reads a page of a fund's ledger with its balances and the
	// fund's row. Errors: CodeNotFound.
	Ledger(ctx context.Context, r disbursementapi.LedgerRequest) (disbursementapi.Ledger, error)
	// Posted lists the ledger's posted payouts and those sent and not
	// settled yet, for reconciliation.
	Posted(ctx context.Context) ([]reconcile.Posted, error)
	// PlaceCut holds amount on a fund for a cut of its allocation about
	// to be recorded (hold id holdID, case id the fund's), unless the
	// fund cannot spare it; the same hold id again returns the stored
	// hold. Errors: CodeInsufficientFunds with the available amount,
	// CodeNotFound for no fund.
	PlaceCut(ctx context.Context, fundID, holdID string, amount int64, expires, now time.Time) (disbursementapi.Hold, error)

	// ClaimWork leases due payout steps to this worker.
	ClaimWork(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Work, error)
	// Defer puts a payout step off until next.
	Defer(ctx context.Context, payoutID string, next time.Time, lastError string) error
	// Nudge makes a sent payout at attempt due now, unless a worker holds
	// it or it is due already; any other payout it leaves alone.
	Nudge(ctx context.Context, payoutID string, attempt int, now time.Time) error
	// Payout reads a payout. Errors: CodeNotFound.
	Payout(ctx context.Context, id string) (disbursementapi.Payout, error)
	Payouts(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.PayoutsPage, error)
}

// NameHolder is the creation that holds a fund's or payee's name.
type NameHolder struct {
	ID     string    // the fund's or payee's id
	Since  time.Time // when it reserved the name
	Stored bool      // its row is stored: it was created
}

// Advance says what a stage change sets besides the stage.
type Advance struct {
	CmdID       string // the next step's command id; empty keeps it
	ProviderRef string
	LastError   string
	Attempt     int // 0 keeps it
	// Of is the attempt of the event that moves the payout: a payout at
	// a later attempt stays (the event is stale). 0 moves any attempt.
	Of  int
	Now time.Time
}

// SQLStore is the Store on sqldb.
type SQLStore struct {
	db    sqldb.DB
	holds holdGroups // PlaceHold's on PostgreSQL
}

// NewSQLStore returns a store on a migrated database.
func NewSQLStore(db sqldb.DB) *SQLStore {
	s := &SQLStore{db: db}
	s.holds.write = s.placeHolds
	return s
}

const fundCols = `id, name, allocated, reserved, paid, created_at`

func scanFund(r sqldb.Row) (disbursementapi.Fund, error) {
	var f disbursementapi.Fund
	var at int64
	if err := r.Scan(&f.ID, &f.Name, &f.AllocatedCents, &f.ReservedCents, &f.PaidCents, &at); err != nil {
		return disbursementapi.Fund{}, err
	}
	f.CreatedAt = sqldb.Time(at)
	f.AvailableCents = f.AllocatedCents - f.ReservedCents - f.PaidCents
	return f, nil
}

// CreateFund implements Store.
func (s *SQLStore) CreateFund(ctx context.Context, f disbursementapi.Fund, by string) (disbursementapi.Fund, error) {
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		if err := claimName(ctx, q, assist.KindFund, f.Name, f.ID, f.CreatedAt); err != nil {
			return err
		}
		return s.PutFund(ctx, q, assist.Fund{ID: f.ID, Name: f.Name, AllocatedCents: f.AllocatedCents, CreatedBy: by, CreatedAt: f.CreatedAt})
	})
	if err != nil {
		return disbursementapi.Fund{}, err
	}
	return s.Fund(ctx, f.ID)
}

// PutFund implements Store.
func (s *SQLStore) PutFund(ctx context.Context, q sqldb.Querier, f assist.Fund) error {
	if _, err := q.Exec(ctx, `INSERT INTO disb_funds (id, name, allocated, created_by, created_at, seq) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, allocated = excluded.allocated, created_by = excluded.created_by,
			created_at = excluded.created_at, seq = excluded.seq
		WHERE disb_funds.seq < excluded.seq`, f.ID, f.Name, f.AllocatedCents, f.CreatedBy, sqldb.Micros(f.CreatedAt), int64(f.Version)); err != nil {
		return err
	}
	return keepName(ctx, q, assist.KindFund, f.Name, f.ID, f.CreatedAt)
}

func nameTaken(kind assist.Kind, name string) error {
	return &assist.Error{Code: assist.CodeConflict, Message: fmt.Sprintf("a %s named %q exists", kind, name),
		Fields: []assist.FieldError{{Field: "name", Message: "is taken"}}}
}

// keepName reserves a stored row's name for it unless another holds it:
// a read model rebuilt from the log (or a name reserved before its row)
// keeps the names it has, so that a new creation cannot take them.
func keepName(ctx context.Context, q sqldb.Querier, kind assist.Kind, name, id string, at time.Time) error {
	_, err := q.Exec(ctx, `INSERT INTO disb_names (kind, name, id, at) VALUES ($1, $2, $3, $4) ON CONFLICT (kind, name) DO NOTHING`,
		string(kind), name, id, sqldb.Micros(at))
	return err
}

// claimName reserves a name for id. Errors: CodeConflict naming the field
// name when another id holds it.
func claimName(ctx context.Context, q sqldb.Querier, kind assist.Kind, name, id string, at time.Time) error {
	if err := keepName(ctx, q, kind, name, id, at); err != nil {
		return err
	}
	var holder string
	if err := q.QueryRow(ctx, `SELECT id FROM disb_names WHERE kind = $1 AND name = $2`, string(kind), name).Scan(&holder); err != nil {
		return err
	}
	if holder != id {
		return nameTaken(kind, name)
	}
	return nil
}

// ReserveName implements Store.
func (s *SQLStore) ReserveName(ctx context.Context, kind assist.Kind, name, id string, now time.Time) (NameHolder, error) {
	if err := keepName(ctx, s.db, kind, name, id, now); err != nil {
		return NameHolder{}, err
	}
	table := map[assist.Kind]string{assist.KindFund: "disb_funds", assist.KindPayee: "disb_payees"}[kind]
	var h NameHolder
	var since, stored int64
	err := s.db.QueryRow(ctx, `SELECT n.id, n.at, (SELECT count(*) FROM `+table+` r WHERE r.id = n.id)
		FROM disb_names n WHERE n.kind = $1 AND n.name = $2`, string(kind), name).Scan(&h.ID, &since, &stored)
	h.Since, h.Stored = sqldb.Time(since), stored > 0
	return h, err
}

// TakeName implements Store.
func (s *SQLStore) TakeName(ctx context.Context, kind assist.Kind, name, from, to string, now time.Time) (bool, error) {
	n, err := s.db.Exec(ctx, `UPDATE disb_names SET id = $1, at = $2 WHERE kind = $3 AND name = $4 AND id = $5`,
		to, sqldb.Micros(now), string(kind), name, from)
	return n == 1, err
}

// Fund implements Store.
func (s *SQLStore) Fund(ctx context.Context, id string) (disbursementapi.Fund, error) {
	f, err := scanFund(s.db.QueryRow(ctx, `SELECT `+fundCols+` FROM disb_funds WHERE id = $1`, id))
	if errors.Is(err, sqldb.ErrNoRows) {
		return disbursementapi.Fund{}, assist.Errorf(assist.CodeNotFound, "no fund %q", id)
	}
	return f, err
}

// Funds implements Store.
func (s *SQLStore) Funds(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.FundsPage, error) {
	items, next, err := page(ctx, s.db, r, `SELECT `+fundCols+`, created_at, id FROM disb_funds`, nil, scanFund)
	return disbursementapi.FundsPage{Items: items, NextCursor: next}, err
}

// FundHistory implements Store. A hold reserves its amount when it is
// placed (created_at) and, at its last change (updated_at), has moved it to
// paid or given it back; holds still held or reserved have not moved yet.
// The allocation moves with each FundAllocationChanged, at the time of its
// ledger entry; it is counted back from the fund's allocation now, so a
// ledger that starts after the fund's creation (ADR 29) still draws it.
// An allocation cut's own hold is no money reserved: it only leads up to
// the cut.
func (s *SQLStore) FundHistory(ctx context.Context, id string) ([]disbursementapi.FundPoint, error) {
	f, err := s.Fund(ctx, id)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT at, dres, dpaid, dalloc FROM (
			SELECT created_at AS at, amount AS dres, 0 AS dpaid, 0 AS dalloc FROM disb_holds WHERE fund_id = $1 AND case_id <> $1
			UNION ALL
			SELECT updated_at, -amount, amount, 0 FROM disb_holds WHERE fund_id = $1 AND case_id <> $1 AND status = $2
			UNION ALL
			SELECT updated_at, -amount, 0, 0 FROM disb_holds WHERE fund_id = $1 AND case_id <> $1 AND status = $3
			UNION ALL
			SELECT at, 0, 0, CASE WHEN debit = $4 THEN amount ELSE -amount END FROM disb_ledger_entries
				WHERE fund_id = $1 AND kind = $5 AND event_type = 'FundAllocationChanged'
		) AS moves ORDER BY at, dpaid, dres DESC`, id, disbursementapi.HoldPaid, disbursementapi.HoldReleased,
		disbursementapi.AccountAvailable(id), disbursementapi.EntryAllocate)
	if err != nil {
		return nil, err
	}
	type move struct {
		at                  time.Time
		dres, dpaid, dalloc int64
	}
	moves, err := collect(rows, func(r sqldb.Row) (move, error) {
		var at int64
		var m move
		err := r.Scan(&at, &m.dres, &m.dpaid, &m.dalloc)
		m.at = sqldb.Time(at)
		return m, err
	})
	if err != nil {
		return nil, err
	}
	allocated := f.AllocatedCents
	for _, m := range moves {
		allocated -= m.dalloc
	}
	point := func(at time.Time, reserved, paid int64) disbursementapi.FundPoint {
		return disbursementapi.FundPoint{At: at, AllocatedCents: allocated, ReservedCents: reserved, PaidCents: paid,
			AvailableCents: allocated - reserved - paid}
	}
	out := []disbursementapi.FundPoint{point(f.CreatedAt, 0, 0)}
	var reserved, paid int64
	for _, m := range moves {
		reserved += m.dres
		paid += m.dpaid
		allocated += m.dalloc
		t := m.at
		if t.Before(f.CreatedAt) {
			t = f.CreatedAt
		}
		if last := &out[len(out)-1]; last.At.Equal(t) {
			*last = point(t, reserved, paid) // one point per instant
			continue
		}
		out = append(out, point(t, reserved, paid))
	}
	return out, nil
}

const payeeCols = `id, name, country, account, created_at`

func scanPayee(r sqldb.Row) (disbursementapi.Payee, error) {
	var p disbursementapi.Payee
	var at int64
	if err := r.Scan(&p.ID, &p.Name, &p.Country, &p.Account, &at); err != nil {
		return disbursementapi.Payee{}, err
	}
	p.CreatedAt = sqldb.Time(at)
	return p, nil
}

// CreatePayee implements Store.
func (s *SQLStore) CreatePayee(ctx context.Context, p disbursementapi.Payee, by string) (disbursementapi.Payee, error) {
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		if err := claimName(ctx, q, assist.KindPayee, p.Name, p.ID, p.CreatedAt); err != nil {
			return err
		}
		return s.PutPayee(ctx, q, assist.Payee{ID: p.ID, Name: p.Name, Country: p.Country, Account: p.Account, CreatedBy: by,
			CreatedAt: p.CreatedAt})
	})
	if err != nil {
		return disbursementapi.Payee{}, err
	}
	return s.Payee(ctx, p.ID)
}

// PutPayee implements Store.
func (s *SQLStore) PutPayee(ctx context.Context, q sqldb.Querier, p assist.Payee) error {
	if _, err := q.Exec(ctx, `INSERT INTO disb_payees (id, name, country, account, created_by, created_at, account_seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, country = excluded.country, account = excluded.account,
			created_by = excluded.created_by, created_at = excluded.created_at, account_seq = excluded.account_seq
		WHERE disb_payees.account_seq < excluded.account_seq`,
		p.ID, p.Name, p.Country, p.Account, p.CreatedBy, sqldb.Micros(p.CreatedAt), int64(p.AccountSeq)); err != nil {
		return err
	}
	return keepName(ctx, q, assist.KindPayee, p.Name, p.ID, p.CreatedAt)
}

// SetPayeeAccount implements Store.
func (s *SQLStore) SetPayeeAccount(ctx context.Context, q sqldb.Querier, id, account string, seq uint64) error {
	n, err := q.Exec(ctx, `UPDATE disb_payees SET account = $1, account_seq = $2 WHERE id = $3 AND account_seq < $2`,
		account, int64(seq), id)
	if err != nil || n > 0 {
		return err
	}
	var known int
	if err := q.QueryRow(ctx, `SELECT count(*) FROM disb_payees WHERE id = $1`, id).Scan(&known); err != nil {
		return err
	}
	if known == 0 {
		return fmt.Errorf("payee %s: account changed before its creation was applied", id)
	}
	return nil // a later account is there
}

// Unlogged implements Store.
func (s *SQLStore) Unlogged(ctx context.Context) (funds []assist.Fund, payees []assist.Payee, err error) {
	rows, err := s.db.Query(ctx, `SELECT id, name, allocated, created_by, created_at FROM disb_funds WHERE seq = 0 ORDER BY created_at, id`)
	if err != nil {
		return nil, nil, err
	}
	funds, err = collect(rows, func(r sqldb.Row) (assist.Fund, error) {
		var f assist.Fund
		var at int64
		err := r.Scan(&f.ID, &f.Name, &f.AllocatedCents, &f.CreatedBy, &at)
		f.CreatedAt = sqldb.Time(at)
		return f, err
	})
	if err != nil {
		return nil, nil, err
	}
	rows, err = s.db.Query(ctx, `SELECT id, name, country, account, created_by, created_at FROM disb_payees WHERE account_seq = 0
		ORDER BY created_at, id`)
	if err != nil {
		return nil, nil, err
	}
	payees, err = collect(rows, func(r sqldb.Row) (assist.Payee, error) {
		var p assist.Payee
		var at int64
		err := r.Scan(&p.ID, &p.Name, &p.Country, &p.Account, &p.CreatedBy, &at)
		p.CreatedAt = sqldb.Time(at)
		return p, err
	})
	return funds, payees, err
}

// Payee implements Store.
func (s *SQLStore) Payee(ctx context.Context, id string) (disbursementapi.Payee, error) {
	p, err := scanPayee(s.db.QueryRow(ctx, `SELECT `+payeeCols+` FROM disb_payees WHERE id = $1`, id))
	if errors.Is(err, sqldb.ErrNoRows) {
		return disbursementapi.Payee{}, assist.Errorf(assist.CodeNotFound, "no payee %q", id)
	}
	return p, err
}

// Payees implements Store.
func (s *SQLStore) Payees(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.PayeesPage, error) {
	items, next, err := page(ctx, s.db, r, `SELECT `+payeeCols+`, created_at, id FROM disb_payees`, nil, scanPayee)
	return disbursementapi.PayeesPage{Items: items, NextCursor: next}, err
}

const holdCols = `h.id, h.fund_id, h.case_id, h.amount, h.status, h.expires_at, f.allocated - f.reserved - f.paid`

func scanHold(r sqldb.Row) (disbursementapi.Hold, error) {
	var h disbursementapi.Hold
	var exp int64
	if err := r.Scan(&h.ID, &h.FundID, &h.CaseID, &h.AmountCents, &h.Status, &exp, &h.AvailableCents); err != nil {
		return disbursementapi.Hold{}, err
	}
	h.ExpiresAt = sqldb.Time(exp)
	return h, nil
}

func getHold(ctx context.Context, q sqldb.Querier, id string) (disbursementapi.Hold, error) {
	h, err := scanHold(q.QueryRow(ctx, `SELECT `+holdCols+` FROM disb_holds h JOIN disb_funds f ON f.id = h.fund_id WHERE h.id = $1`, id))
	if errors.Is(err, sqldb.ErrNoRows) {
		return disbursementapi.Hold{}, assist.Errorf(assist.CodeNotFound, "no hold %q", id)
	}
	return h, err
}

// PlaceHold implements Store. On PostgreSQL the hold is placed in one
// statement (placeInOne), or, when other holds of its fund are placed at
// the same time, in one transaction with them (holdGroups); SQLite,
// which has no data-modifying CTE and whose writer commits concurrent
// transactions together, places it in a transaction (placeInTx). All
// answer alike.
func (s *SQLStore) PlaceHold(ctx context.Context, r disbursementapi.PlaceHoldRequest, expires, now time.Time) (disbursementapi.Hold, error) {
	if s.db.Dialect() == sqldb.Postgres {
		return s.holds.place(ctx, r, expires, now)
	}
	return s.placeAlone(ctx, r, expires, now)
}

// placeAlone places one hold in a transaction of its own.
func (s *SQLStore) placeAlone(ctx context.Context, r disbursementapi.PlaceHoldRequest, expires, now time.Time) (disbursementapi.Hold, error) {
	place := s.placeInTx
	if s.db.Dialect() == sqldb.Postgres {
		place = s.placeInOne
	}
	h, err := place(ctx, r, expires, now)
	if sqldb.IsUniqueViolation(err) {
		// The same hold placed at the same time by a retry of its
		// request (the first attempt's answer was lost): this attempt
		// rolled back, fund included, and answers with the first.
		return getHold(ctx, s.db, r.HoldID)
	}
	return h, err
}

// placeInOne places the hold in one statement (placeHold), committed on
// its own (sqldb.Autocommit): one round trip, and the fund's row, which
// every approval and settlement of the fund updates, is locked only for
// the statement's end and its commit, not across a round trip to the
// COMMIT. When the statement's answer is lost it may have placed the
// hold, and the error is CodeUnavailable: the request is idempotent (its
// hold id is the approval's command id), and asked again it answers with
// the hold placed.
func (s *SQLStore) placeInOne(ctx context.Context, r disbursementapi.PlaceHoldRequest, expires, now time.Time) (disbursementapi.Hold, error) {
	var p placement
	err := sqldb.Autocommit(ctx, s.db, func(q sqldb.Querier) (err error) {
		p, err = runPlaceHold(ctx, q, r, expires, now)
		return err
	})
	if err != nil {
		return disbursementapi.Hold{}, err
	}
	return s.placedAnswer(ctx, r, expires, p)
}

// placement is what placeHold returns for a hold: its check, and what
// its fund has left after it (nil when the fund did not take the money).
type placement struct {
	check holdCheck
	avail *int64
}

// runPlaceHold runs placeHold for r in q.
func runPlaceHold(ctx context.Context, q sqldb.Querier, r disbursementapi.PlaceHoldRequest, expires, now time.Time) (placement, error) {
	var p placement
	var err error
	p.check, err = scanHoldCheck(q.QueryRow(ctx, placeHold, r.HoldID, r.PayeeID, r.FundID, r.AmountCents, r.CaseID,
		disbursementapi.HoldHeld, sqldb.Micros(expires), sqldb.Micros(now)), &p.avail)
	return p, err
}

// placedAnswer is the answer to r once its placement is committed.
func (s *SQLStore) placedAnswer(ctx context.Context, r disbursementapi.PlaceHoldRequest, expires time.Time, p placement) (disbursementapi.Hold, error) {
	if h, decided, err := p.check.answer(r); decided {
		return h, err
	}
	if p.avail == nil {
		return notPlaced(ctx, s.db, r)
	}
	return heldNow(r, expires, *p.avail), nil
}

// placeInTx places the hold in a transaction: the check, then the fund's
// guarded update and the hold's row. (On SQLite transactions run one at a
// time on its writer.)
func (s *SQLStore) placeInTx(ctx context.Context, r disbursementapi.PlaceHoldRequest, expires, now time.Time) (disbursementapi.Hold, error) {
	var h disbursementapi.Hold
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		c, err := scanHoldCheck(q.QueryRow(ctx, checkHold, r.HoldID, r.PayeeID, r.FundID))
		if err != nil {
			return err
		}
		var decided bool
		if h, decided, err = c.answer(r); decided {
			return err
		}
		// The money guard and the fund's update are one statement:
		// concurrent holds on a fund serialize on its row, and none can
		// overspend it.
		var avail int64
		err = q.QueryRow(ctx, `UPDATE disb_funds SET reserved = reserved + $1
			WHERE id = $2 AND allocated - reserved - paid >= $1 RETURNING allocated - reserved - paid`, r.AmountCents, r.FundID).Scan(&avail)
		if errors.Is(err, sqldb.ErrNoRows) {
			h, err = notPlaced(ctx, q, r)
			return err
		}
		if err != nil {
			return err
		}
		// A duplicate hold (the same approval placing it twice at once)
		// fails here with the unique violation.
		if _, err := q.Exec(ctx, `INSERT INTO disb_holds (id, fund_id, case_id, payee_id, amount, status, expires_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`,
			r.HoldID, r.FundID, r.CaseID, r.PayeeID, r.AmountCents, disbursementapi.HoldHeld, sqldb.Micros(expires), sqldb.Micros(now)); err != nil {
			return err
		}
		h = heldNow(r, expires, avail)
		return nil
	})
	return h, err
}

// heldNow is the hold r placed, with what its fund has left after it.
func heldNow(r disbursementapi.PlaceHoldRequest, expires time.Time, avail int64) disbursementapi.Hold {
	return disbursementapi.Hold{ID: r.HoldID, FundID: r.FundID, CaseID: r.CaseID, AmountCents: r.AmountCents,
		Status: disbursementapi.HoldHeld, ExpiresAt: sqldb.Time(sqldb.Micros(expires)), AvailableCents: avail}
}

// holdCheck is what placing a hold reads before anything else: the hold
// placed before under its id, if any (placed.ID is empty when none),
// whether the payee exists, and the fund with its available money.
type holdCheck struct {
	placed        disbursementapi.Hold
	payees, funds int
	fundName      string
	fundAvailable int64
}

// holdCheckWith names the check's parts, for hold $1, payee $2 and fund
// $3: placed, the hold with its fund's available money as getHold reads
// it (no row when there is none), and known, one row of the counts of the
// payee and the fund, and the fund's name and available money.
const holdCheckWith = `WITH placed AS (
		SELECT h.id, h.fund_id, h.case_id, h.amount, h.status, h.expires_at, f.allocated - f.reserved - f.paid AS available
		FROM disb_holds h JOIN disb_funds f ON f.id = h.fund_id WHERE h.id = $1
	), known AS (
		SELECT (SELECT count(*) FROM disb_payees WHERE id = $2) AS payees, count(f.id) AS funds,
			COALESCE(max(f.name), '') AS fund_name, COALESCE(max(f.allocated - f.reserved - f.paid), 0) AS fund_available
		FROM disb_funds f WHERE f.id = $3
	)`

// holdCheckSelect reads the check in one row, in scanHoldCheck's order.
const holdCheckSelect = `SELECT COALESCE(h.id, ''), COALESCE(h.fund_id, ''), COALESCE(h.case_id, ''), COALESCE(h.amount, 0),
		COALESCE(h.status, ''), COALESCE(h.expires_at, 0), COALESCE(h.available, 0),
		k.payees, k.funds, k.fund_name, k.fund_available`

// checkHold is the check alone, in one statement.
const checkHold = holdCheckWith + ` ` + holdCheckSelect + ` FROM known AS k LEFT JOIN placed AS h ON true`

// placeHold is the check and the hold in one statement (PostgreSQL's
// data-modifying CTEs), for hold $1, payee $2, fund $3, amount $4, case
// $5, status $6, expiry $7 and time $8. The fund's update takes the money
// unless the hold was placed before or the payee is unknown, and returns
// what is left; the hold's row is inserted from it, so only when the fund
// took the money. The statement returns the check and then that money
// left (NULL when the fund did not take it).
//
// All its parts read one snapshot, taken before the fund's row is locked.
// So the money guard is in the update's WHERE: an update that waited for
// the row's lock evaluates it again on the row as the other left it, and
// concurrent holds can never overspend a fund. The same hold placed twice
// at once (a retry of its request) fails the second's insert with a
// unique violation, or, when the first took what the second needed, the
// second's guard: the check read afterwards then finds the first
// (notPlaced). In a transaction of several holds of the fund
// (holdGroups), each statement after the first finds the row locked by
// its own transaction and reads what the holds before it left.
const placeHold = holdCheckWith + `, fund AS (
		UPDATE disb_funds SET reserved = reserved + $4
		WHERE id = $3 AND allocated - reserved - paid >= $4
		  AND NOT EXISTS (SELECT 1 FROM placed) AND (SELECT payees FROM known) > 0
		RETURNING id, allocated - reserved - paid AS available
	), hold AS (
		INSERT INTO disb_holds (id, fund_id, case_id, payee_id, amount, status, expires_at, created_at, updated_at)
		SELECT $1, id, $5, $2, $4, $6, $7, $8, $8 FROM fund
	)
	` + holdCheckSelect + `, (SELECT available FROM fund) FROM known AS k LEFT JOIN placed AS h ON true`

// scanHoldCheck scans holdCheckSelect's columns, then tail's.
func scanHoldCheck(r sqldb.Row, tail ...any) (holdCheck, error) {
	var c holdCheck
	var err error
	c.placed, err = scanHold(tailScanner{r, append([]any{&c.payees, &c.funds, &c.fundName, &c.fundAvailable}, tail...)})
	return c, err
}

// answer is the answer to r that the check decides, if any (decided): the
// hold placed before, or the error of an unknown payee or fund.
func (c holdCheck) answer(r disbursementapi.PlaceHoldRequest) (h disbursementapi.Hold, decided bool, err error) {
	switch {
	case c.placed.ID != "":
		return c.placed, true, nil // placed before: the same hold again
	case c.payees == 0:
		return disbursementapi.Hold{}, true, &assist.Error{Code: assist.CodeInvalid, Message: "unknown payee",
			Fields: []assist.FieldError{{Field: "payee_id", Message: fmt.Sprintf("no payee %q", r.PayeeID)}}}
	case c.funds == 0:
		return disbursementapi.Hold{}, true, unknownFund(r.FundID)
	}
	return disbursementapi.Hold{}, false, nil
}

// notPlaced answers a hold that its fund did not take, from the check
// read again, after the fund's update: the fund has too little available
// — unless the same hold was placed meanwhile by another attempt, which
// took the money, and is the answer.
func notPlaced(ctx context.Context, q sqldb.Querier, r disbursementapi.PlaceHoldRequest) (disbursementapi.Hold, error) {
	c, err := scanHoldCheck(q.QueryRow(ctx, checkHold, r.HoldID, r.PayeeID, r.FundID))
	if err != nil {
		return disbursementapi.Hold{}, err
	}
	if h, decided, err := c.answer(r); decided {
		return h, err
	}
	avail := c.fundAvailable
	return disbursementapi.Hold{}, &assist.Error{Code: assist.CodeInsufficientFunds, AvailableUSDCents: &avail,
		Message: fmt.Sprintf("fund %s has %s available, less than the %s to approve",
			c.fundName, assist.FormatUSD(avail), assist.FormatUSD(r.AmountCents))}
}

func unknownFund(id string) error {
	return &assist.Error{Code: assist.CodeInvalid, Message: "unknown fund",
		Fields: []assist.FieldError{{Field: "fund_id", Message: fmt.Sprintf("no fund %q", id)}}}
}

// Hold implements Store.
func (s *SQLStore) Hold(ctx context.Context, id string) (disbursementapi.Hold, error) {
	return getHold(ctx, s.db, id)
}

// ExpiredHolds implements Store.
func (s *SQLStore) ExpiredHolds(ctx context.Context, now time.Time, limit int) ([]disbursementapi.Hold, error) {
	rows, err := s.db.Query(ctx, `SELECT `+holdCols+` FROM disb_holds h JOIN disb_funds f ON f.id = h.fund_id
		WHERE h.status = $1 AND h.expires_at <= $2 ORDER BY h.expires_at LIMIT $3`, disbursementapi.HoldHeld, sqldb.Micros(now), limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanHold)
}

// ReserveHold implements Store.
func (s *SQLStore) ReserveHold(ctx context.Context, q sqldb.Querier, holdID string, p disbursementapi.Payout, cmdID string, leaseUntil time.Time) (*Work, error) {
	now := sqldb.Micros(p.CreatedAt)
	var caseID, fundID string
	var amount int64
	err := q.QueryRow(ctx, `UPDATE disb_holds SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4
		RETURNING case_id, fund_id, amount`, disbursementapi.HoldReserved, now, holdID, disbursementapi.HoldHeld).Scan(&caseID, &fundID, &amount)
	if errors.Is(err, sqldb.ErrNoRows) {
		// Not held: reserved before (nothing to do), or no such hold.
		var known int
		if err := q.QueryRow(ctx, `SELECT count(*) FROM disb_holds WHERE id = $1`, holdID).Scan(&known); err != nil {
			return nil, err
		}
		if known == 0 {
			return nil, assist.Errorf(assist.CodeNotFound, "no hold %q", holdID)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var leased int64
	if !leaseUntil.IsZero() {
		leased = sqldb.Micros(leaseUntil)
	}
	// The payout's row goes with the transaction's next statement. It is
	// new: a hold leaves held only here, with its payout, or for good.
	if err := sqldb.Defer(ctx, q, `INSERT INTO disb_payouts (id, case_id, hold_id, fund_id, payee_id, amount, stage, cmd_id, attempt, next_at, lease_until, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $9, $9) ON CONFLICT (hold_id) DO NOTHING`,
		p.ID, caseID, holdID, fundID, p.PayeeID, amount, stageReserve, cmdID, now, leased); err != nil {
		return nil, err
	}
	p.CaseID, p.HoldID, p.FundID, p.AmountCents = caseID, holdID, fundID, amount
	p.Status, p.UpdatedAt = statusOf(stageReserve), p.CreatedAt
	return &Work{Payout: p, Stage: stageReserve, CmdID: cmdID}, nil
}

// Advance implements Store.
func (s *SQLStore) Advance(ctx context.Context, q sqldb.Querier, payoutID string, from []string, to string, a Advance) (bool, bool, error) {
	var leaseUntil int64
	err := q.QueryRow(ctx, `UPDATE disb_payouts SET stage = $1,
			cmd_id = CASE WHEN $2 = '' THEN cmd_id ELSE $2 END,
			provider_ref = CASE WHEN $3 = '' THEN provider_ref ELSE $3 END,
			last_error = $4,
			attempt = CASE WHEN $5 = 0 THEN attempt ELSE $5 END,
			next_at = CASE WHEN next_at > $6 THEN next_at ELSE $6 END,
			lease_until = CASE WHEN lease_until > $6 THEN lease_until ELSE 0 END, updated_at = $6
		WHERE id = $7 AND ($8 = 0 OR attempt <= $8) AND stage IN (`+sqldb.Placeholders(9, len(from))+`)
		RETURNING lease_until`,
		append([]any{to, a.CmdID, a.ProviderRef, a.LastError, int64(a.Attempt), sqldb.Micros(a.Now), payoutID, int64(a.Of)},
			sqldb.Args(from)...)...).Scan(&leaseUntil)
	if errors.Is(err, sqldb.ErrNoRows) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	return true, leaseUntil > 0, nil
}

// PayoutStage implements Store.
func (s *SQLStore) PayoutStage(ctx context.Context, q sqldb.Querier, payoutID string) (string, int, bool, error) {
	var (
		stage   string
		attempt int64
	)
	err := q.QueryRow(ctx, `SELECT stage, attempt FROM disb_payouts WHERE id = $1`, payoutID).Scan(&stage, &attempt)
	if errors.Is(err, sqldb.ErrNoRows) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("payout %s: %w", payoutID, err)
	}
	return stage, int(attempt), true, nil
}

// Settle implements Store. On PostgreSQL the payout and its hold move in
// one statement (settleInOne); SQLite, which has no data-modifying CTE,
// moves them one statement after the other. The fund's totals go last in
// the transaction either way.
func (s *SQLStore) Settle(ctx context.Context, q sqldb.Querier, payoutID string, now time.Time) (bool, error) {
	if s.db.Dialect() == sqldb.Postgres {
		return settleInOne(ctx, q, payoutID, now)
	}
	var holdID string
	err := q.QueryRow(ctx, `UPDATE disb_payouts SET stage = $1, lease_until = 0, updated_at = $2
		WHERE id = $3 AND stage IN ($4, $5) RETURNING hold_id`, stageSettled, sqldb.Micros(now), payoutID, stageSent, stagePay).Scan(&holdID)
	if errors.Is(err, sqldb.ErrNoRows) {
		return false, nil // settled before, or at no stage it settles from
	}
	if err != nil {
		return false, err
	}
	return true, moveHold(ctx, q, holdID, []string{disbursementapi.HoldReserved}, disbursementapi.HoldPaid, now, settleFundSQL)
}

// settleFundSQL moves a paid hold's amount ($1) from the fund's ($2)
// reserved to its paid.
const settleFundSQL = `UPDATE disb_funds SET reserved = reserved - $1, paid = paid + $1 WHERE id = $2`

// settleInOne is Settle in one statement of data-modifying CTEs: the
// payout settled from where it settles, and its hold, when reserved,
// paid; it returns whether the payout moved and, when the hold moved,
// its fund and amount, for the fund's totals (eventlog.AddAtEnd, as
// moveHold writes them). One round trip where Settle's statements took
// two.
func settleInOne(ctx context.Context, q sqldb.Querier, payoutID string, now time.Time) (bool, error) {
	var settled, paid, amount int64
	var fund string
	err := q.QueryRow(ctx, `WITH p AS (
			UPDATE disb_payouts SET stage = $1, lease_until = 0, updated_at = $2
			WHERE id = $3 AND stage IN ($4, $5) RETURNING hold_id),
		h AS (
			UPDATE disb_holds SET status = $6, updated_at = $2
			WHERE id IN (SELECT hold_id FROM p) AND status = $7 RETURNING fund_id, amount)
		SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM h),
			COALESCE((SELECT fund_id FROM h), ''), COALESCE((SELECT amount FROM h), 0)`,
		stageSettled, sqldb.Micros(now), payoutID, stageSent, stagePay,
		disbursementapi.HoldPaid, disbursementapi.HoldReserved).Scan(&settled, &paid, &fund, &amount)
	switch {
	case err != nil:
		return false, err
	case settled == 0:
		return false, nil // settled before, or at no stage it settles from
	case paid == 0:
		return true, nil // the hold was not reserved: paid before
	}
	return true, eventlog.AddAtEnd(ctx, q, settleFundSQL, amount, fund)
}

// ReleaseHold implements Store.
func (s *SQLStore) ReleaseHold(ctx context.Context, q sqldb.Querier, holdID string, now time.Time) error {
	if _, err := q.Exec(ctx, `UPDATE disb_payouts SET stage = $1, lease_until = 0, updated_at = $2 WHERE hold_id = $3 AND stage = $4`,
		stageCancelled, sqldb.Micros(now), holdID, stageFailed); err != nil {
		return err
	}
	return moveHold(ctx, q, holdID, []string{disbursementapi.HoldHeld, disbursementapi.HoldReserved}, disbursementapi.HoldReleased, now,
		`UPDATE disb_funds SET reserved = reserved - $1 WHERE id = $2`)
}

// keptUntil is the expiry of a kept hold: never, in practice.
var keptUntil = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// givenBack is the expiry of a hold whose first approval was rejected or
// withdrawn: due at once, and for good — KeepHold never extends it, so a
// redelivered first approval applied after its rejection (the consumer
// does not order events of a case) cannot keep the money held for ever
// (found by the simulator, seed 1391).
const givenBack = 0

// KeepHold implements Store.
func (s *SQLStore) KeepHold(ctx context.Context, q sqldb.Querier, holdID string, now time.Time) error {
	_, err := q.Exec(ctx, `UPDATE disb_holds SET expires_at = $1, updated_at = $2 WHERE id = $3 AND status = $4 AND expires_at <> $5`,
		sqldb.Micros(keptUntil), sqldb.Micros(now), holdID, disbursementapi.HoldHeld, givenBack)
	return err
}

// ExpireHoldNow implements Store.
func (s *SQLStore) ExpireHoldNow(ctx context.Context, q sqldb.Querier, holdID string, now time.Time) error {
	_, err := q.Exec(ctx, `UPDATE disb_holds SET expires_at = $1, updated_at = $2 WHERE id = $3 AND status = $4`,
		givenBack, sqldb.Micros(now), holdID, disbursementapi.HoldHeld)
	return err
}

// ShrinkHold implements Store.
func (s *SQLStore) ShrinkHold(ctx context.Context, q sqldb.Querier, holdID string, amount int64, now time.Time) error {
	var fund string
	var was int64
	err := q.QueryRow(ctx, `SELECT fund_id, amount FROM disb_holds WHERE id = $1 AND status = $2`,
		holdID, disbursementapi.HoldHeld).Scan(&fund, &was)
	if errors.Is(err, sqldb.ErrNoRows) || (err == nil && was <= amount) {
		return nil // reserved or released before, or nothing to give back
	}
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, `UPDATE disb_holds SET amount = $1, updated_at = $2 WHERE id = $3`, amount, sqldb.Micros(now), holdID); err != nil {
		return err
	}
	return eventlog.AddAtEnd(ctx, q, `UPDATE disb_funds SET reserved = reserved - $1 WHERE id = $2`, was-amount, fund)
}

// RetryPayout implements Store.
func (s *SQLStore) RetryPayout(ctx context.Context, q sqldb.Querier, payoutID string, attempt int, cmdID string, now time.Time) (bool, error) {
	n, err := q.Exec(ctx, `UPDATE disb_payouts SET stage = $1, cmd_id = $2, attempt = $3, next_at = $4,
		lease_until = 0, updated_at = $4 WHERE id = $5 AND stage = $6 AND attempt = $7`,
		stagePay, cmdID, attempt, sqldb.Micros(now), payoutID, stageFailed, attempt-1)
	return n > 0, err
}

// moveHold changes a hold's status and applies fundSQL ($1 amount, $2
// fund) once, only when the hold was in one of from.
func moveHold(ctx context.Context, q sqldb.Querier, holdID string, from []string, to string, now time.Time, fundSQL string) error {
	var fund string
	var amount int64
	err := q.QueryRow(ctx, `UPDATE disb_holds SET status = $1, updated_at = $2
		WHERE id = $3 AND status IN (`+sqldb.Placeholders(4, len(from))+`) RETURNING fund_id, amount`,
		append([]any{to, sqldb.Micros(now), holdID}, sqldb.Args(from)...)...).Scan(&fund, &amount)
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil // not in a state to move: applied before
	}
	if err != nil {
		return err
	}
	// The fund's row is written last in the consumer's transaction: every
	// approval of the fund waits for it.
	return eventlog.AddAtEnd(ctx, q, fundSQL, amount, fund)
}

const payoutCols = `id, case_id, fund_id, payee_id, hold_id, amount, stage, attempt, provider_ref, last_error, created_at, updated_at`

func scanPayout(r sqldb.Row) (disbursementapi.Payout, error) {
	p, _, err := scanPayoutStage(r)
	return p, err
}

func scanPayoutStage(r sqldb.Row, extra ...any) (disbursementapi.Payout, string, error) {
	var p disbursementapi.Payout
	var stage string
	var attempt, created, updated int64
	dest := append([]any{&p.ID, &p.CaseID, &p.FundID, &p.PayeeID, &p.HoldID, &p.AmountCents, &stage, &attempt,
		&p.ProviderRef, &p.LastError, &created, &updated}, extra...)
	if err := r.Scan(dest...); err != nil {
		return disbursementapi.Payout{}, "", err
	}
	p.Status = statusOf(stage)
	p.Attempt = int(attempt)
	p.CreatedAt, p.UpdatedAt = sqldb.Time(created), sqldb.Time(updated)
	return p, stage, nil
}

// ClaimWork implements Store. The lease is one statement, committed on
// its own (sqldb.Autocommit): one round trip on PostgreSQL, where a
// transaction costs two. It runs again only when it leased nothing (never
// sent, or a deadlock's victim); were its answer lost, the steps it
// leased wait for their lease to end, as those of a worker that stopped.
func (s *SQLStore) ClaimWork(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Work, error) {
	var out []Work
	err := sqldb.Autocommit(ctx, s.db, func(q sqldb.Querier) error {
		out = nil // fn may run again
		// The outer lease check is re-evaluated on a row another worker
		// just leased, so two workers never take the same step.
		rows, err := q.Query(ctx, `UPDATE disb_payouts SET lease_until = $1
			WHERE id IN (SELECT id FROM disb_payouts WHERE stage IN ($2, $3, $4) AND next_at <= $5 AND lease_until <= $5
			             ORDER BY next_at LIMIT $6)
			  AND lease_until <= $5
			RETURNING `+payoutCols+`, cmd_id`,
			sqldb.Micros(now.Add(lease)), stageReserve, stagePay, stageSent, sqldb.Micros(now), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var w Work
			p, stage, err := scanPayoutStage(rows, &w.CmdID)
			if err != nil {
				return err
			}
			w.Payout, w.Stage = p, stage
			out = append(out, w)
		}
		return rows.Err()
	})
	return out, err
}

// Defer implements Store.
func (s *SQLStore) Defer(ctx context.Context, payoutID string, next time.Time, lastError string) error {
	_, err := s.db.Exec(ctx, `UPDATE disb_payouts SET next_at = $1, lease_until = 0, last_error = $2 WHERE id = $3`,
		sqldb.Micros(next), lastError, payoutID)
	return err
}

// Nudge implements Store.
func (s *SQLStore) Nudge(ctx context.Context, payoutID string, attempt int, now time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE disb_payouts SET next_at = $1
		WHERE id = $2 AND stage = $3 AND attempt = $4 AND next_at > $1 AND lease_until <= $1`,
		sqldb.Micros(now), payoutID, stageSent, attempt)
	return err
}

// Payout implements Store.
func (s *SQLStore) Payout(ctx context.Context, id string) (disbursementapi.Payout, error) {
	p, err := scanPayout(s.db.QueryRow(ctx, `SELECT `+payoutCols+` FROM disb_payouts WHERE id = $1`, id))
	if errors.Is(err, sqldb.ErrNoRows) {
		return disbursementapi.Payout{}, assist.Errorf(assist.CodeNotFound, "no payout %q", id)
	}
	return p, err
}

// Payouts implements Store.
func (s *SQLStore) Payouts(ctx context.Context, r disbursementapi.ListRequest) (disbursementapi.PayoutsPage, error) {
	var where []string
	var args []any
	if r.CaseID != "" {
		args = append(args, r.CaseID)
		where = append(where, "case_id = $"+strconv.Itoa(len(args)))
	}
	if r.Status != "" {
		stages := stagesOf(r.Status)
		where = append(where, "stage IN ("+sqldb.Placeholders(len(args)+1, len(stages))+")")
		args = append(args, sqldb.Args(stages)...)
	}
	items, next, err := page(ctx, s.db, r, `SELECT `+payoutCols+`, created_at, id FROM disb_payouts`,
		&filter{where: where, args: args}, scanPayout)
	return disbursementapi.PayoutsPage{Items: items, NextCursor: next}, err
}

func stagesOf(status string) []string {
	var out []string
	for _, st := range []string{stageReserve, stagePay, stageSent, stageSettled, stageFailed, stageCancelled} {
		if statusOf(st) == status {
			out = append(out, st)
		}
	}
	return out
}

type filter struct {
	where []string
	args  []any
}

// page runs a list query ordered by (created_at, id), whose select list ends
// with created_at and id, and returns the items and the next cursor.
func page[T any](ctx context.Context, db sqldb.Querier, r disbursementapi.ListRequest, query string, f *filter, scan func(sqldb.Row) (T, error)) ([]T, string, error) {
	limit := r.Limit
	if limit <= 0 {
		limit = listing.DefaultLimit
	}
	limit = min(limit, listing.MaxLimit)
	var where []string
	var args []any
	if f != nil {
		where, args = f.where, f.args
	}
	if r.Cursor != "" {
		parts, err := listing.Decode(r.Cursor, 2)
		if err != nil {
			return nil, "", err
		}
		at, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			return nil, "", listing.BadCursor()
		}
		n := len(args)
		where = append(where, fmt.Sprintf("(created_at > $%d OR (created_at = $%d AND id > $%d))", n+1, n+1, n+2))
		args = append(args, at, parts[1])
	}
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit+1)
	query += fmt.Sprintf(" ORDER BY created_at, id LIMIT $%d", len(args))
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	items := []T{}
	var lastAt int64
	var lastID, next string
	for rows.Next() {
		if len(items) == limit {
			next = listing.Encode(strconv.FormatInt(lastAt, 10), lastID)
			break
		}
		var at int64
		var id string
		item, err := scan(tailScanner{rows, []any{&at, &id}})
		if err != nil {
			return nil, "", err
		}
		items = append(items, item)
		lastAt, lastID = at, id
	}
	return items, next, rows.Err()
}

// tailScanner appends destinations for trailing columns to a scan.
type tailScanner struct {
	r    sqldb.Row
	tail []any
}

func (t tailScanner) Scan(dest ...any) error { return t.r.Scan(append(dest, t.tail...)...) }

func collect[T any](rows sqldb.Rows, scan func(sqldb.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
