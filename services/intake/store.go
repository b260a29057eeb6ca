package intake

import (
	"context"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/listing"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

//go:embed migrations
var migrationFS embed.FS

// Migrations is intake's schema.
var Migrations = sqldb.Embedded("intake", migrationFS)

// Store is intake's state: data keys, erasures, filings by idempotency
// key, and the projected list of requests.
type Store interface {
	// AddKeys stores fresh wrapped data keys for cases yet to come.
	AddKeys(ctx context.Context, keys []WrappedKey) error
	// WrappedKey returns a wrapped data key by id, nil when there is none
	// (never made, or erased).
	WrappedKey(ctx context.Context, keyID string) ([]byte, error)
	// Erase destroys a case's data key and records the erasure, for good.
	Erase(ctx context.Context, caseID, keyID string) error
	// Erased reports whether a case's personal data was erased.
	Erased(ctx context.Context, caseID string) (bool, error)
	// Filing records which case an idempotency key files; for a key
	// recorded before, it returns the first record. made reports whether
	// this call recorded it: the key's first attempt. Then, and only
	// then, dups are the possible duplicates of the new case f.CaseID
	// that check finds, read in the same statement; a retry gets none
	// (nil), and reads them with CheckFiling for the first record's case.
	Filing(ctx context.Context, f Filing, check DuplicateCheck) (got Filing, made bool, dups []string, err error)
	// Project stores the projected case inside a consumer's transaction.
	Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error
	// Projected loads a projected case inside a consumer's transaction;
	// nil when there is none.
	Projected(ctx context.Context, q sqldb.Querier, caseID string) (*assist.Case, error)
	// Cases loads projected cases by id; the ones not projected are left
	// out.
	Cases(ctx context.Context, ids []string) (map[string]*assist.Case, error)
	// List returns requests, newest first.
	List(ctx context.Context, f intakeapi.ListFilter) (intakeapi.ListPage, error)
	// CheckFiling reads, in one statement, what a filing of the case
	// caseID that may be a retry needs to know: whether the case's
	// personal data was erased (as Erased), and the possible duplicates
	// of the case that check finds.
	CheckFiling(ctx context.Context, caseID string, check DuplicateCheck) (erased bool, dups []string, err error)
}

// maxDuplicates bounds the duplicate check's answer.
const maxDuplicates = 20

// WrappedKey is a data key as stored: wrapped by the master key.
type WrappedKey struct {
	ID      string
	Wrapped []byte
}

// Filing ties an idempotency key (hashed with its user) to the case it
// filed and the request it came with.
type Filing struct {
	KeyHash     []byte
	CaseID      string
	RequestHash []byte
	CreatedAt   time.Time
}

// DuplicateCheck is what the duplicate check of a filing looks for: the
// ids of the other projected cases, at any post, for the beneficiary
// reference hash RefHash and Category that are still open or changed
// since Since, oldest first, at most maxDuplicates; none without a
// reference hash.
type DuplicateCheck struct {
	RefHash  []byte
	Category assist.Category
	Since    time.Time
}

// SQLStore is the Store on sqldb.
type SQLStore struct{ db sqldb.DB }

// NewSQLStore returns a store on a migrated database.
func NewSQLStore(db sqldb.DB) *SQLStore { return &SQLStore{db: db} }

// AddKeys implements Store.
func (s *SQLStore) AddKeys(ctx context.Context, keys []WrappedKey) error {
	now := sqldb.Micros(time.Now())
	rows := make([][]any, len(keys))
	for i, k := range keys {
		rows[i] = []any{k.ID, k.Wrapped, now}
	}
	// One statement a batch: a batch of single inserts is a round trip
	// each, which a slow network to the database multiplies. On
	// PostgreSQL the statements go with the BEGIN and the COMMIT, in one
	// round trip (sqldb.Deferring).
	return s.db.Tx(ctx, func(q sqldb.Querier) error {
		return sqldb.InsertRows(ctx, sqldb.Deferring(q), `INSERT INTO intake_data_keys (key_id, wrapped, created_at)`, "", rows)
	})
}

// WrappedKey implements Store.
func (s *SQLStore) WrappedKey(ctx context.Context, keyID string) ([]byte, error) {
	var wrapped []byte
	err := s.db.QueryRow(ctx, `SELECT wrapped FROM intake_data_keys WHERE key_id = $1`, keyID).Scan(&wrapped)
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil, nil
	}
	return wrapped, err
}

// Erase implements Store.
func (s *SQLStore) Erase(ctx context.Context, caseID, keyID string) error {
	return s.db.Tx(ctx, func(q sqldb.Querier) error { return erase(ctx, q, caseID, keyID) })
}

// erase records an erasure and deletes the data key; again, it changes
// nothing.
func erase(ctx context.Context, q sqldb.Querier, caseID, keyID string) error {
	if _, err := q.Exec(ctx, `INSERT INTO intake_erasures (case_id, erased_at) VALUES ($1, $2) ON CONFLICT (case_id) DO NOTHING`,
		caseID, sqldb.Micros(time.Now())); err != nil {
		return err
	}
	if keyID == "" {
		return nil
	}
	_, err := q.Exec(ctx, `DELETE FROM intake_data_keys WHERE key_id = $1`, keyID)
	return err
}

