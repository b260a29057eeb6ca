package gateway

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// amendRecorder records the command ids intake.Amend is called with and
// answers with next (the amended case when next is nil).
type amendRecorder struct {
	mu   sync.Mutex
	ids  []string
	reqs []intakeapi.AmendRequest
	next func(intakeapi.AmendRequest) (caseview.Case, error)
}

func (f *amendRecorder) amend(_ context.Context, r intakeapi.AmendRequest) (caseview.Case, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, r.CommandID)
	f.reqs = append(f.reqs, r)
	if f.next != nil {
		return f.next(r)
	}
	post := "BGD-DHAKA"
	if r.CaseID == mumbaiCase {
		post = "IND-MUMBAI"
	}
	c := sampleCase(r.CaseID, post)
	c.Version++
	return c, nil
}

func (f *amendRecorder) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ids...)
}

func withKey(key string) map[string]string { return map[string]string{IdempotencyHeader: key} }

// The gateway keeps the Idempotency-Key of every command whose service does
// not (all but filing, see TestFilingIdempotencyIsIntakes); amending stands
// for them here.
func TestIdempotency(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		body := validBodies["/v1/requests/{id}/amend"]
		amendPath := "/v1/requests/" + dhakaCase + "/amend"
		file := func(user, key, body string) *httptest.ResponseRecorder {
			path := amendPath
			if user == "raj" {
				path = "/v1/requests/" + mumbaiCase + "/amend"
			}
			return h.do(req{user: user, method: http.MethodPost, path: path, body: body, header: withKey(key)})
		}

		t.Run("same key and body: the first response, replayed", func(t *testing.T) {
			rec := &amendRecorder{}
			h.intake.amend = rec.amend
			first := file("ana", "key-1", body)
			second := file("ana", "key-1", body)
			if first.Code != http.StatusOK || second.Code != first.Code || second.Body.String() != first.Body.String() {
				t.Fatalf("first %d %s, second %d %s", first.Code, first.Body, second.Code, second.Body)
			}
			if second.Header().Get("Idempotent-Replayed") != "true" || first.Header().Get("Idempotent-Replayed") != "" {
				t.Fatal("Idempotent-Replayed header")
			}
			if ct := second.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("replayed Content-Type %q", ct)
			}
			ids := rec.calls()
			if len(ids) != 1 {
				t.Fatalf("Amend called %d times", len(ids))
			}
			if v, err := uuid.Parse(ids[0]); err != nil || v.Version() != 7 {
				t.Fatalf("command id %q is not a UUIDv7", ids[0])
			}
		})

		t.Run("same key, another body or path: 422", func(t *testing.T) {
			rec := &amendRecorder{}
			h.intake.amend = rec.amend
			decodeJSONBody[caseJSON](t, file("ana", "key-2", body), http.StatusOK)
			other := `{"amount_usd_cents":100}`
			p := decodeProblem(t, file("ana", "key-2", other), http.StatusUnprocessableEntity)
			if p.Code != assist.CodeIdempotencyMismatch {
				t.Fatalf("problem %+v", p)
			}
			// The same key on another route is another request, too.
			w := h.do(req{user: "ana", method: http.MethodPost, path: "/v1/requests/" + dhakaCase + "/withdraw",
				body: `{"reason":"r"}`, header: withKey("key-2")})
			decodeProblem(t, w, http.StatusUnprocessableEntity)
			if n := len(rec.calls()); n != 1 {
				t.Fatalf("Amend called %d times", n)
			}
		})

		t.Run("keys are per user", func(t *testing.T) {
			rec := &amendRecorder{}
			h.intake.amend = rec.amend
			decodeJSONBody[caseJSON](t, file("ana", "shared", body), http.StatusOK)
			decodeJSONBody[caseJSON](t, file("raj", "shared", body), http.StatusOK)
			if ids := rec.calls(); len(ids) != 2 || ids[0] == ids[1] {
				t.Fatalf("command ids %v", ids)
			}
		})

		t.Run("pending: run again with the same command id", func(t *testing.T) {
			// A crash after the key was stored and before the answer was:
			// the row is pending with its command id.
			const cmd = "0194e1c2-7a3b-7c4d-8e5f-00000000abcd"
			if _, _, err := beginKey(context.Background(), h.store, IdemRecord{Username: "ana", Key: "crashed",
				RequestHash: requestHash(http.MethodPost, amendPath, []byte(body)), CommandID: cmd, CreatedAt: t0}); err != nil {
				t.Fatal(err)
			}
			rec := &amendRecorder{}
			h.intake.amend = rec.amend
			w := file("ana", "crashed", body)
			c := decodeJSONBody[caseJSON](t, w, http.StatusOK)
			if ids := rec.calls(); len(ids) != 1 || ids[0] != cmd || c.ID != dhakaCase {
				t.Fatalf("re-run with %v (case %s), want %s", ids, c.ID, cmd)
			}
			if w.Header().Get("Idempotent-Replayed") != "" {
				t.Fatal("a re-run is not a replay")
			}
			// Now done: replayed.
			again := file("ana", "crashed", body)
			if again.Body.String() != w.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" || len(rec.calls()) != 1 {
				t.Fatalf("after re-run: %d %s", again.Code, again.Body)
			}
		})

		t.Run("5xx is not stored; the retry runs with the same command id", func(t *testing.T) {
			rec := &amendRecorder{}
			fail := true
			rec.next = func(r intakeapi.AmendRequest) (caseview.Case, error) {
				if fail {
					return caseview.Case{}, assist.Errorf(assist.CodeUnavailable, "intake is not answering")
				}
				return sampleCase(r.CaseID, "BGD-DHAKA"), nil
			}
			h.intake.amend = rec.amend
			decodeProblem(t, file("ana", "flaky", body), http.StatusServiceUnavailable)
			fail = false
			decodeJSONBody[caseJSON](t, file("ana", "flaky", body), http.StatusOK)
			third := file("ana", "flaky", body)
			if third.Code != http.StatusOK || third.Header().Get("Idempotent-Replayed") != "true" {
				t.Fatalf("third: %d", third.Code)
			}
			if ids := rec.calls(); len(ids) != 2 || ids[0] != ids[1] {
				t.Fatalf("command ids %v, want the same twice", ids)
			}
		})

		t.Run("an internal error is not stored either", func(t *testing.T) {
			rec := &amendRecorder{next: func(intakeapi.AmendRequest) (caseview.Case, error) { return caseview.Case{}, errBoom }}
			h.intake.amend = rec.amend
			decodeProblem(t, file("ana", "boom", body), http.StatusInternalServerError)
			rec.next = nil
			decodeJSONBody[caseJSON](t, file("ana", "boom", body), http.StatusOK)
			if ids := rec.calls(); len(ids) != 2 || ids[0] != ids[1] {
				t.Fatalf("command ids %v", ids)
			}
		})

		t.Run("4xx is stored and replayed", func(t *testing.T) {
			rec := &amendRecorder{next: func(intakeapi.AmendRequest) (caseview.Case, error) {
				return caseview.Case{}, &assist.Error{Code: assist.CodeInvalid, Message: "invalid amount_usd_cents",
					Fields: []assist.FieldError{{Field: "amount_usd_cents", Message: "exceeds the cap"}}}
			}}
			h.intake.amend = rec.amend
			first := file("ana", "bad", body)
			decodeProblem(t, first, http.StatusBadRequest)
			second := file("ana", "bad", body)
			decodeProblem(t, second, http.StatusBadRequest)
			if second.Body.String() != first.Body.String() || second.Header().Get("Idempotent-Replayed") != "true" {
				t.Fatalf("4xx not replayed: %s vs %s", second.Body, first.Body)
			}
			if n := len(rec.calls()); n != 1 {
				t.Fatalf("Amend called %d times", n)
			}
		})

		t.Run("without a key every POST is a new command", func(t *testing.T) {
			rec := &amendRecorder{}
			h.intake.amend = rec.amend
			for range 2 {
				decodeJSONBody[caseJSON](t, h.post("ana", amendPath, body), http.StatusOK)
			}
			ids := rec.calls()
			if len(ids) != 2 || ids[0] == ids[1] {
				t.Fatalf("command ids %v", ids)
			}
			for _, id := range ids {
				if v, err := uuid.Parse(id); err != nil || v.Version() != 7 || v.String() != id {
					t.Fatalf("command id %q", id)
				}
			}
		})

		t.Run("commands without a body", func(t *testing.T) {
			var ids []string
			h.approval.claim = func(_ context.Context, r approvalapi.CaseCommand) (caseview.Case, error) {
				ids = append(ids, r.CommandID)
				return sampleCase(r.CaseID, "BGD-DHAKA"), nil
			}
			path := "/v1/requests/" + dhakaCase + "/claim"
			first := h.do(req{user: "olu", method: http.MethodPost, path: path, header: withKey("claim-1")})
			second := h.do(req{user: "olu", method: http.MethodPost, path: path, header: withKey("claim-1")})
			if first.Code != http.StatusOK || second.Body.String() != first.Body.String() || len(ids) != 1 {
				t.Fatalf("claim: %d %s / %s, %d calls", first.Code, first.Body, second.Body, len(ids))
			}
			// {} is another body than none.
			decodeProblem(t, h.do(req{user: "olu", method: http.MethodPost, path: path, body: "{}", header: withKey("claim-1")}),
				http.StatusUnprocessableEntity)
		})

		t.Run("concurrent retries run one command id", func(t *testing.T) {
			rec := &amendRecorder{}
			h.intake.amend = rec.amend
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if w := file("ana", "burst", body); w.Code != http.StatusOK {
						t.Errorf("burst: %d %s", w.Code, w.Body)
					}
				}()
			}
			wg.Wait()
			ids := rec.calls()
			for _, id := range ids {
				if id != ids[0] {
					t.Fatalf("command ids %v", ids)
				}
			}
		})
	})
}

