package eventlog_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/eventlog"
)

// A Reader gives the log's events in order with how many follow each,
// tells when none came within the wait asked for, goes on after the last
// event read when stopped and asked again, and ends with its context.
func TestReaderReadsInOrderWaitsAndResumes(t *testing.T) {
	l, _ := openLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	after, err := l.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := func() (string, uint64) {
		t.Helper()
		id := newID()
		c, err := l.Start(ctx, submitted(t, id))
		if err != nil {
			t.Fatal(err)
		}
		return id, c.Version
	}
	var ids []string
	for range 3 {
		id, _ := start()
		ids = append(ids, id)
	}
	r := l.Reader(ctx, "test", after+1, nil, 2) // two in flight: more than one pull
	defer r.Stop()
	next := func(wait time.Duration) (eventlog.Msg, uint64, bool) {
		t.Helper()
		m, pending, ok, err := r.Next(wait)
		if err != nil {
			t.Fatal(err)
		}
		return m, pending, ok
	}
	for i, id := range ids {
		m, pending, ok := next(0)
		if !ok || m.CaseID != id || pending != uint64(len(ids)-1-i) {
			t.Fatalf("event %d: case %s, %d pending, ok %v; want %s, %d pending", i, m.CaseID, pending, ok, id, len(ids)-1-i)
		}
	}
	if m, _, ok := next(100 * time.Millisecond); ok {
		t.Fatalf("read %s past the log's end", m.CaseID)
	}
	id, seq := start()
	if m, _, ok := next(10 * time.Second); !ok || m.CaseID != id || m.Seq != seq {
		t.Fatalf("after the end: %s at %d (ok %v), want %s at %d", m.CaseID, m.Seq, ok, id, seq)
	}
	// Stopped, it opens a consumer again where it left off.
	r.Stop()
	id, seq = start()
	if m, _, ok := next(10 * time.Second); !ok || m.CaseID != id || m.Seq != seq {
		t.Fatalf("after a stop: %s at %d (ok %v), want %s at %d", m.CaseID, m.Seq, ok, id, seq)
	}
	cancel()
	if _, _, _, err := r.Next(0); !errors.Is(err, context.Canceled) {
		t.Fatalf("after its context ended: %v, want context.Canceled", err)
	}
}

// Holds asks the stream's leader whether it holds an event: every
// appended one, none past the end.
func TestHoldsSaysWhatTheLeaderHolds(t *testing.T) {
	l, _ := openLog(t)
	ctx := context.Background()
	c, err := l.Start(ctx, submitted(t, newID()))
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]bool{c.Version: true, c.Version + 1: false, c.Version + 1000: false} {
		if held, err := l.Holds(ctx, seq); err != nil || held != want {
			t.Errorf("Holds(%d) = %v, %v; want %v", seq, held, err, want)
		}
	}
	// The access log, by its own sequences.
	if held, err := l.HoldsIn(ctx, eventlog.AccessStream, 1); err != nil || held {
		t.Errorf("HoldsIn(access, 1) before any access = %v, %v; want false", held, err)
	}
	if err := l.RecordAccess(ctx, eventlog.Access{CaseID: c.ID, Username: "ana", Role: "requester", At: time.Now(), What: "beneficiary"}); err != nil {
		t.Fatal(err)
	}
	if held, err := l.HoldsIn(ctx, eventlog.AccessStream, 1); err != nil || !held {
		t.Errorf("HoldsIn(access, 1) after an access = %v, %v; want true", held, err)
	}
}
