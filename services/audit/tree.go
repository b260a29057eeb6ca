package audit

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// appendRecord archives r and adds its leaf to the Merkle tree, in the
// transaction q: the record and the hashes tlog.StoredHashes gives for it
// commit together, so the tree always covers exactly the archive.
func (s *Service) appendRecord(ctx context.Context, q sqldb.Querier, r Record) error {
	if err := s.store.Insert(ctx, q, r); err != nil {
		return err
	}
	n := int64(r.Seq) - 1
	hs, err := tlog.StoredHashesForRecordHash(n, LeafHash(r), s.hashes(ctx, q))
	if err != nil {
		return fmt.Errorf("tree hashes of event %d: %w", r.Seq, err)
	}
	return s.store.AppendHashes(ctx, q, tlog.StoredHashCount(n), hs)
}

// hashes reads the stored tree in q (nil: outside any transaction).
func (s *Service) hashes(ctx context.Context, q sqldb.Querier) tlog.HashReader {
	return tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return s.store.ReadHashes(ctx, q, ix) })
}

// fillTree adds to the Merkle tree the archived events it does not cover
// yet: an archive made before the tree existed. It runs before the
// consumer starts, a page of events per transaction.
//
// Errors: those of the store.
func (s *Service) fillTree(ctx context.Context) error {
	for {
		size, err := s.store.TreeSize(ctx, nil)
		if err != nil {
			return err
		}
		page, err := s.store.Range(ctx, uint64(size), verifyPage)
		if err != nil || len(page) == 0 {
			return err
		}
		err = s.db.Tx(ctx, func(q sqldb.Querier) error {
			for _, r := range page {
				n := int64(r.Seq) - 1
				hs, err := tlog.StoredHashesForRecordHash(n, LeafHash(r), s.hashes(ctx, q))
				if err != nil {
					return fmt.Errorf("tree hashes of event %d: %w", r.Seq, err)
				}
				if err := s.store.AppendHashes(ctx, q, tlog.StoredHashCount(n), hs); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("add archived events to the Merkle tree: %w", err)
		}
	}
}

// publish signs a checkpoint of the tree as it stands, unless one of that
// size is already kept.
//
// Errors: those of the store and of signing.
func (s *Service) publish(ctx context.Context) error {
	size, err := s.store.TreeSize(ctx, nil)
	if err != nil {
		return err
	}
	if latest, ok, err := s.store.LatestCheckpoint(ctx); err != nil || (ok && latest.Size >= size) {
		return err
	}
	root, err := tlog.TreeHash(size, s.hashes(ctx, nil))
	if err != nil {
		return fmt.Errorf("tree head at %d: %w", size, err)
	}
	text := auditapi.FormatCheckpoint(auditapi.TreeHead{Origin: s.key.Signer.Name(), Size: size, Root: root})
	signed, err := note.Sign(&note.Note{Text: text}, s.key.Signer)
	if err != nil {
		return fmt.Errorf("sign checkpoint %d: %w", size, err)
	}
	return s.store.PutCheckpoint(ctx, StoredCheckpoint{Size: size, Note: signed, At: s.now()})
}

// keepPublishing publishes a checkpoint every interval in which the tree
// grew, until ctx ends. A failure is logged once per outage and retried.
func (s *Service) keepPublishing(ctx context.Context, every time.Duration, logger *zap.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		err := s.publish(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			logger.Error("audit checkpoint not published", zap.Error(err))
			failing = true
		case err == nil && failing:
			logger.Info("audit checkpoints published again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Checkpoint returns the latest signed checkpoint.
//
// Errors: CodeUnavailable before the first one is signed; the store's.
func (s *Service) Checkpoint(ctx context.Context, _ struct{}) (auditapi.SignedCheckpoint, error) {
	c, ok, err := s.store.LatestCheckpoint(ctx)
	if err != nil {
		return auditapi.SignedCheckpoint{}, err
	}
	if !ok {
		return auditapi.SignedCheckpoint{}, assist.Errorf(assist.CodeUnavailable, "no checkpoint is signed yet")
	}
	return auditapi.SignedCheckpoint{Size: c.Size, Note: string(c.Note), At: c.At}, nil
}

// Key returns the verifier key of the checkpoints.
//
// Errors: CodeUnavailable when the service has no key.
func (s *Service) Key(_ context.Context, _ struct{}) (auditapi.VerifierKey, error) {
	if s.key == nil {
		return auditapi.VerifierKey{}, assist.Errorf(assist.CodeUnavailable, "the audit log has no signing key")
	}
	return auditapi.VerifierKey{Key: s.key.Verifier}, nil
}

// Leaf returns the leaf of the event of sequence r.Seq (LeafBytes).
//
// Errors: CodeInvalid for sequence 0; CodeNotFound for an event not
// archived; the store's.
func (s *Service) Leaf(ctx context.Context, r auditapi.LeafRequest) (auditapi.Leaf, error) {
	if r.Seq == 0 {
		return auditapi.Leaf{}, invalidField("seq", "must be at least 1")
	}
	recs, err := s.store.Range(ctx, r.Seq-1, 1)
	if err != nil {
		return auditapi.Leaf{}, err
	}
	if len(recs) == 0 || recs[0].Seq != r.Seq {
		return auditapi.Leaf{}, assist.Errorf(assist.CodeNotFound, "event %d is not archived", r.Seq)
	}
	return auditapi.Leaf{Seq: r.Seq, Bytes: LeafBytes(recs[0])}, nil
}

// InclusionProof proves that leaf r.Seq-1 is in the tree of r.Size
// leaves, as tlog.CheckRecord takes it.
//
// Errors: CodeInvalid naming seq or size when 1 ≤ seq ≤ size ≤ the tree's
// size does not hold; the store's.
func (s *Service) InclusionProof(ctx context.Context, r auditapi.InclusionRequest) (auditapi.Proof, error) {
	if err := s.checkSizes(ctx, "seq", r.Seq, "size", r.Size); err != nil {
		return auditapi.Proof{}, err
	}
	p, err := tlog.ProveRecord(int64(r.Size), int64(r.Seq)-1, s.hashes(ctx, nil))
	if err != nil {
		return auditapi.Proof{}, fmt.Errorf("prove event %d in tree %d: %w", r.Seq, r.Size, err)
	}
	return auditapi.Proof{Hashes: p}, nil
}

// ConsistencyProof proves that the tree of r.From leaves is a prefix of
// the tree of r.To leaves, as tlog.CheckTree takes it.
//
// Errors: CodeInvalid naming from or to when 1 ≤ from ≤ to ≤ the tree's
// size does not hold; the store's.
func (s *Service) ConsistencyProof(ctx context.Context, r auditapi.ConsistencyRequest) (auditapi.Proof, error) {
	if err := s.checkSizes(ctx, "from", r.From, "to", r.To); err != nil {
		return auditapi.Proof{}, err
	}
	p, err := tlog.ProveTree(int64(r.To), int64(r.From), s.hashes(ctx, nil))
	if err != nil {
		return auditapi.Proof{}, fmt.Errorf("prove tree %d in tree %d: %w", r.From, r.To, err)
	}
	return auditapi.Proof{Hashes: p}, nil
}

// checkSizes checks 1 ≤ lo ≤ hi ≤ the tree's size.
func (s *Service) checkSizes(ctx context.Context, loName string, lo uint64, hiName string, hi uint64) error {
	size, err := s.store.TreeSize(ctx, nil)
	if err != nil {
		return err
	}
	switch {
	case lo == 0:
		return invalidField(loName, "must be at least 1")
	case hi < lo:
		return invalidField(hiName, "must not be less than "+loName)
	case hi > uint64(size):
		return invalidField(hiName, fmt.Sprintf("the tree has %d leaves", size))
	}
	return nil
}

func invalidField(field, msg string) error {
	return &assist.Error{Code: assist.CodeInvalid, Message: "invalid " + field,
		Fields: []assist.FieldError{{Field: field, Message: msg}}}
}

// compactRange is the right edge of a Merkle tree being built leaf by
// leaf: the roots of its perfect subtrees, largest first. It gives the
// tree head of every size it passes with O(log n) memory.
type compactRange struct {
	size   int64
	hashes []tlog.Hash
	sizes  []int64
}

func (c *compactRange) append(h tlog.Hash) {
	c.hashes, c.sizes = append(c.hashes, h), append(c.sizes, 1)
	c.size++
	for n := len(c.sizes); n >= 2 && c.sizes[n-1] == c.sizes[n-2]; n = len(c.sizes) {
		c.hashes[n-2] = tlog.NodeHash(c.hashes[n-2], c.hashes[n-1])
		c.sizes[n-2] *= 2
		c.hashes, c.sizes = c.hashes[:n-1], c.sizes[:n-1]
	}
}

// root is RFC 6962's MTH of the leaves appended so far: the perfect
// subtrees combined right to left.
func (c *compactRange) root() tlog.Hash {
	if len(c.hashes) == 0 {
		h, _ := tlog.TreeHash(0, nil)
		return h
	}
	r := c.hashes[len(c.hashes)-1]
	for i := len(c.hashes) - 2; i >= 0; i-- {
		r = tlog.NodeHash(c.hashes[i], r)
	}
	return r
}
