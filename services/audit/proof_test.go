package audit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// mth is RFC 6962's Merkle tree hash of leaves, written from the RFC
// (section 2.1) and not from tlog, so that the stored tree is checked
// against an independent reading of the standard.
func mth(leaves [][]byte) tlog.Hash {
	switch n := len(leaves); n {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, leaves[0]...))
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		l, r := mth(leaves[:k]), mth(leaves[k:])
		return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
	}
}

// Every inclusion and consistency proof the service gives checks with
// tlog.CheckRecord and tlog.CheckTree against the RFC's tree head, for
// every tree size up to proofLeaves (every pair below 48 leaves, samples
// beyond); every forged proof is rejected.
func TestProofs(t *testing.T) {
	const proofLeaves = 260
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := db.Migrate(ctx, eventlog.Migrations); err != nil {
			t.Fatal(err)
		}
		store := migrated(t, db)
		svc := audit.New(audit.Deps{DB: db})
		rng := rand.New(rand.NewPCG(9, 9))
		var leaves [][]byte
		heads := []tlog.Hash{mth(nil)}
		caseID := newID()
		at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		for seq := uint64(1); seq <= proofLeaves; seq++ {
			data := make([]byte, rng.IntN(40))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			m := eventlog.Msg{Seq: seq, Subject: eventlog.Subject(caseID, "RequestAmended"), ID: newID(), CaseID: caseID,
				Type: "RequestAmended", Time: at.Add(time.Duration(seq) * time.Millisecond), Data: data}
			if err := db.Tx(ctx, func(q sqldb.Querier) error { return svc.Archive(ctx, q, m) }); err != nil {
				t.Fatal(err)
			}
			recs, err := store.Range(ctx, seq-1, 1)
			if err != nil || len(recs) != 1 {
				t.Fatalf("archived %d: %v %v", seq, recs, err)
			}
			leaves = append(leaves, audit.LeafBytes(recs[0]))
			heads = append(heads, mth(leaves))
		}
		pairs := func(size uint64) []uint64 {
			if size < 48 {
				out := make([]uint64, size)
				for i := range out {
					out[i] = uint64(i + 1)
				}
				return out
			}
			return []uint64{1, size / 2, size, 1 + rng.Uint64N(size), 1 + rng.Uint64N(size)}
		}
		checked, forged := 0, 0
		for size := uint64(1); size <= proofLeaves; size++ {
			th := heads[size]
			for _, seq := range pairs(size) {
				p, err := svc.InclusionProof(ctx, auditapi.InclusionRequest{Seq: seq, Size: size})
				if err != nil {
					t.Fatalf("inclusion %d in %d: %v", seq, size, err)
				}
				leaf := tlog.RecordHash(leaves[seq-1])
				if err := tlog.CheckRecord(p.Hashes, int64(size), th, int64(seq)-1, leaf); err != nil {
					t.Fatalf("inclusion %d in %d does not check: %v", seq, size, err)
				}
				checked++
				forged += rejectForgedInclusion(t, p.Hashes, size, heads, seq, leaves[seq-1])
				from := seq
				c, err := svc.ConsistencyProof(ctx, auditapi.ConsistencyRequest{From: from, To: size})
				if err != nil {
					t.Fatalf("consistency %d→%d: %v", from, size, err)
				}
				if err := tlog.CheckTree(c.Hashes, int64(size), th, int64(from), heads[from]); err != nil {
					t.Fatalf("consistency %d→%d does not check: %v", from, size, err)
				}
				checked++
				forged += rejectForgedConsistency(t, c.Hashes, size, heads, from)
			}
		}
		t.Logf("%d proofs checked, %d forgeries rejected (all of them)", checked, forged)

		// Sizes beyond the tree, and zero, are refused naming the field.
		for _, r := range []auditapi.InclusionRequest{{Seq: 0, Size: 3}, {Seq: 4, Size: 3}, {Seq: 1, Size: proofLeaves + 1}} {
			if _, err := svc.InclusionProof(ctx, r); !isInvalid(err) {
				t.Errorf("inclusion %+v: %v, want invalid", r, err)
			}
		}
		if _, err := svc.ConsistencyProof(ctx, auditapi.ConsistencyRequest{From: 5, To: 4}); !isInvalid(err) {
			t.Errorf("consistency 5→4: %v, want invalid", err)
		}
		// A leaf is served as archived.
		l, err := svc.Leaf(ctx, auditapi.LeafRequest{Seq: 7})
		if err != nil || string(l.Bytes) != string(leaves[6]) {
			t.Fatalf("leaf 7 = %q %v", l.Bytes, err)
		}
		if _, err := svc.Leaf(ctx, auditapi.LeafRequest{Seq: proofLeaves + 1}); err == nil {
			t.Fatal("a leaf beyond the tree was served")
		}
	})
}