// Filing's Idempotency-Key is kept by intake, with the case it files, so
// the gateway writes nothing before filing: it hands intake the key's hash
// (per user) and the request's hash. It still reads its own store first
// and records the answer after answering, so that a key is one key across
// every route; without its record (a crash before it was written), intake
// answers as the first time.
func TestFilingIdempotencyIsIntakes(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		body := validBodies["/v1/requests"]
		var mu sync.Mutex
		var reqs []intakeapi.FileRequest
		h.intake.file = func(_ context.Context, r intakeapi.FileRequest) (caseview.Case, error) {
			mu.Lock()
			defer mu.Unlock()
			reqs = append(reqs, r)
			return sampleCase(dhakaCase, r.Post), nil
		}
		post := func(user, key, body string) *httptest.ResponseRecorder {
			return h.do(req{user: user, method: http.MethodPost, path: "/v1/requests", body: body, header: withKey(key)})
		}
		first := post("ana", "k", body)
		second := post("ana", "k", body)
		if first.Code != http.StatusCreated || second.Body.String() != first.Body.String() ||
			second.Header().Get("Idempotent-Replayed") != "true" {
			t.Fatalf("first %d %s, second %d %s", first.Code, first.Body, second.Code, second.Body)
		}
		if len(reqs) != 1 || len(reqs[0].IdempotencyKeyHash) != 32 || len(reqs[0].RequestHash) != 32 {
			t.Fatalf("intake calls %+v, want one with both hashes", reqs)
		}
		// The same key with another body, or on another route, is 422.
		other := `{"post":"BGD-DHAKA","category":"medical","urgency":"urgent","amount_usd_cents":100,"justification":"j","beneficiary":{"reference":"R"}}`
		if p := decodeProblem(t, post("ana", "k", other), http.StatusUnprocessableEntity); p.Code != assist.CodeIdempotencyMismatch {
			t.Fatalf("problem %+v", p)
		}
		decodeProblem(t, h.do(req{user: "ana", method: http.MethodPost, path: "/v1/requests/" + dhakaCase + "/withdraw",
			body: `{"reason":"r"}`, header: withKey("k")}), http.StatusUnprocessableEntity)
		// A key first used on another route is 422 on filing too.
		h.intake.withdraw = func(_ context.Context, r intakeapi.WithdrawRequest) (caseview.Case, error) {
			return sampleCase(dhakaCase, "BGD-DHAKA"), nil
		}
		h.do(req{user: "ana", method: http.MethodPost, path: "/v1/requests/" + dhakaCase + "/withdraw", body: `{"reason":"r"}`,
			header: withKey("w")})
		decodeProblem(t, post("ana", "w", body), http.StatusUnprocessableEntity)
		// Without the gateway's record, intake gets the same hashes again.
		if _, err := db.Exec(context.Background(), `DELETE FROM gateway_idempotency WHERE key = 'k'`); err != nil {
			t.Fatal(err)
		}
		post("ana", "k", body)
		if len(reqs) != 2 || !bytes.Equal(reqs[1].IdempotencyKeyHash, reqs[0].IdempotencyKeyHash) ||
			!bytes.Equal(reqs[1].RequestHash, reqs[0].RequestHash) {
			t.Fatalf("intake calls %d, hashes %x %x", len(reqs), reqs[len(reqs)-1].IdempotencyKeyHash, reqs[0].IdempotencyKeyHash)
		}
		// The same key of another user is another key.
		rajBody := `{"post":"IND-MUMBAI","category":"shelter","urgency":"critical","amount_usd_cents":25000,"justification":"j","beneficiary":{"reference":"R"}}`
		post("raj", "k", rajBody)
		if len(reqs) != 3 || bytes.Equal(reqs[2].IdempotencyKeyHash, reqs[0].IdempotencyKeyHash) {
			t.Fatal("two users' keys hash alike")
		}
		// Without a key, no hashes.
		h.post("ana", "/v1/requests", body)
		if reqs[3].IdempotencyKeyHash != nil || reqs[3].RequestHash != nil {
			t.Fatal("hashes without a key")
		}
	})
}