// Erased implements Store.
func (s *SQLStore) Erased(ctx context.Context, caseID string) (bool, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM intake_erasures WHERE case_id = $1`, caseID).Scan(&n)
	return n > 0, err
}

// Filing implements Store. A new key, the usual case, is one statement
// (sqldb.Autocommit: one round trip on PostgreSQL), the duplicate check
// of its case a subquery of what the insert returns; a key there
// already is read after the insert found it, committed (an insert of
// the same key waits for the other's commit).
func (s *SQLStore) Filing(ctx context.Context, f Filing, check DuplicateCheck) (Filing, bool, []string, error) {
	args := append([]any{f.KeyHash, f.CaseID, f.RequestHash, sqldb.Micros(f.CreatedAt)}, check.args()...)
	var dups string
	err := sqldb.Autocommit(ctx, s.db, func(q sqldb.Querier) error { return q.QueryRow(ctx, fileKey, args...).Scan(&dups) })
	switch {
	case err == nil:
		f.CreatedAt = sqldb.Time(sqldb.Micros(f.CreatedAt))
		return f, true, splitIDs(dups), nil
	case !errors.Is(err, sqldb.ErrNoRows):
		return Filing{}, false, nil, err
	}
	var (
		got Filing
		at  int64
	)
	if err := s.db.QueryRow(ctx, `SELECT key_hash, case_id, request_hash, created_at FROM intake_filings WHERE key_hash = $1`,
		f.KeyHash).Scan(&got.KeyHash, &got.CaseID, &got.RequestHash, &at); err != nil {
		return Filing{}, false, nil, err
	}
	got.CreatedAt = sqldb.Time(at)
	return got, false, nil, nil
}

// CheckFiling implements Store.
func (s *SQLStore) CheckFiling(ctx context.Context, caseID string, check DuplicateCheck) (bool, []string, error) {
	var (
		erased int64
		dups   string
	)
	if err := s.db.QueryRow(ctx, checkFiling, append([]any{caseID}, check.args()...)...).Scan(&erased, &dups); err != nil {
		return false, nil, err
	}
	return erased > 0, splitIDs(dups), nil
}

// fileKey records an idempotency key ($1, case $2, request $3, at $4)
// and, when it does, returns the duplicates of case $2 (duplicatesOf).
// fileKey and checkFiling are portable: SQLite allows a subquery in
// RETURNING, and string_agg with ORDER BY (since 3.44).
var fileKey = `INSERT INTO intake_filings (key_hash, case_id, request_hash, created_at) VALUES ($1, $2, $3, $4)
	ON CONFLICT (key_hash) DO NOTHING RETURNING ` + duplicatesOf(2, 5)

// checkFiling counts the erasures of case $1 and finds its duplicates.
var checkFiling = `SELECT (SELECT count(*) FROM intake_erasures WHERE case_id = $1), ` + duplicatesOf(1, 2)

// duplicatesOf is the duplicate check (DuplicateCheck) of the case
// $except, its parameters from $from on in the order of
// DuplicateCheck.args: the ids found, joined by commas (splitIDs).
func duplicatesOf(except, from int) string {
	p := func(n int) string { return "$" + strconv.Itoa(n) }
	ref, category, since := p(from), p(from+1), p(from+2)
	return `COALESCE((SELECT string_agg(id, ',' ORDER BY created_at, id) FROM (
		SELECT id, created_at FROM intake_cases WHERE ref_hash = ` + ref + ` AND ` + ref + ` <> '' AND category = ` + category + `
			AND id <> ` + p(except) + ` AND (updated_at >= ` + since + ` OR status NOT IN (` + sqldb.Placeholders(from+3, len(assist.Finished)) + `))
		ORDER BY created_at, id LIMIT ` + strconv.Itoa(maxDuplicates) + `) d), '')`
}

// args are the parameters of duplicatesOf.
func (c DuplicateCheck) args() []any {
	return append([]any{refHashKey(c.RefHash), string(c.Category), sqldb.Micros(c.Since)}, sqldb.Args(assist.Finished)...)
}

// splitIDs splits ids joined by commas; none is an empty list.
func splitIDs(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// Project implements Store. A case whose personal data was erased also
// has its data key destroyed, in the same transaction: the key is gone once
// the log says so, even when the erasing command did not get to delete it.
func (s *SQLStore) Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error {
	return s.ProjectAll(ctx, q, []*assist.Case{c})
}

// ProjectAll stores cases of distinct ids as Project stores each, in
// statements of many rows (a rebuild: eventlog.BulkProjection).
func (s *SQLStore) ProjectAll(ctx context.Context, q sqldb.Querier, cs []*assist.Case) error {
	write, err := s.PrepareAll(cs)
	if err != nil {
		return err
	}
	return write(ctx, q)
}

// PrepareAll implements eventlog.StagedProjection: ProjectAll's rows,
// made without the database; the erasures of erased cases' data are
// done by the writing, before the rows.
func (s *SQLStore) PrepareAll(cs []*assist.Case) (func(context.Context, sqldb.Querier) error, error) {
	rows := make([][]any, len(cs))
	type erasure struct{ id, keyID string }
	var (
		erased []erasure
		buf    []byte
		err    error
	)
	for i, c := range cs {
		if c.PersonalDataErased {
			erased = append(erased, erasure{c.ID, c.Beneficiary.KeyID})
		}
		if buf, err = appendState(buf[:0], c); err != nil {
			return nil, err
		}
		rows[i] = []any{c.ID, c.Post, c.Requester, string(c.State), string(c.Urgency), sqldb.Micros(c.CreatedAt),
			sqldb.Micros(c.UpdatedAt), int64(c.Version), string(buf), refHashKey(c.BeneficiaryRefHash), string(c.Category)}
	}
	return func(ctx context.Context, q sqldb.Querier) error {
		for _, e := range erased {
			if err := erase(ctx, q, e.id, e.keyID); err != nil {
				return err
			}
		}
		return sqldb.UpsertRows(ctx, q, "intake_cases", caseCols, caseSet, caseSeldom, rows)
	}, nil
}

var (
	// caseCols are the columns of intake_cases a case's row writes.
	caseCols = []string{"id", "post", "requester", "status", "urgency", "created_at", "updated_at", "version", "state", "ref_hash", "category"}
	// caseSet are those a later event's write sets again; caseSeldom are
	// those that an index holds and that no event but an amendment or an
	// erasure changes (post: none), set only where they differ
	// (sqldb.UpsertRows).
	caseSet, caseSeldom = []string{"status", "urgency", "updated_at", "version", "state"}, []string{"post", "ref_hash", "category"}
)

// refHashKey is a reference hash as the ref_hash column keeps it: base64,
// as in the stored state (so the migration could fill it from there).
func refHashKey(h []byte) string { return base64.StdEncoding.EncodeToString(h) }

// Projected implements Store.
func (s *SQLStore) Projected(ctx context.Context, q sqldb.Querier, caseID string) (*assist.Case, error) {
	var state string
	err := q.QueryRow(ctx, `SELECT state FROM intake_cases WHERE id = $1`, caseID).Scan(&state)
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeState(caseID, state)
}

// List implements Store.
func (s *SQLStore) List(ctx context.Context, f intakeapi.ListFilter) (intakeapi.ListPage, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(f.Posts) > 0 {
		ph := make([]string, len(f.Posts))
		for i, p := range f.Posts {
			ph[i] = arg(p)
		}
		where = append(where, "post IN ("+strings.Join(ph, ", ")+")")
	}
	if f.Status != "" {
		where = append(where, "status = "+arg(f.Status))
	}
	if f.Post != "" {
		where = append(where, "post = "+arg(f.Post))
	}
	if f.Urgency != "" {
		where = append(where, "urgency = "+arg(f.Urgency))
	}
	if f.Limit <= 0 {
		f.Limit = listing.DefaultLimit
	}
	f.Limit = min(f.Limit, listing.MaxLimit)
	if f.Cursor != "" {
		parts, err := listing.Decode(f.Cursor, 2)
		if err != nil {
			return intakeapi.ListPage{}, err
		}
		at, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			return intakeapi.ListPage{}, listing.BadCursor()
		}
		where = append(where, fmt.Sprintf("(created_at < %s OR (created_at = %s AND id < %s))", arg(at), arg(at), arg(parts[1])))
	}
	query := `SELECT state, created_at, id FROM intake_cases`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, id DESC LIMIT " + arg(int64(f.Limit+1))
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return intakeapi.ListPage{}, err
	}
	defer rows.Close()
	page := intakeapi.ListPage{Items: []caseview.Case{}}
	var lastAt int64
	var lastID string
	for rows.Next() {
		var state string
		var at int64
		var id string
		if err := rows.Scan(&state, &at, &id); err != nil {
			return intakeapi.ListPage{}, err
		}
		if len(page.Items) == f.Limit {
			page.NextCursor = listing.Encode(strconv.FormatInt(lastAt, 10), lastID)
			break
		}
		c, err := decodeState(id, state)
		if err != nil {
			return intakeapi.ListPage{}, err
		}
		page.Items = append(page.Items, caseview.From(c))
		lastAt, lastID = at, id
	}
	return page, rows.Err()
}

// Cases implements Store.
func (s *SQLStore) Cases(ctx context.Context, ids []string) (map[string]*assist.Case, error) {
	return s.ProjectedAll(ctx, s.db, ids)
}

var _ eventlog.BatchProjection = (*SQLStore)(nil)

// ProjectedAll implements eventlog.BatchProjection: Cases, in q.
func (s *SQLStore) ProjectedAll(ctx context.Context, q sqldb.Querier, ids []string) (map[string]*assist.Case, error) {
	return sqldb.ByID(ctx, q, `SELECT id, state FROM intake_cases`, ids, func(r sqldb.Row) (*assist.Case, error) {
		var id, state string
		if err := r.Scan(&id, &state); err != nil {
			return nil, err
		}
		return decodeState(id, state)
	}, func(c *assist.Case) string { return c.ID })
}
