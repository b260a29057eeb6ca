// Package eventlogtest opens a real event log for tests: an embedded
// JetStream server (file storage, fsync always) with EVA's streams.
package eventlogtest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx/natsxtest"
)

// Log is an open event log and what it runs on.
type Log struct {
	*eventlog.Log
	NC *nats.Conn
	JS jetstream.JetStream
}

// Open starts a server and opens the log on it; both end with the test.
func Open(tb testing.TB) Log {
	tb.Helper()
	nc, js := natsxtest.JetStream(tb)
	l, err := eventlog.Open(context.Background(), js, eventlog.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return Log{Log: l, NC: nc, JS: js}
}

// Events reads a case's events in order, failing the test on an error.
func Events(tb testing.TB, l *eventlog.Log, caseID string) []assist.Recorded {
	tb.Helper()
	recs, err := l.Load(context.Background(), caseID)
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

// LastSeq is the sequence of the newest event of the log, failing the test
// on an error.
func LastSeq(tb testing.TB, l *eventlog.Log) uint64 {
	tb.Helper()
	seq, err := l.LastSeq(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return seq
}
