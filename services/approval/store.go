package approval

import (
	"context"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/listing"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval/approvalapi"
)

//go:embed migrations
var migrationFS embed.FS

// Migrations is approval's schema.
var Migrations = sqldb.Embedded("approval", migrationFS)

// queued are the states a case waits in the queue in.
var queued = []any{string(assist.StateSubmitted), string(assist.StateUnderReview), string(assist.StateAwaitingSecondApproval)}

// finished are the states in which a case is no longer a possible
// duplicate of a new one.
var finished = []any{string(assist.StateRejected), string(assist.StateWithdrawn), string(assist.StateClosed), string(assist.StateDisbursed)}

// Store is approval's read model: the cases as approvers see them.
type Store interface {
	// Project stores a projected case inside a consumer's transaction.
	Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error
	// Projected loads a projected case inside a consumer's transaction;
	// nil when there is none.
	Projected(ctx context.Context, q sqldb.Querier, caseID string) (*assist.Case, error)
	// Queue returns open cases, missed deadlines first, then by deadline.
	// Errors: CodeInvalid for a bad cursor.
	Queue(ctx context.Context, now time.Time, r approvalapi.QueueRequest) (approvalapi.QueuePage, error)
}

// SQLStore is the Store on sqldb.
type SQLStore struct{ db sqldb.DB }

// NewSQLStore returns a store on a migrated database.
func NewSQLStore(db sqldb.DB) *SQLStore { return &SQLStore{db: db} }

// Project implements Store.
func (s *SQLStore) Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error {
	state, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO approval_cases (id, status, deadline, category, ref_hash, created_at, updated_at, version, state)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, deadline = excluded.deadline, category = excluded.category,
			ref_hash = excluded.ref_hash, updated_at = excluded.updated_at, version = excluded.version, state = excluded.state`,
		c.ID, string(c.State), sqldb.Micros(c.Deadline), string(c.Category), hex.EncodeToString(c.BeneficiaryRefHash),
		sqldb.Micros(c.CreatedAt), sqldb.Micros(c.UpdatedAt), int64(c.Version), string(state))
	return err
}

// Projected implements Store.
func (s *SQLStore) Projected(ctx context.Context, q sqldb.Querier, caseID string) (*assist.Case, error) {
	var state string
	err := q.QueryRow(ctx, `SELECT state FROM approval_cases WHERE id = $1`, caseID).Scan(&state)
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeCase(caseID, state)
}

func decodeCase(id, state string) (*assist.Case, error) {
	var c assist.Case
	if err := json.Unmarshal([]byte(state), &c); err != nil {
		return nil, fmt.Errorf("projected case %s: %w", id, err)
	}
	return &c, nil
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
	const bucket = `CASE WHEN deadline <= $1 THEN 0 ELSE 1 END`
	args := append([]any{sqldb.Micros(now)}, queued...)
	query := `SELECT state, ` + bucket + `, deadline, id FROM approval_cases WHERE status IN ($2, $3, $4)`
	if after != nil {
		query += ` AND (` + bucket + `, deadline, id) > ($5, $6, $7)`
		args = append(args, after...)
	}
	args = append(args, int64(limit+1))
	query += fmt.Sprintf(` ORDER BY 2, deadline, id LIMIT $%d`, len(args))
	rows, err := s.db.Query(ctx, query, args...)
	if err != nil {
		return approvalapi.QueuePage{}, err
	}
	defer rows.Close()
	page := approvalapi.QueuePage{Items: []approvalapi.QueueItem{}}
	var last []string
	var cases []*assist.Case
	for rows.Next() {
		var state, id string
		var b, deadline int64
		if err := rows.Scan(&state, &b, &deadline, &id); err != nil {
			return approvalapi.QueuePage{}, err
		}
		if len(page.Items) == limit {
			page.NextCursor = listing.Encode(append([]string{strconv.FormatInt(sqldb.Micros(now), 10)}, last...)...)
			break
		}
		c, err := decodeCase(id, state)
		if err != nil {
			return approvalapi.QueuePage{}, err
		}
		page.Items = append(page.Items, approvalapi.QueueItem{Case: caseview.From(c), Overdue: b == 0})
		cases = append(cases, c)
		last = []string{strconv.FormatInt(b, 10), strconv.FormatInt(deadline, 10), id}
	}
	if err := rows.Err(); err != nil {
		return approvalapi.QueuePage{}, err
	}
	rows.Close()
	for i := range page.Items {
		if page.Items[i].PossibleDuplicates, err = s.duplicates(ctx, cases[i]); err != nil {
			return approvalapi.QueuePage{}, err
		}
	}
	return page, nil
}

// duplicates lists other unfinished cases, at any post, for the same
// beneficiary reference and category.
func (s *SQLStore) duplicates(ctx context.Context, c *assist.Case) ([]string, error) {
	out := []string{}
	if len(c.BeneficiaryRefHash) == 0 {
		return out, nil
	}
	rows, err := s.db.Query(ctx, `SELECT id FROM approval_cases WHERE ref_hash = $1 AND category = $2 AND id <> $3
		AND status NOT IN ($4, $5, $6, $7) ORDER BY created_at, id`,
		append([]any{hex.EncodeToString(c.BeneficiaryRefHash), string(c.Category), c.ID}, finished...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
