package audit

import (
	"fmt"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// prover gives the RFC 6962 inclusion proofs of a tree of size leaves
// held in memory (memTree), as tlog.ProveRecord gives them, without
// allocating: every sibling on a proof's path is either a perfect subtree,
// whose hash the tree stores, or a subtree ending at the tree's right
// edge, whose hashes (at most 63) are made once, in newProver.
type prover struct {
	size int64
	tree memTree
	// edge[i] is the hash of the leaves [edgeLo[i], size), the right-edge
	// subtrees that are not perfect.
	edgeLo []int64
	edge   []tlog.Hash
}

func newProver(size int64, tree memTree) (*prover, error) {
	if size < 1 || int64(len(tree)) < tlog.StoredHashCount(size) {
		return nil, fmt.Errorf("prover: a tree of %d leaves has %d stored hashes", size, len(tree))
	}
	p := &prover{size: size, tree: tree}
	// The right edge, from the root down: [lo, size) splits into the
	// perfect [lo, lo+k) and [lo+k, size).
	var los []int64
	for lo := int64(0); size-lo > 1; {
		k := maxPow2(size - lo)
		lo += k
		if !perfect(size - lo) {
			los = append(los, lo)
		}
	}
	// Hashed from the bottom up: each is its perfect left part and the
	// edge subtree below it (or a perfect subtree: the last one).
	p.edgeLo = make([]int64, len(los))
	p.edge = make([]tlog.Hash, len(los))
	for i := len(los) - 1; i >= 0; i-- {
		lo := los[i]
		k := maxPow2(size - lo)
		p.edgeLo[i] = lo
		p.edge[i] = tlog.NodeHash(p.perfectHash(lo, k), p.subtree(lo+k, size))
	}
	return p, nil
}

// appendProof appends the proof of leaf n to dst (leaf side first, as
// tlog.ProveRecord orders it).
func (p *prover) appendProof(dst tlog.RecordProof, n int64) (tlog.RecordProof, error) {
	if n < 0 || n >= p.size {
		return dst, fmt.Errorf("prover: leaf %d is not in a tree of %d", n, p.size)
	}
	var path [64]tlog.Hash
	depth := 0
	for lo, hi := int64(0), p.size; hi-lo > 1; depth++ {
		k := maxPow2(hi - lo)
		if n < lo+k {
			path[depth] = p.subtree(lo+k, hi)
			hi = lo + k
		} else {
			path[depth] = p.perfectHash(lo, k)
			lo += k
		}
	}
	for i := depth - 1; i >= 0; i-- {
		dst = append(dst, path[i])
	}
	return dst, nil
}

// subtree is the hash of the leaves [lo, hi): a perfect subtree, or one
// ending at the right edge.
func (p *prover) subtree(lo, hi int64) tlog.Hash {
	if perfect(hi - lo) {
		return p.perfectHash(lo, hi-lo)
	}
	for i, e := range p.edgeLo {
		if e == lo && hi == p.size {
			return p.edge[i]
		}
	}
	panic(fmt.Sprintf("prover: [%d, %d) is neither perfect nor on the right edge of %d", lo, hi, p.size))
}

// perfectHash is the stored hash of the perfect subtree of k leaves
// starting at lo (a multiple of k).
func (p *prover) perfectHash(lo, k int64) tlog.Hash {
	level := bits.TrailingZeros64(uint64(k))
	return p.tree[tlog.StoredHashIndex(level, lo>>level)]
}

func perfect(k int64) bool { return k > 0 && k&(k-1) == 0 }

// maxPow2 is the largest power of 2 less than n (n ≥ 2).
func maxPow2(n int64) int64 { return 1 << (bits.Len64(uint64(n-1)) - 1) }
