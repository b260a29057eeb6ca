package audit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/audit"
)

// recordReads records n reads of personal data on the access log: more
// than a batch of the audit's direct gets (4,096) makes it read several.
func recordReads(tb testing.TB, e *env, n int) {
	tb.Helper()
	caseID := newID()
	for i := range n {
		if err := e.log.RecordAccess(e.ctx, eventlog.Access{CaseID: caseID, Username: "olu", Role: assist.RoleApprover,
			At: time.Date(2026, 3, 1, 12, 0, i, 0, time.UTC), What: "beneficiary"}); err != nil {
			tb.Fatal(err)
		}
	}
}

// A reader that takes a whole batch of 4,096 slowly gets all of it, at
// once, and the next batch after it: the replies wait for their reader.
// (jetstreamext v0.3.2's GetBatch, which the audit read with before,
// queued a request's replies in a channel of 4,096: a full batch and its
// end-of-batch status fitted only once the reader had taken one, and a
// reader not scheduled before all of them came lost the end as a slow
// consumer's. That happened only under load; this reader, slow after its
// first record, passed there too.)
func TestReadBatchLosesNothingToASlowReader(t *testing.T) {
	e := newEnvOn(t, sqldbtest.SQLite(t), fastServer(t))
	const n = 5000
	recordReads(t, e, n)
	next := uint64(1)
	for _, want := range []int{4096, n - 4096} {
		start, from := time.Now(), next
		got, err := audit.ReadBatch(e.ctx, e.log, eventlog.AccessStream, next, n, func(raw *jetstream.RawStreamMsg) error {
			if raw.Sequence == from {
				// The whole batch arrives meanwhile.
				time.Sleep(300 * time.Millisecond)
			}
			if raw.Sequence != next {
				return fmt.Errorf("got record %d, want %d", raw.Sequence, next)
			}
			next++
			return nil
		})
		if err != nil || got != want {
			t.Fatalf("batch from %d: %d records, %v; want %d", from, got, err, want)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Fatalf("batch from %d took %v: it waited for an end that did not come", from, took)
		}
	}
}

// The audit reads the streams through a JetStream domain as the rest of
// EVA does: the access log is archived, an archive's gap is filled from
// the event log, and both verify. jetstreamext v0.3.2 sent its direct gets
// to $JS.<domain>.DIRECT.GET.<stream>, which no server answers (the API is
// $JS.<domain>.API.>).
func TestAuditThroughAJetStreamDomain(t *testing.T) {
	s := fastServer(t, func(o *server.Options) { o.JetStreamDomain = "hub" })
	nc, err := natsx.Connect("", s, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.NewWithDomain(nc, "hub")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvJS(t, sqldbtest.SQLite(t), nc, js)
	const reads = 5000
	recordReads(t, e, reads)
	now := time.Now().UTC()
	id := e.submit(now)
	e.step(id, now)
	e.step(id, now)
	// Event 3 alone: the archive fills events 1 and 2 from the log.
	e.archiveDirect(e.get(3))
	e.start()
	evatest.Eventually(t, "the access log archived", func() bool {
		cp, err := e.client.AccessCheckpoint(e.ctx)
		return err == nil && cp.Size == reads
	})
	e.stop()
	res, err := audit.VerifyAll(e.ctx, e.store, e.log, audit.VerifyOptions{VerifierKey: e.key.Verifier})
	if err != nil || !res.OK || res.Events != 3 || res.Access == nil || res.Access.Records != reads {
		t.Fatalf("VerifyAll = %s %v, want ok with 3 events and %d access records", show(res), err, reads)
	}
}

// A batched read that gets nothing before its time runs out is an outage,
// not the end of the stream: the records it asked for are there, and
// taken for the end, VerifyAccess reported the first of them "not in the
// access stream", a tampering that did not happen.
func TestReadThatTimesOutEmptyIsUnavailableNotTheEnd(t *testing.T) {
	e := newEnvOn(t, sqldbtest.SQLite(t), fastServer(t))
	recordReads(t, e, 10)
	audit.SetLogReadTimeout(t, time.Nanosecond)
	got, err := audit.ReadBatch(e.ctx, e.log, eventlog.AccessStream, 1, 10, func(*jetstream.RawStreamMsg) error { return nil })
	if got != 0 || !assist.IsCode(err, assist.CodeUnavailable) {
		t.Fatalf("read out of time: %d records, %v; want none and unavailable", got, err)
	}
}