// rejectForgedInclusion checks that every tampering of an inclusion proof
// fails CheckRecord, and returns how many it tried. heads[n] is the tree
// head of size n. (A proof checked for another size against the head of
// its own size may pass: the size is bound to its head by the signed
// checkpoint, so a wrong size is tried with the head of that size.)
func rejectForgedInclusion(t *testing.T, p tlog.RecordProof, size uint64, heads []tlog.Hash, seq uint64, leaf []byte) int {
	t.Helper()
	th := heads[size]
	n, h := int64(seq)-1, tlog.RecordHash(leaf)
	flipped := append([]byte(nil), leaf...)
	if len(flipped) > 0 {
		flipped[len(flipped)-1] ^= 1
	}
	forgeries := map[string]func() error{
		"a flipped leaf byte": func() error { return tlog.CheckRecord(p, int64(size), th, n, tlog.RecordHash(flipped)) },
		"another tree head":   func() error { return tlog.CheckRecord(p, int64(size), tlog.Hash{1}, n, h) },
		"a hash too many":     func() error { return tlog.CheckRecord(append(p[:len(p):len(p)], tlog.Hash{}), int64(size), th, n, h) },
	}
	if next := size + 1; next < uint64(len(heads)) {
		forgeries["a larger tree"] = func() error { return tlog.CheckRecord(p, int64(next), heads[next], n, h) }
	}
	if size > 1 {
		forgeries["another leaf index"] = func() error { return tlog.CheckRecord(p, int64(size), th, (n+1)%int64(size), h) }
	}
	if len(p) > 0 {
		forgeries["a flipped proof byte"] = func() error {
			q := append(tlog.RecordProof(nil), p...)
			q[len(q)/2][0] ^= 0x80
			return tlog.CheckRecord(q, int64(size), th, n, h)
		}
		forgeries["a hash missing"] = func() error { return tlog.CheckRecord(p[:len(p)-1], int64(size), th, n, h) }
	}
	for what, check := range forgeries {
		if check() == nil {
			t.Fatalf("inclusion %d in %d with %s was accepted", seq, size, what)
		}
	}
	return len(forgeries)
}

// rejectForgedConsistency is rejectForgedInclusion for CheckTree.
func rejectForgedConsistency(t *testing.T, p tlog.TreeProof, size uint64, heads []tlog.Hash, from uint64) int {
	t.Helper()
	th, old := heads[size], heads[from]
	forgeries := map[string]func() error{
		"another old head": func() error { return tlog.CheckTree(p, int64(size), th, int64(from), tlog.Hash{2}) },
		"another new head": func() error { return tlog.CheckTree(p, int64(size), tlog.Hash{3}, int64(from), old) },
	}
	if next := size + 1; from < size && next < uint64(len(heads)) {
		forgeries["a larger tree"] = func() error { return tlog.CheckTree(p, int64(next), heads[next], int64(from), old) }
	}
	if len(p) > 0 {
		forgeries["a flipped proof byte"] = func() error {
			q := append(tlog.TreeProof(nil), p...)
			q[0][31] ^= 1
			return tlog.CheckTree(q, int64(size), th, int64(from), old)
		}
	}
	for what, check := range forgeries {
		if check() == nil {
			t.Fatalf("consistency %d→%d with %s was accepted", from, size, what)
		}
	}
	return len(forgeries)
}

