package eventlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/natsx"
)

// On an R3 stream any replica may answer a direct get; a case written
// through one server and read at once through another still reads with
// the write (read-after-write), for every one of many writes.
func TestReplicatedLoadReadsItsWrites(t *testing.T) {
	logs, _ := replicatedLogs(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := newID()
	if _, err := logs[0].Start(ctx, submitted(t, id)); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		writer, reader := logs[i%3], logs[(i+1)%3]
		c, err := writer.Case(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		cmd := newID()
		j := "detail"
		e, err := c.Amend(assist.Cmd{ID: cmd, Actor: ana, At: time.Now().UTC()}, assist.AmendInput{Justification: &j}, assist.DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		seq, err := writer.Append(ctx, e, c.Version)
		if err != nil {
			t.Fatal(err)
		}
		got, err := reader.Case(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != seq {
			t.Fatalf("write %d: read version %d right after writing %d", i, got.Version, seq)
		}
	}
	if c, _ := logs[2].Case(context.Background(), newID()); c != nil {
		t.Fatal("an unknown case read as existing")
	}
}

func natsxtestConnect(t testing.TB, url string) (*nats.Conn, error) {
	nc, err := natsx.Connect(url, nil, t.Name())
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}
