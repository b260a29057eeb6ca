package audit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/audit/auditapi"
)

// verifyPage is how many archived events Verify holds at once; memory is
// bounded by it whatever the size of the archive.
const verifyPage = 4096

// logBatch is the most events one batched direct get asks the stream for.
const logBatch = 4096

// VerifyOptions are the checkpoints Verify checks the log against.
type VerifyOptions struct {
	// VerifierKey checks the signatures of the checkpoints, the kept ones
	// and Checkpoints (note.NewVerifier format). Empty: no checkpoint is
	// checked, only the archive, its tree and the log.
	VerifierKey string
	// Checkpoints are signed checkpoints saved earlier, anywhere.
	Checkpoints [][]byte
}

// Verify walks the whole archive from sequence 1 and checks, event by
// event, that
//
//   - the archive has no hole: its sequences are 1, 2, 3, ...;
//   - each stored hash is HashEvent of the stored sequence, subject, id
//     and bytes, and each stored chain is ChainNext of the chain
//     recomputed up to the previous event and the hash;
//   - the Merkle tree's stored leaf hash is the hash of LeafBytes of the
//     stored event;
//   - the event log holds the same event at that sequence: subject, id,
//     bytes and stream time, and the case id and type derived from the
//     subject; an archived event beyond the end of the log is bad too;
//   - the tree of the first n events, recomputed from the events, has the
//     root of every checkpoint of size n, those kept by the service and
//     those in opt (each signed by opt.VerifierKey): a log rewritten after
//     a checkpoint fails there, and a log that holds fewer events than a
//     checkpoint was cut short or rolled back;
//
// and at the end that the stored tree covers exactly the archive with the
// recomputed root. Each checkpoint the log matches is consistent with
// every other one, since all are heads of the one recomputed tree.
//
// It stops at the first failure and says why in Reason, naming the event
// in FirstBad when one event is to blame. Events counts the events
// verified good, Checkpoints the checkpoints matched. Lag counts the
// events of the log the archive has not reached yet, which is not a
// failure. The archive is read in pages and the log in batches, both in
// order, so memory stays bounded and each event costs no round trip of its
// own. Verify needs no running service: `eva audit verify` calls it with a
// store and a log of its own.
//
// Errors: those of the store; CodeUnavailable when the log does not
// answer. A mismatch is not an error: it is the result.
func Verify(ctx context.Context, store ArchiveStore, log *eventlog.Log, opt VerifyOptions) (auditapi.VerifyResult, error) {
	var res auditapi.VerifyResult
	fail := func(firstBad *uint64, format string, args ...any) (auditapi.VerifyResult, error) {
		res.FirstBad = firstBad
		res.Reason = fmt.Sprintf(format, args...)
		return res, nil
	}
	bad := func(seq uint64, format string, args ...any) (auditapi.VerifyResult, error) {
		return fail(&seq, format, args...)
	}
	treeSize, err := store.TreeSize(ctx, nil)
	if err != nil {
		return auditapi.VerifyResult{}, fmt.Errorf("verify: %w", err)
	}
	// last is the end of the log as far as Verify knows; it is read again
	// when the archive gets past it, since the log grows meanwhile.
	last, err := log.LastSeq(ctx)
	if err != nil {
		return auditapi.VerifyResult{}, err
	}
	// The checkpoints are read before the archive: a checkpoint signed
	// after a page of the archive was read can cover events that page
	// ended before, and the archive would look cut short.
	kept, err := keptCheckpoints(ctx, store, opt)
	if err != nil {
		return auditapi.VerifyResult{}, err
	}
	// The pages are read ahead: the archive, the log and the stored leaves
	// of the next page are fetched while this one is checked, and the
	// first ones while the checkpoints' signatures are checked.
	pages := prefetchPages(ctx, store, log, last, treeSize)
	defer pages.stop()
	heads, why := openCheckpoints(kept, opt, func(name string) string { return name })
	if why != "" {
		return fail(nil, "%s", why)
	}
	var tree compactRange
	// matchHeads compares the recomputed tree with the checkpoints of its
	// size.
	matchHeads := func() string {
		for len(heads) > 0 && heads[0].Size == tree.size {
			if heads[0].Root != tree.root() {
				return fmt.Sprintf("the log was rewritten: its first %d events do not make the tree of the checkpoint of that size "+
					"(root %s, the log's %s)", tree.size, heads[0].Root, tree.root())
			}
			heads = heads[1:]
			res.Checkpoints++
		}
		return ""
	}
	if why := matchHeads(); why != "" {
		return fail(nil, "%s", why)
	}
	var (
		h     hasher
		chain = [HashSize]byte(GenesisChain())
	)
	next := uint64(1) // the sequence the archive must hold next
	for {
		vp, err := pages.next()
		if err != nil {
			return auditapi.VerifyResult{}, err
		}
		page, msgs, leaves := vp.page, vp.msgs, vp.leaves
		last, treeSize = vp.last, vp.treeSize
		if len(page) == 0 {
			break
		}
		for i, r := range page {
			if r.Seq != next {
				return bad(next, "event %d is missing from the archive (the next archived event is %d)", next, r.Seq)
			}
			if hash := h.event(r.Seq, r.Subject, r.ID, r.Data); !bytes.Equal(r.Hash, hash[:]) {
				return bad(r.Seq, "archived event %d does not match its hash", r.Seq)
			}
			want := h.chain(chain[:], r.Hash)
			if !bytes.Equal(r.Chain, want[:]) {
				return bad(r.Seq, "chain of archived event %d does not follow from the events before it", r.Seq)
			}
			chain = want
			leaf := h.leaf(r)
			if i >= len(leaves) {
				return bad(r.Seq, "archived event %d is not in the Merkle tree, which covers %d events", r.Seq, treeSize)
			}
			if leaves[i] != leaf {
				return bad(r.Seq, "archived event %d does not match its leaf in the Merkle tree", r.Seq)
			}
			if r.Seq > last {
				return bad(r.Seq, "archived event %d is not in the log, which ends at %d", r.Seq, last)
			}
			if i >= len(msgs) {
				return bad(r.Seq, "archived event %d is not in the log, which has a hole there", r.Seq)
			}
			if what := differs(r, msgs[i]); what != "" {
				return bad(r.Seq, "archived event %d differs from the log: %s", r.Seq, what)
			}
			tree.append(leaf)
			if why := matchHeads(); why != "" {
				return fail(nil, "%s", why)
			}
			res.Events++
			next++
		}
	}
	if len(heads) > 0 {
		return bad(next, "the log was cut short or rolled back: a checkpoint was signed for %d events, the log and the archive hold %d",
			heads[len(heads)-1].Size, tree.size)
	}
	if why, err := treeCovers(ctx, store, tree.size, func(after uint64) (bool, error) {
		more, err := store.Range(ctx, after, 1)
		return len(more) > 0, err
	}); err != nil || why != "" {
		if err != nil {
			return auditapi.VerifyResult{}, err
		}
		return bad(next, "the Merkle tree %s the archive's %d events: archived events were removed", why, tree.size)
	}
	if root, err := tlog.TreeHash(tree.size, hashReader(ctx, store)); err != nil || root != tree.root() {
		return fail(nil, "the stored Merkle tree does not match the archived events (%v)", err)
	}
	res.TreeSize = tree.size
	res.Root = tree.root().String()
	if last, err = log.LastSeq(ctx); err != nil {
		return auditapi.VerifyResult{}, err
	}
	if archived := next - 1; last > archived {
		res.Lag = last - archived
	}
	res.OK = true
	return res, nil
}

