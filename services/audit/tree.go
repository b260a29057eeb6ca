package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// treeAppend adds leaves to a stored tree in memory, and stores the
// hashes of all of them with one statement (flush): a consumer's batch,
// or a page of the archive, costs one write to the tree instead of one a
// leaf. The stored hashes a new leaf needs are read once; those of the
// leaves added before it are at hand.
type treeAppend struct {
	ts      TreeStore
	leaves  int64               // leaves in the tree, stored and pending
	start   int64               // the index of the first pending hash
	pending []tlog.Hash         // hashes from start, not yet stored
	read    map[int64]tlog.Hash // stored hashes read so far
}

// newTreeAppend appends to ts, which holds leaves leaves.
func newTreeAppend(ts TreeStore, leaves int64) *treeAppend {
	start := tlog.StoredHashCount(leaves)
	return &treeAppend{ts: ts, leaves: leaves, start: start, read: make(map[int64]tlog.Hash)}
}

// add adds r's leaf, which must be the next (leaf r.Seq-1).
func (t *treeAppend) add(ctx context.Context, q sqldb.Querier, r Record) error {
	n := int64(r.Seq) - 1
	if n != t.leaves {
		return fmt.Errorf("tree hashes of leaf %d: the tree has %d leaves", n, t.leaves)
	}
	hs, err := tlog.StoredHashesForRecordHash(n, LeafHash(r), t.reader(ctx, q))
	if err != nil {
		return fmt.Errorf("tree hashes of leaf %d: %w", n, err)
	}
	t.pending = append(t.pending, hs...)
	t.leaves++
	return nil
}

// reader reads pending hashes from memory and the others from the store,
// once.
func (t *treeAppend) reader(ctx context.Context, q sqldb.Querier) tlog.HashReader {
	return tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		var missing []int64
		for _, x := range ix {
			if _, ok := t.read[x]; x < t.start && !ok {
				missing = append(missing, x)
			}
		}
		if len(missing) > 0 {
			hs, err := t.ts.ReadHashes(ctx, q, missing)
			if err != nil {
				return nil, err
			}
			for i, x := range missing {
				t.read[x] = hs[i]
			}
		}
		out := make([]tlog.Hash, len(ix))
		for i, x := range ix {
			switch {
			case x < t.start:
				out[i] = t.read[x]
			case x-t.start < int64(len(t.pending)):
				out[i] = t.pending[x-t.start]
			default:
				return nil, fmt.Errorf("tree hash %d: not stored yet", x)
			}
		}
		return out, nil
	})
}

// flush stores the pending hashes.
func (t *treeAppend) flush(ctx context.Context, q sqldb.Querier) error {
	if err := t.ts.AppendHashes(ctx, q, t.start, t.pending); err != nil {
		return err
	}
	t.start += int64(len(t.pending))
	t.pending = nil
	return nil
}

// hashes reads the event log's stored tree in q (nil: outside any
// transaction).
func (s *Service) hashes(ctx context.Context, q sqldb.Querier) tlog.HashReader {
	return treeReader(ctx, q, s.store)
}

func treeReader(ctx context.Context, q sqldb.Querier, ts TreeStore) tlog.HashReader {
	return tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return ts.ReadHashes(ctx, q, ix) })
}

// AccessOrigin is the origin of the access log's checkpoints for a log
// (key) named origin.
func AccessOrigin(origin string) string { return origin + "/access" }

// archiveAccess archives the access log's records beyond the archive's
// head, a batch at a time, each with its leaf in the access tree.
//
// Errors: those of the store; CodeUnavailable when the stream does not
// answer.
func (s *Service) archiveAccess(ctx context.Context) error {
	for {
		last, err := s.access.LastAccess(ctx, nil)
		if err != nil {
			return err
		}
		var recs []Record
		_, err = readBatch(ctx, s.log, eventlog.AccessStream, last+1, last+logBatch, func(raw *jetstream.RawStreamMsg) error {
			if raw.Sequence != last+1+uint64(len(recs)) {
				return logHole(last + 1 + uint64(len(recs)))
			}
			recs = append(recs, Record{Seq: raw.Sequence, Subject: raw.Subject, At: raw.Time, Data: raw.Data})
			return nil
		})
		if err != nil && len(recs) == 0 {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		err = s.db.Tx(ctx, func(q sqldb.Querier) error {
			t := newTreeAppend(s.access, int64(last))
			for _, r := range recs {
				if err := s.access.InsertAccess(ctx, q, r); err != nil {
					return err
				}
				if err := t.add(ctx, q, r); err != nil {
					return err
				}
			}
			return t.flush(ctx, q)
		})
		if err != nil {
			return fmt.Errorf("archive the access log after %d: %w", last, err)
		}
	}
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
			t := newTreeAppend(s.store, size)
			for _, r := range page {
				if err := t.add(ctx, q, r); err != nil {
					return err
				}
			}
			return t.flush(ctx, q)
		})
		if err != nil {
			return fmt.Errorf("add archived events to the Merkle tree: %w", err)
		}
	}
}

// publishAll archives the access log, then signs a checkpoint of each
// tree that grew.
func (s *Service) publishAll(ctx context.Context) error {
	return errors.Join(
		s.archiveAccess(ctx),
		s.publish(ctx, s.store, s.key.Signer.Name()),
		s.publish(ctx, s.access, AccessOrigin(s.key.Signer.Name())))
}

// publish signs a checkpoint of the tree ts as it stands, unless one of
// that size is already kept.
//
// Errors: those of the store and of signing.
func (s *Service) publish(ctx context.Context, ts TreeStore, origin string) error {
	size, err := ts.TreeSize(ctx, nil)
	if err != nil {
		return err
	}
	if latest, ok, err := ts.LatestCheckpoint(ctx); err != nil || (ok && latest.Size >= size) {
		return err
	}
	root, err := tlog.TreeHash(size, treeReader(ctx, nil, ts))
	if err != nil {
		return fmt.Errorf("tree head at %d: %w", size, err)
	}
	text := auditapi.FormatCheckpoint(auditapi.TreeHead{Origin: origin, Size: size, Root: root})
	signed, err := note.Sign(&note.Note{Text: text}, s.key.Signer)
	if err != nil {
		return fmt.Errorf("sign checkpoint %d: %w", size, err)
	}
	return ts.PutCheckpoint(ctx, StoredCheckpoint{Size: size, Note: signed, At: s.now()})
}

// keepPublishing publishes a checkpoint every interval in which the tree
// grew, until ctx ends. A failure is logged once per outage and retried.
func (s *Service) keepPublishing(ctx context.Context, every time.Duration, logger *zap.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		err := s.publishAll(ctx)
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

// Checkpoint returns the latest signed checkpoint of the event log, or of
// the access log when r.Log is "access".
//
// Errors: CodeUnavailable before the first one is signed; CodeInvalid
// naming log; the store's.
func (s *Service) Checkpoint(ctx context.Context, r auditapi.CheckpointRequest) (auditapi.SignedCheckpoint, error) {
	var ts TreeStore
	switch r.Log {
	case "":
		ts = s.store
	case auditapi.AccessLog:
		ts = s.access
	default:
		return auditapi.SignedCheckpoint{}, invalidField("log", "must be empty or "+auditapi.AccessLog)
	}
	c, ok, err := ts.LatestCheckpoint(ctx)
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
