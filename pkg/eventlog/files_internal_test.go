package eventlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// filesStream makes a stream of small blocks (32 kB: its size limit is
// 120 kB) on an embedded server, fills it with events of random sizes,
// with and without headers, and returns the stream's files and the
// messages as the server reads them.
func filesStream(t *testing.T) (*streamFiles, []Msg) {
	t.Helper()
	ctx := context.Background()
	s := natsxtest.Server(t)
	_, js := natsxtest.Connect(t, s)
	const name = "FILES_TEST"
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"eva.case.>"},
		Storage: jetstream.FileStorage, MaxBytes: 120_000, Discard: jetstream.DiscardNew})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		m := nats.NewMsg(SubjectOf("case", uuid.NewString(), "RequestSubmitted"))
		m.Data = bytes.Repeat([]byte{byte(i)}, 50+(i*37)%400)
		if i%7 != 0 { // some messages without headers
			m.Header.Set(HeaderPrev, strconv.Itoa(i))
			m.Header.Set(jetstream.MsgIDHeader, uuid.NewString())
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			break // the stream is full
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want []Msg
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, FromRaw(raw))
	}
	sf := &streamFiles{dir: filepath.Join(s.StoreDir(), s.GlobalAccount().Name, "streams", name, "msgs"), stream: name}
	if blocks, err := sf.blocks(); err != nil || len(blocks) < 3 {
		t.Fatalf("want a stream of several blocks, got %v %v", blocks, err)
	}
	return sf, want
}

// sameMsg names the first field in which two messages differ.
func sameMsg(got, want Msg) error {
	switch {
	case got.Seq != want.Seq, got.Subject != want.Subject, got.ID != want.ID, got.Prev != want.Prev,
		got.chained != want.chained, got.Kind != want.Kind, got.Of != want.Of, got.Type != want.Type:
		return fmt.Errorf("got %+v, want %+v", got, want)
	case !got.Time.Equal(want.Time):
		return fmt.Errorf("event %d: time %v, want %v", want.Seq, got.Time, want.Time)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Errorf("event %d: other bytes", want.Seq)
	}
	return nil
}

func TestStreamFilesReadWhatTheServerReads(t *testing.T) {
	sf, want := filesStream(t)
	ctx := context.Background()
	check := func(from, to uint64) {
		t.Helper()
		var got []Msg
		last, err := sf.scan(ctx, from, to, func(m Msg) error { got = append(got, m); return nil })
		if err != nil || last != to || len(got) != int(to-from+1) {
			t.Fatalf("scan %d..%d: %d messages, last %d, %v", from, to, len(got), last, err)
		}
		for i, m := range got {
			if err := sameMsg(m, want[int(from)-1+i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	n := uint64(len(want))
	// Pages that follow each other (the cursor goes on), across blocks.
	for from := uint64(1); from <= n; from += 37 {
		check(from, min(from+36, n))
	}
	// Seeks: the middle, a block's start, the last event.
	check(n/2, n/2+100)
	first, err := sf.firstSeq(2)
	if err != nil {
		t.Fatal(err)
	}
	check(first, n)
	check(n, n)
}

func TestStreamFilesStopAtADamagedRecord(t *testing.T) {
	sf, want := filesStream(t)
	// Change one byte of the second block's first message's data.
	path := sf.path(2)
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := sf.firstSeq(2)
	buf[blockHeaderLen+len(want[first-1].Subject)+10] ^= 0xff
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	got := 0
	last, err := sf.scan(context.Background(), 1, uint64(len(want)), func(m Msg) error { got++; return sameMsg(m, want[m.Seq-1]) })
	if !errors.Is(err, errFilesStop) || last != first-1 || got != int(first-1) {
		t.Fatalf("a damaged event %d: read to %d (%d events), %v; want the events before it and errFilesStop", first, last, got, err)
	}
}
