package disbursement

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// racers is how many creations of one name race in the tests below.
const racers = 8

// Eight creations of one fund name with different ids race, and eight of
// one payee name: exactly one of each is created; each other gets a
// conflict naming the field name, with nothing appended to the log; the
// consumer applies every event of the log and dead-letters none.
func TestSameNameCreationsRaceOneWins(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, newCountingProvider())
		kinds := []struct {
			kind   assist.Kind
			create func(cmdID string) error
		}{
			{assist.KindFund, func(cmdID string) error {
				_, err := h.svc.CreateFund(h.ctx, disbursementapi.CreateFundRequest{CommandID: cmdID, Actor: fin, Name: "Emergency", AllocatedCents: 500})
				return err
			}},
			{assist.KindPayee, func(cmdID string) error {
				_, err := h.svc.CreatePayee(h.ctx, disbursementapi.CreatePayeeRequest{CommandID: cmdID, Actor: fin, Name: "Clinic", Account: "ACC-9"})
				return err
			}},
		}
		for _, k := range kinds {
			ids, errs := make([]string, racers), make([]error, racers)
			var wg sync.WaitGroup
			for i := range ids {
				ids[i] = newID()
				wg.Go(func() { errs[i] = k.create(ids[i]) })
			}
			wg.Wait()
			var won, logged []string
			for i, err := range errs {
				var ae *assist.Error
				switch {
				case err == nil:
					won = append(won, ids[i])
				case !assist.IsCode(err, assist.CodeConflict) || !errors.As(err, &ae) ||
					!slices.ContainsFunc(ae.Fields, func(f assist.FieldError) bool { return f.Field == "name" }):
					t.Errorf("%s creation %d: %v, want a conflict naming name", k.kind, i, err)
				}
				recs, err := h.log.History(h.ctx, k.kind, ids[i])
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) > 0 {
					logged = append(logged, ids[i])
				}
			}
			if len(won) != 1 || !slices.Equal(logged, won) {
				t.Errorf("%s: created %v, in the log %v; want one, the same", k.kind, won, logged)
			}
		}
		h.awaitConsumer()
	})
}

// awaitConsumer waits until the ledger consumer has taken every event of
// the log (applied or dead-lettered: none pending or waiting for its
// ack, and acked up to the log's last event), then fails the test for
// each dead letter. The log's last event must be one the consumer takes.
// The ack floor is needed: the server tells its consumers of a new event
// from a goroutine of its own, so for a moment after an append their
// counts may not have it yet, and show nothing pending.
func (h *harness) awaitConsumer() {
	h.t.Helper()
	s, err := h.js.Stream(h.ctx, eventlog.Stream)
	if err != nil {
		h.t.Fatal(err)
	}
	si, err := s.Info(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	last := si.State.LastSeq
	evatest.Await(h.t, evatest.Patience, "the consumer to take every event", func() (bool, string) {
		c, err := h.js.Consumer(h.ctx, eventlog.Stream, "disbursement")
		if err != nil {
			h.t.Fatal(err)
		}
		info, err := c.Info(h.ctx)
		if err != nil {
			h.t.Fatal(err)
		}
		return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last,
			fmt.Sprintf("%d pending, %d unacked, acked up to %d of %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream, last)
	})
	rows, err := h.db.Query(h.ctx, `SELECT subject, reason FROM dead_letters WHERE consumer = 'disbursement' ORDER BY seq`)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var subject, reason string
		if err := rows.Scan(&subject, &reason); err != nil {
			h.t.Fatal(err)
		}
		h.t.Errorf("dead letter %s: %s", subject, reason)
	}
}

// A log written before names were reserved may hold two creations of one
// name: the consumer stores both rows (the read model holds what the log
// holds) and dead-letters neither; the name stays taken for new
// creations.
func TestTwoCreationsOfOneNameInTheLogAreBothStored(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, newCountingProvider())
		at := time.Now().UTC()
		var funds, payees []string
		for range 2 {
			cmd := assist.Cmd{ID: newID(), Actor: fin, At: at}
			e, err := assist.CreateFund(cmd, nil, "Twice", 700)
			if err == nil {
				_, err = h.log.Append(h.ctx, e, 0)
			}
			funds = append(funds, cmd.ID)
			pcmd := assist.Cmd{ID: newID(), Actor: fin, At: at}
			pe, perr := assist.CreatePayee(pcmd, nil, "Twin clinic", "BD", "ACC-T")
			if perr == nil {
				_, perr = h.log.Append(h.ctx, pe, 0)
			}
			payees = append(payees, pcmd.ID)
			if err := errors.Join(err, perr); err != nil {
				t.Fatal(err)
			}
		}
		h.awaitConsumer()
		for i := range 2 {
			if f, err := h.svc.Fund(h.ctx, disbursementapi.GetRequest{ID: funds[i]}); err != nil || f.Name != "Twice" || f.AllocatedCents != 700 {
				t.Errorf("fund %d of the log: %+v %v", i, f, err)
			}
			if p, err := h.svc.Payee(h.ctx, disbursementapi.GetRequest{ID: payees[i]}); err != nil || p.Name != "Twin clinic" {
				t.Errorf("payee %d of the log: %+v %v", i, p, err)
			}
		}
		again := newID()
		if _, err := h.svc.CreateFund(h.ctx, disbursementapi.CreateFundRequest{CommandID: again, Actor: fin, Name: "Twice", AllocatedCents: 1}); !assist.IsCode(err, assist.CodeConflict) {
			t.Errorf("a third fund of the name: %v, want a conflict", err)
		}
		if recs, _ := h.log.History(h.ctx, assist.KindFund, again); len(recs) != 0 {
			t.Errorf("a refused creation appended %d events", len(recs))
		}
	})
}

// A name reserved by a creation that never reached the log (its process
// died between the reservation and the append) is another's for
// nameGrace, then goes to the next creation that asks. A reservation whose
// creation is in the log stays, even while its row is not stored yet.
func TestStaleNameReservationIsTakenOver(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, newCountingProvider())
		t0 := time.Now().UTC()
		clock := t0
		svc := New(Deps{Config: Config{HoldTTL: time.Hour}, Log: h.log, DB: db, Provider: newCountingProvider(),
			Logger: zaptest.NewLogger(t), Now: func() time.Time { return clock }})
		create := func(name string) (string, error) {
			cmdID := newID()
			_, err := svc.CreateFund(h.ctx, disbursementapi.CreateFundRequest{CommandID: cmdID, Actor: fin, Name: name, AllocatedCents: 100})
			return cmdID, err
		}
		if _, err := svc.store.ReserveName(h.ctx, assist.KindFund, "Lost", newID(), t0); err != nil {
			t.Fatal(err)
		}
		clock = t0.Add(nameGrace - time.Second)
		if _, err := create("Lost"); !assist.IsCode(err, assist.CodeConflict) {
			t.Fatalf("within the grace: %v, want a conflict", err)
		}
		clock = t0.Add(nameGrace + time.Second)
		if _, err := create("Lost"); err != nil {
			t.Fatalf("after the grace: %v", err)
		}

		// In the log, its row not stored yet (the consumer behind).
		logged, err := create("Logged")
		if err != nil {
			t.Fatal(err)
		}
		h.awaitConsumer()
		if _, err := db.Exec(h.ctx, `DELETE FROM disb_funds WHERE id = $1`, logged); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(10 * nameGrace)
		if _, err := create("Logged"); !assist.IsCode(err, assist.CodeConflict) {
			t.Fatalf("a name whose creation is in the log: %v, want a conflict", err)
		}
	})
}
