package eventlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// On an R3 stream any replica may answer a direct get; a case written
// through one server and read at once through another still reads with
// the write (read-after-write), for every one of many writes.
func TestReplicatedLoadReadsItsWrites(t *testing.T) {
	servers := natsxtest.Cluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logs := make([]*eventlog.Log, len(servers))
	for i, s := range servers {
		nc, err := natsxtestConnect(t, s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		// A cluster just formed may not answer its first requests: ask
		// again, each time with a short deadline.
		for deadline := time.Now().Add(time.Minute); ; {
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			logs[i], err = eventlog.Open(actx, js, eventlog.Config{Replicas: 3})
			acancel()
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
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

func natsxtestConnect(t *testing.T, url string) (*nats.Conn, error) {
	nc, err := natsx.Connect(url, nil, t.Name())
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}
