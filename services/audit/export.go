package audit

import (
	"context"
	"fmt"
	"io"

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
	hs, err := tlog.StoredHashesForRecordHash(n, leaf, t)
	if err != nil {
		return err
	}
	*t = append(*t, hs...)
	return nil
}

// Export writes the archive's events with their proofs in the format of
// auditexport: the latest kept checkpoint, checked with verifierKey, and
// events 1 to its size, each with its leaf bytes and its inclusion proof
// in that checkpoint's tree. It reads the archive twice, a page at a time:
// once to rebuild the tree in memory from the archived events (refusing an
// archive whose tree is not the checkpoint's: `eva audit verify` says
// why), once to write each event with its proof; progress is called with
// the events done of both passes. It returns the checkpoint's size.
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
	walk := func(pass int, f func(Record) error) error {
		for next := int64(1); next <= n; {
			page, err := store.Range(ctx, uint64(next-1), int(min(exportPage, n-next+1)))
			if err != nil {
				return fmt.Errorf("export: %w", err)
			}
			if len(page) == 0 {
				return fmt.Errorf("export: the archive ends at %d, the checkpoint's tree has %d events", next-1, n)
			}
			for _, r := range page {
				if int64(r.Seq) != next {
					return fmt.Errorf("export: the archive has no event %d", next)
				}
				if err := f(r); err != nil {
					return err
				}
				next++
			}
			if progress != nil {
				progress(uint64(pass)*uint64(n)+uint64(next-1), total)
			}
		}
		return nil
	}
	if err := walk(0, func(r Record) error { return tree.append(int64(r.Seq)-1, LeafHash(r)) }); err != nil {
		return 0, err
	}
	root, err := tlog.TreeHash(n, &tree)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	if root != head.Root {
		return 0, fmt.Errorf("export: the archive's first %d events do not make the tree of the checkpoint of that size: run eva audit verify", n)
	}
	ew, err := auditexport.NewWriter(w, verifierKey, c.Note, n)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	err = walk(1, func(r Record) error {
		p, err := tlog.ProveRecord(n, int64(r.Seq)-1, &tree)
		if err != nil {
			return fmt.Errorf("export: prove event %d: %w", r.Seq, err)
		}
		return ew.Event(int64(r.Seq), LeafBytes(r), p)
	})
	if err != nil {
		return 0, err
	}
	return n, ew.Close()
}
