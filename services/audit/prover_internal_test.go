package audit

import (
	"crypto/sha256"
	"math/rand/v2"
	"slices"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestProverIsProveRecord: memTree.append stores tlog's hashes, and the prover's proof of every leaf of every tree
// up to 300 leaves, and of random leaves of random larger trees, is
// tlog.ProveRecord's, and tlog.CheckRecord accepts it.
func TestProverIsProveRecord(t *testing.T) {
	var tree memTree
	leaf := func(i int64) tlog.Hash {
		return tlog.RecordHash(sha256.New().Sum([]byte{byte(i), byte(i >> 8), byte(i >> 16)}))
	}
	leaves := int64(0)
	grow := func(size int64) {
		for ; leaves < size; leaves++ {
			hs, err := tlog.StoredHashesForRecordHash(leaves, leaf(leaves), &tree)
			if err != nil {
				t.Fatal(err)
			}
			if err := tree.append(leaves, leaf(leaves)); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tree[len(tree)-len(hs):], hs) {
				t.Fatalf("leaf %d: memTree.append stored %x, tlog %x", leaves, tree[len(tree)-len(hs):], hs)
			}
		}
	}
	check := func(size, n int64) {
		p, err := newProver(size, tree)
		if err != nil {
			t.Fatal(err)
		}
		want, err := tlog.ProveRecord(size, n, &tree)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.appendProof(nil, n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("size %d leaf %d: proof %x, tlog.ProveRecord %x", size, n, got, want)
		}
		root, err := tlog.TreeHash(size, &tree)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(got, size, root, n, leaf(n)); err != nil {
			t.Fatalf("size %d leaf %d: %v", size, n, err)
		}
	}
	for size := int64(1); size <= 300; size++ {
		grow(size)
		for n := range size {
			check(size, n)
		}
	}
	rng := rand.New(rand.NewPCG(9, 9))
	grow(70_000)
	for range 200 {
		size := 300 + rng.Int64N(70_000-300)
		check(size, rng.Int64N(size))
		check(size, size-1)
		check(size, 0)
	}
	if _, err := (&prover{size: 5, tree: tree}).appendProof(nil, 5); err == nil {
		t.Fatal("a proof of a leaf beyond the tree")
	}
	if _, err := newProver(70_001, tree); err == nil {
		t.Fatal("a prover of a tree larger than its hashes")
	}
}
