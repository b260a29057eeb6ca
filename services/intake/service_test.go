package intake_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/seal"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/intake"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// Service tests: intake on a real embedded JetStream and a real database
// (both drivers).

func TestFileCreatesSubmittedCaseWithDeadlinePerUrgency(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		clock := &fixedClock{t: time.Date(2025, 6, 1, 10, 0, 0, 123_000, time.UTC)}
		svc := h.service(clock.Now)
		for _, u := range assist.Urgencies {
			t.Run(string(u), func(t *testing.T) {
				r := fileRequest(ana)
				r.Urgency = string(u)
				c, err := svc.File(h.ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				want := clock.t.Add(assist.DefaultPolicy().Deadlines[u])
				if c.ID != r.CommandID || c.State != assist.StateSubmitted || c.Post != "BGD-DHAKA" || c.Requester != "ana" ||
					c.Urgency != u || c.Category != assist.Shelter || c.AmountCents != 25_000 || c.PayeeID != payee1 ||
					!c.CreatedAt.Equal(clock.t) || !c.Deadline.Equal(want) || c.Version == 0 {
					t.Fatalf("filed case = %+v; want submitted at BGD-DHAKA by ana, deadline %s", c, want)
				}
				if c.Beneficiary.KeyID == "" || len(c.Beneficiary.Ciphertext) == 0 || len(c.BeneficiaryRefHash) == 0 {
					t.Fatalf("filed case has no sealed beneficiary: %+v", c.Beneficiary)
				}
				if got := h.get(c.ID); !reflect.DeepEqual(got, c) {
					t.Fatalf("Get = %+v\nwant what File returned %+v", got, c)
				}
				recs := h.events(c.ID)
				if len(recs) != 1 || recs[0].Event.Type() != "RequestSubmitted" || recs[0].Event.Actor != ana ||
					recs[0].Event.CommandID != r.CommandID || recs[0].Event.ID != r.CommandID {
					t.Fatalf("log = %+v, want one RequestSubmitted by ana with the command id", recs)
				}
				b := recs[0].Event.Body.(assist.RequestSubmitted)
				if b.Policy.Version != assist.DefaultPolicy().Version || b.Policy.CategoryCapUSDCents != 500_000 {
					t.Fatalf("the event does not record the policy it was filed under: %+v", b.Policy)
				}
			})
		}
	})
}

// DESIGN §6: events carry only ciphertext. Nothing of the beneficiary
// appears in the stored bytes of the log, of the projection or of the
// access log; the sealed data opens only with the case's key.
func TestLogCarriesOnlyCiphertext(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		h.consume()
		b := beneficiary()
		secrets := []string{b.Reference, b.Name, b.Contact, b.DateOfBirth, b.Nationality, strings.ToUpper(b.Reference)}
		c := h.file(ana)
		amended := intakeapi.Beneficiary{Reference: "IOM-PLAIN-5550123", Name: "Yusra Olmstead-Kray", Contact: "yusra@example.org",
			DateOfBirth: "2001-02-03", Nationality: "Ruritanian"}
		secrets = append(secrets, amended.Reference, amended.Name, amended.Contact, amended.DateOfBirth, amended.Nationality)
		if _, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Beneficiary: &amended}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: c.ID}); err != nil {
			t.Fatal(err)
		}
		raw, err := h.log.LoadRaw(h.ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) != 2 {
			t.Fatalf("%d events, want 2", len(raw))
		}
		for _, m := range raw {
			if s := containsAny(m.Data, secrets...); s != "" {
				t.Fatalf("event %s at %d carries personal data %q in the clear", m.Type, m.Seq, s)
			}
			if s := containsAny([]byte(m.Subject), secrets...); s != "" {
				t.Fatalf("subject %s carries personal data", m.Subject)
			}
		}
		// The sealed beneficiary opens only with the case's key, and only
		// for this case.
		got := h.get(c.ID)
		wrapped, err := h.store.WrappedKey(h.ctx, got.Beneficiary.KeyID)
		if err != nil || wrapped == nil {
			t.Fatalf("WrappedKey = %v, %v", wrapped, err)
		}
		key, err := h.keys.Unwrap(got.Beneficiary.KeyID, wrapped)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := seal.Open(key, got.Beneficiary.Ciphertext, []byte(c.ID)); err != nil {
			t.Fatalf("the sealed beneficiary does not open with the case's key: %v", err)
		}
		if _, err := seal.Open(key, got.Beneficiary.Ciphertext, []byte(newID())); err == nil {
			t.Fatal("the sealed beneficiary opens for another case id")
		}
		if _, err := h.keys.Unwrap(newID(), wrapped); err == nil {
			t.Fatal("the wrapped key opens under another case id")
		}
		// The projection stores the case as the log has it: ciphertext only.
		h.waitProjected(c.ID)
		var state string
		if err := db.QueryRow(h.ctx, `SELECT state FROM intake_cases WHERE id = $1`, c.ID).Scan(&state); err != nil {
			t.Fatal(err)
		}
		if s := containsAny([]byte(state), secrets...); s != "" {
			t.Fatalf("the projection stores personal data %q in the clear", s)
		}
		acc, err := h.log.Accesses(h.ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(acc)
		if s := containsAny(data, secrets...); s != "" {
			t.Fatalf("the access log stores personal data %q", s)
		}
	})
}

// DESIGN §5.7: every read of a case's personal data is itself recorded.
func TestPersonalReturnsBeneficiaryAndRecordsTheRead(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		c := h.file(ana)
		if acc, err := h.log.Accesses(h.ctx, c.ID); err != nil || len(acc) != 0 {
			t.Fatalf("accesses before any read = %v, %v", acc, err)
		}
		before := time.Now().UTC()
		for i, actor := range []assist.Actor{olu, audra} {
			got, err := h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: actor, CaseID: c.ID})
			if err != nil {
				t.Fatal(err)
			}
			if got != beneficiary() {
				t.Fatalf("Personal = %+v, want %+v", got, beneficiary())
			}
			acc, err := h.log.Accesses(h.ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(acc) != i+1 {
				t.Fatalf("%d access records after %d reads", len(acc), i+1)
			}
			a := acc[i]
			if a.CaseID != c.ID || a.Username != actor.Username || a.Role != actor.Role || a.Post != actor.Post ||
				a.What != "beneficiary" || a.At.Before(before.Add(-time.Second)) {
				t.Fatalf("access record = %+v, want the read of %s by %s", a, c.ID, actor.Username)
			}
		}
		// Reads of another case are its own.
		other := h.file(bo)
		if acc, err := h.log.Accesses(h.ctx, other.ID); err != nil || len(acc) != 0 {
			t.Fatalf("accesses of an unread case = %v, %v", acc, err)
		}
		for _, id := range []string{newID(), "not-a-uuid", ""} {
			_, err := h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: id})
			requireCode(t, err, assist.CodeNotFound)
		}
	})
}

