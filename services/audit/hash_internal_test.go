package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// The hasher that Verify and Export reuse computes exactly the hashes of
// the formulas (ADR 0021): HashEvent's length-prefixed encoding, the
// chain, and the RFC 6962 leaf hash of LeafBytes, one event after another
// in one buffer.
func TestHasherMatchesTheFormulas(t *testing.T) {
	var h hasher
	chain := GenesisChain()
	for i, r := range []Record{
		{Seq: 1, ID: "e1", Subject: "eva.case.x.RequestSubmitted", At: time.UnixMicro(1_700_000_000_123_456), Data: []byte("proto bytes")},
		{Seq: 2, ID: "", Subject: "eva.access.read", At: time.UnixMicro(1), Data: nil},
		{Seq: 1 << 40, ID: "a much longer event id than the others", Subject: "s", At: time.UnixMicro(2), Data: bytes.Repeat([]byte{0xff}, 5000)},
		{Seq: 3, ID: "e3", Subject: "eva.case.y.Claimed", At: time.UnixMicro(3), Data: []byte{0}},
	} {
		ref := sha256.New()
		ref.Write([]byte(hashDomain))
		for _, f := range [][]byte{binary.BigEndian.AppendUint64(nil, r.Seq)} {
			ref.Write(f)
		}
		for _, f := range [][]byte{[]byte(r.Subject), []byte(r.ID), r.Data} {
			ref.Write(binary.BigEndian.AppendUint64(nil, uint64(len(f))))
			ref.Write(f)
		}
		want := ref.Sum(nil)
		if got := h.event(r.Seq, r.Subject, r.ID, r.Data); !bytes.Equal(got[:], want) || !bytes.Equal(HashEvent(r.Seq, r.Subject, r.ID, r.Data), want) {
			t.Fatalf("record %d: event hash %x, want %x", i, got, want)
		}
		c := sha256.Sum256(append(append([]byte{}, chain...), want...))
		if got := h.chain(chain, want); got != c || !bytes.Equal(ChainNext(chain, want), c[:]) {
			t.Fatalf("record %d: chain %x, want %x", i, got, c)
		}
		chain = c[:]
		if got, want := h.leaf(r), tlog.RecordHash(LeafBytes(r)); got != want || LeafHash(r) != want {
			t.Fatalf("record %d: leaf hash %v, want %v", i, got, want)
		}
	}
}
