package eventlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/highwayhash"
	"github.com/nats-io/nats.go/jetstream"
)

// The record format of nats-server's file store (server/filestore.go,
// writeMsgRecordLocked, v2.15): a message block <index>.blk is a run of
// records
//
//	total_len(4) seq(8) ts(8) subj_len(2) subj [hdr_len(4) hdr] msg hash(8)
//
// little-endian, the high bit of total_len set when the record has
// headers; hash is HighwayHash-64 of seq, ts, subj, hdr and msg under the
// key SHA-256("<stream>-<index>"). Erased records have the high bit of seq
// set, tombstones (a delete recorded in a later block) the next one.
const (
	blockHeaderLen = 22
	blockHashLen   = 8
	blockHeaderBit = 1 << 31
	blockEraseBit  = 1 << 63
	blockTombBit   = 1 << 62
	blockMaxRecord = 32 << 20
)

// errFilesStop ends a reading of the files short: what is left is read
// from the server.
var errFilesStop = errors.New("the stream's files cannot be read further")

// callbackError carries the error of Scan's callback out of the files'
// reader, unchanged.
type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// streamFiles reads a stream's messages straight from the message blocks
// of the file store of the nats-server that holds it, in order, each
// record checked against its checksum: no message is built, sent or parsed
// by a server and a client, which is most of the cost of reading the log
// through a consumer. It understands only what EVA's streams store:
// uncompressed, unencrypted blocks, no deleted message. Anything else (an
// unknown record, a bad checksum, a block that ends early) ends the
// reading, and Scan reads the rest through the server, which reports the
// damage its own way.
//
// The blocks must not be rewritten while they are read: use it only where
// this process's embedded server is the stream's only server (the offline
// tools), never on a cluster's files. Appends are harmless: a record
// reaches the file before its append is acknowledged (fsync always), and
// a reading never goes past the stream's last sequence as the server told
// it when the reading began.
type streamFiles struct {
	dir    string // <store>/jetstream/<account>/streams/<stream>/msgs
	stream string

	mu sync.Mutex
	// at is where the last reading stopped, so that the next one, from the
	// next sequence (Verify's next page), goes on without reading the
	// block again.
	at *blockCursor
}

// blockCursor is a position in a message block read into memory.
type blockCursor struct {
	index uint32 // the block's index (<index>.blk)
	buf   []byte
	off   int
	next  uint64 // the sequence the record at off is expected to hold or pass
	hh    *highwayhash.Digest64
}

// scan calls f with the stream's messages from..to in order, and returns
// the last sequence handed to f. It ends early, with an error wrapping
// errFilesStop, where the files cannot be read further; f's error comes
// back as a callbackError.
func (sf *streamFiles) scan(ctx context.Context, from, to uint64, f func(Msg) error) (last uint64, err error) {
	last = from - 1
	sf.mu.Lock()
	cur := sf.at
	sf.at = nil
	sf.mu.Unlock()
	if cur == nil || cur.next != from {
		if cur, err = sf.seek(from); err != nil {
			return last, err
		}
	}
	defer func() {
		if err == nil {
			sf.mu.Lock()
			sf.at = cur
			sf.mu.Unlock()
		}
	}()
	for n := 0; last < to; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return last, callbackError{ctx.Err()}
		}
		m, ok, err := cur.record(sf, from)
		if err != nil {
			return last, err
		}
		if !ok {
			if cur, err = sf.after(cur); err != nil {
				return last, err
			}
			continue
		}
		if m.Seq > to {
			cur.off, cur.next = m.off, to+1 // read it again next time
			break
		}
		if err := f(m.Msg); err != nil {
			return last, callbackError{err}
		}
		last = m.Seq
	}
	return last, nil
}

// blocks lists the indexes of the stream's message blocks, in order.
func (sf *streamFiles) blocks() ([]uint32, error) {
	entries, err := os.ReadDir(sf.dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errFilesStop, err)
	}
	var out []uint32
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".key") {
			return nil, fmt.Errorf("%w: the blocks are encrypted", errFilesStop)
		}
		if idx, ok := strings.CutSuffix(name, ".blk"); ok {
			n, err := strconv.ParseUint(idx, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: %s is not a message block", errFilesStop, name)
			}
			out = append(out, uint32(n))
		}
	}
	slices.Sort(out)
	return out, nil
}

// seek opens the block that holds sequence from: the last whose first
// record is at or before it.
func (sf *streamFiles) seek(from uint64) (*blockCursor, error) {
	idx, err := sf.blocks()
	if err != nil {
		return nil, err
	}
	if len(idx) == 0 {
		return nil, fmt.Errorf("%w: no message block in %s", errFilesStop, sf.dir)
	}
	pick := idx[0]
	for _, i := range idx[1:] {
		first, err := sf.firstSeq(i)
		if err != nil {
			return nil, err
		}
		if first > from {
			break
		}
		pick = i
	}
	return sf.open(pick, 0)
}

// after opens the block that follows c's.
func (sf *streamFiles) after(c *blockCursor) (*blockCursor, error) {
	idx, err := sf.blocks()
	if err != nil {
		return nil, err
	}
	i, _ := slices.BinarySearch(idx, c.index+1)
	if i == len(idx) {
		return nil, fmt.Errorf("%w: the blocks end before sequence %d", errFilesStop, c.next)
	}
	return sf.open(idx[i], c.next)
}

