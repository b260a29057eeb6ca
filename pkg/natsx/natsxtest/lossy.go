package natsxtest

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LossyAPI returns a JetStream on nc whose API requests (stream and
// consumer requests, and consumers' pulls) reach the server through a
// relay, as a cluster still electing a leader or a server going away
// loses some: the relay drops the nth request (counting from 1) whose
// API subject, without "$JS.API.", starts with prefix, and passes every
// other one on with its reply subject (so that answers and pulled
// messages go straight to the requester). It reports how many such
// requests it saw. The relay ends with the test.
func LossyAPI(tb testing.TB, nc *nats.Conn, prefix string, nth int32) (jetstream.JetStream, *atomic.Int32) {
	tb.Helper()
	const relay = "lossyapi."
	var seen atomic.Int32
	sub, err := nc.Subscribe(relay+">", func(m *nats.Msg) {
		subject := strings.TrimPrefix(m.Subject, relay)
		if strings.HasPrefix(subject, prefix) && seen.Add(1) == nth {
			return // lost
		}
		if err := nc.PublishMsg(&nats.Msg{Subject: "$JS.API." + subject, Reply: m.Reply, Header: m.Header, Data: m.Data}); err != nil {
			tb.Errorf("relay %s: %v", subject, err)
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sub.Unsubscribe() })
	js, err := jetstream.NewWithAPIPrefix(nc, relay)
	if err != nil {
		tb.Fatal(err)
	}
	return js, &seen
}