// DESIGN §6: erasing destroys the key; the history stays and still loads.
func TestErasureRecordsTheEventDestroysTheKeyAndKeepsHistory(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		c := h.file(ana)
		amount := int64(30_000)
		if _, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, AmountCents: &amount}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: c.ID}); err != nil {
			t.Fatal(err)
		}
		before := h.events(c.ID)
		keyID := h.get(c.ID).Beneficiary.KeyID

		// Refused: not an admin, no reason, no such case. Nothing is written.
		for _, tt := range []struct {
			name string
			r    intakeapi.EraseRequest
			code assist.Code
		}{
			{"requester", intakeapi.EraseRequest{Actor: ana, CaseID: c.ID, Reason: "asked"}, assist.CodeForbidden},
			{"approver", intakeapi.EraseRequest{Actor: olu, CaseID: c.ID, Reason: "asked"}, assist.CodeForbidden},
			{"no reason", intakeapi.EraseRequest{Actor: adm, CaseID: c.ID, Reason: " "}, assist.CodeInvalid},
			{"unknown case", intakeapi.EraseRequest{Actor: adm, CaseID: newID(), Reason: "asked"}, assist.CodeNotFound},
		} {
			tt.r.CommandID = newID()
			_, err := h.svc.Erase(h.ctx, tt.r)
			requireCode(t, err, tt.code)
			if tt.code == assist.CodeInvalid && !strings.Contains(err.Error(), "reason") {
				t.Errorf("%s: %v does not name the reason", tt.name, err)
			}
		}
		if wrapped, err := h.store.WrappedKey(h.ctx, keyID); err != nil || wrapped == nil {
			t.Fatalf("a refused erasure destroyed the key: %v", err)
		}

		r := intakeapi.EraseRequest{CommandID: newID(), Actor: adm, CaseID: c.ID, Reason: "the survivor asked (ticket 42)"}
		erased, err := h.svc.Erase(h.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if !erased.PersonalDataErased || len(erased.Beneficiary.Ciphertext) != 0 || len(erased.BeneficiaryRefHash) != 0 {
			t.Fatalf("the erased case still holds personal data: %+v", erased)
		}
		if wrapped, err := h.store.WrappedKey(h.ctx, keyID); err != nil || wrapped != nil {
			t.Fatalf("the data key outlived the erasure: %x %v", wrapped, err)
		}
		evs := h.events(c.ID)
		if len(evs) != len(before)+1 || !reflect.DeepEqual(evs[:len(before)], before) {
			t.Fatalf("the history changed with erasure:\n got %+v\nwant %+v and the erasure", evs, before)
		}
		last := evs[len(evs)-1].Event
		if b, ok := last.Body.(assist.PersonalDataErased); !ok || b.KeyID != keyID || last.Actor != adm || last.Reason != r.Reason {
			t.Fatalf("the erasure event = %+v, want PersonalDataErased of key %s by %+v with the reason", last, keyID, adm)
		}
		if erased.State != c.State || erased.AmountCents != amount {
			t.Fatalf("the erasure changed the case: %+v", erased)
		}

		_, err = h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: c.ID})
		requireCode(t, err, assist.CodeGone)
		if acc, err := h.log.Accesses(h.ctx, c.ID); err != nil || len(acc) != 1 {
			t.Fatalf("a refused read was recorded as a read: %v, %v", acc, err)
		}

		// The same command again answers as the first time; another
		// erasure is a conflict; neither appends.
		again, err := h.svc.Erase(h.ctx, r)
		if err != nil || !reflect.DeepEqual(again, erased) {
			t.Fatalf("retried erasure = %+v, %v; want %+v", again, err, erased)
		}
		_, err = h.svc.Erase(h.ctx, intakeapi.EraseRequest{CommandID: newID(), Actor: adm, CaseID: c.ID, Reason: "again"})
		requireCode(t, err, assist.CodeConflict)
		if n := len(h.events(c.ID)); n != len(evs) {
			t.Fatalf("%d events after erasing again, want %d", n, len(evs))
		}

		// The case lives on: it can still be amended (its money trail too).
		amount = 20_000
		if _, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, AmountCents: &amount}); err != nil {
			t.Fatalf("amend after erasure: %v", err)
		}
		_, err = h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: c.ID})
		requireCode(t, err, assist.CodeGone)
	})
}

// The erasure is in the log before the key is destroyed: should intake
// stop in between, its projection of the event destroys the key, and a
// read model rebuilt from the whole log holds no sealed data, no reference
// hash, and no key comes back.
func TestErasureInTheLogDestroysTheKeyAndReplayKeepsItErased(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		c, other := h.file(ana), h.file(amir)
		keyID := c.Beneficiary.KeyID
		// PersonalDataErased appended as Erase does, without the key's
		// deletion that follows it (a crash in between).
		h.exec(c.ID, func(c *assist.Case, cmd assist.Cmd) (assist.Event, error) {
			return c.ErasePersonalData(cmd, "asked")
		}, adm)
		_, err := h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: c.ID})
		requireCode(t, err, assist.CodeGone)

		h.consume()
		h.waitProjected(c.ID)
		h.waitProjected(other.ID)
		if wrapped, err := h.store.WrappedKey(h.ctx, keyID); err != nil || wrapped != nil {
			t.Fatalf("the projection of the erasure left the key: %x %v", wrapped, err)
		}
		h.stopConsumer()

		// Replay: the read model dropped and rebuilt from the log by a
		// new consumer.
		if _, err := h.db.Exec(h.ctx, `DELETE FROM intake_cases`); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(h.ctx)
		done := make(chan error, 1)
		go func() {
			done <- h.log.Project(ctx, h.db, eventlog.ConsumerConfig{Name: "intake-replay"}, h.store, zaptest.NewLogger(t))
		}()
		got, kept := h.waitProjected(c.ID), h.waitProjected(other.ID)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !got.PersonalDataErased || len(got.Beneficiary.Ciphertext) != 0 || len(got.BeneficiaryRefHash) != 0 {
			t.Fatalf("the replayed read model resurrected personal data: %+v", got)
		}
		if len(kept.Beneficiary.Ciphertext) == 0 || kept.PersonalDataErased {
			t.Fatalf("the replay erased another case: %+v", kept)
		}
		var state string
		if err := h.db.QueryRow(h.ctx, `SELECT state FROM intake_cases WHERE id = $1`, c.ID).Scan(&state); err != nil {
			t.Fatal(err)
		}
		sealed := h.events(c.ID)[0].Event.Body.(assist.RequestSubmitted)
		for _, b := range [][]byte{sealed.Beneficiary.Ciphertext, sealed.BeneficiaryRefHash} {
			if strings.Contains(state, base64.StdEncoding.EncodeToString(b)) {
				t.Fatalf("the replayed row keeps sealed data or the reference hash: %s", state)
			}
		}
		if wrapped, err := h.store.WrappedKey(h.ctx, keyID); err != nil || wrapped != nil {
			t.Fatalf("the key came back with the replay: %x %v", wrapped, err)
		}
		_, err = h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: c.ID})
		requireCode(t, err, assist.CodeGone)
		if _, dups, err := h.store.CheckFiling(h.ctx, "", intake.DuplicateCheck{RefHash: sealed.BeneficiaryRefHash,
			Category: sealed.Category}); err != nil || slices.Contains(dups, c.ID) {
			t.Fatalf("the erased case is still found by its reference hash: %v %v", dups, err)
		}
	})
}

