package approval_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// DESIGN §5.6: replaying the log rebuilds every read model exactly. After
// a mix of commands on 30 cases, intake's list and approval's queue are
// dropped with their consumers' records and durable consumers, rebuilt
// from the log, and compared row for row.
func TestReplayRebuildsReadModelsExactly(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db, nil)
		fin := assist.Actor{Username: "fin", Role: assist.RoleFinance}
		d := disbursement.New(disbursement.Deps{Config: disbursement.Config{HoldTTL: time.Hour}, Log: h.log, DB: db, Logger: zaptest.NewLogger(t)})
		h.svc = h.service(d, nil)
		fund, err := d.CreateFund(h.ctx, disbursementapi.CreateFundRequest{CommandID: newID(), Actor: fin, Name: "F", AllocatedCents: 10_000_000})
		if err != nil {
			t.Fatal(err)
		}
		payee, err := d.CreatePayee(h.ctx, disbursementapi.CreatePayeeRequest{CommandID: newID(), Actor: fin, Name: "P", Account: "A"})
		if err != nil {
			t.Fatal(err)
		}
		stop := h.consume()

		must := func(_ *assist.Case, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		var ids []string
		for i := range 30 {
			actor := ana
			if i%3 == 0 {
				actor = bo
			}
			r := fileRequest(actor)
			r.PayeeID = payee.ID
			r.Urgency = string(assist.Urgencies[i%3])
			r.Beneficiary.Reference = fmt.Sprintf("REF-%d", i%7) // some possible duplicates
			c := h.fileWith(h.intake, r)
			ids = append(ids, c.ID)
			cmd := func(a assist.Actor) approvalapi.CaseCommand {
				return approvalapi.CaseCommand{CommandID: newID(), Actor: a, CaseID: c.ID}
			}
			switch i % 6 {
			case 0: // filed only
			case 1:
				must(h.intake.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: actor, CaseID: c.ID,
					AmountCents: ptr(int64(10_000 + i)), Urgency: ptr("routine"), Beneficiary: &intakeapi.Beneficiary{Reference: "NEW-" + c.ID}}))
			case 2:
				must(h.intake.Withdraw(h.ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: actor, CaseID: c.ID, Reason: "resolved"}))
			case 3:
				must(h.svc.Claim(h.ctx, cmd(olu)))
				must(h.svc.Release(h.ctx, cmd(olu)))
				must(h.svc.Claim(h.ctx, cmd(pia)))
				must(h.svc.Reject(h.ctx, approvalapi.RejectRequest{CommandID: newID(), Actor: pia, CaseID: c.ID, Reason: "not eligible"}))
			case 4:
				must(h.svc.Claim(h.ctx, cmd(olu)))
				must(h.svc.RequestInfo(h.ctx, approvalapi.RequestInfoRequest{CommandID: newID(), Actor: olu, CaseID: c.ID, Question: "when?"}))
				if i%12 == 4 {
					must(h.intake.Answer(h.ctx, intakeapi.AnswerRequest{CommandID: newID(), Actor: actor, CaseID: c.ID, Answer: "tonight"}))
					must(h.svc.Claim(h.ctx, cmd(pia)))
				}
			case 5:
				must(h.svc.Claim(h.ctx, cmd(olu)))
				must(h.svc.Approve(h.ctx, approvalapi.ApproveRequest{CommandID: newID(), Actor: olu, CaseID: c.ID,
					AmountCents: 20_000, FundID: fund.ID, Note: "ok"}))
			}
		}
		h.waitCaughtUp()
		if n := count(t, db, `SELECT count(*) FROM dead_letters`); n != 0 {
			t.Fatalf("%d dead letters", n)
		}
		// The read models hold every case as the fold of its log: intake
		// the whole case, the queue its part of it.
		for _, id := range ids {
			fold := h.get(id)
			for name, p := range map[string]eventlog.Projection{"intake": h.istore, approval.ConsumerName: h.store} {
				want := fold
				if name == approval.ConsumerName {
					want = approval.QueueFields(fold)
				}
				got, err := p.Projected(h.ctx, db, id)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s projection of %s = %+v\nwant the fold of its log %+v", name, id, got, want)
				}
			}
		}
		intakeBefore, approvalBefore := intakeRows(t, db), approvalRows(t, db)
		if len(intakeBefore) != 30 || len(approvalBefore) != 30 {
			t.Fatalf("%d intake rows and %d approval rows, want 30 each", len(intakeBefore), len(approvalBefore))
		}
		clock := time.Now() // some cases overdue, some not
		queueBefore := queueJSON(t, h, clock)

		// Drop the read models, their consumers' records and the durable
		// consumers; replay.
		stop()
		for _, q := range []string{`DELETE FROM intake_cases`, `DELETE FROM approval_queue`} {
			if _, err := db.Exec(h.ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range []string{"intake", approval.ConsumerName} {
			if err := h.js.DeleteConsumer(h.ctx, eventlog.Stream, name); err != nil {
				t.Fatalf("delete consumer %s: %v", name, err)
			}
		}
		if n := len(intakeRows(t, db)) + len(approvalRows(t, db)); n != 0 {
			t.Fatalf("%d rows left after dropping the read models", n)
		}
		h.consume()
		h.waitCaughtUp()

		diff(t, "intake_cases", intakeRows(t, db), intakeBefore)
		diff(t, "approval_queue", approvalRows(t, db), approvalBefore)
		if got := queueJSON(t, h, clock); got != queueBefore {
			t.Fatalf("the rebuilt queue differs:\n got %s\nwant %s", got, queueBefore)
		}

		// eva audit replay's way: no consumer is touched; the read models,
		// damaged (a row lost, a row edited, a row of no case), are
		// rebuilt from the log by Rebuild, each in one transaction.
		for _, q := range []string{
			`DELETE FROM intake_cases WHERE id = '` + ids[1] + `'`,
			`UPDATE approval_queue SET status = 'approved', version = 1 WHERE id = '` + ids[3] + `'`,
			`INSERT INTO approval_queue (id, status, urgency, category, ref_hash, deadline, escalated, claimed_by, claim_expires_at,
				created_at, updated_at, version) VALUES ('stray', 'submitted', 'routine', 'shelter', '', 0, 0, '', 0, 0, 0, 1)`,
		} {
			if _, err := db.Exec(h.ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		for table, p := range map[string]eventlog.Projection{"intake_cases": h.istore, "approval_queue": h.store} {
			var progressed uint64
			res, err := h.log.Rebuild(h.ctx, db, p, eventlog.RebuildOptions{
				Reset:    eventlog.DeleteAll(table),
				Progress: func(done, _ uint64) { progressed = done },
			})
			if err != nil {
				t.Fatalf("rebuild %s: %v", table, err)
			}
			if res.Cases != 30 || res.Last == 0 || progressed != res.Last || res.Events < 30 {
				t.Fatalf("rebuild %s = %+v, progress at %d; want 30 cases and the whole log", table, res, progressed)
			}
		}
		diff(t, "intake_cases", intakeRows(t, db), intakeBefore)
		diff(t, "approval_queue", approvalRows(t, db), approvalBefore)
		if got := queueJSON(t, h, clock); got != queueBefore {
			t.Fatalf("the queue rebuilt by Rebuild differs:\n got %s\nwant %s", got, queueBefore)
		}

		// eva audit replay of every read model: one reading of the log,
		// both read models (damaged again) written in bulk by RebuildAll,
		// their indexes made again after (on the embedded store).
		for _, q := range []string{
			`DELETE FROM approval_queue WHERE id = '` + ids[2] + `'`,
			`UPDATE intake_cases SET status = 'approved', version = 1 WHERE id = '` + ids[4] + `'`,
		} {
			if _, err := db.Exec(h.ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		var progressed uint64
		all, err := h.log.RebuildAll(h.ctx, []eventlog.RebuildTarget{
			{DB: db, Projection: h.istore, Reset: eventlog.DeleteAll("intake_cases"), Tables: []string{"intake_cases"}},
			{DB: db, Projection: h.store, Reset: eventlog.DeleteAll("approval_queue"), Tables: []string{"approval_queue"}},
		}, func(done, _ uint64) { progressed = done })
		if err != nil {
			t.Fatalf("RebuildAll: %v", err)
		}
		for i, res := range all {
			if res.Cases != 30 || res.Last == 0 || progressed != res.Last || res.Events < 30 {
				t.Fatalf("RebuildAll[%d] = %+v, progress at %d; want 30 cases and the whole log", i, res, progressed)
			}
		}
		diff(t, "intake_cases", intakeRows(t, db), intakeBefore)
		diff(t, "approval_queue", approvalRows(t, db), approvalBefore)
		if got := queueJSON(t, h, clock); got != queueBefore {
			t.Fatalf("the queue rebuilt by RebuildAll differs:\n got %s\nwant %s", got, queueBefore)
		}

		// A database per read model, as eva audit replay has on the
		// embedded store: both are written at once, the same rows.
		open := sqldbtest.SQLite
		if db.Dialect() == sqldb.Postgres {
			open = sqldbtest.Postgres
		}
		own := open(t)
		if err := approval.Migrate(h.ctx, own); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(h.ctx, `DELETE FROM intake_cases WHERE id = '`+ids[6]+`'`); err != nil {
			t.Fatal(err)
		}
		targets := []eventlog.RebuildTarget{
			{DB: db, Projection: h.istore, Reset: eventlog.DeleteAll("intake_cases"), Tables: []string{"intake_cases"}},
			{DB: own, Projection: approval.NewSQLStore(own), Reset: eventlog.DeleteAll("approval_queue"), Tables: []string{"approval_queue"}},
		}
		if all, err = h.log.RebuildAll(h.ctx, targets, nil); err != nil || all[0].Cases != 30 || all[1].Cases != 30 {
			t.Fatalf("RebuildAll into two databases = %+v, %v", all, err)
		}
		diff(t, "intake_cases", intakeRows(t, db), intakeBefore)
		diff(t, "approval_queue (own database)", approvalRows(t, own), approvalBefore)
		// One read model's Reset fails: the other's transaction is rolled
		// back too (its damage stays).
		if _, err := own.Exec(h.ctx, `DELETE FROM approval_queue WHERE id = '`+ids[7]+`'`); err != nil {
			t.Fatal(err)
		}
		targets[0].Reset = func(context.Context, sqldb.Querier) error { return fmt.Errorf("a reset that fails") }
		if _, err := h.log.RebuildAll(h.ctx, targets, nil); err == nil || !strings.Contains(err.Error(), "a reset that fails") {
			t.Fatalf("RebuildAll with a failing reset = %v", err)
		}
		if n := len(approvalRows(t, own)); n != 29 {
			t.Fatalf("%d approval rows after a failed RebuildAll, want the 29 it found", n)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func count(t *testing.T, db sqldb.DB, query string) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(t.Context(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func intakeRows(t *testing.T, db sqldb.DB) []string {
	t.Helper()
	rows, err := db.Query(t.Context(), `SELECT id, post, requester, status, urgency, created_at, updated_at, version, state
		FROM intake_cases ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, post, requester, status, urgency, state string
		var created, updated, version int64
		if err := rows.Scan(&id, &post, &requester, &status, &urgency, &created, &updated, &version, &state); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s|%s|%s|%s|%s|%d|%d|%d|%s", id, post, requester, status, urgency, created, updated, version, state))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func approvalRows(t *testing.T, db sqldb.DB) []string {
	t.Helper()
	rows, err := db.Query(t.Context(), `SELECT id, status, urgency, category, ref_hash, deadline, escalated, claimed_by,
		claim_expires_at, created_at, updated_at, version FROM approval_queue ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, status, urgency, category, refHash, claimedBy string
		var deadline, escalated, claimExp, created, updated, version int64
		if err := rows.Scan(&id, &status, &urgency, &category, &refHash, &deadline, &escalated, &claimedBy, &claimExp,
			&created, &updated, &version); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s|%s|%s|%s|%s|%d|%d|%s|%d|%d|%d|%d", id, status, urgency, category, refHash, deadline,
			escalated, claimedBy, claimExp, created, updated, version))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func diff(t *testing.T, table string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Fatalf("rebuilt %s differs at row %d (%d rows, want %d):\n got %s\nwant %s", table, i, len(got), len(want), g, w)
		}
	}
}

// queueJSON is the whole queue as of clock.
func queueJSON(t *testing.T, h *harness, clock time.Time) string {
	t.Helper()
	page, err := h.store.Queue(h.ctx, clock, approvalapi.QueueRequest{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(page)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
