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

// BenchmarkLoad measures reads of a case of eight events, each one
// batched direct get, its replies, and the conversion of each: one reader
// at a time, and sixteen at once.
func BenchmarkLoad(b *testing.B) {
	l, _ := openLog(b)
	ctx := context.Background()
	id := newID()
	seq, err := l.Append(ctx, submitted(b, id), 0)
	if err != nil {
		b.Fatal(err)
	}
	c, err := l.Case(ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	for range 7 {
		j := "more detail"
		e, err := c.Amend(assist.Cmd{ID: newID(), Actor: ana, At: time.Now().UTC()}, assist.AmendInput{Justification: &j}, assist.DefaultPolicy())
		if err != nil {
			b.Fatal(err)
		}
		if seq, err = l.Append(ctx, e, seq); err != nil {
			b.Fatal(err)
		}
	}
	load := func(b *testing.B) {
		if msgs, err := l.LoadRaw(ctx, id); err != nil || len(msgs) != 8 {
			b.Errorf("read %d events, %v", len(msgs), err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			load(b)
		}
	})
	b.Run("parallel16", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8) // 16 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				load(b)
			}
		})
	})
}

// BenchmarkExecuteFromThen measures two commands of a case that follow
// each other at once (a payment sent and settled), from sixteen writers
// each on its own case: appended one by one (ExecuteFrom twice), or as
// one atomic batch (ExecuteFromThen's batch), on a standalone stream
// and on a stream of three replicas. On the standalone server a batch is
// staged in files of its own, so ExecuteFromThen batches only on a
// replicated stream.
func BenchmarkExecuteFromThen(b *testing.B) {
	pair := func(b *testing.B, l *eventlog.Log, both func(context.Context, *assist.Case, eventlog.Command, eventlog.Command) *assist.Case) {
		ctx := context.Background()
		b.SetParallelism(8)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			id := newID()
			c, err := l.Start(ctx, submitted(b, id))
			if err != nil {
				b.Error(err)
				return
			}
			for pb.Next() {
				if c = both(ctx, c, amend(id, newID(), "one"), amend(id, newID(), "two")); c == nil {
					return
				}
			}
		})
	}
	oneByOne := func(b *testing.B, l *eventlog.Log) func(context.Context, *assist.Case, eventlog.Command, eventlog.Command) *assist.Case {
		return func(ctx context.Context, c *assist.Case, cmd, next eventlog.Command) *assist.Case {
			c, err := l.ExecuteFrom(ctx, c, cmd)
			if err == nil {
				c, err = l.ExecuteFrom(ctx, c, next)
			}
			if err != nil {
				b.Error(err)
				return nil
			}
			return c
		}
	}
	batch := func(b *testing.B, l *eventlog.Log) func(context.Context, *assist.Case, eventlog.Command, eventlog.Command) *assist.Case {
		return func(ctx context.Context, c *assist.Case, cmd, next eventlog.Command) *assist.Case {
			done, ok := l.ExecuteBothForTest(ctx, c, cmd, next)
			if !ok {
				b.Error("the batch was not appended")
				return nil
			}
			return done
		}
	}
	b.Run("standalone", func(b *testing.B) {
		l, _ := openLog(b)
		b.Run("one_by_one", func(b *testing.B) { pair(b, l, oneByOne(b, l)) })
		b.Run("batch", func(b *testing.B) { pair(b, l, batch(b, l)) })
	})
	b.Run("replicated", func(b *testing.B) {
		logs, _ := replicatedLogs(b, 3)
		b.Run("one_by_one", func(b *testing.B) { pair(b, logs[0], oneByOne(b, logs[0])) })
		b.Run("batch", func(b *testing.B) { pair(b, logs[0], batch(b, logs[0])) })
	})
}
