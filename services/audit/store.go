package audit

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/eva-org/eva/pkg/sqldb"
)

//go:embed migrations
var migrationFS embed.FS

// Migrations is audit's schema: the archive table audit_events.
var Migrations = sqldb.Embedded("audit", migrationFS)

// Record is one archived event: the event exactly as the log holds it, with
// its hash and the hash chain up to it (see HashEvent and ChainNext).
type Record struct {
	Seq     uint64
	ID      string // Nats-Msg-Id, the event id
	CaseID  string // from the subject; empty when the subject is malformed
	Type    string // from the subject
	Subject string
	At      time.Time // the stream's timestamp of the event
	Data    []byte    // the raw protobuf bytes
	Hash    []byte
	Chain   []byte
}

// Store is the archive. It only ever grows: records are inserted in
// sequence order and never changed.
type Store interface {
	// Last returns the sequence and chain of the newest archived record;
	// 0 and the genesis chain (32 zero bytes) when the archive is empty.
	// q is the consumer's transaction; nil reads outside any transaction.
	Last(ctx context.Context, q sqldb.Querier) (seq uint64, chain []byte, err error)
	// Insert archives r inside the consumer's transaction. A record with
	// r.Seq already archived is refused with an error; the caller keeps
	// sequences contiguous.
	Insert(ctx context.Context, q sqldb.Querier, r Record) error
	// Range returns up to limit records with Seq > after, in sequence
	// order.
	Range(ctx context.Context, after uint64, limit int) ([]Record, error)
	// Case returns the archived records of a case, in sequence order.
	Case(ctx context.Context, caseID string) ([]Record, error)
}

// SQLStore is the Store on sqldb.
type SQLStore struct{ db sqldb.DB }

// NewSQLStore returns a store on a database migrated with Migrations.
func NewSQLStore(db sqldb.DB) *SQLStore { return &SQLStore{db: db} }

// Last implements Store.
func (s *SQLStore) Last(ctx context.Context, q sqldb.Querier) (uint64, []byte, error) {
	if q == nil {
		q = s.db
	}
	var (
		seq   int64
		chain []byte
	)
	err := q.QueryRow(ctx, `SELECT seq, chain FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &chain)
	if errors.Is(err, sqldb.ErrNoRows) {
		return 0, GenesisChain(), nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("archive head: %w", err)
	}
	return uint64(seq), chain, nil
}

// Insert implements Store.
func (s *SQLStore) Insert(ctx context.Context, q sqldb.Querier, r Record) error {
	data := r.Data
	if data == nil {
		data = []byte{} // an empty body is stored as such, never as NULL
	}
	_, err := q.Exec(ctx, `INSERT INTO audit_events (seq, id, case_id, type, subject, at, data, hash, chain)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		int64(r.Seq), r.ID, r.CaseID, r.Type, r.Subject, sqldb.Micros(r.At), data, r.Hash, r.Chain)
	if err != nil {
		return fmt.Errorf("archive event %d: %w", r.Seq, err)
	}
	return nil
}

const recordColumns = `seq, id, case_id, type, subject, at, data, hash, chain`

// Range implements Store.
func (s *SQLStore) Range(ctx context.Context, after uint64, limit int) ([]Record, error) {
	rows, err := s.db.Query(ctx, `SELECT `+recordColumns+` FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`,
		int64(after), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("archive after %d: %w", after, err)
	}
	return scanRecords(rows)
}

// Case implements Store.
func (s *SQLStore) Case(ctx context.Context, caseID string) ([]Record, error) {
	rows, err := s.db.Query(ctx, `SELECT `+recordColumns+` FROM audit_events WHERE case_id = $1 ORDER BY seq`, caseID)
	if err != nil {
		return nil, fmt.Errorf("archive of case %s: %w", caseID, err)
	}
	return scanRecords(rows)
}

func scanRecords(rows sqldb.Rows) ([]Record, error) {
	defer rows.Close()
	out := []Record{}
	for rows.Next() {
		r, err := fromRow(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	return out, nil
}

func fromRow(row sqldb.Row) (Record, error) {
	var (
		r       Record
		seq, at int64
	)
	if err := row.Scan(&seq, &r.ID, &r.CaseID, &r.Type, &r.Subject, &at, &r.Data, &r.Hash, &r.Chain); err != nil {
		return Record{}, fmt.Errorf("read archive: %w", err)
	}
	r.Seq, r.At = uint64(seq), sqldb.Time(at)
	return r, nil
}
