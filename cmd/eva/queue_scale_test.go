package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/cmd/eva/internal/wire/wiretest"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval/approvaltest"
)

// TestMeasureQueueMillionOverHTTP measures GET /v1/queue, first page, as
// an approver gets it from a whole EVA on PostgreSQL whose read models
// hold 1,000,000 cases: the gateway's authentication, approval's queue
// query, intake's read of the page's cases and the JSON, over HTTP.
//
// How it loads them: one case is filed through the API; once intake's
// read model has its row, that row is copied a million times with new
// ids (one INSERT … SELECT over generate_series, the id inside the state
// replaced too), and approval's queue gets a row for each of the same ids
// (70 % waiting in its three states, 1 % escalated, deadlines spread over
// 30 days around now: approvaltest.FillQueue, as TestMeasureQueueMillion).
// It runs with EVA_MEASURE=1 (docs/benchmarks.md) and asserts only that
// each answer is a full first page.
func TestMeasureQueueMillionOverHTTP(t *testing.T) {
	evatest.Measurement(t, "./cmd/eva")
	const n = 1_000_000
	ctx := context.Background()
	s := wiretest.Start(t, wiretest.Options{Postgres: true, Quiet: true})
	c := newClient(t, s.URL)
	payees := get[pageJSON[payeeJSON]](c, "ana", "/v1/payees", http.StatusOK).Items
	if len(payees) == 0 {
		t.Fatal("no seeded payee")
	}
	template := post[caseJSON](c, "ana", "/v1/requests", fileBody(payees[0].ID, "REF-QUEUE-TEMPLATE", 10_000), http.StatusCreated, nil).ID
	db, err := s.P.DB(ctx, "intake")
	if err != nil {
		t.Fatal(err)
	}
	evatest.Await(t, 30*time.Second, "intake's row of the template case", func() (bool, string) {
		ids, err := sqldb.Strings(ctx, db, `SELECT id FROM intake_cases WHERE id = $1`, template)
		return err == nil && len(ids) == 1, fmt.Sprint(ids, err)
	})
	cols, err := sqldb.Strings(ctx, db, `SELECT column_name FROM information_schema.columns
		WHERE table_name = 'intake_cases' AND table_schema = current_schema() ORDER BY ordinal_position`)
	if err != nil || !slices.Contains(cols, "state") {
		t.Fatalf("intake_cases columns %v: %v", cols, err)
	}
	sel := make([]string, len(cols))
	for i, col := range cols {
		switch col {
		case "id":
			sel[i] = "md5(i::text)::uuid::text"
		case "state":
			sel[i] = "replace(state, $1, md5(i::text)::uuid::text)"
		default:
			sel[i] = col
		}
	}
	start := time.Now()
	if _, err := db.Exec(ctx, `INSERT INTO intake_cases (`+strings.Join(cols, ", ")+`) SELECT `+strings.Join(sel, ", ")+
		` FROM intake_cases, generate_series(1, $2) AS i WHERE id = $1`, template, int64(n)); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := approvaltest.FillQueue(ctx, db, n, now); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `ANALYZE intake_cases`); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d cases into intake's and approval's read models in %v", n, time.Since(start).Round(time.Second))

	lat := make([]time.Duration, 300)
	for i := range lat {
		t0 := time.Now()
		resp := c.do(req{user: "olu", method: http.MethodGet, path: "/v1/queue"})
		lat[i] = time.Since(t0)
		if resp.Status != http.StatusOK {
			t.Fatalf("GET /v1/queue: %s", resp)
		}
		if i == 0 {
			var p pageJSON[map[string]any]
			resp.decode(t, &p)
			if len(p.Items) != 50 || p.NextCursor == "" {
				t.Fatalf("first page of a million: %d items, cursor %q", len(p.Items), p.NextCursor)
			}
		}
	}
	slices.Sort(lat)
	t.Logf("GET /v1/queue over HTTP, first page (%d cases): p50 %v, p99 %v, max %v", n,
		lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100-1].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
}
