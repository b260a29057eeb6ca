package approval

import (
	"context"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/listing"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval/approvalapi"
)

//go:embed migrations
var migrationFS embed.FS

// Migrations is approval's schema.
var Migrations = sqldb.Embedded("approval", migrationFS)

// finished are the states in which a case is no longer a possible
// duplicate of a new one.
var finished = sqldb.Args(assist.Finished)

// Store is approval's read model: the review queue. It keeps of each case
// only what the queue needs (see QueueFields); the whole case is intake's
// read model.
type Store interface {
	// Project stores the queue's part of a case inside a consumer's
	// transaction.
	Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error
	// Projected loads the queue's part of a case (QueueFields) inside a
	// consumer's transaction; nil when there is none.
	Projected(ctx context.Context, q sqldb.Querier, caseID string) (*assist.Case, error)
	// Queue returns open cases, missed deadlines first, then by deadline.
	// Errors: CodeInvalid for a bad cursor.
	Queue(ctx context.Context, now time.Time, r approvalapi.QueueRequest) (approvalapi.QueuePage, error)
}

// QueueFields is the part of a case the queue keeps: what orders it, what
// finds its possible duplicates, and its version. assist.Case.Apply sets
// each of these fields from the event alone, never from a field outside
// them, so the queue folds events into this part of a case without the
// rest (TestQueueFieldsFoldAlone checks it for every event type). Times
// are kept to the microsecond, as stored.
func QueueFields(c *assist.Case) *assist.Case {
	us := func(t time.Time) time.Time { return sqldb.Time(sqldb.Micros(t)) }
	return &assist.Case{ID: c.ID, State: c.State, Urgency: c.Urgency, Category: c.Category,
		BeneficiaryRefHash: c.BeneficiaryRefHash, Deadline: us(c.Deadline), Escalated: c.Escalated, Warned: c.Warned,
		ClaimedBy: c.ClaimedBy, ClaimExpiresAt: us(c.ClaimExpiresAt), CreatedAt: us(c.CreatedAt), UpdatedAt: us(c.UpdatedAt),
		Version: c.Version}
}

// SQLStore is the Store on sqldb.
type SQLStore struct {
	db sqldb.DB
	// dues, when set, is told the due times (dueAt) of the cases a
	// projection wrote, once its transaction committed: the sweeper's want.
	dues func([]time.Time)
}

// NewSQLStore returns a store on a migrated database.
func NewSQLStore(db sqldb.DB) *SQLStore { return &SQLStore{db: db} }

const queueCols = `id, status, urgency, category, ref_hash, deadline, escalated, claimed_by, claim_expires_at, created_at, updated_at, version, warned`

// writeColumns are queueCols, one a name, and due_at (dueAt), which only
// the sweep reads.
var writeColumns = append(strings.Split(queueCols, ", "), "due_at")

// queueSet are the columns a later event's write sets again; queueSeldom
// are those of them that an index holds and that only an amendment or
// an erasure changes (sqldb.UpsertRows).
var queueSet, queueSeldom = []string{"status", "urgency", "deadline", "escalated", "claimed_by", "claim_expires_at", "updated_at",
	"version", "warned", "due_at"}, []string{"category", "ref_hash"}

// Project implements Store.
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
// made without the database. Once the consumer's transaction that writes
// them commits, the cases' due times go to dues (outside a consumer's
// batch, at once: a repair, whose own commit follows, well before any
// sweep the times ask for).
func (s *SQLStore) PrepareAll(cs []*assist.Case) (func(context.Context, sqldb.Querier) error, error) {
	rows := make([][]any, len(cs))
	var dues []time.Time
	for i, c := range cs {
		due := dueAt(c)
		if !due.IsZero() {
			dues = append(dues, due)
		}
		c = QueueFields(c)
		rows[i] = []any{c.ID, string(c.State), string(c.Urgency), string(c.Category), hex.EncodeToString(c.BeneficiaryRefHash),
			sqldb.Micros(c.Deadline), boolInt(c.Escalated), c.ClaimedBy, sqldb.Micros(c.ClaimExpiresAt),
			sqldb.Micros(c.CreatedAt), sqldb.Micros(c.UpdatedAt), int64(c.Version), boolInt(c.Warned), ceilMicros(due)}
	}
	return func(ctx context.Context, q sqldb.Querier) error {
		err := sqldb.UpsertRows(ctx, q, "approval_queue", writeColumns, queueSet, queueSeldom, rows)
		if err != nil || s.dues == nil || len(dues) == 0 {
			return err
		}
		if !eventlog.AfterCommit(ctx, func() { s.dues(dues) }) {
			s.dues(dues)
		}
		return nil
	}, nil
}

// ceilMicros is t in microseconds, rounded up (sqldb.Micros rounds down):
// a due time stored never comes before the time it stands for.
func ceilMicros(t time.Time) int64 {
	us := sqldb.Micros(t)
	if !t.IsZero() && sqldb.Time(us).Before(t) {
		us++
	}
	return us
}

