package gateway

import (
	"net/http"
	"testing"

	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// A filing costs the gateway these round trips to PostgreSQL (intake's
// are held by intake's TestFilingRoundTrips), with a signed access token,
// which needs none: with an Idempotency-Key, the key is looked up before
// intake is called (a key used with another request is 422, a stored
// answer is replayed, and nothing may be filed before that is known) and
// the answer stored under it after (one transaction of deferred upserts,
// shared by the answers of concurrent requests); a replay only looks it
// up; without a key, none.
func TestFilingRoundTrips(t *testing.T) {
	db, trips := sqldbtest.TracedPostgres(t)
	h := newHarness(t, db)
	var got []string
	file := func(what string, header map[string]string, want int) {
		t.Helper()
		got = append(got, trips.Step(what, func() {
			w := h.do(req{user: "ana", method: http.MethodPost, path: "/v1/requests", body: validBodies["/v1/requests"], header: header})
			if w.Code != want {
				t.Fatalf("%s: %d %s, want %d", what, w.Code, w.Body, want)
			}
		}))
	}
	file("with a key", withKey("k1"), http.StatusCreated)
	file("another key", withKey("k2"), http.StatusCreated)
	file("replayed", withKey("k2"), http.StatusCreated)
	file("no key", nil, http.StatusCreated)
	sqldbtest.SameSteps(t, got, []string{"with a key 2", "another key 2", "replayed 1", "no key 0"})
}

// A command that keeps no key itself (amending stands for them all) costs
// the gateway these round trips, alone on an idle gateway: with a key, its
// pending record (one statement, no transaction) and its answer after;
// replayed, the record's insert that finds the key and its read; without
// a key, none. Under load, the records of concurrent requests share a
// transaction (TestNewKeysAreStoredWithTheAnswers).
func TestKeyedCommandRoundTrips(t *testing.T) {
	db, trips := sqldbtest.TracedPostgres(t)
	h := newHarness(t, db)
	h.intake.amend = (&amendRecorder{}).amend
	var got []string
	amend := func(what string, header map[string]string) {
		t.Helper()
		got = append(got, trips.Step(what, func() {
			w := h.do(req{user: "ana", method: http.MethodPost, path: "/v1/requests/" + dhakaCase + "/amend",
				body: validBodies["/v1/requests/{id}/amend"], header: header})
			if w.Code != http.StatusOK {
				t.Fatalf("%s: %d %s", what, w.Code, w.Body)
			}
		}))
	}
	amend("with a key", withKey("k1"))
	amend("replayed", withKey("k1"))
	amend("no key", nil)
	sqldbtest.SameSteps(t, got, []string{"with a key 2", "replayed 2", "no key 0"})
}