// Erasure is permanent: new personal data for an erased case is refused,
// nothing is appended, and no key is made again.
func TestAmendBeneficiaryAfterErasureIsRefused(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	c := h.file(ana)
	keyID := c.Beneficiary.KeyID
	h.erase(c.ID)
	before := len(h.events(c.ID))
	fresh := intakeapi.Beneficiary{Reference: "NEW-REF-1"}
	_, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Beneficiary: &fresh})
	requireCode(t, err, assist.CodeConflict)
	if n := len(h.events(c.ID)); n != before {
		t.Fatalf("%d events after the refused amend, want %d", n, before)
	}
	if wrapped, err := h.store.WrappedKey(h.ctx, keyID); err != nil || wrapped != nil {
		t.Fatalf("the erased key exists again: %x %v", wrapped, err)
	}
	if got := h.get(c.ID); got.Beneficiary.KeyID != keyID {
		t.Fatalf("the case's personal data moved to key %s", got.Beneficiary.KeyID)
	}
	_, err = h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: c.ID})
	requireCode(t, err, assist.CodeGone)
	// Amending other fields still works: the money trail stays.
	if _, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Justification: ptr("still needed")}); err != nil {
		t.Fatal(err)
	}
}

func TestFileSameCommandTwiceReturnsSameCase(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		r := fileRequest(ana)
		first, err := h.svc.File(h.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		seq := h.lastSeq()
		// A retry, even with an altered body, answers as the first filing.
		r.AmountCents = 99_000
		r.Beneficiary.Name = "someone else"
		second, err := h.svc.File(h.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(second, first) {
			t.Fatalf("retried File = %+v\nwant %+v", second, first)
		}
		if n := len(h.events(first.ID)); n != 1 {
			t.Fatalf("%d events after a retried File, want 1", n)
		}
		if got := h.lastSeq(); got != seq {
			t.Fatalf("the log grew from %d to %d on a retry", seq, got)
		}
		got, err := h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: first.ID})
		if err != nil || got != beneficiary() {
			t.Fatalf("Personal = %+v, %v; want the first filing's beneficiary", got, err)
		}
		// After the case moved on, a retry still answers as filed.
		if _, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: first.ID, AmountCents: ptr(int64(1))}); err != nil {
			t.Fatal(err)
		}
		third, err := h.svc.File(h.ctx, r)
		if err != nil || !reflect.DeepEqual(third, first) {
			t.Fatalf("File retried after an amend = %+v, %v\nwant %+v", third, err, first)
		}
	})
}

// Request/reply is at most once: a client retries on timeout while its
// first attempt may still be running. Every attempt must answer with the
// case as it was filed, and there is one event.
func TestFileSameCommandConcurrentlyAnswersAsFiled(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		for range 5 {
			r := fileRequest(ana)
			const n = 6
			got := make([]*assist.Case, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					got[i], errs[i] = h.svc.File(h.ctx, r)
				})
			}
			close(start)
			wg.Wait()
			if n := len(h.events(r.CommandID)); n != 1 {
				t.Fatalf("%d events for one command, want 1", n)
			}
			stored := h.get(r.CommandID)
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("attempt %d: %v", i, errs[i])
				}
				if got[i].ID != stored.ID || got[i].Version != stored.Version || got[i].State != stored.State {
					t.Fatalf("attempt %d answered another case: %+v", i, got[i])
				}
				if !reflect.DeepEqual(got[i], stored) {
					t.Fatalf("File answered a case that is not the one in the log (the command's event was already "+
						"stored; the answer must be the stored event folded, see eventlog.Log.Create/Execute): attempt %d "+
						"answered CreatedAt %s / Deadline %s; the log has CreatedAt %s / Deadline %s",
						i, got[i].CreatedAt.Format(time.RFC3339Nano), got[i].Deadline.Format(time.RFC3339Nano),
						stored.CreatedAt.Format(time.RFC3339Nano), stored.Deadline.Format(time.RFC3339Nano))
				}
			}
		}
	})
}

// DESIGN §5.8: bad input gets a 4xx naming the field, never a partial
// write: no event, and no data key.
func TestFileInvalidNamesFieldAndWritesNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		h.file(ana) // the log is not empty
		tests := []struct {
			name  string
			edit  func(r *intakeapi.FileRequest)
			field string
		}{
			{"missing reference", func(r *intakeapi.FileRequest) { r.Beneficiary.Reference = "" }, "beneficiary.reference"},
			{"bad date_of_birth format", func(r *intakeapi.FileRequest) { r.Beneficiary.DateOfBirth = "31/12/1999" }, "beneficiary.date_of_birth"},
			{"date_of_birth not a day", func(r *intakeapi.FileRequest) { r.Beneficiary.DateOfBirth = "1999-02-30" }, "beneficiary.date_of_birth"},
			{"date_of_birth short", func(r *intakeapi.FileRequest) { r.Beneficiary.DateOfBirth = "1999-2-3" }, "beneficiary.date_of_birth"},
			{"too long name", func(r *intakeapi.FileRequest) { r.Beneficiary.Name = strings.Repeat("é", 201) }, "beneficiary.name"},
			{"name not UTF-8", func(r *intakeapi.FileRequest) { r.Beneficiary.Name = "a\xffb" }, "beneficiary.name"},
			{"too long reference", func(r *intakeapi.FileRequest) { r.Beneficiary.Reference = strings.Repeat("R", 129) }, "beneficiary.reference"},
			{"too long contact", func(r *intakeapi.FileRequest) { r.Beneficiary.Contact = strings.Repeat("c", 201) }, "beneficiary.contact"},
			{"too long nationality", func(r *intakeapi.FileRequest) { r.Beneficiary.Nationality = strings.Repeat("n", 65) }, "beneficiary.nationality"},
			{"bad category", func(r *intakeapi.FileRequest) { r.Category = "jewellery" }, "category"},
			{"missing category", func(r *intakeapi.FileRequest) { r.Category = "" }, "category"},
			{"bad urgency", func(r *intakeapi.FileRequest) { r.Urgency = "asap" }, "urgency"},
			{"amount over category cap", func(r *intakeapi.FileRequest) { r.AmountCents = 500_001 }, "amount_usd_cents"},
			{"amount over case cap", func(r *intakeapi.FileRequest) { r.Category = string(assist.Medical); r.AmountCents = 2_000_001 }, "amount_usd_cents"},
			{"zero amount", func(r *intakeapi.FileRequest) { r.AmountCents = 0 }, "amount_usd_cents"},
			{"negative amount", func(r *intakeapi.FileRequest) { r.AmountCents = -1 }, "amount_usd_cents"},
			{"missing justification", func(r *intakeapi.FileRequest) { r.Justification = "  " }, "justification"},
			{"too long justification", func(r *intakeapi.FileRequest) { r.Justification = strings.Repeat("j", assist.MaxJustification+1) }, "justification"},
			{"missing post", func(r *intakeapi.FileRequest) { r.Post = "" }, "post"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				seq := h.lastSeq()
				r := fileRequest(ana)
				tc.edit(&r)
				_, err := h.svc.File(h.ctx, r)
				requireField(t, err, tc.field)
				h.requireNothingWritten(r.CommandID, seq)
			})
		}
		t.Run("cap is named", func(t *testing.T) {
			r := fileRequest(ana)
			r.AmountCents = 500_001
			_, err := h.svc.File(h.ctx, r)
			if err == nil || !strings.Contains(err.Error(), "category cap for shelter (5,000.00 USD)") {
				t.Fatalf("err = %v, want the cap named", err)
			}
		})
		t.Run("bad command id", func(t *testing.T) {
			seq := h.lastSeq()
			r := fileRequest(ana)
			r.CommandID = "not-a-uuid"
			_, err := h.svc.File(h.ctx, r)
			requireCode(t, err, assist.CodeInvalid)
			if h.lastSeq() != seq {
				t.Fatal("an invalid command wrote to the log")
			}
		})
	})
}