// verifyPageData is one page of Verify: up to verifyPage archived
// records from a sequence on, the log's events at the same sequences (up
// to a hole or the log's end), the stored leaves of the tree there, and
// the log's end and the tree's size as known when it was read.
type verifyPageData struct {
	page     []Record
	msgs     []eventlog.Msg
	leaves   []tlog.Hash
	last     uint64
	treeSize int64
	err      error
}

// pageFetcher reads Verify's pages in order, one ahead of the checker.
type pageFetcher struct {
	out    chan verifyPageData
	cancel context.CancelFunc
}

func (f *pageFetcher) next() (verifyPageData, error) {
	p, ok := <-f.out
	if !ok {
		return verifyPageData{}, context.Canceled
	}
	return p, p.err
}

func (f *pageFetcher) stop() {
	f.cancel()
	for range f.out { //nolint:revive // drain so that the reader ends
	}
}

// prefetchPages starts reading Verify's pages from sequence 1, assuming
// each page holds the sequences that follow the previous one (the checker
// stops at the first that does not). It ends after the first empty page
// or error.
func prefetchPages(ctx context.Context, store ArchiveStore, log *eventlog.Log, last uint64, treeSize int64) *pageFetcher {
	ctx, cancel := context.WithCancel(ctx)
	f := &pageFetcher{out: make(chan verifyPageData, 1), cancel: cancel}
	go func() {
		defer close(f.out)
		lr := newLogReader(log)
		defer lr.close()
		for next := uint64(1); ; {
			p := verifyPageData{last: last, treeSize: treeSize}
			p.err = func() error {
				// The tree's leaves of a full page are read while the
				// archive's page is (both are range scans of the
				// database), and read again below if the page turns out
				// to reach past the tree's size as known.
				leaves := make(chan error, 1)
				go func() {
					var err error
					p.leaves, err = storedLeaves(ctx, store, next, min(next+verifyPage-1, uint64(p.treeSize)))
					leaves <- err
				}()
				var err error
				p.page, err = store.Range(ctx, next-1, verifyPage)
				if lerr := <-leaves; err == nil && lerr != nil {
					return lerr
				}
				if err != nil || len(p.page) == 0 {
					if err != nil {
						return fmt.Errorf("verify: %w", err)
					}
					return nil
				}
				// If the page is contiguous, it holds next .. next+len-1.
				end := next + uint64(len(p.page)) - 1
				if end > p.last {
					if p.last, err = log.LastSeq(ctx); err != nil {
						return err
					}
				}
				if upto := min(end, p.last); upto >= next {
					// On a hole, msgs holds the events before it.
					if p.msgs, err = lr.read(ctx, next, upto); err != nil {
						return err
					}
				}
				// The archive grows while Verify walks it (a record and
				// its leaf commit together): read the tree's size again
				// past its end.
				if end > uint64(p.treeSize) {
					if p.treeSize, err = store.TreeSize(ctx, nil); err != nil {
						return fmt.Errorf("verify: %w", err)
					}
					p.leaves, err = storedLeaves(ctx, store, next, min(end, uint64(p.treeSize)))
				}
				return err
			}()
			last, treeSize = p.last, p.treeSize
			select {
			case f.out <- p:
			case <-ctx.Done():
				return
			}
			if p.err != nil || len(p.page) == 0 {
				return
			}
			next += uint64(len(p.page))
		}
	}()
	return f
}

