package audit_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/audit/auditexport"
)

// An export of the archive checks with nothing but the verifier key; any
// byte of an event's line changed, a line lost, another key or an export
// cut short fails, naming the event when one is to blame.
func TestExportChecksAndAFlippedByteNamesTheEvent(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		n := e.archivedAndStopped(40)
		var buf bytes.Buffer
		var progressed uint64
		size, err := audit.Export(e.ctx, e.store, e.key.Verifier, &buf, func(done, total uint64) {
			if total != 2*n {
				t.Errorf("progress total %d, want %d (two passes)", total, 2*n)
			}
			progressed = done
		})
		if err != nil || size != int64(n) || progressed != 2*n {
			t.Fatalf("Export = %d, %v (progress %d), want %d events", size, err, progressed, n)
		}
		export := buf.Bytes()
		check := func(b []byte, key string) auditexport.Result {
			t.Helper()
			res, err := auditexport.Check(bytes.NewReader(b), key)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		if res := check(export, e.key.Verifier); !res.OK || res.Events != int64(n) || res.Size != int64(n) {
			t.Fatalf("Check = %+v, want ok with %d events", res, n)
		}

		// Every event line: where it starts, and its sequence.
		lines := bytes.SplitAfter(export, []byte("\n"))
		type span struct{ start, end, seq int }
		var spans []span
		off := 0
		for _, l := range lines {
			if f, _, ok := bytes.Cut(l, []byte(" ")); ok {
				if seq, err := strconv.Atoi(string(f)); err == nil && len(l) > 100 {
					spans = append(spans, span{off, off + len(l), seq})
				}
			}
			off += len(l)
		}
		if len(spans) != int(n) {
			t.Fatalf("%d event lines in the export, want %d", len(spans), n)
		}
		rng := rand.New(rand.NewPCG(21, 9))
		for range 300 {
			sp := spans[rng.IntN(len(spans))]
			i := sp.start + rng.IntN(sp.end-sp.start)
			bad := bytes.Clone(export)
			bad[i] ^= byte(1 + rng.IntN(255))
			res := check(bad, e.key.Verifier)
			if res.OK || res.FirstBad == nil || *res.FirstBad != int64(sp.seq) {
				t.Fatalf("byte %d of event %d's line (%q → %q) flipped: Check = %+v, want a failure naming event %d",
					i-sp.start, sp.seq, export[i], bad[i], res, sp.seq)
			}
		}
		// An event line dropped, the export cut short, another key, the
		// checkpoint's signature changed.
		mid := spans[len(spans)/2]
		dropped := append(bytes.Clone(export[:mid.start]), export[mid.end:]...)
		if res := check(dropped, e.key.Verifier); res.OK || res.FirstBad == nil || *res.FirstBad != int64(mid.seq) {
			t.Fatalf("event %d's line dropped: Check = %+v", mid.seq, res)
		}
		if res := check(export[:mid.end], e.key.Verifier); res.OK || !strings.Contains(res.Reason, "cut short") {
			t.Fatalf("export cut after event %d: Check = %+v", mid.seq, res)
		}
		if res := check(export, testKey(t).Verifier); res.OK || !strings.Contains(res.Reason, "key") {
			t.Fatalf("another key: Check = %+v", res)
		}
		sig := bytes.Index(export, []byte("\n— "))
		forged := bytes.Clone(export)
		forged[sig+10] ^= 1
		if res := check(forged, e.key.Verifier); res.OK || !strings.Contains(res.Reason, "checkpoint does not verify") {
			t.Fatalf("checkpoint signature changed: Check = %+v", res)
		}
	})
}