// dueCases are the cases whose due time (due_at) is at or before now,
// after the one at cursor (its due time and id; zero at first), in that
// order, at most limit of them, and the cursor of the last.
func (s *SQLStore) dueCases(ctx context.Context, now time.Time, cursor dueCursor, limit int) ([]*assist.Case, dueCursor, error) {
	rows, err := s.db.Query(ctx, `SELECT `+queueCols+`, due_at FROM approval_queue
		WHERE due_at > 0 AND due_at <= $1 AND (due_at > $2 OR due_at = $2 AND id > $3)
		ORDER BY due_at, id LIMIT $4`, sqldb.Micros(now), cursor.due, cursor.id, limit)
	if err != nil {
		return nil, cursor, err
	}
	defer rows.Close()
	var cases []*assist.Case
	for rows.Next() {
		c, err := scanQueued(tailScanner{rows, []any{&cursor.due}})
		if err != nil {
			return nil, cursor, err
		}
		cases, cursor.id = append(cases, c), c.ID
	}
	return cases, cursor, rows.Err()
}

// dueCursor is a place in the cases due: a due time (microseconds) and an
// id.
type dueCursor struct {
	due int64
	id  string
}

// nextDue is the earliest due time after now; false when no case has one.
func (s *SQLStore) nextDue(ctx context.Context, now time.Time) (time.Time, bool, error) {
	var next int64
	err := s.db.QueryRow(ctx, `SELECT COALESCE(MIN(due_at), 0) FROM approval_queue WHERE due_at > 0 AND due_at > $1`,
		sqldb.Micros(now)).Scan(&next)
	return sqldb.Time(next), next != 0, err
}

// Projected implements Store.
func (s *SQLStore) Projected(ctx context.Context, q sqldb.Querier, caseID string) (*assist.Case, error) {
	c, err := scanQueued(q.QueryRow(ctx, `SELECT `+queueCols+` FROM approval_queue WHERE id = $1`, caseID))
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil, nil
	}
	return c, err
}

var _ eventlog.BatchProjection = (*SQLStore)(nil)

// ProjectedAll implements eventlog.BatchProjection: the queue's part of
// the cases of ids that it has, in q.
func (s *SQLStore) ProjectedAll(ctx context.Context, q sqldb.Querier, ids []string) (map[string]*assist.Case, error) {
	return sqldb.ByID(ctx, q, `SELECT `+queueCols+` FROM approval_queue`, ids, scanQueued,
		func(c *assist.Case) string { return c.ID })
}

func scanQueued(r sqldb.Row) (*assist.Case, error) {
	var (
		c                                     assist.Case
		state, urgency, category, refHash     string
		deadline, escalated, claimExp, cr, up int64
		version, warned                       int64
	)
	if err := r.Scan(&c.ID, &state, &urgency, &category, &refHash, &deadline, &escalated, &c.ClaimedBy, &claimExp,
		&cr, &up, &version, &warned); err != nil {
		return nil, err
	}
	ref, err := hex.DecodeString(refHash)
	if err != nil {
		return nil, fmt.Errorf("queued case %s: ref_hash: %w", c.ID, err)
	}
	if len(ref) > 0 {
		c.BeneficiaryRefHash = ref
	}
	c.State, c.Urgency, c.Category = assist.State(state), assist.Urgency(urgency), assist.Category(category)
	c.Deadline, c.Escalated, c.ClaimExpiresAt = sqldb.Time(deadline), escalated != 0, sqldb.Time(claimExp)
	c.Warned = warned != 0
	c.CreatedAt, c.UpdatedAt, c.Version = sqldb.Time(cr), sqldb.Time(up), uint64(version)
	return &c, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Queue implements Store.
func (s *SQLStore) Queue(ctx context.Context, now time.Time, r approvalapi.QueueRequest) (approvalapi.QueuePage, error) {
	limit := r.Limit
	if limit <= 0 {
		limit = listing.DefaultLimit
	}
	limit = min(limit, listing.MaxLimit)
	// The cursor keeps the first page's clock, so that a case does not
	// change bucket (overdue or not) between pages.
	var after []any
	if r.Cursor != "" {
		parts, err := listing.Decode(r.Cursor, 4)
		if err != nil {
			return approvalapi.QueuePage{}, err
		}
		nums := make([]int64, 3)
		for i := range nums {
			if nums[i], err = strconv.ParseInt(parts[i], 10, 64); err != nil {
				return approvalapi.QueuePage{}, listing.BadCursor()
			}
		}
		now = sqldb.Time(nums[0])
		after = []any{nums[1], nums[2], parts[3]}
	}
	query, args := queueQuery(sqldb.Micros(now), after, limit+1)
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return approvalapi.QueuePage{}, err
	}
	defer rows.Close()
	page := approvalapi.QueuePage{Items: []approvalapi.QueueItem{}}
	var last []string
	var cases []*assist.Case
	for rows.Next() {
		var b int64
		c, err := scanQueued(tailScanner{rows, []any{&b}})
		if err != nil {
			return approvalapi.QueuePage{}, err
		}
		if len(page.Items) == limit {
			page.NextCursor = listing.Encode(append([]string{strconv.FormatInt(sqldb.Micros(now), 10)}, last...)...)
			break
		}
		page.Items = append(page.Items, approvalapi.QueueItem{CaseID: c.ID, Status: string(c.State), Urgency: string(c.Urgency),
			Deadline: c.Deadline, Escalated: c.Escalated, ClaimedBy: c.ClaimedBy, ClaimExpiresAt: c.ClaimExpiresAt,
			Overdue: sqldb.Micros(c.Deadline) <= sqldb.Micros(now), DueSoon: c.Warned && !c.Escalated})
		cases = append(cases, c)
		last = []string{strconv.FormatInt(b, 10), strconv.FormatInt(sqldb.Micros(c.Deadline), 10), c.ID}
	}
	if err := rows.Err(); err != nil {
		return approvalapi.QueuePage{}, err
	}
	rows.Close()
	dups, err := s.duplicates(ctx, cases)
	if err != nil {
		return approvalapi.QueuePage{}, err
	}
	for i := range page.Items {
		page.Items[i].PossibleDuplicates = dups[cases[i].ID]
		if page.Items[i].PossibleDuplicates == nil {
			page.Items[i].PossibleDuplicates = []string{}
		}
	}
	return page, nil
}