// A reference made of spaces is no reference: it would hash like every
// other blank reference and make unrelated cases look like duplicates.
func TestFileBlankReferenceIsInvalid(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	r := fileRequest(ana)
	r.Beneficiary.Reference = "   "
	seq := h.lastSeq()
	_, err := h.svc.File(h.ctx, r)
	if err == nil {
		other := fileRequest(bo)
		other.Beneficiary.Reference = "\t"
		if _, err := h.svc.File(h.ctx, other); err != nil {
			t.Fatal(err)
		}
		same := string(h.get(r.CommandID).BeneficiaryRefHash) == string(h.get(other.CommandID).BeneficiaryRefHash)
		t.Fatalf("services/intake/commands.go checkBeneficiary accepts a blank reference (%q): it checks "+
			"b.Reference == \"\" instead of strings.TrimSpace; seal.RefHash strips spaces, so every blank reference "+
			"hashes alike (same hash for \"   \" and \"\\t\": %v) and unrelated cases are flagged as possible duplicates",
			r.Beneficiary.Reference, same)
	}
	requireField(t, err, "beneficiary.reference")
	h.requireNothingWritten(r.CommandID, seq)
}

func (h *harness) requireNothingWritten(caseID string, seq uint64) {
	h.t.Helper()
	if got := h.lastSeq(); got != seq {
		h.t.Fatalf("the log grew from %d to %d", seq, got)
	}
	if raw, err := h.log.LoadRaw(h.ctx, caseID); err != nil || len(raw) != 0 {
		h.t.Fatalf("case %s has %d events (%v), want none", caseID, len(raw), err)
	}
	var filings int64
	if err := h.db.QueryRow(h.ctx, `SELECT count(*) FROM intake_filings WHERE case_id = $1`, caseID).Scan(&filings); err != nil || filings != 0 {
		h.t.Fatalf("a filing was recorded for refused case %s (%d, %v)", caseID, filings, err)
	}
}

// erase erases a case's personal data, as an admin.
func (h *harness) erase(caseID string) {
	h.t.Helper()
	if _, err := h.svc.Erase(h.ctx, intakeapi.EraseRequest{CommandID: newID(), Actor: adm, CaseID: caseID, Reason: "asked"}); err != nil {
		h.t.Fatal(err)
	}
}

// DESIGN §5.7: a requester files only for their post.
func TestFileForbiddenWritesNothing(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		tests := []struct {
			name  string
			actor assist.Actor
			post  string
		}{
			{"requester for another post", ana, "NPL-KTM"},
			{"approver", assist.Actor{Username: "olu", Role: assist.RoleApprover, Post: "BGD-DHAKA"}, "BGD-DHAKA"},
			{"auditor", assist.Actor{Username: "audra", Role: assist.RoleAuditor, Post: "BGD-DHAKA"}, "BGD-DHAKA"},
			{"admin", assist.Actor{Username: "root", Role: assist.RoleAdmin, Post: "BGD-DHAKA"}, "BGD-DHAKA"},
			{"requester without post", assist.Actor{Username: "x", Role: assist.RoleRequester}, "BGD-DHAKA"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				seq := h.lastSeq()
				r := fileRequest(tc.actor)
				r.Post = tc.post
				_, err := h.svc.File(h.ctx, r)
				requireCode(t, err, assist.CodeForbidden)
				h.requireNothingWritten(r.CommandID, seq)
			})
		}
	})
}

func ptr[T any](v T) *T { return &v }