// logReader reads the log in order for Verify with one eventlog.Reader
// (an ordered consumer: a third of the CPU per event of batched direct
// gets), a page at a time: the first event past a page is kept for the
// next.
type logReader struct {
	log       *eventlog.Log
	newReader func(ctx context.Context, from uint64) orderedReader
	holds     func(ctx context.Context, seq uint64) (bool, error)
	lagWait   time.Duration // how long a reader behind the leader gets to catch up

	r      orderedReader
	peeked *eventlog.Msg
	ended  bool // the last event came with nothing pending after it
}

// orderedReader is what logReader needs of an eventlog.Reader.
type orderedReader interface {
	Next(wait time.Duration) (m eventlog.Msg, pending uint64, ok bool, err error)
	Stop()
}

// readerLagWait is how long Verify waits for a reader whose consumer is
// behind the stream's leader (on a replica still catching up after its
// server restarted) to deliver an event the leader holds.
const readerLagWait = 30 * time.Second

func newLogReader(log *eventlog.Log) *logReader {
	return &logReader{log: log, holds: log.Holds, lagWait: readerLagWait,
		newReader: func(ctx context.Context, from uint64) orderedReader {
			return log.Reader(ctx, "verify: read", from, nil, logBatch)
		}}
}

// read returns the log's events from..to in order, stopping before the
// first sequence the log does not hold (a hole: the events before it).
// Pages must follow each other: from is the previous page's to + 1.
func (lr *logReader) read(ctx context.Context, from, to uint64) ([]eventlog.Msg, error) {
	if lr.log != nil && lr.log.ReadsFiles() {
		return lr.scan(ctx, from, to)
	}
	if lr.r == nil {
		lr.r = lr.newReader(ctx, from)
	}
	out := make([]eventlog.Msg, 0, to-from+1)
	for next := from; next <= to; next++ {
		m := lr.peeked
		lr.peeked = nil
		if m == nil {
			got, ok, err := lr.next(ctx, next)
			if err != nil || !ok {
				return out, err // !ok: a hole at the log's end
			}
			m = &got
		}
		if m.Seq != next {
			lr.peeked = m
			if m.Seq < next {
				return nil, fmt.Errorf("verify: the log's reader is at %d, %d was asked", m.Seq, next)
			}
			return out, nil // a hole
		}
		out = append(out, *m)
	}
	return out, nil
}