// firstSeq reads the sequence of a block's first record.
func (sf *streamFiles) firstSeq(index uint32) (uint64, error) {
	f, err := os.Open(sf.path(index))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errFilesStop, err)
	}
	defer f.Close()
	var hdr [blockHeaderLen]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return 0, fmt.Errorf("%w: block %d: %v", errFilesStop, index, err)
	}
	return binary.LittleEndian.Uint64(hdr[4:]) &^ (blockEraseBit | blockTombBit), nil
}

func (sf *streamFiles) path(index uint32) string {
	return filepath.Join(sf.dir, strconv.FormatUint(uint64(index), 10)+".blk")
}

// open reads block index into memory; next is the least sequence its
// first record may hold (0: any).
func (sf *streamFiles) open(index uint32, next uint64) (*blockCursor, error) {
	buf, err := os.ReadFile(sf.path(index))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errFilesStop, err)
	}
	key := sha256.Sum256([]byte(sf.stream + "-" + strconv.FormatUint(uint64(index), 10)))
	hh, err := highwayhash.NewDigest64(key[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errFilesStop, err)
	}
	return &blockCursor{index: index, buf: buf, next: next, hh: hh}, nil
}

// fileMsg is a message read from a block and where its record starts.
type fileMsg struct {
	Msg
	off int
}

// record reads the next message of the block at or after sequence from
// (the records before it are passed over unchecked); ok is false at the
// block's end.
func (c *blockCursor) record(sf *streamFiles, from uint64) (m fileMsg, ok bool, err error) {
	le := binary.LittleEndian
	for c.off < len(c.buf) {
		bad := func(why string) (fileMsg, bool, error) {
			return fileMsg{}, false, fmt.Errorf("%w: block %d at byte %d: %s", errFilesStop, c.index, c.off, why)
		}
		if len(c.buf)-c.off < blockHeaderLen {
			return bad("a record cut short")
		}
		hdr := c.buf[c.off : c.off+blockHeaderLen]
		rl, slen := le.Uint32(hdr), int(le.Uint16(hdr[20:]))
		withHeaders := rl&blockHeaderBit != 0
		rl &^= blockHeaderBit
		if rl < blockHeaderLen+blockHashLen || rl > blockMaxRecord || c.off+int(rl) > len(c.buf) {
			return bad("a record of impossible length")
		}
		rec := c.buf[c.off : c.off+int(rl)]
		at := c.off
		c.off += int(rl)
		seq, ts := le.Uint64(hdr[4:]), int64(le.Uint64(hdr[12:]))
		switch {
		case seq&blockTombBit != 0:
			return bad("a deleted message's tombstone")
		case seq&blockEraseBit != 0 || seq == 0:
			continue // an erased message: not in the stream
		case seq < c.next:
			return bad(fmt.Sprintf("sequence %d after %d", seq, c.next-1))
		}
		c.next = seq + 1
		if seq < from {
			continue
		}
		body := rec[blockHeaderLen : len(rec)-blockHashLen]
		if slen > len(body) {
			return bad("a subject longer than its record")
		}
		subj, rest := body[:slen], body[slen:]
		var mhdr []byte
		if withHeaders {
			if len(rest) < 4 || int(le.Uint32(rest)) > len(rest)-4 {
				return bad("headers longer than their record")
			}
			hl := int(le.Uint32(rest))
			mhdr, rest = rest[4:4+hl], rest[4+hl:]
		}
		c.hh.Reset()
		c.hh.Write(hdr[4:20])
		c.hh.Write(subj)
		c.hh.Write(mhdr)
		c.hh.Write(rest)
		var sum [blockHashLen]byte
		if !bytes.Equal(c.hh.Sum(sum[:0]), rec[len(rec)-blockHashLen:]) {
			return bad(fmt.Sprintf("sequence %d does not match its checksum", seq))
		}
		id, prev, err := headerValues(mhdr)
		if err != nil {
			return bad(fmt.Sprintf("sequence %d: %v", seq, err))
		}
		// string(prev) here is not kept: no string is made for it.
		p, chained := prevSeq(seq, string(prev))
		return fileMsg{Msg: msgOf(seq, string(subj), id, p, chained, time.Unix(0, ts), rest), off: at}, true, nil
	}
	return fileMsg{}, false, nil
}

// headerValues reads the two headers a Msg keeps, the event id and
// HeaderPrev, from a stored message's header block ("NATS/1.0\r\nKey:
// value\r\n...\r\n"); the others are passed over.
func headerValues(b []byte) (id string, prev []byte, err error) {
	if len(b) == 0 {
		return "", nil, nil
	}
	lines, ok := bytes.CutPrefix(b, []byte("NATS/1.0"))
	if !ok {
		return "", nil, errors.New("a header block without its version line")
	}
	for line := range bytes.SplitSeq(lines, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue // the version line's status, or the blank last line
		}
		switch string(bytes.TrimSpace(k)) {
		case jetstream.MsgIDHeader:
			id = string(bytes.TrimSpace(v))
		case HeaderPrev:
			prev = bytes.TrimSpace(v)
		}
	}
	return id, prev, nil
}