func TestAmend(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		t.Run("changes the fields given", func(t *testing.T) {
			c := h.file(ana)
			r := intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, AmountCents: ptr(int64(40_000)),
				Urgency: ptr("routine"), Justification: ptr("two nights"), PayeeID: ptr(payee2)}
			got, err := h.svc.Amend(h.ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			if got.AmountCents != 40_000 || got.Urgency != assist.Routine || got.Justification != "two nights" ||
				got.PayeeID != payee2 || got.State != assist.StateSubmitted || got.Requester != "ana" ||
				got.Category != c.Category || !reflect.DeepEqual(got.Beneficiary, c.Beneficiary) {
				t.Fatalf("amended case = %+v", got)
			}
			// The deadline follows the new urgency, from the filing time.
			if want := c.CreatedAt.Add(72 * time.Hour); !got.Deadline.Equal(want) {
				t.Fatalf("deadline = %s, want %s", got.Deadline, want)
			}
			if !reflect.DeepEqual(h.get(c.ID), got) {
				t.Fatal("Get differs from what Amend returned")
			}
			// A retry answers the same and appends nothing.
			again, err := h.svc.Amend(h.ctx, r)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("retried Amend = %+v, %v; want %+v", again, err, got)
			}
			if n := len(h.events(c.ID)); n != 2 {
				t.Fatalf("%d events, want 2", n)
			}
		})
		t.Run("by a colleague at the post", func(t *testing.T) {
			c := h.file(ana)
			if _, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: amir, CaseID: c.ID, AmountCents: ptr(int64(1))}); err != nil {
				t.Fatal(err)
			}
		})
		t.Run("beneficiary", func(t *testing.T) {
			c := h.file(ana)
			nb := intakeapi.Beneficiary{Reference: "OTHER-REF", Name: "Another Name"}
			got, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Beneficiary: &nb})
			if err != nil {
				t.Fatal(err)
			}
			if reflect.DeepEqual(got.BeneficiaryRefHash, c.BeneficiaryRefHash) || got.Beneficiary.KeyID != c.Beneficiary.KeyID {
				t.Fatalf("amended beneficiary: ref hash unchanged or key id %q", got.Beneficiary.KeyID)
			}
			p, err := h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: c.ID})
			if err != nil || p != nb {
				t.Fatalf("Personal after amend = %+v, %v; want %+v", p, err, nb)
			}
		})
		t.Run("while info requested", func(t *testing.T) {
			c := h.file(ana)
			h.requestInfo(c.ID, "how many nights?")
			got, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Justification: ptr("three nights")})
			if err != nil || got.State != assist.StateInfoRequested {
				t.Fatalf("Amend while info_requested = %+v, %v", got, err)
			}
		})

		underReview := h.file(ana)
		h.claim(underReview.ID)
		withdrawn := h.file(ana)
		if _, err := h.svc.Withdraw(h.ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: withdrawn.ID, Reason: "found shelter"}); err != nil {
			t.Fatal(err)
		}
		openReq := fileRequest(ana)
		openReq.AmountCents = 450_000
		open, err := h.svc.File(h.ctx, openReq)
		if err != nil {
			t.Fatal(err)
		}
		refusals := []struct {
			name  string
			r     intakeapi.AmendRequest
			code  assist.Code
			field string
		}{
			{"wrong post", intakeapi.AmendRequest{Actor: bo, CaseID: open.ID, AmountCents: ptr(int64(1))}, assist.CodeForbidden, ""},
			{"approver", intakeapi.AmendRequest{Actor: olu, CaseID: open.ID, AmountCents: ptr(int64(1))}, assist.CodeForbidden, ""},
			{"wrong post with beneficiary", intakeapi.AmendRequest{Actor: bo, CaseID: open.ID, Beneficiary: &intakeapi.Beneficiary{Reference: "x"}}, assist.CodeForbidden, ""},
			{"under review", intakeapi.AmendRequest{Actor: ana, CaseID: underReview.ID, AmountCents: ptr(int64(1))}, assist.CodeConflict, ""},
			{"withdrawn", intakeapi.AmendRequest{Actor: ana, CaseID: withdrawn.ID, AmountCents: ptr(int64(1))}, assist.CodeConflict, ""},
			{"under review with beneficiary", intakeapi.AmendRequest{Actor: ana, CaseID: underReview.ID, Beneficiary: &intakeapi.Beneficiary{Reference: "x"}}, assist.CodeConflict, ""},
			{"nothing to change", intakeapi.AmendRequest{Actor: ana, CaseID: open.ID}, assist.CodeInvalid, "body"},
			{"amount over cap", intakeapi.AmendRequest{Actor: ana, CaseID: open.ID, AmountCents: ptr(int64(500_001))}, assist.CodeInvalid, "amount_usd_cents"},
			{"category whose cap the amount exceeds", intakeapi.AmendRequest{Actor: ana, CaseID: open.ID, Category: ptr("travel_documents")}, assist.CodeInvalid, "category"},
			{"bad category", intakeapi.AmendRequest{Actor: ana, CaseID: open.ID, Category: ptr("yachts")}, assist.CodeInvalid, "category"},
			{"bad urgency", intakeapi.AmendRequest{Actor: ana, CaseID: open.ID, Urgency: ptr("whenever")}, assist.CodeInvalid, "urgency"},
			{"blank justification", intakeapi.AmendRequest{Actor: ana, CaseID: open.ID, Justification: ptr(" ")}, assist.CodeInvalid, "justification"},
			{"beneficiary without reference", intakeapi.AmendRequest{Actor: ana, CaseID: open.ID, Beneficiary: &intakeapi.Beneficiary{Name: "x"}}, assist.CodeInvalid, "beneficiary.reference"},
			{"bad date of birth", intakeapi.AmendRequest{Actor: ana, CaseID: open.ID, Beneficiary: &intakeapi.Beneficiary{Reference: "x", DateOfBirth: "yesterday"}}, assist.CodeInvalid, "beneficiary.date_of_birth"},
			{"unknown case", intakeapi.AmendRequest{Actor: ana, CaseID: newID(), AmountCents: ptr(int64(1))}, assist.CodeNotFound, ""},
			{"malformed case id", intakeapi.AmendRequest{Actor: ana, CaseID: "../x", AmountCents: ptr(int64(1))}, assist.CodeNotFound, ""},
			{"bad command id", intakeapi.AmendRequest{CommandID: "1", Actor: ana, CaseID: open.ID, AmountCents: ptr(int64(1))}, assist.CodeInvalid, ""},
		}
		for _, tc := range refusals {
			t.Run("refused/"+tc.name, func(t *testing.T) {
				seq := h.lastSeq()
				if tc.r.CommandID == "" {
					tc.r.CommandID = newID()
				}
				_, err := h.svc.Amend(h.ctx, tc.r)
				requireCode(t, err, tc.code)
				if tc.field != "" {
					requireField(t, err, tc.field)
				}
				if got := h.lastSeq(); got != seq {
					t.Fatalf("a refused amend wrote to the log (%d -> %d)", seq, got)
				}
			})
		}
		// The refused amends left the case's key and data as they were.
		p, err := h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: open.ID})
		if err != nil || p != beneficiary() {
			t.Fatalf("Personal after refused amends = %+v, %v", p, err)
		}
	})
}

