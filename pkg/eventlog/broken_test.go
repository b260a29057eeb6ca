package eventlog_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// A block of the stored log that does not read back (a flipped byte,
// found when the server rebuilds its state after a crash) loses the events
// from there to the end of the block. The log says so, naming them
// (Intact, which /readyz asks), and a case whose history lost an event in
// the middle is not served rebuilt from what is left: reading it, or
// running a command on it, is unavailable, naming the hole. A case whose
// history is whole reads as before.
//
// The scene, on a real embedded server: case B (seq 1), case A's filing
// (2), a filler event to corrupt (3), A's claim (4), fillers up to the end
// of the first 8 MB block, A's release in the second block. The server is
// stopped; the filler's bytes are flipped in the block file, and the
// stream's state file is removed as after a crash, so that the server
// reads the blocks again when it starts.
func TestLostEventsMakeTheLogBrokenAndTheCaseUnavailable(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := func() (*server.Server, *eventlog.Log, jetstream.JetStream) {
		t.Helper()
		s, err := natsx.StartServer(natsx.ServerConfig{StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Shutdown)
		_, js := natsxtest.Connect(t, s)
		l, err := eventlog.Open(ctx, js, eventlog.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return s, l, js
	}
	s, l, js := start()
	b, a := newID(), newID()
	appendTo := func(e assist.Event, expected uint64) uint64 {
		t.Helper()
		seq, err := l.Append(ctx, e, expected)
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	appendTo(submitted(t, b), 0)
	filed := appendTo(submitted(t, a), 0)
	marker := []byte("CORRUPT-ME-")
	filler := func(mark []byte) {
		t.Helper()
		data := bytes.Repeat([]byte("x"), 500<<10)
		copy(data, mark)
		if _, err := js.Publish(ctx, eventlog.Subject(newID(), "Filler"), data); err != nil {
			t.Fatal(err)
		}
	}
	filler(marker)
	c, err := l.Case(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	claim := claimed(t, c, olu)
	claimSeq := appendTo(claim, filed)
	for range 17 { // past 8 MB: the next event opens a second block
		filler(nil)
	}
	c.Apply(claim, claimSeq)
	rel, err := c.Release(assist.Cmd{ID: newID(), Actor: olu, At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	released := appendTo(rel, claimSeq)
	if err := l.Intact(ctx); err != nil {
		t.Fatalf("a whole log is not intact: %v", err)
	}
	s.Shutdown()
	s.WaitForShutdown()

	msgs := filepath.Join(dir, "jetstream", "$G", "streams", eventlog.Stream, "msgs")
	blocks, _ := filepath.Glob(filepath.Join(msgs, "*.blk"))
	if len(blocks) < 2 {
		t.Fatalf("blocks %v: want the events in two blocks", blocks)
	}
	first := filepath.Join(msgs, "1.blk")
	data, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, marker)
	if at < 0 {
		t.Fatal("the filler is not in the first block")
	}
	data[at+len(marker)+100] ^= 0xff
	if err := os.WriteFile(first, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(msgs, "index.db")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}

	_, l, _ = start()
	err = l.Intact(ctx)
	if !errors.Is(err, eventlog.ErrBroken) || !strings.Contains(err.Error(), "events 3-") {
		t.Fatalf("Intact after a corrupt block = %v, want ErrBroken naming events 3-", err)
	}
	t.Log(err)
	_, err = l.Case(ctx, a)
	if !assist.IsCode(err, assist.CodeUnavailable) || !strings.Contains(err.Error(), "not whole") {
		t.Fatalf("the case with a hole = %v, want unavailable", err)
	}
	for _, want := range []string{strconv.FormatUint(released, 10), strconv.FormatUint(claimSeq, 10)} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%v does not name event %s", err, want)
		}
	}
	_, err = l.Execute(ctx, eventlog.Command{CaseID: a, ID: newID(), Decide: func(c *assist.Case) (assist.Event, error) {
		return c.Claim(assist.Cmd{ID: newID(), Actor: olu, At: time.Now().UTC()}, time.Hour)
	}})
	if !assist.IsCode(err, assist.CodeUnavailable) {
		t.Fatalf("a command on the case with a hole = %v, want unavailable", err)
	}
	if c, err := l.Case(ctx, b); err != nil || c.State != assist.StateSubmitted {
		t.Fatalf("the whole case = %+v, %v", c, err)
	}
}
