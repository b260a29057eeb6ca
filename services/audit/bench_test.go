package audit_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/audit/auditexport"
	"github.com/eva-org/eva/services/intake"
)

// BenchmarkAuditAtScale measures, on one log of $EVA_AUDIT_BENCH_EVENTS
// events (default 200,000: cases of five events, interleaved) archived by
// the audit service on the embedded store, the events/s of what auditors
// and operators run over the whole log: reading it (scan), replaying the
// read models (into a fresh embedded database and PostgreSQL), verifying
// it, exporting it with its proofs and checking the export. Run it with
// -benchtime=1x: one iteration is one pass over the whole log.
//
//	go test -run '^$' -bench AuditAtScale -benchtime=1x ./services/audit
func BenchmarkAuditAtScale(b *testing.B) {
	n := 200_000
	if v := os.Getenv("EVA_AUDIT_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	e := newEnvOn(b, sqldbtest.SQLite(b), fastServer(b))
	ctx := e.ctx
	start := time.Now()
	last, err := eventlogtest.Synthesize(ctx, e.js, n/5, 5)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("published %d events in %s", last, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	e.cfg.Batch = 512
	e.start()
	for deadline := time.Now().Add(30 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		seq, _, err := e.store.Last(ctx, nil)
		if err == nil && seq >= last {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the archive is at %d of %d after 30 minutes (%v)", seq, last, err)
		}
	}
	b.Logf("archived %d events in %s (%.0f events/s)", last, time.Since(start).Round(time.Millisecond),
		float64(last)/time.Since(start).Seconds())
	evatest.Await(b, time.Minute, "a checkpoint of the whole archive", func() (bool, string) {
		cp, err := e.client.Checkpoint(ctx)
		return err == nil && cp.Size == int64(last), fmt.Sprint(cp.Size, err)
	})
	e.stop()
	// perSec reports the events/s of the wall clock and of the process's
	// CPU time (the embedded NATS server's included: it is part of the
	// work): on a shared machine the second says more.
	var cpu0 time.Duration
	cpuTime := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	startCPU := func() { cpu0 = cpuTime() }
	perSec := func(b *testing.B, events uint64) {
		b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(events)*float64(b.N)/(cpuTime()-cpu0).Seconds(), "events/cpu-s")
		b.ReportMetric(0, "ns/op")
	}

	b.Run("scan", func(b *testing.B) {
		startCPU()
		for b.Loop() {
			got := uint64(0)
			if _, err := e.log.Scan(ctx, 1, 0, func(eventlog.Msg) error { got++; return nil }); err != nil || got != last {
				b.Fatalf("scan: %d events, %v", got, err)
			}
		}
		perSec(b, last)
	})
	// The way the log was read before Scan: batched direct gets, 4,096
	// events a request; the ratio to scan is taken in the same run.
	b.Run("scan-directget", func(b *testing.B) {
		startCPU()
		for b.Loop() {
			got := uint64(0)
			for next := uint64(1); next <= last; {
				it, err := jetstreamext.GetBatch(ctx, e.js, eventlog.Stream, 4096, jetstreamext.GetBatchSeq(next))
				if err != nil {
					b.Fatal(err)
				}
				for raw, err := range it {
					if err != nil {
						b.Fatal(err)
					}
					_ = eventlog.FromRaw(raw)
					next = raw.Sequence + 1
					got++
				}
			}
			if got != last {
				b.Fatalf("direct gets: %d events of %d", got, last)
			}
		}
		perSec(b, last)
	})
	replay := func(name string, open func(testing.TB) sqldb.DB) {
		b.Run("replay-"+name, func(b *testing.B) {
			db := open(b)
			if err := intake.Migrate(ctx, db); err != nil {
				b.Fatal(err)
			}
			if err := approval.Migrate(ctx, db); err != nil {
				b.Fatal(err)
			}
			startCPU()
			for b.Loop() {
				for _, p := range []eventlog.Projection{intake.NewSQLStore(db), approval.NewSQLStore(db)} {
					res, err := e.log.Rebuild(ctx, db, p, eventlog.RebuildOptions{})
					if err != nil || res.Events != int(last) {
						b.Fatalf("rebuild: %+v %v", res, err)
					}
				}
			}
			perSec(b, 2*last) // two read models, each a pass over the log
		})
	}
	replay("sqlite", sqldbtest.SQLite)
	if sqldbtest.PostgresURL() != "" {
		replay("postgres", sqldbtest.Postgres)
	}
	b.Run("verify", func(b *testing.B) {
		startCPU()
		for b.Loop() {
			res, err := audit.Verify(ctx, e.store, e.log, audit.VerifyOptions{VerifierKey: e.key.Verifier})
			if err != nil || !res.OK || res.Events != last {
				b.Fatalf("verify: %s %v", show(res), err)
			}
		}
		perSec(b, last)
	})
	path := filepath.Join(b.TempDir(), "eva.export")
	b.Run("export", func(b *testing.B) {
		startCPU()
		for b.Loop() {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := audit.Export(ctx, e.store, e.key.Verifier, f, nil); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
		perSec(b, last)
		if st, err := os.Stat(path); err == nil {
			b.ReportMetric(float64(st.Size())/float64(last), "export-bytes/event")
		}
	})
	b.Run("check-export", func(b *testing.B) {
		startCPU()
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			res, err := auditexport.Check(f, e.key.Verifier)
			f.Close()
			if err != nil || !res.OK || res.Events != int64(last) {
				b.Fatalf("check: %+v %v", res, err)
			}
		}
		perSec(b, last)
	})
}