// errHole stops a Scan of the log at a sequence it does not hold.
var errHole = errors.New("a hole in the log")

// scan is read with Log.Scan, for a log that reads its stream's files
// (each page goes on where the last one stopped).
func (lr *logReader) scan(ctx context.Context, from, to uint64) ([]eventlog.Msg, error) {
	out := make([]eventlog.Msg, 0, to-from+1)
	next := from
	_, err := lr.log.Scan(ctx, from, to, func(m eventlog.Msg) error {
		if m.Seq != next {
			return errHole
		}
		out = append(out, m)
		next++
		return nil
	})
	if errors.Is(err, errHole) {
		return out, nil
	}
	return out, err
}

// next returns the reader's next event, which should be seq; ok is false
// when seq is a hole at the log's end: the reader had no more events when
// the last one came, none came within a second since, and the stream's
// leader does not hold seq either.
//
// Errors: the Reader's; CodeUnavailable when the leader holds seq and the
// reader has not delivered it within lagWait.
func (lr *logReader) next(ctx context.Context, seq uint64) (m eventlog.Msg, ok bool, err error) {
	var wait time.Duration
	if lr.ended {
		wait = time.Second
	}
	m, pending, ok, err := lr.r.Next(wait)
	if err == nil && !ok {
		m, pending, ok, err = lr.awaitBehind(ctx, seq)
	}
	if err != nil {
		lr.close()
		return eventlog.Msg{}, false, err
	}
	if ok {
		lr.ended = pending == 0
	}
	return m, ok, nil
}

// awaitBehind is next when the reader saw the log end before seq. Its
// consumer may sit on a replica that is catching up after its server
// restarted, and reads that replica's store: only the leader says whether
// seq is a hole. When the leader holds it, the reader is behind and gets
// lagWait to deliver it.
func (lr *logReader) awaitBehind(ctx context.Context, seq uint64) (eventlog.Msg, uint64, bool, error) {
	held, err := lr.holds(ctx, seq)
	if err != nil || !held {
		return eventlog.Msg{}, 0, false, err
	}
	for deadline := time.Now().Add(lr.lagWait); time.Now().Before(deadline); {
		if m, pending, ok, err := lr.r.Next(time.Second); err != nil || ok {
			return m, pending, ok, err
		}
	}
	return eventlog.Msg{}, 0, false, assist.Errorf(assist.CodeUnavailable,
		"verify: the log's leader holds event %d, which the log's reader has not delivered in %v", seq, lr.lagWait)
}

