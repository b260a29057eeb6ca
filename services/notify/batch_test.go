package notify_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/eventlog/eventlogtest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/notify"
)

// consumer is the configuration of notify's consumer, for eventlog.Deliver.
var consumer = eventlog.ConsumerConfig{Name: notify.ConsumerName}

// logged are the events of the log from sequence from on, in order.
func (h *harness) logged(from uint64) []eventlog.Msg {
	h.t.Helper()
	var out []eventlog.Msg
	if _, err := h.log.Scan(h.ctx, from, 0, func(m eventlog.Msg) error {
		out = append(out, m)
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// hook appends the registration of a webhook to the log, as
// RegisterWebhook does but without recording it in notify's store: only
// the consumer records it. It returns the webhook's id.
func (h *harness) hook(events ...string) string {
	h.t.Helper()
	id := newID()
	if _, err := h.log.Append(h.ctx, assist.Event{ID: newID(), CaseID: id, At: time.Now().UTC(), Actor: adm,
		Body: assist.WebhookRegistered{URL: "https://hooks.example.org/" + id, Events: events}}, 0); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// unhook appends the removal of webhook id to the log.
func (h *harness) unhook(id string) {
	h.t.Helper()
	recs, err := h.log.History(h.ctx, assist.KindWebhook, id)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.log.Append(h.ctx, assist.Event{ID: newID(), CaseID: id, At: time.Now().UTC(), Actor: adm,
		Body: assist.WebhookRemoved{}}, recs[len(recs)-1].Seq); err != nil {
		h.t.Fatal(err)
	}
}

// lifecycle appends to a filed case (id at version) the events of a
// request paid out: six after its filing, seven in all.
func (h *harness) lifecycle(id string, version uint64) {
	h.t.Helper()
	for _, b := range []assist.Body{
		assist.ReviewClaimed{ExpiresAt: time.Now().Add(time.Hour)},
		assist.RequestApproved{AmountCents: 10_000, FundID: "fund", HoldID: "hold-" + id},
		assist.FundsReserved{HoldID: "hold-" + id, FundID: "fund", AmountCents: 10_000, PayoutID: "payout-" + id},
		assist.PayoutSent{PayoutID: "payout-" + id, AmountCents: 10_000, Attempt: 1},
		assist.PayoutSettled{PayoutID: "payout-" + id},
		assist.RequestClosed{},
	} {
		version = h.append(id, version, olu, b)
	}
}

// apply applies msgs as notify's consumer applies one batch, failing the
// test unless every event applies.
func (h *harness) apply(db sqldb.DB, s *notify.Service, msgs []eventlog.Msg) {
	h.t.Helper()
	if failed, err := eventlog.Deliver(h.ctx, db, consumer, s.Apply, msgs); err != nil || failed != -1 {
		h.t.Fatalf("Deliver = %d, %v", failed, err)
	}
}

// serviceOn is a notify on the harness's log and db.
func (h *harness) serviceOn(db sqldb.DB) *notify.Service {
	return notify.New(notify.Deps{Log: h.log, DB: db, Keys: h.keys})
}

// another is a fresh, migrated database of db's dialect.
func (h *harness) another(db sqldb.DB) sqldb.DB {
	h.t.Helper()
	other := sqldbtest.SQLite(h.t)
	if db.Dialect() == sqldb.Postgres {
		other = sqldbtest.Postgres(h.t)
	}
	if err := notify.Migrate(h.ctx, other); err != nil {
		h.t.Fatal(err)
	}
	return other
}

// outcome is what applying events left in a store: each case's status and
// version, and each delivery to webhook w (event, status), in order.
func outcome(t *testing.T, st notify.Store, db sqldb.DB, w string, caseIDs ...string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, id := range caseIDs {
		c, err := st.CaseState(ctx, db, id)
		if err != nil || c == nil {
			t.Fatalf("case %s: %+v, %v", id, c, err)
		}
		out = append(out, fmt.Sprintf("case %s %s v%d", id, c.State, c.Version))
	}
	ds, err := st.Deliveries(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		out = append(out, fmt.Sprintf("delivery %s %s %s", d.EventID, d.Type, d.Status))
	}
	return out
}

// TestBatchFoldsCasesInMemory: the events of two cases, several each,
// applied in one batch leave the same cases and deliveries as each
// applied in a batch of its own — each event sees the ones before it in
// the batch — in a handful of statements for the whole batch.
func TestBatchFoldsCasesInMemory(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		w := h.hook("RequestSubmitted", "ReviewClaimed")
		a, va := h.file(assist.Critical)
		b, vb := h.file(assist.Routine)
		va = h.append(a, va, olu, assist.ReviewClaimed{ExpiresAt: time.Now().Add(time.Hour)})
		vb = h.append(b, vb, olu, assist.ReviewClaimed{ExpiresAt: time.Now().Add(time.Hour)})
		h.append(a, va, olu, assist.InfoRequested{Question: "which shelter?"})
		h.append(b, vb, olu, assist.RequestApproved{AmountCents: 10_000, FundID: "fund", HoldID: "hold"})
		msgs := h.logged(0)

		batched := &sqldbtest.StatementCounter{DB: db}
		s := h.serviceOn(db)
		h.apply(db, s, msgs[:1]) // the webhook
		h.apply(batched, s, msgs[1:])
		got := outcome(t, s.Store(), db, w, a, b)

		one := h.another(db)
		s1 := h.serviceOn(one)
		for _, m := range msgs {
			h.apply(one, s1, []eventlog.Msg{m})
		}
		want := outcome(t, s1.Store(), one, w, a, b)
		if !slices.Equal(got, want) || len(want) != 2+4 {
			t.Fatalf("one batch left\n%v\none event a batch left\n%v", got, want)
		}
		wantCases := []string{
			fmt.Sprintf("case %s %s v%d", a, assist.StateInfoRequested, msgs[5].Seq),
			fmt.Sprintf("case %s %s v%d", b, assist.StateApproved, msgs[6].Seq),
		}
		if !slices.Equal(got[:2], wantCases) {
			t.Fatalf("cases %v, want %v", got[:2], wantCases)
		}
		// Seen-records, the cases read, the cases written, the webhooks
		// read, the deliveries written.
		if batched.N != 5 {
			t.Fatalf("the batch of %d events ran %d statements, want 5", len(msgs)-1, batched.N)
		}
	})
}

// TestBatchWebhookChangesMidBatch: a webhook registered in the middle of
// a batch gets only the events after its registration; one removed in
// the middle of a batch gets nothing more (anything enqueued before its
// removal is dropped).
func TestBatchWebhookChangesMidBatch(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		s := h.serviceOn(db)
		old := h.hook("RequestSubmitted")
		h.apply(db, s, h.logged(0))
		from := eventlogtest.LastSeq(t, h.log) + 1
		a, _ := h.file(assist.Critical)
		w := h.hook("RequestSubmitted")
		b, _ := h.file(assist.Critical)
		h.unhook(old)
		c, _ := h.file(assist.Critical)
		h.apply(db, s, h.logged(from)) // [a, registered, b, removed, c]

		ds, err := s.Store().Deliveries(h.ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range ds {
			got = append(got, d.CaseID)
		}
		if !slices.Equal(got, []string{b, c}) {
			t.Fatalf("the webhook registered mid-batch got the events of %v, want those of b %s and c %s (not a %s)", got, b, c, a)
		}
		ds, err = s.Store().Deliveries(h.ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if !d.Dropped {
				t.Fatalf("the webhook removed mid-batch has a live delivery %+v", d)
			}
		}
	})
}

// TestBatchFailingEventWritesNothing: when an event fails in the middle
// of a batch, nothing of the batch is written — neither the cases folded
// before it nor their deliveries — and the batch applied again starts
// afresh and writes each once.
func TestBatchFailingEventWritesNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		s := h.serviceOn(db)
		w := h.hook("RequestSubmitted", "ReviewClaimed", "InfoRequested")
		h.apply(db, s, h.logged(0))
		from := eventlogtest.LastSeq(t, h.log) + 1
		a, va := h.file(assist.Critical)
		va = h.append(a, va, olu, assist.ReviewClaimed{ExpiresAt: time.Now().Add(time.Hour)})
		h.append(a, va, olu, assist.InfoRequested{Question: "which shelter?"})
		msgs := h.logged(from)

		boom := errors.New("the store broke")
		failing := func(ctx context.Context, q sqldb.Querier, m eventlog.Msg) error {
			if m.Seq == msgs[2].Seq {
				return boom
			}
			return s.Apply(ctx, q, m)
		}
		if failed, err := eventlog.Deliver(h.ctx, db, consumer, failing, msgs); !errors.Is(err, boom) || failed != 2 {
			t.Fatalf("Deliver = %d, %v; want 2, %v", failed, err, boom)
		}
		if c, err := s.Store().CaseState(h.ctx, db, a); err != nil || c != nil {
			t.Fatalf("after the failed batch the case is %+v (%v), want none", c, err)
		}
		if ds, err := s.Store().Deliveries(h.ctx, w); err != nil || len(ds) != 0 {
			t.Fatalf("after the failed batch: deliveries %+v (%v), want none", ds, err)
		}

		h.apply(db, s, msgs)
		c, err := s.Store().CaseState(h.ctx, db, a)
		if err != nil || c == nil || c.State != assist.StateInfoRequested || c.Version != msgs[2].Seq {
			t.Fatalf("after the batch again the case is %+v (%v)", c, err)
		}
		ds, err := s.Store().Deliveries(h.ctx, w)
		if err != nil || len(ds) != 3 {
			t.Fatalf("after the batch again: deliveries %+v (%v), want 3", ds, err)
		}
	})
}

// TestBatchStatements: 30 requests, filed and paid out (seven events
// each), applied as the consumer applies them (batches of 128) with one
// webhook, cost a few statements a batch, not some an event.
func TestBatchStatements(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		s := h.serviceOn(db)
		h.hook("RequestSubmitted", "RequestApproved", "PayoutSettled")
		h.apply(db, s, h.logged(0))
		from := eventlogtest.LastSeq(t, h.log) + 1
		for range 30 {
			id, v := h.file(assist.Routine)
			h.lifecycle(id, v)
		}
		msgs := h.logged(from)
		counted := &sqldbtest.StatementCounter{DB: db}
		batches := 0
		for batch := range slices.Chunk(msgs, 128) {
			h.apply(counted, s, batch)
			batches++
		}
		t.Logf("%d events in %d batches: %d statements", len(msgs), batches, counted.N)
		// Per batch: seen-records, cases read, webhooks read, and the
		// cases and deliveries written in statements of 128, 64, ... rows.
		if len(msgs) != 210 || counted.N > batches*(3+2*8) {
			t.Fatalf("%d events, %d statements", len(msgs), counted.N)
		}
	})
}
