package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
)

// HashSize is the size of event hashes and chain values (SHA-256).
const HashSize = sha256.Size

// hashDomain starts every event hash's input, so that it can never be
// mistaken for another SHA-256 input of EVA (such as future Merkle nodes).
const hashDomain = "eva-audit-event-v1\x00"

// HashEvent is the hash of an archived event: SHA-256 over its canonical
// encoding,
//
//	"eva-audit-event-v1" 0x00    domain separator (19 bytes)
//	seq                          uint64, big-endian
//	len(subject) ‖ subject       length as uint64 big-endian, then the bytes
//	len(id) ‖ id                 the Nats-Msg-Id (event id), likewise
//	len(data) ‖ data             the raw protobuf bytes, likewise
//
// Every variable-length field is length-prefixed, so no two different
// events share an encoding. The stream timestamp is not hashed (the event's
// own time is inside data); Verify compares it with the log instead.
func HashEvent(seq uint64, subject, id string, data []byte) []byte {
	var h hasher
	sum := h.event(seq, subject, id, data)
	return sum[:]
}

// appendEventInput appends HashEvent's input for an event to b.
func appendEventInput(b []byte, seq uint64, subject, id string, data []byte) []byte {
	b = append(b, hashDomain...)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(len(subject)))
	b = append(b, subject...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(id)))
	b = append(b, id...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(data)))
	return append(b, data...)
}

// ChainNext extends the hash chain: SHA-256(prev ‖ hash). The chain before
// the first event (seq 1) is GenesisChain.
func ChainNext(prev, hash []byte) []byte {
	var h hasher
	sum := h.chain(prev, hash)
	return sum[:]
}

// hasher computes the hashes of the archive (HashEvent, ChainNext,
// LeafHash) in a buffer it keeps: Verify and Export hash every event, and
// need not allocate for each. The zero hasher is ready; one hasher is not
// for concurrent use.
type hasher struct{ buf []byte }

func (h *hasher) event(seq uint64, subject, id string, data []byte) [HashSize]byte {
	h.buf = appendEventInput(h.buf[:0], seq, subject, id, data)
	return sha256.Sum256(h.buf)
}

func (h *hasher) chain(prev, hash []byte) [HashSize]byte {
	h.buf = append(append(h.buf[:0], prev...), hash...)
	return sha256.Sum256(h.buf)
}

// leaf is LeafHash(r): SHA-256(0x00 ‖ LeafBytes(r)) (RFC 6962).
func (h *hasher) leaf(r Record) tlog.Hash {
	h.buf = appendLeafBytes(append(h.buf[:0], 0), r)
	return sha256.Sum256(h.buf)
}

// GenesisChain is the chain value before the first event: 32 zero bytes.
func GenesisChain() []byte { return make([]byte, HashSize) }

// fromMsg is the archive record of a log event, without hash and chain.
func fromMsg(m eventlog.Msg) Record {
	typ := m.Type
	if typ == "" {
		// A subject that does not parse is still archived, typed by its
		// last token.
		typ = m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	}
	return Record{Seq: m.Seq, ID: m.ID, CaseID: m.CaseID, Type: typ, Subject: m.Subject, At: m.Time, Data: m.Data}
}

// newRecord is the archive record of a log event following chain prev.
func newRecord(m eventlog.Msg, prev []byte) Record {
	r := fromMsg(m)
	r.Hash = HashEvent(r.Seq, r.Subject, r.ID, r.Data)
	r.Chain = ChainNext(prev, r.Hash)
	return r
}

// Archive is the handler of the durable consumer "audit": it appends m to
// the archive inside the consumer's transaction, keeping the archive in log
// order with no gap. An event at or below the archive's head is already
// archived and is skipped, so redelivery is harmless. An event beyond
// head+1 (the consumer redelivers out of order after a retry) is a gap:
// Archive reports ErrGap and the consumer calls FillGap, outside the
// transaction, before trying the event again. Events are archived whether
// or not they decode: audit keeps everything. The events of one batch
// are archived together before its commit: the head is read once, and the
// records and their tree hashes are written with a statement each.
//
// Errors: those of the store; eventlog.ErrGap.
func (s *Service) Archive(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
	a := eventlog.TxLocal(ctx, archivingKey{}, func() *archiving { return &archiving{store: s.store} })
	added, err := a.add(ctx, q, m)
	if err != nil || !added || len(a.recs) > 1 {
		return err
	}
	// Replicas of audit share the consumer: two that race to archive the
	// same sequence both read the same head, the primary key lets one
	// insert win, and the other's transaction fails and is retried,
	// finding the event archived.
	return eventlog.BeforeCommit(ctx, q, a.write)
}

type archivingKey struct{}

// archiving is what one transaction adds to the archive: the head it
// read, the records that follow it and their leaves, all written by
// write.
type archiving struct {
	store ArchiveStore
	tree  *treeAppend // nil until the head is read
	last  uint64
	chain []byte
	recs  []Record
}

// add adds m when it is the event after the head, and tells whether it
// did: one at or below the head is archived already.
func (a *archiving) add(ctx context.Context, q sqldb.Querier, m eventlog.Msg) (bool, error) {
	if a.tree == nil {
		last, chain, err := a.store.Last(ctx, q)
		if err != nil {
			return false, err
		}
		a.last, a.chain, a.tree = last, chain, newTreeAppend(a.store, int64(last))
	}
	switch {
	case m.Seq <= a.last:
		return false, nil
	case m.Seq > a.last+1:
		return false, fmt.Errorf("archive is at %d, event %d arrived: %w", a.last, m.Seq, eventlog.ErrGap)
	}
	r := newRecord(m, a.chain)
	if err := a.tree.add(ctx, q, r); err != nil {
		return false, err
	}
	a.recs = append(a.recs, r)
	a.last, a.chain = r.Seq, r.Chain
	return true, nil
}

// write archives the records added and stores their tree hashes, in q:
// the tree always covers exactly the archive.
func (a *archiving) write(ctx context.Context, q sqldb.Querier) error {
	if err := a.store.Insert(ctx, q, a.recs...); err != nil {
		return err
	}
	a.recs = nil
	return a.tree.flush(ctx, q)
}

// FillGap archives the events missing before m: it reads them from the
// stream (which never deletes) outside any transaction, then archives
// those still missing in one transaction of its own.
//
// Errors: those of the store; CodeUnavailable when the log does not
// answer.
func (s *Service) FillGap(ctx context.Context, m eventlog.Msg) error {
	last, _, err := s.store.Last(ctx, nil)
	if err != nil || m.Seq <= last+1 {
		return err
	}
	msgs, err := readLog(ctx, s.log, last+1, m.Seq-1)
	if err != nil {
		return fmt.Errorf("fill archive gap after %d: %w", last, err)
	}
	return s.db.Tx(ctx, func(q sqldb.Querier) error {
		a := &archiving{store: s.store}
		for _, gm := range msgs {
			if _, err := a.add(ctx, q, gm); err != nil {
				return fmt.Errorf("fill archive gap: %w", err)
			}
		}
		return a.write(ctx, q)
	})
}