func (lr *logReader) close() {
	if lr.r != nil {
		lr.r.Stop()
		lr.r, lr.peeked, lr.ended = nil, nil, false
	}
}

// checkpointHeads opens the kept checkpoints and those of opt with
// opt.VerifierKey, and returns their tree heads by size, smallest first,
// one per size. why says what is wrong with them: a signature that does
// not verify, or two checkpoints of one size with different roots (the
// log forked).
func checkpointHeads(ctx context.Context, store TreeStore, opt VerifyOptions, originOf func(keyName string) string) (heads []auditapi.TreeHead, why string, err error) {
	all, err := keptCheckpoints(ctx, store, opt)
	if err != nil {
		return nil, "", err
	}
	heads, why = openCheckpoints(all, opt, originOf)
	return heads, why, nil
}

// signedNote is a checkpoint to open, and what to call it.
type signedNote struct {
	what string
	note []byte
}

// keptCheckpoints reads the checkpoints to open: those of opt, then
// those the store keeps; none without opt.VerifierKey.
func keptCheckpoints(ctx context.Context, store TreeStore, opt VerifyOptions) ([]signedNote, error) {
	if opt.VerifierKey == "" {
		return nil, nil
	}
	var all []signedNote
	for i, c := range opt.Checkpoints {
		all = append(all, signedNote{fmt.Sprintf("saved checkpoint %d", i+1), c})
	}
	for after := int64(-1); ; {
		kept, err := store.Checkpoints(ctx, after, math.MaxInt64, verifyPage)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		if len(kept) == 0 {
			return all, nil
		}
		for _, c := range kept {
			all = append(all, signedNote{fmt.Sprintf("the kept checkpoint of size %d", c.Size), c.Note})
		}
		after = kept[len(kept)-1].Size
	}
}

// openCheckpoints opens all with opt.VerifierKey and returns the tree
// heads of the log originOf names, as checkpointHeads does.
func openCheckpoints(all []signedNote, opt VerifyOptions, originOf func(keyName string) string) (heads []auditapi.TreeHead, why string) {
	if opt.VerifierKey == "" {
		return nil, ""
	}
	v, err := note.NewVerifier(strings.TrimSpace(opt.VerifierKey))
	if err != nil {
		return nil, "the verifier key is malformed: " + err.Error()
	}
	origin := originOf(v.Name())
	// The signatures (an Ed25519 verification each, the most costly part
	// of a checkpoint) are checked on every CPU; the first bad one in
	// order is reported.
	opened := make([]auditapi.TreeHead, len(all))
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), max(1, len(all)/16))
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(all); i += workers {
				opened[i], errs[i] = auditapi.OpenCheckpointOfAny(all[i].note, opt.VerifierKey)
			}
		})
	}
	wg.Wait()
	bySize := map[int64]auditapi.TreeHead{}
	for i, h := range opened {
		if errs[i] != nil {
			return nil, fmt.Sprintf("%s does not verify: %v", all[i].what, errs[i])
		}
		if h.Origin != origin {
			continue // the other log's
		}
		if prev, ok := bySize[h.Size]; ok && prev.Root != h.Root {
			return nil, fmt.Sprintf("the log was rewritten: two checkpoints of tree size %d have different roots (a fork)", h.Size)
		}
		bySize[h.Size] = h
	}
	heads = slices.SortedFunc(maps.Values(bySize), func(a, b auditapi.TreeHead) int { return cmp.Compare(a.Size, b.Size) })
	return heads, ""
}

// storedLeaves reads the tree's leaf hashes of events from .. to.
func storedLeaves(ctx context.Context, store TreeStore, from, to uint64) ([]tlog.Hash, error) {
	if to < from {
		return nil, nil
	}
	ix := make([]int64, 0, to-from+1)
	for seq := from; seq <= to; seq++ {
		ix = append(ix, tlog.StoredHashIndex(0, int64(seq)-1))
	}
	read := store.ReadHashes
	if r, ok := store.(hashRanger); ok {
		read = r.readHashesInRange
	}
	hs, err := read(ctx, nil, ix)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return hs, nil
}

