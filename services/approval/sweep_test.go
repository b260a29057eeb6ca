package approval_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/pkg/timers"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/intake"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// Tests of the sweeps (ADR 45): the queue keeps each case's due time, and
// sweeps, one timer a second, fire what is due.

// slotOf is the start of the slot (a quarter second) whose sweep sees to
// a time due at t, ahead.
func slotOf(t time.Time) time.Time {
	s := t.Truncate(250 * time.Millisecond)
	if s.Before(t) {
		s = s.Add(250 * time.Millisecond)
	}
	return s.UTC()
}

// pendingSweeps are the slots of the sweeps pending in the timers stream,
// in order.
func pendingSweeps(t testing.TB, ctx context.Context, tm *timers.Timers) []time.Time {
	t.Helper()
	info, err := tm.Stream().Info(ctx, jetstream.WithSubjectFilter("eva.timer.set."+approval.TimerSweep+".*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for subj := range info.State.Subjects {
		s, err := strconv.ParseInt(subj[strings.LastIndex(subj, ".")+1:], 10, 64)
		if err != nil {
			t.Fatalf("sweep %s: %v", subj, err)
		}
		out = append(out, time.UnixMilli(s).UTC())
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// queuedDueAt is the case's due time in the queue; zero when nothing of
// it is due.
func queuedDueAt(t testing.TB, ctx context.Context, db sqldb.DB, id string) time.Time {
	t.Helper()
	var us int64
	if err := db.QueryRow(ctx, `SELECT due_at FROM approval_queue WHERE id = $1`, id).Scan(&us); err != nil {
		t.Fatal(err)
	}
	return sqldb.Time(us)
}

// A case the queue's projection writes asks for the sweep of its due
// time (the warning's, 18 hours after filing for an urgent case), once
// the projection committed: its slot's sweep is pending.
func TestAProjectedCaseAsksForItsSweep(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, &fakeHolds{})
		h.consumeIntake()
		_, tm := h.runApprovalAt(assist.DefaultPolicy(), &fakeHolds{}, nil)
		c := h.file(ana)
		h.waitCaughtUp()
		warn := assist.WarnAt(c.CreatedAt, c.Deadline)
		if got := queuedDueAt(t, h.ctx, db, c.ID); !got.Equal(warn.Truncate(time.Microsecond)) && !got.Equal(warn.Truncate(time.Microsecond).Add(time.Microsecond)) {
			t.Fatalf("due at %s, want the warning time %s", got, warn)
		}
		evatest.Await(t, 10*time.Second, "the warning's sweep pending", func() (bool, string) {
			got := pendingSweeps(t, h.ctx, tm)
			return slices.Contains(got, slotOf(warn)), fmt.Sprint(got)
		})
	})
}

// A sweep asks for the next: at the earliest due time left, or a minute
// ahead when nothing is due sooner. So a case whose projection did not
// ask for its sweep (faked: the harness's projection never asks, as when
// approval crashed between its commit and the asking) is swept all the
// same, at most a minute late.
func TestASweepAsksForTheNextDueTimeWithAskingFakedLost(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t), &fakeHolds{})
	h.consume()
	svc, tm := h.withTimers()
	far := h.file(ana) // warned in 18 hours
	h.waitCaughtUp()
	if got := pendingSweeps(t, h.ctx, tm); len(got) > 0 {
		t.Fatalf("sweeps pending %v before any sweep, want none (the projection does not ask)", got)
	}
	before := time.Now()
	if err := svc.Fire(h.ctx, timers.Fired{Kind: approval.TimerSweep}); err != nil {
		t.Fatal(err)
	}
	got := pendingSweeps(t, h.ctx, tm)
	if len(got) != 1 || got[0].Before(before.Add(time.Minute)) || got[0].After(time.Now().Add(time.Minute+time.Second)) {
		t.Fatalf("sweeps pending %v after a sweep with nothing due for hours, want one a minute on", got)
	}
	in := intake.New(intake.Deps{Config: intake.Config{Policy: shortPolicy(40 * time.Second)}, NC: h.nc, Log: h.log, DB: h.db,
		Keys: h.keys, Logger: zaptest.NewLogger(t)})
	near := h.fileWith(in, fileRequest(ana)) // warned in 30 seconds
	h.waitCaughtUp()
	if err := svc.Fire(h.ctx, timers.Fired{Kind: approval.TimerSweep}); err != nil {
		t.Fatal(err)
	}
	if got := pendingSweeps(t, h.ctx, tm); !slices.Contains(got, slotOf(assist.WarnAt(near.CreatedAt, near.Deadline))) {
		t.Fatalf("sweeps pending %v, want one at the near case's warning %s", got, assist.WarnAt(near.CreatedAt, near.Deadline))
	}
	if n := len(h.events(far.ID)) + len(h.events(near.ID)); n != 2 {
		t.Fatalf("%d events, want the two filings only: nothing was due", n)
	}
}

