package audit

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/services/audit/auditapi"
	"github.com/eva-org/eva/services/audit/auditexport"
)

// exportPage is how many archived events Export reads at once.
const exportPage = 5000

// memTree is a Merkle tree's stored hashes (tlog.StoredHashIndex order) in
// memory: 2n hashes for n leaves, 64 MB at a million.
type memTree []tlog.Hash

func (t *memTree) ReadHashes(ix []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ix))
	for i, x := range ix {
		if x < 0 || x >= int64(len(*t)) {
			return nil, fmt.Errorf("tree hash %d is not built", x)
		}
		out[i] = (*t)[x]
	}
	return out, nil
}

func (t *memTree) append(n int64, leaf tlog.Hash) error {
	if int64(len(*t)) != tlog.StoredHashCount(n) {
		return fmt.Errorf("tree of %d hashes: leaf %d is not the next", len(*t), n)
	}
	// As tlog.StoredHashesForRecordHash: each trailing 1 bit of n
	// completes a subtree with its left neighbour at that level.
	*t = append(*t, leaf)
	h := leaf
	for level := 0; n&1 == 1; level, n = level+1, n>>1 {
		h = tlog.NodeHash((*t)[tlog.StoredHashIndex(level, n-1)], h)
		*t = append(*t, h)
	}
	return nil
}

// Export writes the archive's events with their proofs in the format of
// auditexport: the latest kept checkpoint, checked with verifierKey, and
// events 1 to its size, each with its leaf bytes and its inclusion proof
// in that checkpoint's tree. It makes two passes: one over the stored
// leaf hashes of the Merkle tree, to rebuild the tree in memory (refusing
// a tree that is not the checkpoint's: `eva audit verify` says why), one
// over the archive, a page at a time (the next page read while this one
// is worked on), to write each event with its proof, each event's leaf
// checked against the tree (refusing an archive that does not match it),
// the lines of a page made on every CPU and written in order; progress is
// called with the events done of both passes. It returns the checkpoint's
// size.
//
// Errors: no checkpoint yet; a checkpoint that does not verify with
// verifierKey; an archive that does not make the checkpoint's tree; those
// of the store and of w.
func Export(ctx context.Context, store ArchiveStore, verifierKey string, w io.Writer, progress func(done, total uint64)) (int64, error) {
	c, ok, err := store.LatestCheckpoint(ctx)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("export: no checkpoint is signed yet")
	}
	head, err := auditapi.OpenCheckpoint(c.Note, verifierKey)
	if err != nil {
		return 0, fmt.Errorf("export: the latest checkpoint (size %d): %w", c.Size, err)
	}
	n := head.Size
	total := 2 * uint64(n)
	tree := make(memTree, 0, 2*n)
	// walk hands f the archive's events 1..n a page at a time, in order;
	// the next page is read while f works on this one.
	walk := func(pass int, f func(page []Record) error) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		type read struct {
			page []Record
			err  error
		}
		pages := make(chan read, 1)
		read1 := store.Range
		if lr, ok := store.(leafRanger); ok {
			read1 = lr.leafRange
		}
		go func() {
			defer close(pages)
			for next := int64(1); next <= n; {
				page, err := read1(ctx, uint64(next-1), int(min(exportPage, n-next+1)))
				if err == nil && len(page) == 0 {
					err = fmt.Errorf("export: the archive ends at %d, the checkpoint's tree has %d events", next-1, n)
				} else if err != nil {
					err = fmt.Errorf("export: %w", err)
				}
				select {
				case pages <- read{page, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
				next += int64(len(page))
			}
		}()
		for next := int64(1); next <= n; {
			rd, ok := <-pages
			if !ok {
				return ctx.Err()
			}
			if rd.err != nil {
				return rd.err
			}
			for i, r := range rd.page {
				if int64(r.Seq) != next+int64(i) {
					return fmt.Errorf("export: the archive has no event %d", next+int64(i))
				}
			}
			if err := f(rd.page); err != nil {
				return err
			}
			next += int64(len(rd.page))
			if progress != nil {
				progress(uint64(pass)*uint64(n)+uint64(next-1), total)
			}
		}
		return nil
	}
	// The tree is rebuilt from the stored leaf hashes (32 bytes an event,
	// the inner nodes hashed again here); the second pass checks each
	// archived event against its leaf.
	for next := int64(1); next <= n; {
		to := min(next+exportPage-1, n)
		leaves, err := storedLeaves(ctx, store, uint64(next), uint64(to))
		if err != nil {
			return 0, fmt.Errorf("export: the Merkle tree's leaves %d to %d: %w", next, to, err)
		}
		for i, leaf := range leaves {
			if err := tree.append(next-1+int64(i), leaf); err != nil {
				return 0, err
			}
		}
		next = to + 1
		if progress != nil {
			progress(uint64(next-1), total)
		}
	}
	root, err := tlog.TreeHash(n, &tree)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	if root != head.Root {
		return 0, fmt.Errorf("export: the stored Merkle tree's first %d leaves do not make the tree of the checkpoint of that size: run eva audit verify", n)
	}
	ew, err := auditexport.NewWriter(w, verifierKey, c.Note, n)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	// The lines of a page are made by a worker per CPU, each a slice of
	// the page, and written in order.
	workers := runtime.GOMAXPROCS(0)
	pr, err := newProver(n, tree)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	// Each worker's proof, leaf and lines are kept from page to page (the
	// lines are written before the next page begins): at a million events
	// their allocations were half of the export's, the lines alone 1.5 GB.
	proofs := make([]tlog.RecordProof, workers)
	bufs := make([][]byte, workers)
	parts := make([][]byte, workers)
	errs := make([]error, workers)
	err = walk(1, func(page []Record) error {
		var wg sync.WaitGroup
		per := (len(page) + workers - 1) / workers
		for k := range workers {
			lo, hi := min(k*per, len(page)), min((k+1)*per, len(page))
			parts[k] = parts[k][:0]
			wg.Go(func() {
				buf := bufs[k]
				defer func() { bufs[k] = buf }()
				for _, r := range page[lo:hi] {
					p, err := pr.appendProof(proofs[k][:0], int64(r.Seq)-1)
					proofs[k] = p
					if err != nil {
						errs[k] = fmt.Errorf("export: prove event %d: %w", r.Seq, err)
						return
					}
					// The archived event's leaf, checked against the
					// tree of the checkpoint.
					buf = appendLeafBytes(append(buf[:0], 0), r)
					if cap(parts[k]) == 0 {
						// Room for the chunk's lines, taking the first as
						// their size (leaves are of similar sizes).
						parts[k] = make([]byte, 0, (hi-lo)*(4*len(buf)/3+4*len(p)*tlog.HashSize/3+32)*9/8)
					}
					if sha256.Sum256(buf) != tree[tlog.StoredHashIndex(0, int64(r.Seq)-1)] {
						errs[k] = fmt.Errorf("export: archived event %d does not match its leaf in the Merkle tree: run eva audit verify", r.Seq)
						return
					}
					parts[k] = auditexport.AppendEvent(parts[k], int64(r.Seq), buf[1:], p)
				}
			})
		}
		wg.Wait()
		for k, b := range parts {
			if errs[k] != nil {
				return errs[k]
			}
			if len(b) == 0 {
				continue
			}
			lo, hi := min(k*per, len(page)), min((k+1)*per, len(page))
			if err := ew.Events(int64(page[lo].Seq), int64(page[hi-1].Seq), b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, ew.Close()
}