// VerifyAccess checks the access log's archive as Verify checks the event
// log's: no hole, each record equal to the stream's, each leaf equal to the
// stored one, the stored tree equal to the recomputed one, and the
// recomputed head at the size of every checkpoint of the access log (origin
// "<key name>/access"), kept or in opt.
//
// Errors: those of the store; CodeUnavailable when the stream does not
// answer. A mismatch is the result.
func VerifyAccess(ctx context.Context, access AccessLog, log *eventlog.Log, opt VerifyOptions) (auditapi.TreeCheck, error) {
	var res auditapi.TreeCheck
	fail := func(firstBad *uint64, format string, args ...any) (auditapi.TreeCheck, error) {
		res.FirstBad, res.Reason = firstBad, fmt.Sprintf(format, args...)
		return res, nil
	}
	heads, why, err := checkpointHeads(ctx, access, opt, AccessOrigin)
	if err != nil {
		return auditapi.TreeCheck{}, err
	}
	if why != "" {
		return fail(nil, "%s", why)
	}
	treeSize, err := access.TreeSize(ctx, nil)
	if err != nil {
		return auditapi.TreeCheck{}, fmt.Errorf("verify access log: %w", err)
	}
	var tree compactRange
	matchHeads := func() string {
		for len(heads) > 0 && heads[0].Size == tree.size {
			if heads[0].Root != tree.root() {
				return fmt.Sprintf("the access log was rewritten: its first %d records do not make the tree of the checkpoint of that size", tree.size)
			}
			heads = heads[1:]
			res.Checkpoints++
		}
		return ""
	}
	if why := matchHeads(); why != "" {
		return fail(nil, "%s", why)
	}
	next := uint64(1)
	for {
		page, err := access.AccessRange(ctx, next-1, verifyPage)
		if err != nil {
			return auditapi.TreeCheck{}, fmt.Errorf("verify access log: %w", err)
		}
		if len(page) == 0 {
			break
		}
		end := next + uint64(len(page)) - 1
		raws, err := readStreamRange(ctx, next, end, readerLagWait,
			func(from, to uint64, f func(*jetstream.RawStreamMsg) error) (int, error) {
				return readBatch(ctx, log, eventlog.AccessStream, from, to, f)
			},
			func(ctx context.Context, seq uint64) (bool, error) {
				return log.HoldsIn(ctx, eventlog.AccessStream, seq)
			})
		if err != nil {
			return auditapi.TreeCheck{}, err
		}
		if end > uint64(treeSize) {
			if treeSize, err = access.TreeSize(ctx, nil); err != nil {
				return auditapi.TreeCheck{}, fmt.Errorf("verify access log: %w", err)
			}
		}
		leaves, err := storedLeaves(ctx, access, next, min(end, uint64(treeSize)))
		if err != nil {
			return auditapi.TreeCheck{}, err
		}
		for i, r := range page {
			seq := r.Seq
			switch {
			case seq != next:
				return fail(&next, "access record %d is missing from the archive", next)
			case i >= len(leaves):
				return fail(&seq, "access record %d is not in the access tree, which covers %d records", seq, treeSize)
			case leaves[i] != LeafHash(r):
				return fail(&seq, "access record %d does not match its leaf in the access tree", seq)
			case i >= len(raws) || raws[i].Sequence != seq:
				return fail(&seq, "access record %d is not in the access stream", seq)
			case raws[i].Subject != r.Subject || !bytes.Equal(raws[i].Data, r.Data) || sqldb.Micros(raws[i].Time) != sqldb.Micros(r.At):
				return fail(&seq, "access record %d differs from the access stream", seq)
			}
			tree.append(leaves[i])
			if why := matchHeads(); why != "" {
				return fail(nil, "%s", why)
			}
			res.Records++
			next++
		}
	}
	if len(heads) > 0 {
		return fail(&next, "the access log was cut short or rolled back: a checkpoint was signed for %d records, the archive holds %d",
			heads[len(heads)-1].Size, tree.size)
	}
	if why, err := treeCovers(ctx, access, tree.size, func(after uint64) (bool, error) {
		more, err := access.AccessRange(ctx, after, 1)
		return len(more) > 0, err
	}); err != nil || why != "" {
		if err != nil {
			return auditapi.TreeCheck{}, err
		}
		return fail(&next, "the access tree %s the archive's %d records: archived records were removed", why, tree.size)
	}
	if root, err := tlog.TreeHash(tree.size, hashReader(ctx, access)); err != nil || root != tree.root() {
		return fail(nil, "the stored access tree does not match the archived records (%v)", err)
	}
	info, err := log.JetStream().Stream(ctx, eventlog.AccessStream)
	if err != nil {
		return auditapi.TreeCheck{}, unavailable("read the access stream", err)
	}
	if last := info.CachedInfo().State.LastSeq; last > uint64(tree.size) {
		res.Lag = last - uint64(tree.size)
	}
	res.TreeSize, res.Root, res.OK = tree.size, tree.root().String(), true
	return res, nil
}

