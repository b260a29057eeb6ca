package intake

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/listing"
	"github.com/eva-org/eva/pkg/sqldb"
)

//go:embed migrations
var migrationFS embed.FS

// Migrations is intake's schema.
var Migrations = sqldb.Migrations{
	Name:     "intake",
	Postgres: sub("migrations/postgres"),
	SQLite:   sub("migrations/sqlite"),
}

func sub(dir string) fs.FS {
	f, err := fs.Sub(migrationFS, dir)
	if err != nil {
		panic(err)
	}
	return f
}

// Store is intake's state: data keys and the projected list of requests.
type Store interface {
	// DataKey returns the case's wrapped data key, storing wrapped first
	// when the case has none yet. The key that is returned is the one to
	// use: a retry of a filing reuses the first attempt's key. An erased
	// case returns an empty key: erasure is permanent.
	DataKey(ctx context.Context, caseID string, wrapped []byte) ([]byte, error)
	// WrappedKey returns the case's wrapped data key, nil when there is
	// none (never created, or erased).
	WrappedKey(ctx context.Context, caseID string) ([]byte, error)
	// DeleteDataKey destroys the case's data key (erasure), leaving a
	// tombstone so that no key is ever created for the case again.
	DeleteDataKey(ctx context.Context, caseID string) error
	// Project stores the projected case inside a consumer's transaction.
	Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error
	// Projected loads a projected case inside a consumer's transaction;
	// nil when there is none.
	Projected(ctx context.Context, q sqldb.Querier, caseID string) (*assist.Case, error)
	// List returns requests, newest first.
	List(ctx context.Context, f ListFilter) (ListPage, error)
}

// ListFilter selects requests. Empty fields do not filter.
type ListFilter struct {
	// Posts, when not empty, limits the list to these posts (a
	// requester's scope).
	Posts   []string `json:"posts,omitempty"`
	Status  string   `json:"status,omitempty"`
	Post    string   `json:"post,omitempty"`
	Urgency string   `json:"urgency,omitempty"`
	Limit   int      `json:"limit,omitempty"`
	Cursor  string   `json:"cursor,omitempty"`
}

// ListPage is one page of requests.
type ListPage struct {
	Items      []*assist.Case `json:"items"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// SQLStore is the Store on sqldb.
type SQLStore struct{ db sqldb.DB }

// NewSQLStore returns a store on a migrated database.
func NewSQLStore(db sqldb.DB) *SQLStore { return &SQLStore{db: db} }

// DataKey implements Store.
func (s *SQLStore) DataKey(ctx context.Context, caseID string, wrapped []byte) ([]byte, error) {
	var stored []byte
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		if _, err := q.Exec(ctx, `INSERT INTO intake_data_keys (case_id, wrapped, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (case_id) DO NOTHING`, caseID, wrapped, sqldb.Micros(time.Now())); err != nil {
			return err
		}
		return q.QueryRow(ctx, `SELECT wrapped FROM intake_data_keys WHERE case_id = $1`, caseID).Scan(&stored)
	})
	if err != nil {
		return nil, fmt.Errorf("data key %s: %w", caseID, err)
	}
	return stored, nil
}

// WrappedKey implements Store.
func (s *SQLStore) WrappedKey(ctx context.Context, caseID string) ([]byte, error) {
	var wrapped []byte
	err := s.db.QueryRow(ctx, `SELECT wrapped FROM intake_data_keys WHERE case_id = $1`, caseID).Scan(&wrapped)
	if errors.Is(err, sqldb.ErrNoRows) || len(wrapped) == 0 {
		return nil, nil
	}
	return wrapped, err
}

// DeleteDataKey implements Store.
func (s *SQLStore) DeleteDataKey(ctx context.Context, caseID string) error {
	_, err := s.db.Exec(ctx, `INSERT INTO intake_data_keys (case_id, wrapped, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (case_id) DO UPDATE SET wrapped = excluded.wrapped`, caseID, []byte{}, sqldb.Micros(time.Now()))
	return err
}

// Project implements Store.
func (s *SQLStore) Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error {
	state, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO intake_cases (id, post, requester, status, urgency, created_at, updated_at, version, state)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (id) DO UPDATE SET post = excluded.post, status = excluded.status, urgency = excluded.urgency,
			updated_at = excluded.updated_at, version = excluded.version, state = excluded.state`,
		c.ID, c.Post, c.Requester, string(c.State), string(c.Urgency), sqldb.Micros(c.CreatedAt),
		sqldb.Micros(c.UpdatedAt), int64(c.Version), string(state))
	return err
}

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
	var c assist.Case
	if err := json.Unmarshal([]byte(state), &c); err != nil {
		return nil, fmt.Errorf("projected case %s: %w", caseID, err)
	}
	return &c, nil
}

// List implements Store.
func (s *SQLStore) List(ctx context.Context, f ListFilter) (ListPage, error) {
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
			return ListPage{}, err
		}
		at, err := strconv.ParseInt(parts[0], 10, 64)
		if err != nil {
			return ListPage{}, listing.BadCursor()
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
		return ListPage{}, err
	}
	defer rows.Close()
	page := ListPage{Items: []*assist.Case{}}
	var lastAt int64
	var lastID string
	for rows.Next() {
		var state string
		var at int64
		var id string
		if err := rows.Scan(&state, &at, &id); err != nil {
			return ListPage{}, err
		}
		if len(page.Items) == f.Limit {
			page.NextCursor = listing.Encode(strconv.FormatInt(lastAt, 10), lastID)
			break
		}
		var c assist.Case
		if err := json.Unmarshal([]byte(state), &c); err != nil {
			return ListPage{}, fmt.Errorf("projected case %s: %w", id, err)
		}
		page.Items = append(page.Items, &c)
		lastAt, lastID = at, id
	}
	return page, rows.Err()
}