func TestWithdraw(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		t.Run("submitted", func(t *testing.T) {
			c := h.file(ana)
			got, err := h.svc.Withdraw(h.ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: amir, CaseID: c.ID, Reason: "found shelter"})
			if err != nil || got.State != assist.StateWithdrawn {
				t.Fatalf("Withdraw = %+v, %v", got, err)
			}
			recs := h.events(c.ID)
			if last := recs[len(recs)-1].Event; last.Type() != "RequestWithdrawn" || last.Reason != "found shelter" || last.Actor != amir {
				t.Fatalf("last event = %+v, want RequestWithdrawn by amir with the reason", last)
			}
			_, err = h.svc.Withdraw(h.ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Reason: "again"})
			requireCode(t, err, assist.CodeConflict)
		})
		t.Run("under review ends the claim", func(t *testing.T) {
			c := h.file(ana)
			h.claim(c.ID)
			got, err := h.svc.Withdraw(h.ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Reason: "no longer needed"})
			if err != nil || got.State != assist.StateWithdrawn || got.ClaimedBy != "" {
				t.Fatalf("Withdraw under review = %+v, %v", got, err)
			}
		})
		c := h.file(ana)
		for _, tc := range []struct {
			name  string
			r     intakeapi.WithdrawRequest
			code  assist.Code
			field string
		}{
			{"wrong post", intakeapi.WithdrawRequest{Actor: bo, CaseID: c.ID, Reason: "r"}, assist.CodeForbidden, ""},
			{"approver", intakeapi.WithdrawRequest{Actor: olu, CaseID: c.ID, Reason: "r"}, assist.CodeForbidden, ""},
			{"no reason", intakeapi.WithdrawRequest{Actor: ana, CaseID: c.ID, Reason: " "}, assist.CodeInvalid, "reason"},
			{"unknown case", intakeapi.WithdrawRequest{Actor: ana, CaseID: newID(), Reason: "r"}, assist.CodeNotFound, ""},
		} {
			t.Run("refused/"+tc.name, func(t *testing.T) {
				seq := h.lastSeq()
				tc.r.CommandID = newID()
				_, err := h.svc.Withdraw(h.ctx, tc.r)
				requireCode(t, err, tc.code)
				if tc.field != "" {
					requireField(t, err, tc.field)
				}
				if h.lastSeq() != seq {
					t.Fatal("a refused withdraw wrote to the log")
				}
			})
		}
	})
}

func TestAnswer(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		c := h.file(ana)
		h.requestInfo(c.ID, "which shelter?")
		for _, tc := range []struct {
			name  string
			r     intakeapi.AnswerRequest
			code  assist.Code
			field string
		}{
			{"wrong post", intakeapi.AnswerRequest{Actor: bo, CaseID: c.ID, Answer: "a"}, assist.CodeForbidden, ""},
			{"approver", intakeapi.AnswerRequest{Actor: olu, CaseID: c.ID, Answer: "a"}, assist.CodeForbidden, ""},
			{"no answer", intakeapi.AnswerRequest{Actor: ana, CaseID: c.ID, Answer: ""}, assist.CodeInvalid, "answer"},
			{"unknown case", intakeapi.AnswerRequest{Actor: ana, CaseID: newID(), Answer: "a"}, assist.CodeNotFound, ""},
		} {
			t.Run("refused/"+tc.name, func(t *testing.T) {
				seq := h.lastSeq()
				tc.r.CommandID = newID()
				_, err := h.svc.Answer(h.ctx, tc.r)
				requireCode(t, err, tc.code)
				if tc.field != "" {
					requireField(t, err, tc.field)
				}
				if h.lastSeq() != seq {
					t.Fatal("a refused answer wrote to the log")
				}
			})
		}
		got, err := h.svc.Answer(h.ctx, intakeapi.AnswerRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Answer: "Shanti shelter"})
		if err != nil || got.State != assist.StateSubmitted || got.Question != "" || got.ClaimedBy != "" {
			t.Fatalf("Answer = %+v, %v; want submitted without question", got, err)
		}
		recs := h.events(c.ID)
		if b, ok := recs[len(recs)-1].Event.Body.(assist.InfoProvided); !ok || b.Answer != "Shanti shelter" {
			t.Fatalf("last event = %+v, want InfoProvided with the answer", recs[len(recs)-1].Event)
		}
		// Nothing is asked any more.
		_, err = h.svc.Answer(h.ctx, intakeapi.AnswerRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, Answer: "again"})
		requireCode(t, err, assist.CodeConflict)
	})
}

// The projection, run as intake.Run runs it, lists the cases with their
// current status, each equal to its fold of the log.
func TestProjectionListsCasesWithStatus(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		h.consume()
		amended, withdrawn, plain, nepal := h.file(ana), h.file(ana), h.file(amir), h.file(bo)
		if _, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: amended.ID,
			AmountCents: ptr(int64(12_345)), Urgency: ptr("urgent")}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.Withdraw(h.ctx, intakeapi.WithdrawRequest{CommandID: newID(), Actor: ana, CaseID: withdrawn.ID, Reason: "r"}); err != nil {
			t.Fatal(err)
		}
		all := []*assist.Case{amended, withdrawn, plain, nepal}
		for _, c := range all {
			if got, want := h.waitProjected(c.ID), h.get(c.ID); !reflect.DeepEqual(got, want) {
				t.Fatalf("projected %s = %+v\nwant the fold of its log %+v", c.ID, got, want)
			}
		}
		list := func(f intakeapi.ListFilter) map[string]*caseview.Case {
			t.Helper()
			page, err := h.svc.List(h.ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]*caseview.Case{}
			for _, c := range page.Items {
				out[c.ID] = &c
			}
			return out
		}
		got := list(intakeapi.ListFilter{})
		if len(got) != 4 || got[withdrawn.ID].Status != string(assist.StateWithdrawn) || got[amended.ID].Status != string(assist.StateSubmitted) ||
			got[amended.ID].AmountCents != 12_345 || got[amended.ID].Urgency != string(assist.Urgent) {
			t.Fatalf("List = %+v", got)
		}
		if got := list(intakeapi.ListFilter{Status: "withdrawn"}); len(got) != 1 || got[withdrawn.ID] == nil {
			t.Fatalf("List(status withdrawn) = %v", got)
		}
		if got := list(intakeapi.ListFilter{Status: "submitted", Posts: []string{"BGD-DHAKA"}}); len(got) != 2 || got[amended.ID] == nil || got[plain.ID] == nil {
			t.Fatalf("List(submitted at BGD-DHAKA) = %v", got)
		}
		if got := list(intakeapi.ListFilter{Posts: []string{"NPL-KTM"}}); len(got) != 1 || got[nepal.ID] == nil {
			t.Fatalf("List(NPL-KTM scope) = %v", got)
		}
		if got := list(intakeapi.ListFilter{Urgency: "urgent"}); len(got) != 1 || got[amended.ID] == nil {
			t.Fatalf("List(urgent) = %v", got)
		}
	})
}

// Cases reads several cases at once in the order asked: from the read
// model, or from the log for a case it has yet to apply; unknown and
// malformed ids are left out; too many ids are refused.
func TestCasesReadsByIDFromReadModelOrLog(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		projectedCase := h.file(ana)
		h.consume()
		h.waitProjected(projectedCase.ID)
		// Filed after the projection is stopped: only the log has it.
		h.stopConsumer()
		fresh := h.file(amir)
		page, err := h.svc.Cases(h.ctx, intakeapi.CasesRequest{IDs: []string{fresh.ID, newID(), "not-an-id", projectedCase.ID}})
		if err != nil {
			t.Fatal(err)
		}
		want := []caseview.Case{caseview.From(h.get(fresh.ID)), caseview.From(h.get(projectedCase.ID))}
		if !reflect.DeepEqual(page.Items, want) {
			t.Fatalf("Cases = %+v\nwant %+v", page.Items, want)
		}
		_, err = h.svc.Cases(h.ctx, intakeapi.CasesRequest{IDs: make([]string, intakeapi.MaxCases+1)})
		requireField(t, err, "ids")
	})
}

