// Package auditexport is the format of `eva audit export`: the event log
// with, for each event, its leaf bytes and its inclusion proof in the
// Merkle tree of a signed checkpoint, so that an outsider checks the whole
// export with nothing but the verifier key (Check; `eva audit
// check-export`). It needs only golang.org/x/mod/sumdb/note and tlog.
//
// An export is text, one item per line, each line ended by one LF:
//
//	eva-audit-export/v1
//	key <the verifier key, as GET /v1/audit/key prints it>
//	checkpoint <n>
//	<the signed checkpoint (a C2SP tlog-checkpoint signed as a note): n bytes>
//	<seq> <leaf> <proof>                  one line per event, seq 1, 2, ... size
//	end <size>
//
// where size is the checkpoint's tree size, leaf is the event's leaf bytes
// (ADR 0021: leaf seq-1 of the tree; its hash is SHA-256(0x00 ‖ bytes))
// in standard base64 with padding, and proof is the concatenated 32-byte
// hashes of its RFC 6962 inclusion proof in the checkpoint's tree, as
// tlog.ProveRecord gives and tlog.CheckRecord takes them, in standard
// base64 (empty for a tree of one leaf). The key line is informational: a
// checker uses the key it trusts, and an export signed by another key
// fails.
package auditexport

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/eva-org/eva/services/audit/auditapi"
)

// Format is the first line of every export.
const Format = "eva-audit-export/v1"

// leafPrefix starts every leaf (ADR 0021).
const leafPrefix = "eva-audit-leaf/v1\nseq "

// Writer writes an export: the header, then one event at a time in
// sequence order, then Close.
type Writer struct {
	w    *bufio.Writer
	size int64
	next int64
	line []byte
}

// NewWriter writes the header of an export of the tree of the signed
// checkpoint (of size leaves) to w.
func NewWriter(w io.Writer, verifierKey string, checkpoint []byte, size int64) (*Writer, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	fmt.Fprintf(bw, "%s\nkey %s\ncheckpoint %d\n", Format, strings.TrimSpace(verifierKey), len(checkpoint))
	bw.Write(checkpoint)
	if err := bw.WriteByte('\n'); err != nil {
		return nil, err
	}
	return &Writer{w: bw, size: size, next: 1}, nil
}

// Event writes the line of event seq (the next one): its leaf bytes and
// its inclusion proof.
func (w *Writer) Event(seq int64, leaf []byte, proof tlog.RecordProof) error {
	if seq != w.next || seq > w.size {
		return fmt.Errorf("export: event %d written after %d (tree of %d)", seq, w.next-1, w.size)
	}
	w.next++
	w.line = AppendEvent(w.line[:0], seq, leaf, proof)
	_, err := w.w.Write(w.line)
	return err
}

// Events writes the lines of events first to last (the next ones), made
// by AppendEvent, in order: a writer that formats lines on several CPUs
// hands them over a page at a time.
func (w *Writer) Events(first, last int64, lines []byte) error {
	if first != w.next || last < first || last > w.size {
		return fmt.Errorf("export: events %d to %d written after %d (tree of %d)", first, last, w.next-1, w.size)
	}
	w.next = last + 1
	_, err := w.w.Write(lines)
	return err
}

// AppendEvent appends the line of event seq to b: "<seq> <leaf, base64>
// <proof hashes, base64>" and a line end.
func AppendEvent(b []byte, seq int64, leaf []byte, proof tlog.RecordProof) []byte {
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, ' ')
	b = base64.StdEncoding.AppendEncode(b, leaf)
	b = append(b, ' ')
	var hashes [64 * tlog.HashSize]byte // a proof has at most 63 hashes
	raw := hashes[:0]
	for _, h := range proof {
		raw = append(raw, h[:]...)
	}
	b = base64.StdEncoding.AppendEncode(b, raw)
	return append(b, '\n')
}

// Close writes the end line and flushes; every event of the tree must have
// been written.
func (w *Writer) Close() error {
	if w.next != w.size+1 {
		return fmt.Errorf("export: %d events written of %d", w.next-1, w.size)
	}
	fmt.Fprintf(w.w, "end %d\n", w.size)
	return w.w.Flush()
}

// Result is what Check found.
type Result struct {
	OK bool `json:"ok"`
	// Origin, Size and Root are the checkpoint's.
	Origin string `json:"origin"`
	Size   int64  `json:"size"`
	Root   string `json:"root"`
	// Events counts the events whose proof checked, in order, before the
	// first bad one.
	Events int64 `json:"events"`
	// FirstBad is the sequence of the first event that does not check;
	// Reason says why the export does not check.
	FirstBad *int64 `json:"first_bad"`
	Reason   string `json:"reason,omitempty"`
}

