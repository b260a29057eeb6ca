package approval_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/approval/approvaltest"
)

// TestMeasureQueueMillion loads 1,000,000 cases straight into the queue's
// read model on PostgreSQL (one INSERT … SELECT over generate_series: 70 %
// of them waiting in the queue's three states, the rest finished; 1 % of
// the waiting ones escalated; deadlines spread over 30 days around now,
// so about half the waiting ones are overdue), then reads the first page
// of the queue (the default limit, and possible duplicates) as GET
// /v1/queue asks approval for it, 300 times, and logs p50 and p99. It
// runs with EVA_MEASURE=1 (docs/benchmarks.md); it asserts only that the
// page is in the queue's order.
func TestMeasureQueueMillion(t *testing.T) {
	evatest.Measurement(t, "./services/approval")
	ctx := context.Background()
	db := sqldbtest.Postgres(t)
	migrate(t, db, approval.Migrations)
	const n = 1_000_000
	now := time.Now().UTC()
	start := time.Now()
	if err := approvaltest.FillQueue(ctx, db, n, now); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d cases into approval_queue in %v", n, time.Since(start).Round(time.Millisecond))

	s := approval.NewSQLStore(db)
	lat := make([]time.Duration, 300)
	for i := range lat {
		t0 := time.Now()
		page, err := s.Queue(ctx, now, approvalapi.QueueRequest{})
		lat[i] = time.Since(t0)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if len(page.Items) == 0 || page.NextCursor == "" {
				t.Fatalf("first page of a million: %d items, cursor %q", len(page.Items), page.NextCursor)
			}
			if !slices.IsSortedFunc(page.Items, func(a, b approvalapi.QueueItem) int {
				return a.Deadline.Compare(b.Deadline)
			}) || !page.Items[0].Overdue {
				t.Fatalf("first page not overdue first by deadline: %+v", page.Items[:3])
			}
		}
	}
	slices.Sort(lat)
	t.Logf("GET /v1/queue's query, first page (%d cases): p50 %v, p99 %v, max %v",
		n, lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)*99/100-1].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
	// Before: the query of the queue before migration 3, which sorted
	// every waiting case by a computed bucket, then deadline (and then
	// read each case's possible duplicates with a query of its own).
	old := make([]time.Duration, 20)
	for i := range old {
		t0 := time.Now()
		if _, err := sqldb.Strings(ctx, db, `SELECT id FROM approval_queue WHERE status IN ($2, $3, $4)
			ORDER BY CASE WHEN escalated = 1 OR deadline <= $1 THEN 0 ELSE 1 END, deadline, id LIMIT 51`,
			sqldb.Micros(now), "submitted", "under_review", "awaiting_second_approval"); err != nil {
			t.Fatal(err)
		}
		old[i] = time.Since(t0)
	}
	slices.Sort(old)
	t.Logf("the sorting query of before, alone (20 times): p50 %v, max %v", old[len(old)/2].Round(10*time.Microsecond), old[len(old)-1].Round(10*time.Microsecond))
	var plan string
	rows, err := db.Query(ctx, `EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM approval_queue
		WHERE status IN ('submitted', 'under_review', 'awaiting_second_approval') AND deadline <= $1 ORDER BY deadline, id LIMIT 51`,
		sqldb.Micros(now))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan += "\n  " + line
	}
	t.Logf("plan of the overdue part:%s", plan)
}