// Service.List applies the default and the maximum page size.
func TestListLimitDefaultsAndMaximum(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		var cs []*assist.Case
		for i := range 510 {
			cs = append(cs, listCase(newID(), "BGD-DHAKA", assist.StateSubmitted, assist.Routine, at.Add(time.Duration(i)*time.Second)))
		}
		project(t, db, h.store, cs...)
		for _, tc := range []struct{ limit, want int }{{0, 50}, {-3, 50}, {7, 7}, {500, 500}, {10_000, 500}} {
			page, err := h.svc.List(h.ctx, intakeapi.ListFilter{Limit: tc.limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Items) != tc.want || page.NextCursor == "" {
				t.Fatalf("List(limit %d) = %d items, cursor %q; want %d and a cursor", tc.limit, len(page.Items), page.NextCursor, tc.want)
			}
		}
		_, err := h.svc.List(h.ctx, intakeapi.ListFilter{Cursor: "%%%"})
		requireField(t, err, "cursor")
	})
}

// Ten requesters amend one case at once: each amend either lands or is
// refused with a conflict, and the case is exactly the fold of its log.
func TestConcurrentAmendsEndAsFoldOfLog(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		h.consume()
		c := h.file(ana)
		const n = 10
		got := make([]*assist.Case, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				got[i], errs[i] = h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID,
					Justification: ptr(fmt.Sprintf("version %d", i)), AmountCents: ptr(int64(1000 + i))})
			})
		}
		close(start)
		wg.Wait()
		ok := 0
		versions := map[uint64]bool{}
		for i := range n {
			switch {
			case errs[i] == nil:
				ok++
				if got[i].Justification != fmt.Sprintf("version %d", i) || got[i].AmountCents != int64(1000+i) {
					t.Fatalf("amend %d answered %+v, not its own change", i, got[i])
				}
				if versions[got[i].Version] {
					t.Fatalf("two amends answered version %d", got[i].Version)
				}
				versions[got[i].Version] = true
			case assist.IsCode(errs[i], assist.CodeConflict):
			default:
				t.Fatalf("amend %d: %v, want success or conflict", i, errs[i])
			}
		}
		if ok == 0 {
			t.Fatal("no amend landed")
		}
		t.Logf("%d amends landed, %d lost the race", ok, n-ok)
		recs := h.events(c.ID)
		if amends := len(recs) - 1; amends != ok {
			t.Fatalf("%d amend events for %d successful amends", amends, ok)
		}
		fold := assist.Fold(recs)
		if final := h.get(c.ID); !reflect.DeepEqual(final, fold) {
			t.Fatalf("Get = %+v\nwant fold %+v", final, fold)
		}
		last := recs[len(recs)-1].Event.Body.(assist.RequestAmended)
		if fold.Justification != *last.Justification || fold.AmountCents != *last.AmountCents {
			t.Fatalf("final state %q/%d is not the last amend %q/%d", fold.Justification, fold.AmountCents, *last.Justification, *last.AmountCents)
		}
		if !versions[recs[len(recs)-1].Seq] {
			t.Fatalf("the last event %d is no amend's answer", recs[len(recs)-1].Seq)
		}
		if p := h.waitProjected(c.ID); !reflect.DeepEqual(p, fold) {
			t.Fatalf("projection = %+v\nwant fold %+v", p, fold)
		}
	})
}

// A read of the log that runs out of time must fail as unavailable (or
// with the context's error), never answer that an existing case does not
// exist.
func TestReadWithExpiredDeadlineIsNotNotFound(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	c := h.file(ana)
	ctx, cancel := context.WithDeadline(h.ctx, time.Now().Add(-time.Second))
	defer cancel()
	_, getErr := h.svc.Get(ctx, intakeapi.GetRequest{CaseID: c.ID})
	_, amendErr := h.svc.Amend(ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, AmountCents: ptr(int64(1))})
	if getErr == nil {
		t.Fatal("Get with an expired deadline succeeded")
	}
	if assist.IsCode(getErr, assist.CodeNotFound) || assist.IsCode(amendErr, assist.CodeNotFound) {
		t.Fatalf("pkg/eventlog/eventlog.go:253 (Log.scan): a direct-get batch that times out reads as the end of "+
			"the case: jetstreamext.GetBatch -> natsext.RequestMany ends its iterator silently on a timeout "+
			"(context.DeadlineExceeded, nats.ErrTimeout, or ErrBadSubscription after its ctx watcher unsubscribes; "+
			"without a ctx deadline the timeout is nats' 2 s default), so scan sees n < batch and returns a partial or "+
			"empty history with no error. Load/Case/Execute then answer not_found (or decide on a stale prefix): "+
			"Get = %v; Amend = %v. Observed under load in TestReplayRebuildsReadModelsExactly as a Claim of an existing "+
			"case answering not_found", getErr, amendErr)
	}
}

// A filing retried after the case's personal data was erased answers the
// case as filed, and the erasure holds: no new key, Personal not_found.
func TestFileRetryAfterErasureKeepsErasure(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		r := fileRequest(ana)
		first, err := h.svc.File(h.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		h.erase(first.ID)
		again, err := h.svc.File(h.ctx, r)
		if err != nil || !reflect.DeepEqual(again, first) {
			t.Fatalf("retried File after erasure = %+v, %v; want the case as filed", again, err)
		}
		if n := len(h.events(first.ID)); n != 2 {
			t.Fatalf("%d events after the retry, want the filing and the erasure", n)
		}
		_, perr := h.svc.Personal(h.ctx, intakeapi.PersonalRequest{Actor: olu, CaseID: first.ID})
		requireCode(t, perr, assist.CodeGone)
	})
}

// An Idempotency-Key files one case whatever the command id of the retry
// (the gateway may have crashed before remembering its first one), and the
// same key with another request is refused with nothing written.
func TestFileIdempotencyKeyAcrossCommandIDs(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		r := fileRequest(ana)
		r.IdempotencyKeyHash, r.RequestHash = []byte("user+key"), []byte("request-1")
		first, err := h.svc.File(h.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		retry := r
		retry.CommandID = newID()
		again, err := h.svc.File(h.ctx, retry)
		if err != nil || !reflect.DeepEqual(again, first) {
			t.Fatalf("retry with a new command id = %+v, %v; want the first case", again, err)
		}
		if _, err := h.svc.Get(h.ctx, intakeapi.GetRequest{CaseID: retry.CommandID}); !assist.IsCode(err, assist.CodeNotFound) {
			t.Fatalf("the retry's command id filed a case: %v", err)
		}
		seq := h.lastSeq()
		other := r
		other.CommandID, other.RequestHash, other.AmountCents = newID(), []byte("request-2"), 1_000
		_, err = h.svc.File(h.ctx, other)
		requireCode(t, err, assist.CodeIdempotencyMismatch)
		h.requireNothingWritten(other.CommandID, seq)
	})
}

