package eventlog_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// TestScanFromFilesIsScanThroughTheServer reads a log of 1,000 events
// through the server and from its files (WithFiles), whole and in pages,
// then again after a byte of the stored log was changed: the files are
// read up to the damaged event and the server reads the rest, so that
// Scan still gives every event as the server has it.
func TestScanFromFilesIsScanThroughTheServer(t *testing.T) {
	ctx := context.Background()
	s := natsxtest.Server(t)
	_, js := natsxtest.Connect(t, s)
	l, err := eventlog.Open(ctx, js, eventlog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	last, err := eventlogtest.Synthesize(ctx, js, 200, 5)
	if err != nil {
		t.Fatal(err)
	}
	scan := func(l *eventlog.Log, from, to uint64) []eventlog.Msg {
		t.Helper()
		var got []eventlog.Msg
		end, err := l.Scan(ctx, from, to, func(m eventlog.Msg) error { got = append(got, m); return nil })
		if err != nil || end != to {
			t.Fatalf("scan %d..%d: ended at %d, %v", from, to, end, err)
		}
		return got
	}
	want := scan(l, 1, last)
	files := l.WithFiles(s.StoreDir(), s.GlobalAccount().Name)
	if !files.ReadsFiles() || l.ReadsFiles() {
		t.Fatal("WithFiles should give a log that reads files, and leave the original as it was")
	}
	same := func(got []eventlog.Msg, from uint64) {
		t.Helper()
		for i, m := range got {
			if w := want[int(from)-1+i]; !reflect.DeepEqual(m, w) {
				t.Fatalf("event %d from the files: %+v, through the server: %+v", w.Seq, m, w)
			}
		}
	}
	same(scan(files, 1, last), 1)
	for from := uint64(1); from <= last; from += 300 {
		same(scan(files, from, min(from+299, last)), from)
	}

	// Damage the stored copy of event 600 (the server keeps the block in
	// memory and still answers with the event as written).
	dir := filepath.Join(s.StoreDir(), s.GlobalAccount().Name, "streams", eventlog.Stream, "msgs")
	buf, err := os.ReadFile(filepath.Join(dir, "1.blk"))
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(buf, want[599].Data)
	if at < 0 {
		t.Fatal("event 600 is not in the first block")
	}
	buf[at] ^= 0xff
	if err := os.WriteFile(filepath.Join(dir, "1.blk"), buf, 0o600); err != nil {
		t.Fatal(err)
	}
	same(scan(files.WithFiles(s.StoreDir(), s.GlobalAccount().Name), 1, last), 1)
}