// A sweep fires every case due, however many: more than it reads at once
// (its pages follow one another by due time and id), each once.
func TestASweepFiresEveryCaseDueWithFakeClock(t *testing.T) {
	const n = 300 // more than a sweep's page
	r := newDueRig(t, shortPolicy(time.Hour))
	r.clock.set(r.t0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = r.h.fileWith(r.in, fileRequest(ana)).ID
	}
	r.h.waitCaughtUp()
	r.sweep(2 * time.Hour)
	r.sweep(2*time.Hour + time.Minute) // again: nothing left
	for _, id := range ids {
		if got := fmt.Sprint(eventTypesOf(r.h.events(id))); got != "[RequestSubmitted DeadlineMissed]" {
			t.Fatalf("case %s: history %s, want it escalated once", id, got)
		}
		if at := queuedDueAt(t, r.h.ctx, r.h.db, id); !at.IsZero() {
			t.Fatalf("case %s: due at %s once escalated, want nothing due", id, at)
		}
	}
}

// The cases queued before the due time was kept get it from what the
// queue has (migration 00005): the warning's time, the deadline once
// warned, the claim's lease when it is sooner, nothing when escalated and
// unclaimed or decided. Faked: the rows are written as the former build's
// projection wrote them, before the migration.
func TestTheMigrationGivesQueuedCasesTheirDueTimes(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		ctx := context.Background()
		former, err := upTo(approval.Migrations, 4)
		if err != nil {
			t.Fatal(err)
		}
		if err := sqldb.MigrateAll(ctx, db, eventlog.Migrations, former); err != nil {
			t.Fatal(err)
		}
		t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
		hour := func(h float64) int64 { return sqldb.Micros(t0.Add(time.Duration(h * float64(time.Hour)))) }
		rows := []struct {
			id, status        string
			warned, escalated int64
			claimExpires      int64
			want              int64
		}{
			{"submitted", "submitted", 0, 0, 0, hour(18)},
			{"warned", "submitted", 1, 0, 0, hour(24)},
			{"escalated", "submitted", 1, 1, 0, 0},
			{"claimed-soon", "under_review", 0, 0, hour(1), hour(1)},
			{"claimed-late", "under_review", 1, 0, hour(30), hour(24)},
			{"claimed-escalated", "under_review", 1, 1, hour(30), hour(30)},
			{"info", "info_requested", 0, 0, 0, hour(18)},
			{"approved", "approved", 0, 0, 0, 0},
		}
		for _, r := range rows {
			if _, err := db.Exec(ctx, `INSERT INTO approval_queue (id, status, urgency, category, ref_hash, deadline, escalated,
				claimed_by, claim_expires_at, created_at, updated_at, version, warned)
				VALUES ($1, $2, 'urgent', 'shelter', '', $3, $4, '', $5, $6, $6, 1, $7)`,
				r.id, r.status, hour(24), r.escalated, r.claimExpires, hour(0), r.warned); err != nil {
				t.Fatal(err)
			}
		}
		if err := sqldb.MigrateAll(ctx, db, approval.Migrations); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			var got int64
			if err := db.QueryRow(ctx, `SELECT due_at FROM approval_queue WHERE id = $1`, r.id).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != r.want {
				t.Errorf("%s: due at %s, want %s", r.id, sqldb.Time(got), sqldb.Time(r.want))
			}
		}
	})
}

// upTo is m with its migrations up to version last only.
func upTo(m sqldb.Migrations, last int) (sqldb.Migrations, error) {
	keep := func(tree fs.FS) (fs.FS, error) {
		out := fstest.MapFS{}
		err := fs.WalkDir(tree, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			v, err := strconv.Atoi(strings.SplitN(path, "_", 2)[0])
			if err != nil || v > last {
				return err
			}
			data, err := fs.ReadFile(tree, path)
			out[path] = &fstest.MapFile{Data: data}
			return err
		})
		return out, err
	}
	pg, err := keep(m.Postgres)
	if err != nil {
		return sqldb.Migrations{}, err
	}
	lite, err := keep(m.SQLite)
	return sqldb.Migrations{Name: m.Name, Postgres: pg, SQLite: lite}, err
}

