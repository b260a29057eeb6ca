package eventlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// jsonProjection keeps whole cases as JSON, as the services' read models do.
type jsonProjection struct{}

func (jsonProjection) Projected(ctx context.Context, q sqldb.Querier, id string) (*assist.Case, error) {
	var state string
	err := q.QueryRow(ctx, `SELECT state FROM proj WHERE id = $1`, id).Scan(&state)
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c assist.Case
	return &c, json.Unmarshal([]byte(state), &c)
}

func (jsonProjection) Project(ctx context.Context, q sqldb.Querier, c *assist.Case) error {
	state, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO proj (id, state) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET state = excluded.state`,
		c.ID, string(state))
	return err
}

// An event that arrives before its predecessor (a redelivery overtook it)
// is applied at once by folding the case from the log; the late
// predecessor then changes nothing, and the projection equals the fold.
func TestProjectRepairsAGap(t *testing.T) {
	db := sqldbtest.SQLite(t)
	ctx := context.Background()
	if _, err := db.Exec(ctx, `CREATE TABLE proj (id TEXT PRIMARY KEY, state TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	l, _ := openLog(t)
	id := newID()
	seq1, err := l.Append(ctx, submitted(t, id), 0)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := l.Case(ctx, id)
	seq2, err := l.Append(ctx, claimed(t, c, olu), seq1)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := l.LoadRaw(ctx, id)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%v %v", msgs, err)
	}
	h := l.Project(jsonProjection{})
	apply := func(m eventlog.Msg) {
		t.Helper()
		if err := db.Tx(ctx, func(q sqldb.Querier) error { return h(ctx, q, m) }); err != nil {
			t.Fatal(err)
		}
	}
	apply(msgs[1]) // the claim first: a gap, repaired from the log
	apply(msgs[0]) // the late submission: already included
	got, err := jsonProjection{}.Projected(ctx, db, id)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := l.Case(ctx, id)
	if got.Version != seq2 || got.State != assist.StateUnderReview || got.Events != want.Events || got.ClaimedBy != "olu" {
		t.Fatalf("projected %+v, want the fold of the log %+v", got, want)
	}
}