// VerifyAll is Verify of the event log and VerifyAccess of the access log;
// the result is OK when both are, and says which failed.
//
// Errors: those of Verify and VerifyAccess.
func VerifyAll(ctx context.Context, store *SQLStore, log *eventlog.Log, opt VerifyOptions) (auditapi.VerifyResult, error) {
	res, err := Verify(ctx, store, log, opt)
	if err != nil {
		return auditapi.VerifyResult{}, err
	}
	acc, err := VerifyAccess(ctx, store.AccessLog(), log, opt)
	if err != nil {
		return auditapi.VerifyResult{}, err
	}
	res.Access = &acc
	if res.OK && !acc.OK {
		res.OK, res.Reason = false, "access log: "+acc.Reason
	}
	return res, nil
}

// treeCovers checks, after a walk of size records, that the stored tree
// covers exactly them; it may cover more only when the archive grew past
// them meanwhile (grew reports a record after size). why says how it
// differs: "covers N leaves, more than", "covers only N leaves of".
func treeCovers(ctx context.Context, ts TreeStore, size int64, grew func(after uint64) (bool, error)) (why string, err error) {
	n, err := ts.TreeSize(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("verify: %w", err)
	}
	switch {
	case n < size:
		return fmt.Sprintf("covers only %d leaves of", n), nil
	case n > size:
		more, err := grew(uint64(size))
		if err != nil {
			return "", fmt.Errorf("verify: %w", err)
		}
		if !more {
			return fmt.Sprintf("covers %d leaves, more than", n), nil
		}
	}
	return "", nil
}

func hashReader(ctx context.Context, store TreeStore) tlog.HashReader {
	return tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return store.ReadHashes(ctx, nil, ix) })
}

// differs names the first field in which an archived record and the log's
// event at the same position disagree; "" when they agree.
func differs(r Record, m eventlog.Msg) string {
	want := fromMsg(m)
	switch {
	case m.Seq != r.Seq:
		return "the log has no event " + strconv.FormatUint(r.Seq, 10)
	case r.Subject != want.Subject:
		return "subject"
	case r.ID != want.ID:
		return "event id"
	case !bytes.Equal(r.Data, want.Data):
		return "bytes"
	case sqldb.Micros(r.At) != sqldb.Micros(want.At):
		return "stream time"
	case r.CaseID != want.CaseID:
		return "case id"
	case r.Type != want.Type:
		return "type"
	}
	return ""
}

// logReadTimeout bounds one batched read of the log. It is explicit
// because a batched direct get that runs out of time ends its messages
// early without an error; readLog checks that it got every event it asked
// for, and this keeps a slow server from failing it after the connection's
// short default timeout. A read that got nothing in its time is not the
// stream's end but an outage (readBatch).
var logReadTimeout = 30 * time.Second

// logHole reports that the log has no event at a sequence below its end.
// The stream never deletes, so this is a finding, not an outage.
type logHole uint64