// Export refuses an archive that does not match the signed checkpoint: an
// archived event whose bytes changed, or a stored leaf of the Merkle tree
// that changed, naming what to run.
func TestExportRefusesAnArchiveThatIsNotTheCheckpoints(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		e := newEnv(t, db)
		e.archivedAndStopped(10)
		export := func() error {
			_, err := audit.Export(e.ctx, e.store, e.key.Verifier, io.Discard, nil)
			return err
		}
		if err := export(); err != nil {
			t.Fatal(err)
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := db.Exec(e.ctx, q, args...); err != nil {
				t.Fatal(err)
			}
		}
		var data []byte
		if err := db.QueryRow(e.ctx, `SELECT data FROM audit_events WHERE seq = 7`).Scan(&data); err != nil {
			t.Fatal(err)
		}
		exec(`UPDATE audit_events SET data = $1 WHERE seq = 7`, append(bytes.Clone(data), 0))
		if err := export(); err == nil || !strings.Contains(err.Error(), "archived event 7 does not match its leaf") {
			t.Fatalf("event 7 changed: Export = %v", err)
		}
		exec(`UPDATE audit_events SET data = $1 WHERE seq = 7`, data)
		exec(`UPDATE audit_tree SET hash = $1 WHERE idx = $2`, make([]byte, 32), tlog.StoredHashIndex(0, 3))
		if err := export(); err == nil || !strings.Contains(err.Error(), "do not make the tree of the checkpoint") {
			t.Fatalf("leaf 3 changed: Export = %v", err)
		}
	})
}

// archivedAndStopped files cases, lets the service archive them and sign a
// checkpoint of the whole archive, stops it, and returns the archive's
// size.
func (e *env) archivedAndStopped(cases int) uint64 {
	e.t.Helper()
	e.someCases(cases)
	e.start()
	n := e.waitArchived()
	evatest.Eventually(e.t, "a checkpoint of the whole archive", func() bool {
		cp, err := e.client.Checkpoint(e.ctx)
		return err == nil && cp.Size == int64(n)
	})
	e.stop()
	return n
}

// FuzzCheckExport gives auditexport.Check, the auditor's reader of a file
// from anywhere, changed exports: it never panics and never fails to
// answer, and it finds an export good only when it is the export, byte
// for byte (an export has one spelling, so that two can be compared by
// their bytes).
func FuzzCheckExport(f *testing.F) {
	e := newEnvOn(f, sqldbtest.SQLite(f), natsxtest.Server(f))
	n := e.archivedAndStopped(3)
	var buf bytes.Buffer
	if _, err := audit.Export(e.ctx, e.store, e.key.Verifier, &buf, nil); err != nil {
		f.Fatal(err)
	}
	export := buf.Bytes()
	good, err := auditexport.Check(bytes.NewReader(export), e.key.Verifier)
	if err != nil || !good.OK || good.Size != int64(n) {
		f.Fatalf("the seed export: %+v, %v", good, err)
	}
	f.Add(export)
	lines := bytes.SplitAfter(export, []byte("\n"))
	for i := range lines {
		f.Add(bytes.Join(append(append([][]byte{}, lines[:i]...), lines[i+1:]...), nil)) // a line dropped
	}
	f.Add(export[:len(export)/2])
	f.Add(bytes.ReplaceAll(export, []byte(" "), []byte("  ")))
	f.Add(bytes.Replace(export, []byte("checkpoint "), []byte("checkpoint +"), 1))
	if i := bytes.LastIndex(export, []byte("\nend ")); i > 8 {
		f.Add(append(append(bytes.Clone(export[:i-4]), '\r'), export[i-4:]...)) // inside the last proof
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := auditexport.Check(bytes.NewReader(b), e.key.Verifier)
		if err != nil {
			t.Fatalf("Check of %d bytes in memory failed to answer: %v", len(b), err)
		}
		if res.OK {
			if res.Size != good.Size || res.Root != good.Root || res.Events != good.Size || res.FirstBad != nil || res.Reason != "" {
				t.Fatalf("a changed export checks as %+v; the signed one is %+v", res, good)
			}
			// One spelling: what checks is the export, byte for byte.
			if !bytes.Equal(b, export) {
				t.Fatalf("an export spelled otherwise checks:\n%q", b)
			}
			return
		}
		if res.Reason == "" {
			t.Fatalf("refused without a reason: %+v", res)
		}
		if res.FirstBad != nil && (*res.FirstBad < 1 || *res.FirstBad > res.Size+1) {
			t.Fatalf("first bad event %d of a tree of %d", *res.FirstBad, res.Size)
		}
	})
}
