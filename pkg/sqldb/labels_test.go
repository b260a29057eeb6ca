package sqldb_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb"
)

// A SQLite database's writer goroutine carries the profiler label
// eva-db=<file name>, so that a CPU profile splits the writers' work
// (every statement and commit of a service's database) by database.
func TestSQLiteWriterIsLabeledWithItsFile(t *testing.T) {
	db, err := sqldb.OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "labeled-probe.db"))
	if err != nil {
		t.Fatal(err)
	}
	// The writer labels itself once it runs.
	evatest.Await(t, 10*time.Second, "the writer's label", func() (bool, string) {
		got := evatest.GoroutineLabels(t, "eva-db")
		return slices.Contains(got, "labeled-probe.db"), fmt.Sprintf("eva-db labels %q", got)
	})
	db.Close()
	if got := evatest.GoroutineLabels(t, "eva-db"); slices.Contains(got, "labeled-probe.db") {
		t.Fatalf("the writer of a closed database still runs: %q", got)
	}
}