func (h logHole) Error() string { return fmt.Sprintf("the log has no event %d", uint64(h)) }

// readLog returns the events of the log from sequence from to sequence to
// (both included, and to at most the end of the log), in order, with
// batched direct gets.
//
// Errors: logHole, with the events before the hole; CodeUnavailable when
// the log does not answer or answers with fewer events than exist.
func readLog(ctx context.Context, log *eventlog.Log, from, to uint64) ([]eventlog.Msg, error) {
	out := make([]eventlog.Msg, 0, to-from+1)
	for next := from; next <= to; {
		got, err := readBatch(ctx, log, eventlog.Stream, next, to, func(raw *jetstream.RawStreamMsg) error {
			if raw.Sequence != next {
				return logHole(next)
			}
			out = append(out, eventlog.FromRaw(raw))
			next++
			return nil
		})
		if errors.As(err, new(logHole)) {
			return out, err
		}
		if err != nil {
			return nil, err
		}
		if got == 0 {
			return nil, unavailable(fmt.Sprintf("read the log at %d", next), errors.New("no events returned"))
		}
	}
	return out, nil
}

// readBatch reads one batch of a stream from sequence from on, at most to,
// and returns how many events f took. It reads through the log's batched
// direct gets (eventlog.Log.GetBatch), whose replies are never dropped
// however slowly f takes them, and which go through a JetStream domain.
//
// Errors: f's; CodeUnavailable when the stream does not answer.
func readBatch(ctx context.Context, log *eventlog.Log, stream string, from, to uint64, f func(*jetstream.RawStreamMsg) error) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, logReadTimeout)
	defer cancel()
	got := 0
	err := log.GetBatch(ctx, stream, from, int(min(to-from+1, logBatch)), func(raw *jetstream.RawStreamMsg) error {
		if raw.Sequence > to {
			return nil // past a hole: the batch holds nothing more of from..to
		}
		if err := f(raw); err != nil {
			return err
		}
		got++
		return nil
	})
	if err == nil && got == 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// Nothing came before the time ran out: the stream did not
		// answer. Taken for its end, a record would be reported missing
		// from the stream, a tampering that did not happen.
		return 0, unavailable(fmt.Sprintf("read %s from %d", stream, from), ctx.Err())
	}
	return got, err
}

// readStreamRange reads a stream's messages from..to with batched reads
// (get), stopping where the stream ends or has a hole. A read that finds
// nothing before to may have been answered by a replica still catching up
// after its server restarted (a replica answers direct gets once 90 %
// caught up): the stream's leader (holds) says whether the stream goes
// on, and while it does the read is tried again, for up to lagWait.
//
// Errors: get's and holds'; CodeUnavailable when the leader holds a
// message that no read gave within lagWait.
func readStreamRange(ctx context.Context, from, to uint64, lagWait time.Duration,
	get func(from, to uint64, f func(*jetstream.RawStreamMsg) error) (int, error),
	holds func(ctx context.Context, seq uint64) (bool, error)) ([]*jetstream.RawStreamMsg, error) {
	var raws []*jetstream.RawStreamMsg
	var giveUp time.Time
	for from <= to {
		got, err := get(from, to, func(raw *jetstream.RawStreamMsg) error {
			raws = append(raws, raw)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if got > 0 {
			from, giveUp = raws[len(raws)-1].Sequence+1, time.Time{}
			continue
		}
		held, err := holds(ctx, from)
		switch {
		case err != nil:
			return nil, err
		case !held:
			return raws, nil // the stream ends here, or has a hole
		case giveUp.IsZero():
			giveUp = time.Now().Add(lagWait)
		case time.Now().After(giveUp):
			return nil, unavailable(fmt.Sprintf("read message %d, which the stream's leader holds", from),
				fmt.Errorf("no read gave it in %v", lagWait))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return raws, nil
}

func unavailable(what string, err error) error {
	return &assist.Error{Code: assist.CodeUnavailable, Message: fmt.Sprintf("audit: %s: %v", what, err)}
}
