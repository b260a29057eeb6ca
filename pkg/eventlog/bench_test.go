package eventlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
)

// BenchmarkStart measures filing a new case: one durable append (fsync
// always) with the per-case concurrency check, from parallel writers.
func BenchmarkStart(b *testing.B) {
	l, _ := openLog(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := newID()
			if _, err := l.Start(ctx, submitted(b, id)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkExecute measures a command on an existing case: load its
// events (batched direct get), fold, decide, append.
func BenchmarkExecute(b *testing.B) {
	l, _ := openLog(b)
	ctx := context.Background()
	ids := make([]string, 256)
	for i := range ids {
		ids[i] = newID()
		if _, err := l.Start(ctx, submitted(b, ids[i])); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := ids[i%len(ids)]
		cmd := newID()
		_, err := l.Execute(ctx, eventlog.Command{CaseID: id, ID: cmd, Decide: func(c *assist.Case) (assist.Event, error) {
			b := assist.Cmd{ID: cmd, Actor: ana, At: time.Now().UTC()}
			j := "more detail"
			return c.Amend(b, assist.AmendInput{Justification: &j}, assist.DefaultPolicy())
		}})
		if err != nil && !assist.IsCode(err, assist.CodeConflict) {
			b.Fatal(err)
		}
	}
}
