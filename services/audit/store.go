package audit

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/pkg/sqldb"
)

//go:embed migrations
var migrationFS embed.FS

// Migrations is audit's schema: the archive table audit_events, the
// Merkle tree audit_tree and the signed checkpoints audit_checkpoints.
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
	// Insert archives rs, in order, inside the consumer's transaction. A
	// record with a Seq already archived is refused with an error; the
	// caller keeps sequences contiguous.
	Insert(ctx context.Context, q sqldb.Querier, rs ...Record) error
	// Range returns up to limit records with Seq > after, in sequence
	// order.
	Range(ctx context.Context, after uint64, limit int) ([]Record, error)
	// Case returns the archived records of a case, in sequence order.
	Case(ctx context.Context, caseID string) ([]Record, error)
}

// SQLStore is the Store on sqldb. Its TreeStore is the event log's tree;
// AccessLog is the access log's archive and tree.
type SQLStore struct {
	db sqldb.DB
	// tree and checkpoints are the tables of the TreeStore.
	tree, checkpoints string
}

// NewSQLStore returns a store on a database migrated with Migrations.
func NewSQLStore(db sqldb.DB) *SQLStore {
	return &SQLStore{db: db, tree: "audit_tree", checkpoints: "audit_checkpoints"}
}

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

// Insert implements Store: many records a statement (sqldb.InsertRows).
func (s *SQLStore) Insert(ctx context.Context, q sqldb.Querier, rs ...Record) error {
	if len(rs) == 0 {
		return nil
	}
	rows := make([][]any, len(rs))
	for i, r := range rs {
		data := r.Data
		if data == nil {
			data = []byte{} // an empty body is stored as such, never as NULL
		}
		rows[i] = []any{int64(r.Seq), r.ID, r.CaseID, r.Type, r.Subject, sqldb.Micros(r.At), data, r.Hash, r.Chain}
	}
	err := sqldb.InsertRows(ctx, q, `INSERT INTO audit_events (seq, id, case_id, type, subject, at, data, hash, chain)`, "", rows)
	if err != nil {
		return fmt.Errorf("archive events %d to %d: %w", rs[0].Seq, rs[len(rs)-1].Seq, err)
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
	return scanRecords(rows, min(limit, maxRangeHint))
}

// maxRangeHint bounds the room Range makes ahead for a page's records.
const maxRangeHint = 10_000

// leafRanger reads the archive with only what a leaf needs (LeafBytes:
// sequence, id, subject, time, bytes): Export reads the whole archive
// twice, and the hashes, chain, case id and type are a third of each row.
type leafRanger interface {
	leafRange(ctx context.Context, after uint64, limit int) ([]Record, error)
}

// leafRange is Range with only the fields of a leaf set.
func (s *SQLStore) leafRange(ctx context.Context, after uint64, limit int) ([]Record, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, id, subject, at, data FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`,
		int64(after), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("archive after %d: %w", after, err)
	}
	defer rows.Close()
	out := make([]Record, 0, limit)
	for rows.Next() {
		var (
			r       Record
			seq, at int64
		)
		if err := rows.Scan(&seq, &r.ID, &r.Subject, &at, &r.Data); err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		r.Seq, r.At = uint64(seq), sqldb.Time(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	return out, nil
}

// Case implements Store.
func (s *SQLStore) Case(ctx context.Context, caseID string) ([]Record, error) {
	rows, err := s.db.Query(ctx, `SELECT `+recordColumns+` FROM audit_events WHERE case_id = $1 ORDER BY seq`, caseID)
	if err != nil {
		return nil, fmt.Errorf("archive of case %s: %w", caseID, err)
	}
	return scanRecords(rows, 0)
}

// scanRecords reads rows of recordColumns; room for size records is made
// ahead (a page of verify's is 4,096 records: grown as they came, its
// slice was a sixth of the bytes verify allocated).
func scanRecords(rows sqldb.Rows, size int) ([]Record, error) {
	defer rows.Close()
	out := make([]Record, 0, max(size, 0))
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

// TreeStore holds the Merkle tree over the archive and its signed
// checkpoints. Hashes are kept at their tlog stored-hash index
// (tlog.StoredHashIndex), so that a tree head or a proof reads O(log n) of
// them.
type TreeStore interface {
	// ReadHashes returns the stored hashes at indexes, in their order.
	// q nil reads outside any transaction. A missing hash is an error.
	ReadHashes(ctx context.Context, q sqldb.Querier, indexes []int64) ([]tlog.Hash, error)
	// AppendHashes stores hs at indexes start, start+1, ...
	AppendHashes(ctx context.Context, q sqldb.Querier, start int64, hs []tlog.Hash) error
	// TreeSize returns how many leaves the stored hashes cover.
	TreeSize(ctx context.Context, q sqldb.Querier) (int64, error)
	// PutCheckpoint keeps a signed checkpoint; one of the same size kept
	// before stays (both are signatures of the same tree).
	PutCheckpoint(ctx context.Context, c StoredCheckpoint) error
	// LatestCheckpoint returns the checkpoint of the largest size; ok is
	// false when there is none.
	LatestCheckpoint(ctx context.Context) (c StoredCheckpoint, ok bool, err error)
	// Checkpoints returns the kept checkpoints of sizes in (after, upto],
	// smallest first, at most limit.
	Checkpoints(ctx context.Context, after, upto int64, limit int) ([]StoredCheckpoint, error)
}

// StoredCheckpoint is a signed checkpoint as kept: its tree size, the
// signed note and when it was signed.
type StoredCheckpoint struct {
	Size int64
	Note []byte
	At   time.Time
}

// ReadHashes implements TreeStore.
func (s *SQLStore) ReadHashes(ctx context.Context, q sqldb.Querier, indexes []int64) ([]tlog.Hash, error) {
	if q == nil {
		q = s.db
	}
	if len(indexes) == 0 {
		return nil, nil
	}
	args := make([]any, len(indexes))
	for i, x := range indexes {
		args[i] = x
	}
	in, args := sqldb.In(1, args)
	rows, err := q.Query(ctx, `SELECT idx, hash FROM `+s.tree+` WHERE idx IN (`+in+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	defer rows.Close()
	got := make(map[int64]tlog.Hash, len(indexes))
	for rows.Next() {
		var (
			idx int64
			h   []byte
		)
		if err := rows.Scan(&idx, &h); err != nil {
			return nil, fmt.Errorf("read tree hashes: %w", err)
		}
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("tree hash %d has %d bytes", idx, len(h))
		}
		got[idx] = tlog.Hash(h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := got[x]
		if !ok {
			return nil, fmt.Errorf("tree hash %d is missing", x)
		}
		out[i] = h
	}
	return out, nil
}

// hashRanger reads stored hashes with one range scan instead of a list
// of indexes: the leaves of consecutive events are spread over about
// twice as many stored hashes (the tree's nodes between them), which a
// range reads far cheaper than thousands of bound indexes.
type hashRanger interface {
	readHashesInRange(ctx context.Context, q sqldb.Querier, indexes []int64) ([]tlog.Hash, error)
}

// readHashesInRange is ReadHashes for ascending indexes, read with one
// range scan from the first to the last.
func (s *SQLStore) readHashesInRange(ctx context.Context, q sqldb.Querier, indexes []int64) ([]tlog.Hash, error) {
	if q == nil {
		q = s.db
	}
	if len(indexes) == 0 {
		return nil, nil
	}
	lo, hi := indexes[0], indexes[len(indexes)-1]
	rows, err := q.Query(ctx, `SELECT idx, hash FROM `+s.tree+` WHERE idx >= $1 AND idx <= $2 ORDER BY idx`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	defer rows.Close()
	out := make([]tlog.Hash, 0, len(indexes))
	var (
		idx int64
		h   []byte
	)
	for rows.Next() && len(out) < len(indexes) {
		if err := rows.Scan(&idx, &h); err != nil {
			return nil, fmt.Errorf("read tree hashes: %w", err)
		}
		if idx != indexes[len(out)] {
			continue // a node between two leaves
		}
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("tree hash %d has %d bytes", idx, len(h))
		}
		out = append(out, tlog.Hash(h))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tree hashes: %w", err)
	}
	if len(out) < len(indexes) {
		return nil, fmt.Errorf("tree hash %d is missing", indexes[len(out)])
	}
	return out, nil
}

// AppendHashes implements TreeStore.
func (s *SQLStore) AppendHashes(ctx context.Context, q sqldb.Querier, start int64, hs []tlog.Hash) error {
	rows := make([][]any, len(hs))
	for i, h := range hs {
		rows[i] = []any{start + int64(i), h[:]}
	}
	if err := sqldb.InsertRows(ctx, q, `INSERT INTO `+s.tree+` (idx, hash)`, "", rows); err != nil {
		return fmt.Errorf("store tree hashes from %d: %w", start, err)
	}
	return nil
}

// TreeSize implements TreeStore: the newest stored hash is the last one
// written for the last leaf, and names that leaf.
func (s *SQLStore) TreeSize(ctx context.Context, q sqldb.Querier) (int64, error) {
	if q == nil {
		q = s.db
	}
	var idx int64
	err := q.QueryRow(ctx, `SELECT idx FROM `+s.tree+` ORDER BY idx DESC LIMIT 1`).Scan(&idx)
	if errors.Is(err, sqldb.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("tree size: %w", err)
	}
	level, n := tlog.SplitStoredHashIndex(idx)
	return (n + 1) << level, nil
}

// PutCheckpoint implements TreeStore.
func (s *SQLStore) PutCheckpoint(ctx context.Context, c StoredCheckpoint) error {
	_, err := s.db.Exec(ctx, `INSERT INTO `+s.checkpoints+` (size, note, at) VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING`,
		c.Size, string(c.Note), sqldb.Micros(c.At))
	if err != nil {
		return fmt.Errorf("keep checkpoint %d: %w", c.Size, err)
	}
	return nil
}

// LatestCheckpoint implements TreeStore.
func (s *SQLStore) LatestCheckpoint(ctx context.Context) (StoredCheckpoint, bool, error) {
	c, err := scanCheckpoint(s.db.QueryRow(ctx, `SELECT size, note, at FROM `+s.checkpoints+` ORDER BY size DESC LIMIT 1`))
	if errors.Is(err, sqldb.ErrNoRows) {
		return StoredCheckpoint{}, false, nil
	}
	if err != nil {
		return StoredCheckpoint{}, false, fmt.Errorf("latest checkpoint: %w", err)
	}
	return c, true, nil
}

// Checkpoints implements TreeStore.
func (s *SQLStore) Checkpoints(ctx context.Context, after, upto int64, limit int) ([]StoredCheckpoint, error) {
	rows, err := s.db.Query(ctx, `SELECT size, note, at FROM `+s.checkpoints+` WHERE size > $1 AND size <= $2 ORDER BY size LIMIT $3`,
		after, upto, int64(limit))
	if err != nil {
		return nil, fmt.Errorf("checkpoints after %d: %w", after, err)
	}
	defer rows.Close()
	var out []StoredCheckpoint
	for rows.Next() {
		c, err := scanCheckpoint(rows)
		if err != nil {
			return nil, fmt.Errorf("checkpoints after %d: %w", after, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("checkpoints after %d: %w", after, err)
	}
	return out, nil
}

func scanCheckpoint(row sqldb.Row) (StoredCheckpoint, error) {
	var (
		c    StoredCheckpoint
		note string
		at   int64
	)
	if err := row.Scan(&c.Size, &note, &at); err != nil {
		return StoredCheckpoint{}, err
	}
	c.Note, c.At = []byte(note), sqldb.Time(at)
	return c, nil
}

// AccessLog is the archive of the access log (reads of personal data,
// stream EVA_ACCESS) with its own Merkle tree and checkpoints. Its records
// have Seq, Subject, At and Data; their leaves are LeafBytes with an empty
// id.
type AccessLog interface {
	TreeStore
	// LastAccess returns the sequence of the newest archived record; 0
	// when none.
	LastAccess(ctx context.Context, q sqldb.Querier) (uint64, error)
	// InsertAccess archives r inside q.
	InsertAccess(ctx context.Context, q sqldb.Querier, r Record) error
	// AccessRange returns up to limit records with Seq > after, in order.
	AccessRange(ctx context.Context, after uint64, limit int) ([]Record, error)
}

// AccessLog returns the access log's archive on the same database.
func (s *SQLStore) AccessLog() *SQLStore {
	return &SQLStore{db: s.db, tree: "audit_access_tree", checkpoints: "audit_access_checkpoints"}
}

// LastAccess implements AccessLog.
func (s *SQLStore) LastAccess(ctx context.Context, q sqldb.Querier) (uint64, error) {
	if q == nil {
		q = s.db
	}
	var seq int64
	err := q.QueryRow(ctx, `SELECT seq FROM audit_access ORDER BY seq DESC LIMIT 1`).Scan(&seq)
	if errors.Is(err, sqldb.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("access archive head: %w", err)
	}
	return uint64(seq), nil
}

// InsertAccess implements AccessLog.
func (s *SQLStore) InsertAccess(ctx context.Context, q sqldb.Querier, r Record) error {
	data := r.Data
	if data == nil {
		data = []byte{}
	}
	if _, err := q.Exec(ctx, `INSERT INTO audit_access (seq, subject, at, data) VALUES ($1, $2, $3, $4)`,
		int64(r.Seq), r.Subject, sqldb.Micros(r.At), data); err != nil {
		return fmt.Errorf("archive access record %d: %w", r.Seq, err)
	}
	return nil
}

// AccessRange implements AccessLog.
func (s *SQLStore) AccessRange(ctx context.Context, after uint64, limit int) ([]Record, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, subject, at, data FROM audit_access WHERE seq > $1 ORDER BY seq LIMIT $2`,
		int64(after), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("access archive after %d: %w", after, err)
	}
	defer rows.Close()
	out := []Record{}
	for rows.Next() {
		var (
			r       Record
			seq, at int64
		)
		if err := rows.Scan(&seq, &r.Subject, &at, &r.Data); err != nil {
			return nil, fmt.Errorf("read access archive: %w", err)
		}
		r.Seq, r.At = uint64(seq), sqldb.Time(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read access archive: %w", err)
	}
	return out, nil
}
