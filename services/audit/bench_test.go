package audit_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

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
	// $EVA_AUDIT_BENCH_DIR keeps the log, the archive and the key between
	// runs (made on the first, of its own size): comparing builds then
	// costs a pass each, not a log made and archived again.
	var (
		srv   *server.Server
		db    sqldb.DB
		ready []byte
	)
	dir := os.Getenv("EVA_AUDIT_BENCH_DIR")
	if dir == "" {
		srv, db = fastServer(b), sqldbtest.SQLite(b)
	} else {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			b.Fatal(err)
		}
		srv = fastServerAt(b, filepath.Join(dir, "nats"))
		var err error
		if db, err = sqldb.OpenSQLite(context.Background(), filepath.Join(dir, "audit.db")); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(db.Close)
		ready, _ = os.ReadFile(filepath.Join(dir, "ready"))
	}
	e := newEnvOn(b, db, srv)
	ctx := e.ctx
	var last uint64
	skey, _, err := audit.GenerateKey("test.eva.example/audit")
	if err != nil {
		b.Fatal(err)
	}
	var events string
	if ready != nil {
		skey, events, _ = strings.Cut(strings.TrimSpace(string(ready)), "\n")
		if last, err = strconv.ParseUint(events, 10, 64); err != nil {
			b.Fatal(err)
		}
		b.Logf("reusing %s: %d events", dir, last)
	}
	k, err := audit.ParseKey(skey)
	if err != nil {
		b.Fatal(err)
	}
	e.key = &k
	if ready == nil {
		start := time.Now()
		var err error
		last, err = eventlogtest.Synthesize(ctx, e.js, n/5, 5)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("published %d events in %s", last, time.Since(start).Round(time.Millisecond))
		start = time.Now()
		e.cfg.Batch = 512
		// $EVA_AUDIT_BENCH_CHECKPOINT_EVERY: how often the archiver signs
		// a checkpoint while it makes the log (20 ms unless set; the
		// service's default is 250 ms): verify checks each one's signature.
		if v := os.Getenv("EVA_AUDIT_BENCH_CHECKPOINT_EVERY"); v != "" {
			if e.cfg.CheckpointEvery, err = time.ParseDuration(v); err != nil {
				b.Fatal(err)
			}
		}
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
		if dir != "" {
			if err := os.WriteFile(filepath.Join(dir, "ready"), fmt.Appendf(nil, "%s\n%d\n", skey, last), 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
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
	// $EVA_AUDIT_BENCH_PROFILE names a directory where each pass writes
	// its CPU profile (<pass>.pprof): go tool pprof -top dir/verify.pprof.
	profDir := os.Getenv("EVA_AUDIT_BENCH_PROFILE")
	var prof *os.File
	startCPU := func(b *testing.B) {
		if profDir != "" {
			name := b.Name()[strings.LastIndexByte(b.Name(), '/')+1:]
			var err error
			if prof, err = os.Create(filepath.Join(profDir, name+".pprof")); err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(prof); err != nil {
				b.Fatal(err)
			}
		}
		cpu0 = cpuTime()
	}
	perSec := func(b *testing.B, events uint64) {
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
			prof = nil
		}
		b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(events)*float64(b.N)/(cpuTime()-cpu0).Seconds(), "events/cpu-s")
		b.ReportMetric(0, "ns/op")
	}

	// files is the log as the offline tools read it: straight from the
	// stream's message blocks (eventlog.Log.WithFiles).
	files := e.log.WithFiles(srv.StoreDir(), srv.GlobalAccount().Name)
	scan := func(name string, l *eventlog.Log) {
		b.Run(name, func(b *testing.B) {
			startCPU(b)
			for b.Loop() {
				got := uint64(0)
				if _, err := l.Scan(ctx, 1, 0, func(eventlog.Msg) error { got++; return nil }); err != nil || got != last {
					b.Fatalf("scan: %d events, %v", got, err)
				}
			}
			perSec(b, last)
		})
	}
	scan("scan", e.log)
	scan("scan-files", files)
	// The way the log was read before Scan: batched direct gets, 4,096
	// events a request; the ratio to scan is taken in the same run.
	b.Run("scan-directget", func(b *testing.B) {
		startCPU(b)
		for b.Loop() {
			got := uint64(0)
			for next := uint64(1); next <= last; {
				if err := e.log.GetBatch(ctx, eventlog.Stream, next, 4096, func(raw *jetstream.RawStreamMsg) error {
					_ = eventlog.FromRaw(raw)
					next = raw.Sequence + 1
					got++
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			if got != last {
				b.Fatalf("direct gets: %d events of %d", got, last)
			}
		}
		perSec(b, last)
	})
	// replay rebuilds intake's and approval's read models; its events/s
	// are events of the log per second, both read models made from them.
	replay := func(name string, open func(testing.TB) sqldb.DB) {
		migrate := func(b *testing.B) sqldb.DB {
			db := open(b)
			if err := intake.Migrate(ctx, db); err != nil {
				b.Fatal(err)
			}
			if err := approval.Migrate(ctx, db); err != nil {
				b.Fatal(err)
			}
			return db
		}
		// The way before RebuildAll and ProjectAll (same run, for the
		// ratio): a pass over the log per read model, an upsert per case.
		b.Run("replay-"+name+"-percase", func(b *testing.B) {
			db := migrate(b)
			startCPU(b)
			for b.Loop() {
				for _, p := range []eventlog.Projection{intake.NewSQLStore(db), approval.NewSQLStore(db)} {
					res, err := e.log.Rebuild(ctx, db, oneByOne{p}, eventlog.RebuildOptions{})
					if err != nil || res.Events != int(last) {
						b.Fatalf("rebuild: %+v %v", res, err)
					}
				}
			}
			perSec(b, last)
		})
		// replay-<store> writes both read models in one database, one
		// after the other; replay-<store>-own gives each its own (as `eva
		// audit replay` does on the embedded store), written at once.
		// Each first deletes what the model held, as `eva audit replay`
		// does: a rebuild before the timed ones fills the models, so that
		// each timed one deletes a whole model.
		rebuild := func(b *testing.B, idb, adb sqldb.DB) {
			once := func() {
				res, err := files.RebuildAll(ctx, []eventlog.RebuildTarget{
					{DB: idb, Projection: intake.NewSQLStore(idb), Tables: []string{"intake_cases"}, Reset: eventlog.DeleteAll("intake_cases")},
					{DB: adb, Projection: approval.NewSQLStore(adb), Tables: []string{"approval_queue"}, Reset: eventlog.DeleteAll("approval_queue")}}, nil)
				if err != nil || res[1].Events != int(last) {
					b.Fatalf("rebuild: %+v %v", res, err)
				}
			}
			once()
			startCPU(b)
			for b.Loop() {
				once()
			}
			perSec(b, last)
		}
		b.Run("replay-"+name, func(b *testing.B) {
			db := migrate(b)
			rebuild(b, db, db)
		})
		b.Run("replay-"+name+"-own", func(b *testing.B) {
			rebuild(b, migrate(b), migrate(b))
		})
	}
	replay("sqlite", sqldbtest.SQLite)
	if sqldbtest.PostgresURL() != "" {
		replay("postgres", sqldbtest.Postgres)
	}
	// verify is `eva audit verify`'s pass (the log read from its files);
	// verify-server reads the log through the server, as the audit
	// service's GET /v1/audit/verify does.
	verify := func(name string, l *eventlog.Log) {
		b.Run(name, func(b *testing.B) {
			startCPU(b)
			checkpoints := 0
			for b.Loop() {
				res, err := audit.Verify(ctx, e.store, l, audit.VerifyOptions{VerifierKey: e.key.Verifier})
				if err != nil || !res.OK || res.Events != last {
					b.Fatalf("verify: %s %v", show(res), err)
				}
				checkpoints = res.Checkpoints
			}
			perSec(b, last)
			// Each kept checkpoint's signature is checked (~60 µs of CPU):
			// how many the log has says much of verify's cost.
			b.ReportMetric(float64(checkpoints), "checkpoints")
		})
	}
	verify("verify", files)
	verify("verify-server", e.log)
	// $EVA_AUDIT_BENCH_EXPORT names the file the export is written to
	// (kept, to compare builds' exports byte for byte).
	path := cmp.Or(os.Getenv("EVA_AUDIT_BENCH_EXPORT"), filepath.Join(b.TempDir(), "eva.export"))
	b.Run("export", func(b *testing.B) {
		startCPU(b)
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
		startCPU(b)
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

// oneByOne hides a projection's ProjectAll: Rebuild then writes one case
// a statement, as before ProjectAll.
type oneByOne struct{ eventlog.Projection }