// A crash after the key was recorded and before the event was appended
// leaves a record without a case: the retry files that case, once.
func TestFileIdempotencyKeyRecordedButNotAppended(t *testing.T) {
	h := newHarness(t, sqldbtest.SQLite(t))
	r := fileRequest(ana)
	r.IdempotencyKeyHash, r.RequestHash = []byte("user+key-2"), []byte("request")
	orphan := newID()
	if _, _, _, err := h.store.Filing(h.ctx, intake.Filing{KeyHash: r.IdempotencyKeyHash, CaseID: orphan,
		RequestHash: r.RequestHash, CreatedAt: time.Now()}, intake.DuplicateCheck{}); err != nil {
		t.Fatal(err)
	}
	c, err := h.svc.File(h.ctx, r)
	if err != nil || c.ID != orphan {
		t.Fatalf("retry after the crash = %+v, %v; want case %s", c, err, orphan)
	}
	if _, err := h.svc.File(h.ctx, r); err != nil || len(h.events(orphan)) != 1 {
		t.Fatalf("a second retry: %v, %d events", err, len(h.events(orphan)))
	}
}

// fakePayees is a fake of disbursement that knows some payees and counts
// how often it is asked.
type fakePayees struct {
	known map[string]bool
	asked int
}

func (f *fakePayees) Payee(_ context.Context, id string) (disbursementapi.Payee, error) {
	f.asked++
	if !f.known[id] {
		return disbursementapi.Payee{}, assist.Errorf(assist.CodeNotFound, "no payee %q", id)
	}
	return disbursementapi.Payee{ID: id}, nil
}

// A request names a payee that exists, or it is refused naming payee_id
// and nothing is written; a payee seen once is not asked for again.
func TestFileChecksThePayeeWithFakePayees(t *testing.T) {
	db := sqldbtest.SQLite(t)
	h := newHarness(t, db)
	payees := &fakePayees{known: map[string]bool{payee1: true}}
	h.svc = intake.New(intake.Deps{Config: intake.Config{Policy: assist.DefaultPolicy()}, Log: h.log, DB: db, Keys: h.keys,
		Payees: payees, Logger: zaptest.NewLogger(t)})
	for _, bad := range []string{"not-a-payee", payee2} {
		r := fileRequest(ana)
		r.PayeeID = bad
		seq := h.lastSeq()
		_, err := h.svc.File(h.ctx, r)
		requireField(t, err, "payee_id")
		h.requireNothingWritten(r.CommandID, seq)
	}
	for range 2 {
		if _, err := h.svc.File(h.ctx, fileRequest(ana)); err != nil {
			t.Fatal(err)
		}
	}
	if payees.asked != 2 { // payee2 once, payee1 once
		t.Fatalf("disbursement asked %d times, want 2", payees.asked)
	}
	c := h.file(ana)
	_, err := h.svc.Amend(h.ctx, intakeapi.AmendRequest{CommandID: newID(), Actor: ana, CaseID: c.ID, PayeeID: ptr(payee2)})
	requireField(t, err, "payee_id")
}

// Filing checks for possible duplicates, at every post, by the keyed hash
// of the beneficiary reference (never the reference itself) and category,
// and records what it found with the filing; it never blocks or merges.
func TestFileRecordsPossibleDuplicates(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		h.consume()
		first := h.file(ana)
		if len(first.PossibleDuplicateOf) != 0 {
			t.Fatalf("the first filing for a person has duplicates %v", first.PossibleDuplicateOf)
		}
		h.waitProjected(first.ID)
		again := fileRequest(bo) // another post, the same person and need
		again.Beneficiary.Reference = " " + strings.ToLower(again.Beneficiary.Reference) + " "
		second, err := h.svc.File(h.ctx, again)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{first.ID}; !slices.Equal(second.PossibleDuplicateOf, want) {
			t.Fatalf("second filing's possible duplicates = %v, want %v", second.PossibleDuplicateOf, want)
		}
		// Recorded in the event itself, as the approver will see it.
		evs := h.events(second.ID)
		if b := evs[0].Event.Body.(assist.RequestSubmitted); !slices.Equal(b.PossibleDuplicateOf, []string{first.ID}) {
			t.Fatalf("RequestSubmitted.PossibleDuplicateOf = %v", b.PossibleDuplicateOf)
		}
		otherNeed := fileRequest(ana)
		otherNeed.Category = string(assist.Medical)
		third, err := h.svc.File(h.ctx, otherNeed)
		if err != nil {
			t.Fatal(err)
		}
		if len(third.PossibleDuplicateOf) != 0 {
			t.Fatalf("another category is not a duplicate: %v", third.PossibleDuplicateOf)
		}
	})
}

// erasureReads is the database, counting the reads of the erasures
// (store.Erased).
type erasureReads struct {
	sqldb.DB
	n atomic.Int64
}

func (d *erasureReads) QueryRow(ctx context.Context, q string, args ...any) sqldb.Row {
	if strings.Contains(q, "FROM intake_erasures") {
		d.n.Add(1)
	}
	return d.DB.QueryRow(ctx, q, args...)
}

// A filing key's first attempt files a case of a new id, which no erasure
// can name: it does not read the erasures. A retry of a filing whose case
// was erased since does, and answers as the first time, appending
// nothing.
func TestFileReadsErasuresOnlyOnARetry(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		reads := &erasureReads{DB: db}
		deps := h.deps(nil)
		deps.DB = reads
		svc := intake.New(deps)
		r := fileRequest(ana)
		r.IdempotencyKeyHash, r.RequestHash = []byte("user+key-erased"), []byte("request")
		c, err := svc.File(h.ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if n := reads.n.Load(); n != 0 {
			t.Fatalf("the key's first attempt read the erasures %d times", n)
		}
		h.erase(c.ID)
		seq := h.lastSeq()
		retry := r
		retry.CommandID = newID() // the gateway gives each attempt its own command id
		got, err := svc.File(h.ctx, retry)
		if err != nil || got.ID != c.ID {
			t.Fatalf("retry after the erasure = %+v, %v; want case %s", got, err, c.ID)
		}
		if n := reads.n.Load(); n == 0 {
			t.Fatal("the retry did not read the erasures")
		}
		if last := h.lastSeq(); last != seq {
			t.Fatalf("the retry appended to the log: last sequence %d, was %d", last, seq)
		}
	})
}