// queuedIn is the states a case waits in the queue in, as SQL literals: the
// queue's partial indexes (migration 3) cover exactly these, and a planner
// uses a partial index only for a query whose condition is written as its.
var queuedIn = "status IN ('" + string(assist.StateSubmitted) + "', '" + string(assist.StateUnderReview) + "', '" +
	string(assist.StateAwaitingSecondApproval) + "')"

// queueQuery is a page of the queue: escalated or overdue cases first
// (bucket 0), then the others (bucket 1), each by deadline and id, after
// the cursor (bucket, deadline, id) when there is one. Each bucket is read
// in index order and only as far as the page reaches, never sorted whole:
// overdue cases (deadline <= now) are the start of the deadline index;
// escalated ones still before their deadline (an amended urgency) come
// from their own small index; the rest is the deadline index from now on.
// With a million queued cases the first page reads a few dozen index
// entries.
func queueQuery(now int64, after []any, limit int) (string, []any) {
	args := []any{now, int64(limit)}
	parts := []struct {
		bucket int64
		where  string
	}{
		{0, `deadline <= $1`},
		{0, `escalated = 1 AND deadline > $1`},
		{1, `escalated = 0 AND deadline > $1`},
	}
	var sel []string
	for _, p := range parts {
		where := queuedIn + ` AND ` + p.where
		if after != nil {
			switch b := after[0].(int64); {
			case p.bucket < b:
				continue // the cursor is past this bucket
			case p.bucket == b:
				where += fmt.Sprintf(` AND (deadline, id) > ($%d, $%d)`, len(args)+1, len(args)+2)
				args = append(args, after[1], after[2])
			}
		}
		sel = append(sel, fmt.Sprintf(`SELECT * FROM (SELECT %s, %d AS bucket FROM approval_queue WHERE %s ORDER BY deadline, id LIMIT $2) AS p%d`,
			queueCols, p.bucket, where, len(sel)))
	}
	return `SELECT * FROM (` + strings.Join(sel, ` UNION ALL `) + `) AS q ORDER BY bucket, deadline, id LIMIT $2`, args
}

// tailScanner appends destinations for trailing columns to a scan.
type tailScanner struct {
	r    sqldb.Row
	tail []any
}

func (t tailScanner) Scan(dest ...any) error { return t.r.Scan(append(dest, t.tail...)...) }

// duplicates lists, for each of the cases, the other unfinished cases, at
// any post, for the same beneficiary reference and category, in the order
// they were filed: one query for the whole page.
func (s *SQLStore) duplicates(ctx context.Context, cases []*assist.Case) (map[string][]string, error) {
	out := map[string][]string{}
	var ids []any
	for _, c := range cases {
		if len(c.BeneficiaryRefHash) > 0 {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return out, nil
	}
	args := append(slices.Clone(finished), ids...)
	rows, err := s.db.Query(ctx, `SELECT p.id, d.id FROM approval_queue p
		JOIN approval_queue d ON d.ref_hash = p.ref_hash AND d.category = p.category AND d.id <> p.id
		WHERE p.id IN (`+sqldb.Placeholders(len(finished)+1, len(ids))+`)
		  AND d.status NOT IN (`+sqldb.Placeholders(1, len(finished))+`)
		ORDER BY p.id, d.created_at, d.id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var of, dup string
		if err := rows.Scan(&of, &dup); err != nil {
			return nil, err
		}
		out[of] = append(out[of], dup)
	}
	return out, rows.Err()
}
