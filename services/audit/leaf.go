package audit

import (
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// LeafFormat is the first line of every leaf.
const LeafFormat = "eva-audit-leaf/v1"

// leafTime is the leaf's time layout: UTC, always six fractional digits,
// so that each instant has exactly one spelling (the archive keeps
// microseconds).
const leafTime = "2006-01-02T15:04:05.000000Z"

// LeafBytes is the leaf of the Merkle tree for an archived event: leaf i
// of the tree is the event of sequence i+1, and its hash is
// tlog.RecordHash(LeafBytes(r)) = SHA-256(0x00 ‖ bytes) (RFC 6962). The
// bytes are six lines of text, each ended by one LF, then the event's
// protobuf bytes:
//
//	eva-audit-leaf/v1
//	seq <sequence in decimal>
//	subject <the subject, verbatim: eva.case.<id>.<Event>>
//	id <the event id (Nats-Msg-Id), verbatim>
//	at <the stream time, UTC, microseconds: 2006-01-02T15:04:05.000000Z>
//	data <length of the protobuf bytes in decimal>
//	<the protobuf bytes, exactly as the log holds them>
//
// NATS subjects hold no whitespace and header values no CR or LF, so the
// lines are unambiguous; the body's length is given, so it may hold any
// byte. The encoding is deterministic: one event has one leaf.
func LeafBytes(r Record) []byte {
	return appendLeafBytes(make([]byte, 0, 128+len(r.Subject)+len(r.ID)+len(r.Data)), r)
}

// appendLeafBytes appends LeafBytes(r) to b.
func appendLeafBytes(b []byte, r Record) []byte {
	b = append(b, LeafFormat+"\nseq "...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, "\nsubject "...)
	b = append(b, r.Subject...)
	b = append(b, "\nid "...)
	b = append(b, r.ID...)
	b = append(b, "\nat "...)
	b = r.At.UTC().Truncate(time.Microsecond).AppendFormat(b, leafTime)
	b = append(b, "\ndata "...)
	b = strconv.AppendInt(b, int64(len(r.Data)), 10)
	b = append(b, '\n')
	return append(b, r.Data...)
}

// LeafHash is the Merkle leaf hash of an archived event.
func LeafHash(r Record) tlog.Hash {
	var h hasher
	return h.leaf(r)
}
