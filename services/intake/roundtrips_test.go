package intake_test

import (
	"testing"

	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// A filing costs intake these round trips to PostgreSQL (the gateway's
// are held by its TestFilingRoundTrips): the key's first attempt records
// the key and reads the duplicate check of its new case in one statement;
// a filing that may be a retry (the key seen before, or no key) reads
// the case's erasure and its duplicates in one; the first filing of a
// service also stores the key pool's first batch of data keys, in one
// round trip with its BEGIN and COMMIT. (Before: 4, 2, 4 and 2.)
func TestFilingRoundTrips(t *testing.T) {
	db, trips := sqldbtest.TracedPostgres(t)
	h := newHarness(t, db)
	var got []string
	file := func(what string, r intakeapi.FileRequest) {
		t.Helper()
		got = append(got, trips.Step(what, func() {
			if _, err := h.svc.File(h.ctx, r); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}))
	}
	withKey := func(key string) intakeapi.FileRequest {
		r := fileRequest(ana)
		r.IdempotencyKeyHash, r.RequestHash = []byte(key), []byte("request of "+key)
		return r
	}
	file("first of the service", withKey("k1"))
	r := withKey("k2")
	file("key's first attempt", r)
	r.CommandID = newID() // the gateway gives each attempt its own command id
	file("key's retry", r)
	file("no key", fileRequest(ana))
	want := []string{
		// The key with its duplicate check; the pool's batch of keys.
		"first of the service 2",
		"key's first attempt 1",
		// The key, found; its first record; the case's erasure with its
		// duplicates.
		"key's retry 3",
		// The case's erasure with its duplicates.
		"no key 1",
	}
	sqldbtest.SameSteps(t, got, want)
}