// A checkpoint opens only with its own key, unaltered.
func TestCheckpointSignature(t *testing.T) {
	key, other := testKey(t), testKey(t)
	root := mth([][]byte{[]byte("a"), []byte("b")})
	text := auditapi.FormatCheckpoint(auditapi.TreeHead{Origin: key.Signer.Name(), Size: 2, Root: root})
	signed, err := note.Sign(&note.Note{Text: text}, key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	h, err := auditapi.OpenCheckpoint(signed, key.Verifier)
	if err != nil || h.Size != 2 || h.Root != root || h.Origin != key.Signer.Name() {
		t.Fatalf("OpenCheckpoint = %+v %v", h, err)
	}
	altered := []byte(string(signed))
	altered[len(key.Signer.Name())+1] = '3' // the size line: 2 → 3
	for what, c := range map[string]struct {
		note []byte
		key  string
	}{
		"another key":     {signed, other.Verifier},
		"an altered size": {altered, key.Verifier},
		"a malformed key": {signed, "not a key"},
	} {
		if _, err := auditapi.OpenCheckpoint(c.note, c.key); err == nil {
			t.Errorf("a checkpoint with %s was accepted", what)
		}
	}
	// Several checkpoints in one file split back into each note.
	two := append(append([]byte(nil), signed...), signed...)
	if got := auditapi.SplitCheckpoints(two); len(got) != 2 || string(got[1]) != string(signed) {
		t.Fatalf("SplitCheckpoints = %q", got)
	}
}

func isInvalid(err error) bool { return assist.IsCode(err, assist.CodeInvalid) }

// Verify checks the signature of every kept checkpoint (on every CPU) and
// matches each with the log: one kept checkpoint among many with a
// changed byte fails naming its size, and a checkpoint saved elsewhere,
// well signed, of a size already kept but with another root is a fork.
func TestVerifyChecksEveryKeptCheckpoint(t *testing.T) {
	e := newEnv(t, sqldbtest.SQLite(t))
	ctx := e.ctx
	e.start()
	for range 40 {
		e.someCases(1)
		time.Sleep(30 * time.Millisecond) // a checkpoint every 20 ms
	}
	n := e.waitArchived()
	evatest.Await(t, time.Minute, "a checkpoint of the whole archive", func() (bool, string) {
		cp, err := e.client.Checkpoint(ctx)
		return err == nil && cp.Size == int64(n), fmt.Sprint(cp.Size, err)
	})
	e.stop()
	e.wantOK(n)
	kept, err := e.store.Checkpoints(ctx, -1, math.MaxInt64, 1000)
	if err != nil || len(kept) < 20 {
		t.Fatalf("%d checkpoints kept (%v), want at least 20", len(kept), err)
	}
	if res := e.verify(); res.Checkpoints != len(kept) {
		t.Fatalf("verify matched %d checkpoints, %d are kept", res.Checkpoints, len(kept))
	}
	mid := kept[len(kept)/2]
	altered := bytes.Clone(mid.Note)
	i := bytes.IndexByte(altered, '\n') + 1 // the size line
	altered[i] = '0' + (altered[i]-'0'+1)%10
	if _, err := e.db.Exec(ctx, `UPDATE audit_checkpoints SET note = $1 WHERE size = $2`, string(altered), mid.Size); err != nil {
		t.Fatal(err)
	}
	res := e.verify()
	if res.OK || !strings.Contains(res.Reason, fmt.Sprintf("the kept checkpoint of size %d does not verify", mid.Size)) {
		t.Fatalf("verify with an altered kept checkpoint = %s", show(res))
	}
	if _, err := e.db.Exec(ctx, `UPDATE audit_checkpoints SET note = $1 WHERE size = $2`, string(mid.Note), mid.Size); err != nil {
		t.Fatal(err)
	}
	e.wantOK(n)
	fork, err := note.Sign(&note.Note{Text: auditapi.FormatCheckpoint(auditapi.TreeHead{Origin: e.key.Signer.Name(), Size: mid.Size,
		Root: tlog.Hash{1}})}, e.key.Signer)
	if err != nil {
		t.Fatal(err)
	}
	res, err = audit.Verify(ctx, e.store, e.log, audit.VerifyOptions{VerifierKey: e.key.Verifier, Checkpoints: [][]byte{fork}})
	if err != nil || res.OK || !strings.Contains(res.Reason, "a fork") {
		t.Fatalf("verify with a forked checkpoint = %s %v", show(res), err)
	}
}
