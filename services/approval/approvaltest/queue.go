// Package approvaltest fills approval's read model for measurements.
package approvaltest

import (
	"context"
	"time"

	"github.com/eva-org/eva/pkg/sqldb"
)

// FillQueue inserts n cases into approval_queue with one INSERT … SELECT
// over generate_series (PostgreSQL): case i has the id md5(i)::uuid, 70 %
// wait in the queue's three states and the rest are finished, 1 % are
// escalated, deadlines are spread over 30 days around now (so about half
// the waiting ones are overdue), and beneficiary references are shared by
// 2–3 cases. It analyzes the table after.
func FillQueue(ctx context.Context, db sqldb.DB, n int64, now time.Time) error {
	if _, err := db.Exec(ctx, `INSERT INTO approval_queue (id, status, urgency, category, ref_hash, deadline, escalated,
			claimed_by, claim_expires_at, created_at, updated_at, version)
		SELECT md5(i::text)::uuid::text,
		       (ARRAY['submitted','under_review','awaiting_second_approval','submitted','under_review','submitted','submitted',
		              'disbursed','rejected','withdrawn'])[1 + i % 10],
		       (ARRAY['critical','urgent','routine'])[1 + i % 3],
		       (ARRAY['shelter','food','medical','transport'])[1 + i % 4],
		       md5((i % 400000)::text),
		       $1::bigint + ((i::bigint * 7919) % 2592000) * 1000000 - 1296000000000,
		       CASE WHEN i % 100 = 0 THEN 1 ELSE 0 END,
		       '', 0, $1::bigint - 86400000000, $1::bigint - 86400000000, 1
		FROM generate_series(1, $2) AS i`, sqldb.Micros(now), n); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `ANALYZE approval_queue`)
	return err
}