// Check reads an export from r and checks, with nothing but verifierKey,
// that its checkpoint is signed by that key, that it holds exactly events
// 1 to the checkpoint's size, in order, each leaf naming its own sequence,
// and that each leaf's inclusion proof leads to the checkpoint's root
// (tlog.CheckRecord). An export has one spelling, Export's: a line
// written otherwise (a sign or a carriage return the decoders would
// skip) is refused, so that two exports can be compared by their bytes.
// The proofs are checked on every CPU. A failure is the Result, naming
// the first bad event when one is to blame.
//
// Errors: only reading r.
func Check(r io.Reader, verifierKey string) (Result, error) {
	var res Result
	fail := func(seq int64, format string, args ...any) (Result, error) {
		if seq > 0 {
			res.FirstBad = &seq
			format = "event " + strconv.FormatInt(seq, 10) + ": " + format
		}
		res.Reason = fmt.Sprintf(format, args...)
		return res, nil
	}
	br := bufio.NewReaderSize(r, 1<<20)
	line := func() (string, error) {
		s, err := br.ReadString('\n')
		if errors.Is(err, io.EOF) {
			return s, io.ErrUnexpectedEOF
		}
		return strings.TrimSuffix(s, "\n"), err
	}
	if l, err := line(); err != nil || l != Format {
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return res, err
		}
		return fail(0, "not an export: the first line is not %q", Format)
	}
	l, err := line()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return res, err
	}
	key, ok := strings.CutPrefix(l, "key ")
	if !ok {
		return fail(0, "the second line is not the key line")
	}
	if key != strings.TrimSpace(verifierKey) {
		return fail(0, "the export is of the key %q, not of the verifier key given", key)
	}
	l, err = line()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return res, err
	}
	n, err := strconv.Atoi(strings.TrimPrefix(l, "checkpoint "))
	if l != "checkpoint "+strconv.Itoa(n) || err != nil || n <= 0 || n > 1<<16 {
		return fail(0, "the third line is not the checkpoint's length")
	}
	signed := make([]byte, n+1)
	if _, err := io.ReadFull(br, signed); err != nil {
		return fail(0, "the checkpoint is cut short")
	}
	if signed[n] != '\n' {
		return fail(0, "the checkpoint is not %d bytes and a line end", n)
	}
	head, err := auditapi.OpenCheckpoint(signed[:n], verifierKey)
	if err != nil {
		return fail(0, "the checkpoint does not verify: %v", err)
	}
	res.Origin, res.Size, res.Root = head.Origin, head.Size, head.Root.String()

	// The lines are read here, in order, and their proofs checked by a
	// worker per CPU; the first bad sequence wins.
	var (
		mu       sync.Mutex
		firstBad int64
		badWhy   string
	)
	bad := func(seq int64, why string) {
		mu.Lock()
		defer mu.Unlock()
		if firstBad == 0 || seq < firstBad {
			firstBad, badWhy = seq, why
		}
	}
	jobs := make(chan []job, 4*runtime.NumCPU())
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			var prefix []byte
			for batch := range jobs {
				for _, j := range batch {
					prefix = strconv.AppendInt(append(prefix[:0], leafPrefix...), j.seq, 10)
					prefix = append(prefix, '\n')
					if !bytes.HasPrefix(j.leaf, prefix) {
						bad(j.seq, "the leaf is not the leaf of this sequence")
						continue
					}
					if err := tlog.CheckRecord(j.proof, head.Size, head.Root, j.seq-1, tlog.RecordHash(j.leaf)); err != nil {
						bad(j.seq, "the leaf is not in the checkpoint's tree: "+err.Error())
					}
				}
			}
		})
	}
	read := func() (int64, string, error) {
		const per = 256
		batch := make([]job, 0, per)
		defer wg.Wait()
		defer close(jobs)
		defer func() {
			if len(batch) > 0 {
				jobs <- batch
			}
		}()
		seq := int64(0)
		for {
			l, err := line()
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return seq + 1, "the export is cut short", nil
				}
				return 0, "", err
			}
			if rest, ok := strings.CutPrefix(l, "end "); ok {
				switch {
				case rest != strconv.FormatInt(head.Size, 10):
					return seq + 1, "the end line does not name the checkpoint's size", nil
				case seq != head.Size:
					return seq + 1, fmt.Sprintf("the export ends after %d events, the checkpoint's tree has %d", seq, head.Size), nil
				}
				if _, err := br.ReadByte(); err == nil {
					return 0, "bytes after the end line", nil
				}
				return 0, "", nil
			}
			seq++
			if seq > head.Size {
				return seq, "the export holds more events than the checkpoint's tree", nil
			}
			j, why := parseEvent(l, seq)
			if why != "" {
				return seq, why, nil
			}
			if batch = append(batch, j); len(batch) == per {
				jobs <- batch
				batch = make([]job, 0, per)
			}
		}
	}
	parseSeq, parseWhy, err := read()
	if err != nil {
		return res, err
	}
	if parseWhy != "" {
		bad(parseSeq, parseWhy)
	}
	if firstBad != 0 || badWhy != "" {
		res.Events = max(firstBad-1, 0)
		return fail(firstBad, "%s", badWhy)
	}
	res.Events, res.OK = head.Size, true
	return res, nil
}

// strict decodes base64 with no slack: one text per byte string, so that
// no changed character goes unnoticed.
var strict = base64.StdEncoding.Strict()

// job is an event line to check.
type job struct {
	seq   int64
	leaf  []byte
	proof tlog.RecordProof
}

// parseEvent reads the line of event seq: "<seq> <leaf> <proof>".
func parseEvent(l string, seq int64) (j job, why string) {
	s, rest, ok := strings.Cut(l, " ")
	if !ok || s != strconv.FormatInt(seq, 10) {
		return j, "the line is not the line of this sequence"
	}
	leaf64, proof64, ok := strings.Cut(rest, " ")
	if !ok {
		return j, "the line has no proof"
	}
	// The base64 decoder skips line ends; an export has one spelling.
	if strings.IndexByte(rest, '\r') >= 0 {
		return j, "the line holds a carriage return"
	}
	leaf, err := strict.DecodeString(leaf64)
	if err != nil {
		return j, "the leaf is not base64"
	}
	raw, err := strict.DecodeString(proof64)
	if err != nil || len(raw)%tlog.HashSize != 0 {
		return j, "the proof is not base64 of 32-byte hashes"
	}
	proof := make(tlog.RecordProof, len(raw)/tlog.HashSize)
	for i := range proof {
		proof[i] = tlog.Hash(raw[i*tlog.HashSize:])
	}
	j.seq, j.leaf, j.proof = seq, leaf, proof
	return j, ""
}
