package sqldb

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// InsertRowsAtMost is InsertRows with at most most rows a statement.
var InsertRowsAtMost = insertRows

// OpenPostgresGated is OpenPostgresConfig with a gate of the given places
// and wait.
func OpenPostgresGated(ctx context.Context, cfg *pgxpool.Config, places int, wait time.Duration) (DB, error) {
	return openPostgres(ctx, cfg, newGate(places, wait))
}
