package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// TestTreeCostAtScale measures, on the embedded store, what a proof and a
// checkpoint cost in a tree of $EVA_AUDIT_TREE_LEAVES leaves (skipped when
// unset; the figure is 1,000,000): the stored hashes make both
// read O(log n) hashes, whatever n.
func TestTreeCostAtScale(t *testing.T) {
	n, _ := strconv.ParseInt(os.Getenv("EVA_AUDIT_TREE_LEAVES"), 10, 64)
	if n <= 0 {
		t.Skip("EVA_AUDIT_TREE_LEAVES is not set")
	}
	ctx := context.Background()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	store := migrated(t, db)
	reader := func(q sqldb.Querier) tlog.HashReader {
		return tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return store.ReadHashes(ctx, q, ix) })
	}
	// The stored hashes are computed in memory and written 4,000 at a time
	// (the archiver adds them a leaf at a time, which is not what this
	// measures).
	start := time.Now()
	var mem []tlog.Hash
	memReader := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			out[i] = mem[x]
		}
		return out, nil
	})
	written := 0
	flush := func(all bool) {
		for len(mem)-written >= 4000 || (all && written < len(mem)) {
			k := min(4000, len(mem)-written)
			if err := db.Tx(ctx, func(q sqldb.Querier) error {
				return store.AppendHashes(ctx, q, int64(written), mem[written:written+k])
			}); err != nil {
				t.Fatal(err)
			}
			written += k
		}
	}
	for i := range n {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		hs, err := tlog.StoredHashesForRecordHash(i, sha256.Sum256(b[:]), memReader)
		if err != nil {
			t.Fatal(err)
		}
		mem = append(mem, hs...)
		flush(false)
	}
	flush(true)
	t.Logf("%d leaves added in %s (%.0f leaves/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	key := testKey(t)
	const rounds = 200
	start = time.Now()
	var (
		root   tlog.Hash
		signed []byte
	)
	for range rounds {
		if root, err = tlog.TreeHash(n, reader(nil)); err != nil {
			t.Fatal(err)
		}
		text := auditapi.FormatCheckpoint(auditapi.TreeHead{Origin: key.Signer.Name(), Size: n, Root: root})
		if signed, err = note.Sign(&note.Note{Text: text}, key.Signer); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("checkpoint at %d leaves (tree head + Ed25519 signature): %s, %d bytes", n, time.Since(start)/rounds, len(signed))
	start = time.Now()
	proofBytes := 0
	for i := range int64(rounds) {
		leaf := (i * 7919) % n
		p, err := tlog.ProveRecord(n, leaf, reader(nil))
		proofBytes = max(proofBytes, len(p)*tlog.HashSize)
		if err != nil {
			t.Fatal(err)
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(leaf))
		if err := tlog.CheckRecord(p, n, root, leaf, sha256.Sum256(b[:])); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("inclusion proof at %d leaves (read and checked): %s, at most %d bytes of hashes", n, time.Since(start)/rounds, proofBytes)
	start = time.Now()
	for i := range int64(rounds) {
		if _, err := tlog.ProveTree(n, 1+(i*104729)%(n-1), reader(nil)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("consistency proof at %d leaves: %s", n, time.Since(start)/rounds)
	_ = audit.LeafFormat
}
