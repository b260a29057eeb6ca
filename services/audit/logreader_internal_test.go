package audit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
)

// fakeLaggingReader delivers the events 1..len(seqs) of its script in
// order; a 0 in the script is a wait that ends with nothing (ok false),
// as a reader whose consumer sits on a replica still catching up answers
// at what it thinks is the log's end. Past the script it answers nothing.
type fakeLaggingReader struct {
	script []uint64
	waits  []time.Duration
}

func (f *fakeLaggingReader) Next(wait time.Duration) (eventlog.Msg, uint64, bool, error) {
	f.waits = append(f.waits, wait)
	if len(f.script) == 0 {
		return eventlog.Msg{}, 0, false, nil
	}
	seq := f.script[0]
	f.script = f.script[1:]
	if seq == 0 {
		return eventlog.Msg{}, 0, false, nil
	}
	// Nothing pending after each event: so the reader's view is that the
	// log ends there, and the next read waits.
	return eventlog.Msg{Seq: seq}, 0, true, nil
}

func (f *fakeLaggingReader) Stop() {}

func fakeLogReader(r *fakeLaggingReader, leaderHolds func(uint64) bool) *logReader {
	return &logReader{lagWait: 50 * time.Millisecond,
		newReader: func(context.Context, uint64) orderedReader { return r },
		holds:     func(_ context.Context, seq uint64) (bool, error) { return leaderHolds(seq), nil }}
}

func seqsOf(msgs []eventlog.Msg) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// A reader that sees the log end before an event the leader holds is
// behind (its replica catching up after a restart): Verify waits for it
// rather than report a hole. Seen once in CI's TestE2EFaultTopology, where
// verify failed with "archived event 21 is not in the log, which has a
// hole there" just after the stream's leader was killed and restarted.
func TestLogReaderWaitsForAFakeReaderBehindTheLeader(t *testing.T) {
	r := &fakeLaggingReader{script: []uint64{1, 2, 0, 0, 3}}
	lr := fakeLogReader(r, func(uint64) bool { return true })
	got, err := lr.read(context.Background(), 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if s := seqsOf(got); len(s) != 3 || s[2] != 3 {
		t.Fatalf("read %v, want 1 2 3", s)
	}
	if r.waits[2] <= 0 {
		t.Errorf("waits %v: the read after an event with nothing pending must be bounded", r.waits)
	}
}

// An event the leader does not hold either is a hole: the events before
// it, and no error.
func TestLogReaderFindsAHoleTheLeaderConfirmsWithAFakeReader(t *testing.T) {
	r := &fakeLaggingReader{script: []uint64{1, 2}}
	asked := []uint64{}
	lr := fakeLogReader(r, func(seq uint64) bool { asked = append(asked, seq); return false })
	got, err := lr.read(context.Background(), 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if s := seqsOf(got); len(s) != 2 || len(asked) != 1 || asked[0] != 3 {
		t.Fatalf("read %v, asked the leader for %v; want 1 2, and 3 asked", s, asked)
	}
}

// A reader that stays behind an event the leader holds makes the read
// fail as unavailable (Verify answers an error), never a hole that would
// say the log was altered.
func TestLogReaderGivesUpOnAFakeReaderThatStaysBehind(t *testing.T) {
	r := &fakeLaggingReader{script: []uint64{1}}
	lr := fakeLogReader(r, func(uint64) bool { return true })
	got, err := lr.read(context.Background(), 1, 2)
	var ae *assist.Error
	if !errors.As(err, &ae) || ae.Code != assist.CodeUnavailable {
		t.Fatalf("read %v, error %v; want CodeUnavailable", seqsOf(got), err)
	}
}

// fakeLaggingBatches answers batched reads of a stream of n messages as a
// replica that answers nothing for its first empty reads (still catching
// up), then everything it is asked for.
func fakeLaggingBatches(n uint64, empty int) func(from, to uint64, f func(*jetstream.RawStreamMsg) error) (int, error) {
	return func(from, to uint64, f func(*jetstream.RawStreamMsg) error) (int, error) {
		if empty > 0 {
			empty--
			return 0, nil
		}
		got := 0
		for seq := from; seq <= min(to, n); seq++ {
			if err := f(&jetstream.RawStreamMsg{Sequence: seq}); err != nil {
				return got, err
			}
			got++
		}
		return got, nil
	}
}

func rawSeqs(raws []*jetstream.RawStreamMsg) []uint64 {
	out := make([]uint64, len(raws))
	for i, r := range raws {
		out[i] = r.Sequence
	}
	return out
}

// The access log's verify reads its stream with batched direct gets,
// which a replica answers once 90 % caught up after a restart: a read
// that finds nothing where the leader holds messages is tried again, a
// read that finds nothing where the leader holds nothing is the end, and
// a replica that never answers makes the read unavailable, never short.
func TestReadStreamRangeWithFakeBatchesFromALaggingReplica(t *testing.T) {
	ctx := context.Background()
	leaderHolds := func(n uint64) func(context.Context, uint64) (bool, error) {
		return func(_ context.Context, seq uint64) (bool, error) { return seq <= n, nil }
	}
	raws, err := readStreamRange(ctx, 1, 3, time.Minute, fakeLaggingBatches(3, 2), leaderHolds(3))
	if s := rawSeqs(raws); err != nil || len(s) != 3 || s[2] != 3 {
		t.Errorf("behind at first: read %v, %v; want 1 2 3", s, err)
	}
	raws, err = readStreamRange(ctx, 1, 3, time.Minute, fakeLaggingBatches(2, 0), leaderHolds(2))
	if s := rawSeqs(raws); err != nil || len(s) != 2 {
		t.Errorf("a stream of 2: read %v, %v; want 1 2 and its end", s, err)
	}
	_, err = readStreamRange(ctx, 1, 3, 50*time.Millisecond, fakeLaggingBatches(3, 1000), leaderHolds(3))
	var ae *assist.Error
	if !errors.As(err, &ae) || ae.Code != assist.CodeUnavailable {
		t.Errorf("a replica that never answers: %v, want CodeUnavailable", err)
	}
}