// A case whose due action keeps failing is fired again after 1 s, then
// 2 s, 4 s and so on up to a minute, not by every sweep: the sweep that
// met the failure reports it (and is delivered again), the others do
// not, and the cases due beside it are fired as usual. A sweep is asked
// for when it may be fired again, since nothing else may be due then.
// Once it is fired, or is no longer due, it is forgotten. Faked: the
// failure (FakeFire), on a fake clock, one sweep a second for five
// minutes.
func TestACaseWhoseDueActionKeepsFailingIsFiredLessAndLessWithFireFaked(t *testing.T) {
	r := newDueRig(t, shortPolicy(time.Hour))
	r.clock.set(r.t0)
	bad := r.h.fileWith(r.in, fileRequest(ana)).ID
	good := r.h.fileWith(r.in, fileRequest(ana)).ID
	gone := r.h.fileWith(r.in, fileRequest(ana)).ID
	r.h.waitCaughtUp()
	start := r.t0.Add(2 * time.Hour) // an hour past the deadlines
	var (
		mu      sync.Mutex
		failing = map[string]bool{bad: true, gone: true}
		tries   []time.Duration // when bad was fired, from start
	)
	approval.FakeFire(r.svc, func(ctx context.Context, kind, id string, real func(context.Context, string, string) error) error {
		mu.Lock()
		fail := failing[id]
		if id == bad && fail {
			tries = append(tries, r.clock.now().Sub(start))
		}
		mu.Unlock()
		if fail {
			return errors.New("faked: this case cannot be fired")
		}
		return real(ctx, kind, id)
	})
	var failed []time.Duration // sweeps that reported a failure, from start
	sweep := func(after time.Duration) {
		r.clock.set(start.Add(after))
		if err := r.svc.Fire(r.h.ctx, timers.Fired{Kind: approval.TimerSweep}); err != nil {
			failed = append(failed, after)
		}
		r.h.waitCaughtUp()
	}

	sweep(0)
	if got := fmt.Sprint(eventTypesOf(r.h.events(good))); got != "[RequestSubmitted DeadlineMissed]" {
		t.Fatalf("the case due beside the failing ones: history %s, want it escalated", got)
	}
	// A second on is too near to trust a sweep for: it is asked two
	// seconds on, as any time due so soon is.
	if got := pendingSweeps(t, r.h.ctx, r.tm); !slices.ContainsFunc(got, func(at time.Time) bool {
		return !at.Before(start.Add(time.Second)) && !at.After(start.Add(2*time.Second))
	}) {
		t.Fatalf("sweeps pending %v, want one when the failed cases may be fired again (%s, or two seconds on)", got, start.Add(time.Second))
	}
	if n := approval.BackoffCases(r.svc); n != 2 {
		t.Fatalf("%d cases held back after the first sweep, want the two that failed", n)
	}
	if _, err := r.in.Withdraw(r.h.ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: gone,
		Reason: "no longer needed"}); err != nil {
		t.Fatal(err)
	}
	r.h.waitCaughtUp()
	for s := 1; s <= 300; s++ {
		sweep(time.Duration(s) * time.Second)
	}
	var want []time.Duration
	for _, s := range []int{0, 1, 3, 7, 15, 31, 63, 123, 183, 243} {
		want = append(want, time.Duration(s)*time.Second)
	}
	if !slices.Equal(tries, want) || !slices.Equal(failed, want) {
		t.Fatalf("in 301 sweeps the failing case was fired at %v and sweeps failed at %v; want both at %v", tries, failed, want)
	}
	if n := approval.BackoffCases(r.svc); n != 1 {
		t.Fatalf("%d cases held back, want 1: the withdrawn one is no longer due", n)
	}
	mu.Lock()
	failing[bad] = false
	mu.Unlock()
	sweep(303 * time.Second)
	if got := fmt.Sprint(eventTypesOf(r.h.events(bad))); got != "[RequestSubmitted DeadlineMissed]" {
		t.Fatalf("the case once it can be fired: history %s, want it escalated", got)
	}
	if n := approval.BackoffCases(r.svc); n != 0 || len(failed) != len(want) {
		t.Fatalf("%d cases held back and %d sweeps failed once the case was fired, want none and %d", n, len(failed), len(want))
	}
}
