package eventlog_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// A consumer pulls and decodes its events on a goroutine labeled
// eva-consumer=<its name>, so that a CPU profile splits the consumers' own
// work by consumer (what their handlers run in a SQLite transaction shows
// under the database's writer: eva-db=<file>).
func TestConsumersAreLabeledWithTheirName(t *testing.T) {
	db := sqldbtest.SQLite(t)
	effectsDB(t, db)
	l, _ := openLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	applied := make(chan struct{}, 1)
	h := func(context.Context, sqldb.Querier, eventlog.Msg) error {
		select {
		case applied <- struct{}{}:
		default:
		}
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = l.Consume(ctx, db, eventlog.ConsumerConfig{Name: "labeled-probe"}, h, zaptest.NewLogger(t))
	}()
	if _, err := l.Append(ctx, submitted(t, newID()), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-applied:
	case <-time.After(evatest.Patience):
		t.Fatal("the consumer applied no event")
	}
	evatest.Await(t, 10*time.Second, "the consumer's label", func() (bool, string) {
		got := evatest.GoroutineLabels(t, "eva-consumer")
		return slices.Contains(got, "labeled-probe"), fmt.Sprintf("consumer labels %q", got)
	})
	cancel()
	<-done
}
