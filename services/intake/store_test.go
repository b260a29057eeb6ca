package intake_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/caseview"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/listing"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/intake"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// The conformance suite of intake.Store. Every case runs on a fresh
// database of every driver (sqldbtest.Each); a new Store implementation
// joins by adding itself to storeImpls.

// storeImpls opens each Store implementation on a migrated database.
var storeImpls = map[string]func(t *testing.T, db sqldb.DB) intake.Store{
	"SQLStore": func(t *testing.T, db sqldb.DB) intake.Store {
		t.Helper()
		migrate(t, db)
		return intake.NewSQLStore(db)
	},
}

func migrate(tb testing.TB, db sqldb.DB) {
	tb.Helper()
	for _, m := range []sqldb.Migrations{eventlog.Migrations, intake.Migrations} {
		if err := db.Migrate(context.Background(), m); err != nil {
			tb.Fatal(err)
		}
	}
}

var storeSuite = []struct {
	name string
	f    func(t *testing.T, db sqldb.DB, s intake.Store)
}{
	{"AddKeysThenWrappedKey", testAddKeysThenWrappedKey},
	{"WrappedKeyNilWhenNone", testWrappedKeyNilWhenNone},
	{"EraseIsPermanentAndScoped", testEraseIsPermanentAndScoped},
	{"FilingFirstRecordWins", testFilingFirstRecordWins},
	{"FilingConcurrentCallsAgree", testFilingConcurrentCallsAgree},
	{"ProjectRoundTripsFullCase", testProjectRoundTripsFullCase},
	{"ProjectUpdatesInPlace", testProjectUpdatesInPlace},
	{"ProjectedNilWhenNone", testProjectedNilWhenNone},
	{"ProjectRollsBackWithTx", testProjectRollsBackWithTx},
	{"ListNewestFirst", testListNewestFirst},
	{"ListFilters", testListFilters},
	{"ListLimit", testListLimit},
	{"ListPagesWithoutGapsOrRepeats", testListPagesWithoutGapsOrRepeats},
	{"ListPagesWithFilter", testListPagesWithFilter},
	{"ListBadCursor", testListBadCursor},
	{"CheckFiling", testCheckFiling},
	{"FilingChecksDuplicatesOfItsCase", testFilingChecksDuplicatesOfItsCase},
}

func TestStoreConformance(t *testing.T) {
	for impl, open := range storeImpls {
		t.Run(impl, func(t *testing.T) {
			for _, tc := range storeSuite {
				t.Run(tc.name, func(t *testing.T) {
					sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
						tc.f(t, db, open(t, db))
					})
				})
			}
		})
	}
}

func testAddKeysThenWrappedKey(t *testing.T, _ sqldb.DB, s intake.Store) {
	ctx := context.Background()
	keys := []intake.WrappedKey{{ID: newID(), Wrapped: []byte("w-1")}, {ID: newID(), Wrapped: []byte("w-2")}}
	if err := s.AddKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		got, err := s.WrappedKey(ctx, k.ID)
		if err != nil || !bytes.Equal(got, k.Wrapped) {
			t.Fatalf("WrappedKey(%s) = %q, %v; want %q", k.ID, got, err, k.Wrapped)
		}
	}
	// A key id is stored once: adding it again fails, and the batch with
	// it stores nothing.
	again := []intake.WrappedKey{{ID: newID(), Wrapped: []byte("w-3")}, {ID: keys[0].ID, Wrapped: []byte("other")}}
	if err := s.AddKeys(ctx, again); err == nil {
		t.Fatal("a key id was stored twice")
	}
	if got, err := s.WrappedKey(ctx, again[0].ID); err != nil || got != nil {
		t.Fatalf("a failed batch left a key: %q, %v", got, err)
	}
	if got, _ := s.WrappedKey(ctx, keys[0].ID); string(got) != "w-1" {
		t.Fatalf("a stored key changed: %q", got)
	}
}

func testWrappedKeyNilWhenNone(t *testing.T, _ sqldb.DB, s intake.Store) {
	got, err := s.WrappedKey(context.Background(), newID())
	if err != nil || got != nil {
		t.Fatalf("WrappedKey of an unknown key = %q, %v; want nil, nil", got, err)
	}
}

func testEraseIsPermanentAndScoped(t *testing.T, _ sqldb.DB, s intake.Store) {
	ctx := context.Background()
	id, keep := newID(), newID()
	k1, k2 := newID(), newID()
	if err := s.AddKeys(ctx, []intake.WrappedKey{{ID: k1, Wrapped: []byte("a")}, {ID: k2, Wrapped: []byte("b")}}); err != nil {
		t.Fatal(err)
	}
	if erased, err := s.Erased(ctx, id); err != nil || erased {
		t.Fatalf("Erased before erasure = %v, %v", erased, err)
	}
	if err := s.Erase(ctx, id, k1); err != nil {
		t.Fatal(err)
	}
	if got, err := s.WrappedKey(ctx, k1); err != nil || got != nil {
		t.Fatalf("key after Erase = %q, %v; want nil", got, err)
	}
	if erased, err := s.Erased(ctx, id); err != nil || !erased {
		t.Fatalf("Erased after erasure = %v, %v", erased, err)
	}
	if got, err := s.WrappedKey(ctx, k2); err != nil || string(got) != "b" {
		t.Fatalf("another key after Erase = %q, %v", got, err)
	}
	if erased, _ := s.Erased(ctx, keep); erased {
		t.Fatal("another case reads as erased")
	}
	// Erasing twice is not an error.
	if err := s.Erase(ctx, id, k1); err != nil {
		t.Fatalf("second Erase: %v", err)
	}
}

func testFilingFirstRecordWins(t *testing.T, _ sqldb.DB, s intake.Store) {
	ctx := context.Background()
	key := []byte("key-hash-" + newID())
	first := intake.Filing{KeyHash: key, CaseID: newID(), RequestHash: []byte("req-1"), CreatedAt: time.Now().UTC().Truncate(time.Microsecond)}
	got, made, _, err := s.Filing(ctx, first, intake.DuplicateCheck{})
	if err != nil || !made || !reflect.DeepEqual(got, first) {
		t.Fatalf("first Filing = %+v, made %v, %v", got, made, err)
	}
	second := intake.Filing{KeyHash: key, CaseID: newID(), RequestHash: []byte("req-2"), CreatedAt: time.Now().UTC()}
	if got, made, _, err := s.Filing(ctx, second, intake.DuplicateCheck{}); err != nil || made || !reflect.DeepEqual(got, first) {
		t.Fatalf("second Filing = %+v, made %v, %v; want the first record", got, made, err)
	}
}

// Retries of one filing racing each other all get one case.
func testFilingConcurrentCallsAgree(t *testing.T, _ sqldb.DB, s intake.Store) {
	ctx := context.Background()
	key := []byte("key-hash-" + newID())
	const n = 8
	got := make([]intake.Filing, n)
	made := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got[i], made[i], _, errs[i] = s.Filing(ctx, intake.Filing{KeyHash: key, CaseID: newID(), RequestHash: []byte("r-" + strconv.Itoa(i)),
				CreatedAt: time.Now()}, intake.DuplicateCheck{})
		})
	}
	wg.Wait()
	if n := len(slices.DeleteFunc(slices.Clone(made), func(m bool) bool { return !m })); n != 1 {
		t.Fatalf("%d concurrent Filing calls recorded the key; want 1", n)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Filing %d: %v", i, errs[i])
		}
		if got[i].CaseID != got[0].CaseID || !bytes.Equal(got[i].RequestHash, got[0].RequestHash) {
			t.Fatalf("concurrent Filing calls disagree: %+v vs %+v", got[i], got[0])
		}
	}
}

// at is a time with nanoseconds, in UTC as every case time is.
var at = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

// fullCase sets every field of a case.
func fullCase(id string) *assist.Case {
	return &assist.Case{
		ID: id, Requester: "ana", Post: "BGD-DHAKA", Category: assist.Medical, Urgency: assist.Urgent,
		AmountCents: 123_456, Justification: "clinic visit — ünïcode",
		Beneficiary:        assist.Sealed{KeyID: id, Ciphertext: []byte{0, 1, 2, 0xfe, 0xff}},
		BeneficiaryRefHash: []byte{9, 8, 7, 0},
		PayeeID:            "payee-1", Deadline: at.Add(24 * time.Hour), Escalated: true, State: assist.StateDisbursementFailed,
		ClaimedBy: "olu", ClaimExpiresAt: at.Add(30 * time.Minute), Question: "which clinic?",
		ApprovedCents: 100_000, ApprovedBy: "olu", FundID: "fund-1", HoldID: "hold-2", PayoutID: "payout-1",
		ReleasedHolds: []string{"hold-0", "hold-1"}, PayoutAttempt: 3,
		PossibleDuplicateOf: []string{"case-0", "case-1"},
		CreatedAt:           at, UpdatedAt: at.Add(time.Minute + 17*time.Nanosecond), Version: 42, Events: 7,
	}
}

func project(t *testing.T, db sqldb.DB, s intake.Store, cs ...*assist.Case) {
	t.Helper()
	err := db.Tx(context.Background(), func(q sqldb.Querier) error {
		for _, c := range cs {
			if err := s.Project(context.Background(), q, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func projected(t *testing.T, db sqldb.DB, s intake.Store, id string) *assist.Case {
	t.Helper()
	var c *assist.Case
	err := db.Tx(context.Background(), func(q sqldb.Querier) error {
		var err error
		c, err = s.Projected(context.Background(), q, id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testProjectRoundTripsFullCase(t *testing.T, db sqldb.DB, s intake.Store) {
	want := fullCase(newID())
	project(t, db, s, want)
	got := projected(t, db, s, want.ID)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Projected differs from what was projected:\n got %+v\nwant %+v", got, want)
	}
	// The list returns the same case.
	page, err := s.List(context.Background(), intakeapi.ListFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || !reflect.DeepEqual(page.Items[0], caseview.From(want)) {
		t.Fatalf("List = %+v, want the projected case", page.Items)
	}
}

func testProjectUpdatesInPlace(t *testing.T, db sqldb.DB, s intake.Store) {
	c := fullCase(newID())
	c.State = assist.StateSubmitted
	project(t, db, s, c)
	next := *c
	next.State, next.Urgency, next.Version, next.Events = assist.StateWithdrawn, assist.Critical, 50, 8
	next.UpdatedAt = c.UpdatedAt.Add(time.Hour)
	project(t, db, s, &next)
	if got := projected(t, db, s, c.ID); !reflect.DeepEqual(got, &next) {
		t.Fatalf("Projected after update = %+v, want %+v", got, &next)
	}
	// The columns the list filters on follow the update.
	ctx := context.Background()
	for _, f := range []intakeapi.ListFilter{{Status: "withdrawn"}, {Urgency: "critical"}} {
		f.Limit = 10
		page, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != 1 {
			t.Fatalf("List(%+v) after update = %d items, want 1", f, len(page.Items))
		}
	}
	for _, f := range []intakeapi.ListFilter{{Status: "submitted"}, {Urgency: "urgent"}} {
		f.Limit = 10
		page, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != 0 {
			t.Fatalf("List(%+v) after update = %d items, want none", f, len(page.Items))
		}
	}
}

// On PostgreSQL, projecting an event into a case's row writes no index
// entry (a HOT update): no index holds a column that every event changes.
func TestProjectingAnEventIsAHOTUpdate(t *testing.T) {
	db := sqldbtest.Postgres(t)
	s := storeImpls["SQLStore"](t, db)
	ctx := context.Background()
	c := fullCase(newID())
	c.State = assist.StateSubmitted
	project(t, db, s, c)
	next := *c
	next.State, next.Version, next.Events = assist.StateUnderReview, c.Version+1, c.Events+1
	next.UpdatedAt = c.UpdatedAt.Add(time.Minute)
	var hot int64
	err := db.Tx(ctx, func(q sqldb.Querier) error {
		if err := s.Project(ctx, q, &next); err != nil {
			return err
		}
		return q.QueryRow(ctx, `SELECT pg_stat_get_xact_tuples_hot_updated('intake_cases'::regclass)`).Scan(&hot)
	})
	if err != nil {
		t.Fatal(err)
	}
	if hot != 1 {
		t.Fatalf("%d HOT updates of the case's row, want 1", hot)
	}
}

func testProjectedNilWhenNone(t *testing.T, db sqldb.DB, s intake.Store) {
	if c := projected(t, db, s, newID()); c != nil {
		t.Fatalf("Projected of an unknown case = %+v, want nil", c)
	}
}

// Project writes through the consumer's transaction: a rolled back
// transaction leaves nothing.
func testProjectRollsBackWithTx(t *testing.T, db sqldb.DB, s intake.Store) {
	c := fullCase(newID())
	err := db.Tx(context.Background(), func(q sqldb.Querier) error {
		if err := s.Project(context.Background(), q, c); err != nil {
			return err
		}
		return fmt.Errorf("roll back")
	})
	if err == nil {
		t.Fatal("Tx returned nil")
	}
	if got := projected(t, db, s, c.ID); got != nil {
		t.Fatalf("Projected after a rolled back Project = %+v, want nil", got)
	}
}

// listCase is a minimal projected case.
func listCase(id, post string, state assist.State, u assist.Urgency, created time.Time) *assist.Case {
	return &assist.Case{ID: id, Requester: "req-" + post, Post: post, Category: assist.Shelter, Urgency: u,
		AmountCents: 1000, State: state, CreatedAt: created, UpdatedAt: created, Deadline: created.Add(time.Hour), Version: 1, Events: 1}
}

func ids(cs []*assist.Case) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

func viewIDs(cs []caseview.Case) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// newestFirst orders cases as List must: created_at (to the microsecond,
// as stored) descending, then id descending.
func newestFirst(cs []*assist.Case) []string {
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(a, b *assist.Case) int {
		if c := -sqldbCmp(a.CreatedAt, b.CreatedAt); c != 0 {
			return c
		}
		return -cmpString(a.ID, b.ID)
	})
	return ids(cs)
}

func sqldbCmp(a, b time.Time) int {
	x, y := sqldb.Micros(a), sqldb.Micros(b)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testListNewestFirst(t *testing.T, db sqldb.DB, s intake.Store) {
	var cs []*assist.Case
	// Projected out of order, with equal creation times broken by id.
	for _, d := range []time.Duration{3, 1, 4, 1, 5, 9, 2, 6} {
		cs = append(cs, listCase(newID(), "BGD-DHAKA", assist.StateSubmitted, assist.Routine, at.Add(d*time.Second)))
	}
	project(t, db, s, cs...)
	page, err := s.List(context.Background(), intakeapi.ListFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := viewIDs(page.Items), newestFirst(cs); !slices.Equal(got, want) {
		t.Fatalf("List order = %v, want newest first %v", got, want)
	}
	if page.NextCursor != "" {
		t.Fatalf("a complete page has a next cursor %q", page.NextCursor)
	}
}

func testListFilters(t *testing.T, db sqldb.DB, s intake.Store) {
	type spec struct {
		post  string
		state assist.State
		u     assist.Urgency
	}
	specs := []spec{
		{"BGD-DHAKA", assist.StateSubmitted, assist.Critical},
		{"BGD-DHAKA", assist.StateSubmitted, assist.Routine},
		{"BGD-DHAKA", assist.StateWithdrawn, assist.Critical},
		{"NPL-KTM", assist.StateSubmitted, assist.Critical},
		{"NPL-KTM", assist.StateUnderReview, assist.Urgent},
		{"THA-BKK", assist.StateApproved, assist.Routine},
		{"THA-BKK", assist.StateSubmitted, assist.Critical},
	}
	var all []*assist.Case
	for i, sp := range specs {
		all = append(all, listCase(newID(), sp.post, sp.state, sp.u, at.Add(time.Duration(i)*time.Minute)))
	}
	project(t, db, s, all...)
	match := func(pred func(c *assist.Case) bool) []string {
		var out []*assist.Case
		for _, c := range all {
			if pred(c) {
				out = append(out, c)
			}
		}
		return newestFirst(out)
	}
	tests := []struct {
		name string
		f    intakeapi.ListFilter
		want []string
	}{
		{"none", intakeapi.ListFilter{}, match(func(*assist.Case) bool { return true })},
		{"posts scope", intakeapi.ListFilter{Posts: []string{"BGD-DHAKA", "THA-BKK"}},
			match(func(c *assist.Case) bool { return c.Post == "BGD-DHAKA" || c.Post == "THA-BKK" })},
		{"one post scope", intakeapi.ListFilter{Posts: []string{"NPL-KTM"}}, match(func(c *assist.Case) bool { return c.Post == "NPL-KTM" })},
		{"scope without cases", intakeapi.ListFilter{Posts: []string{"NOWHERE"}}, nil},
		{"status", intakeapi.ListFilter{Status: "submitted"}, match(func(c *assist.Case) bool { return c.State == assist.StateSubmitted })},
		{"post", intakeapi.ListFilter{Post: "NPL-KTM"}, match(func(c *assist.Case) bool { return c.Post == "NPL-KTM" })},
		{"urgency", intakeapi.ListFilter{Urgency: "critical"}, match(func(c *assist.Case) bool { return c.Urgency == assist.Critical })},
		{"status and urgency", intakeapi.ListFilter{Status: "submitted", Urgency: "critical"},
			match(func(c *assist.Case) bool { return c.State == assist.StateSubmitted && c.Urgency == assist.Critical })},
		{"scope and post inside it", intakeapi.ListFilter{Posts: []string{"BGD-DHAKA", "NPL-KTM"}, Post: "BGD-DHAKA"},
			match(func(c *assist.Case) bool { return c.Post == "BGD-DHAKA" })},
		// A post outside the requester's scope shows nothing, never the
		// other post's cases.
		{"scope and post outside it", intakeapi.ListFilter{Posts: []string{"BGD-DHAKA"}, Post: "NPL-KTM"}, nil},
		{"scope, status and urgency", intakeapi.ListFilter{Posts: []string{"BGD-DHAKA"}, Status: "submitted", Urgency: "critical"},
			match(func(c *assist.Case) bool {
				return c.Post == "BGD-DHAKA" && c.State == assist.StateSubmitted && c.Urgency == assist.Critical
			})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.Limit = 100
			page, err := s.List(context.Background(), tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := viewIDs(page.Items); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("List(%+v) = %v, want %v", tc.f, got, tc.want)
			}
			if page.Items == nil {
				t.Fatal("Items is nil; an empty page must list [] (it is JSON)")
			}
		})
	}
}

func testListLimit(t *testing.T, db sqldb.DB, s intake.Store) {
	var cs []*assist.Case
	for i := range 5 {
		cs = append(cs, listCase(newID(), "BGD-DHAKA", assist.StateSubmitted, assist.Routine, at.Add(time.Duration(i)*time.Second)))
	}
	project(t, db, s, cs...)
	want := newestFirst(cs)
	for _, limit := range []int{1, 2, 4, 5, 6} {
		page, err := s.List(context.Background(), intakeapi.ListFilter{Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		n := min(limit, len(cs))
		if got := viewIDs(page.Items); !slices.Equal(got, want[:n]) {
			t.Fatalf("List(limit %d) = %v, want %v", limit, got, want[:n])
		}
		if more := limit < len(cs); (page.NextCursor != "") != more {
			t.Fatalf("List(limit %d): next cursor %q, want one: %v", limit, page.NextCursor, more)
		}
	}
}

// 120 cases, several sharing a creation time, paged 7 at a time: every
// case exactly once, in order.
func testListPagesWithoutGapsOrRepeats(t *testing.T, db sqldb.DB, s intake.Store) {
	var cs []*assist.Case
	for i := range 120 {
		// Three cases per microsecond: ties are broken by id.
		cs = append(cs, listCase(newID(), "BGD-DHAKA", assist.StateSubmitted, assist.Routine, at.Add(time.Duration(i/3)*time.Microsecond)))
	}
	project(t, db, s, cs...)
	got := pageAll(t, s, intakeapi.ListFilter{Limit: 7})
	if want := newestFirst(cs); !slices.Equal(got, want) {
		t.Fatalf("paged list (%d items) differs from the full order (%d items):\n got %v\nwant %v", len(got), len(want), got, want)
	}
}

// A case projected (or updated) between two pages neither repeats nor
// hides the cases still to come.
func testListPagesWithFilter(t *testing.T, db sqldb.DB, s intake.Store) {
	var cs, dhaka []*assist.Case
	for i := range 40 {
		post := "BGD-DHAKA"
		if i%3 == 0 {
			post = "NPL-KTM"
		}
		c := listCase(newID(), post, assist.StateSubmitted, assist.Routine, at.Add(time.Duration(i)*time.Second))
		cs = append(cs, c)
		if post == "BGD-DHAKA" {
			dhaka = append(dhaka, c)
		}
	}
	project(t, db, s, cs...)
	f := intakeapi.ListFilter{Posts: []string{"BGD-DHAKA"}, Limit: 4}
	first, err := s.List(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	// A newer case arrives after the first page was read: it belongs on
	// page one, and must not appear on later pages.
	project(t, db, s, listCase(newID(), "BGD-DHAKA", assist.StateSubmitted, assist.Routine, at.Add(time.Hour)))
	got := viewIDs(first.Items)
	f.Cursor = first.NextCursor
	got = append(got, pageAll(t, s, f)...)
	if want := newestFirst(dhaka); !slices.Equal(got, want) {
		t.Fatalf("paged filtered list = %v, want %v", got, want)
	}
}

// pageAll follows cursors from f to the end, failing on a repeated id or a
// runaway.
func pageAll(t *testing.T, s intake.Store, f intakeapi.ListFilter) []string {
	t.Helper()
	var out []string
	seen := map[string]bool{}
	for range 1000 {
		page, err := s.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) > f.Limit {
			t.Fatalf("page of %d items with limit %d", len(page.Items), f.Limit)
		}
		for _, c := range page.Items {
			if seen[c.ID] {
				t.Fatalf("case %s listed twice", c.ID)
			}
			seen[c.ID] = true
			out = append(out, c.ID)
		}
		if page.NextCursor == "" {
			return out
		}
		if len(page.Items) == 0 {
			t.Fatalf("empty page with next cursor %q", page.NextCursor)
		}
		f.Cursor = page.NextCursor
	}
	t.Fatal("paging did not end")
	return nil
}

func testListBadCursor(t *testing.T, db sqldb.DB, s intake.Store) {
	project(t, db, s, listCase(newID(), "BGD-DHAKA", assist.StateSubmitted, assist.Routine, at))
	for name, cursor := range map[string]string{
		"not base64":      "!!!not-a-cursor!!!",
		"one part":        listing.Encode("12345"),
		"three parts":     listing.Encode("1", "2", "3"),
		"time not number": listing.Encode("yesterday", newID()),
		"padded base64":   "MTIzNDU2Nx9hYmM=",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.List(context.Background(), intakeapi.ListFilter{Limit: 10, Cursor: cursor})
			requireField(t, err, "cursor")
		})
	}
}

// requireField fails unless err is CodeInvalid naming field.
func requireField(tb testing.TB, err error, field string) {
	tb.Helper()
	if !assist.IsCode(err, assist.CodeInvalid) {
		tb.Fatalf("err = %v, want %s naming %q", err, assist.CodeInvalid, field)
	}
	if !namesField(err, field) {
		tb.Fatalf("err = %v does not name the field %q", err, field)
	}
}

func namesField(err error, field string) bool {
	var e *assist.Error
	if !errors.As(err, &e) {
		return false
	}
	for _, f := range e.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

// The duplicate check finds other cases, at any post, for the same
// reference hash and category that are open, or finished within the
// window; oldest first, never the case itself. CheckFiling reads it with
// the case's erasure.
func testCheckFiling(t *testing.T, db sqldb.DB, s intake.Store) {
	ctx := context.Background()
	now := at.Add(90 * 24 * time.Hour)
	self := projectDuplicates(t, db, s, now)
	check := intake.DuplicateCheck{RefHash: dupRef, Category: assist.Shelter, Since: now.Add(-intake.DuplicateWindow)}
	erased, got, err := s.CheckFiling(ctx, self, check)
	if err != nil || erased {
		t.Fatalf("CheckFiling = erased %v, %v", erased, err)
	}
	if want := []string{"c-open-old", "c-closed-recent"}; !slices.Equal(got, want) {
		t.Fatalf("CheckFiling's duplicates = %v, want %v", got, want)
	}
	if _, got, err := s.CheckFiling(ctx, self, intake.DuplicateCheck{Category: assist.Shelter}); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("no reference: %#v, %v; want an empty list", got, err)
	}
	if err := s.Erase(ctx, self, ""); err != nil {
		t.Fatal(err)
	}
	if erased, got, err := s.CheckFiling(ctx, self, check); err != nil || !erased || len(got) != 2 {
		t.Fatalf("after the erasure: CheckFiling = erased %v, duplicates %v, %v", erased, got, err)
	}
}

// A key's first record comes with the duplicate check of its case, which
// finds what CheckFiling finds for it; a retry's comes with none.
func testFilingChecksDuplicatesOfItsCase(t *testing.T, db sqldb.DB, s intake.Store) {
	ctx := context.Background()
	now := at.Add(90 * 24 * time.Hour)
	self := projectDuplicates(t, db, s, now)
	check := intake.DuplicateCheck{RefHash: dupRef, Category: assist.Shelter, Since: now.Add(-intake.DuplicateWindow)}
	f := intake.Filing{KeyHash: []byte("key-hash-" + newID()), CaseID: self, RequestHash: []byte("req"), CreatedAt: now}
	_, made, dups, err := s.Filing(ctx, f, check)
	if err != nil || !made {
		t.Fatalf("Filing = made %v, %v", made, err)
	}
	_, want, err := s.CheckFiling(ctx, self, check)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dups, want) || !slices.Equal(dups, []string{"c-open-old", "c-closed-recent"}) {
		t.Fatalf("Filing's duplicates = %v, CheckFiling's = %v; want [c-open-old c-closed-recent] from both", dups, want)
	}
	if _, made, dups, err := s.Filing(ctx, f, check); err != nil || made || dups != nil {
		t.Fatalf("a retry's Filing = made %v, duplicates %v, %v; want neither", made, dups, err)
	}
	// No match, and no reference hash: an empty list.
	for _, c := range []intake.DuplicateCheck{{RefHash: []byte{9}, Category: assist.Shelter}, {Category: assist.Shelter}} {
		f.KeyHash = []byte("key-hash-" + newID())
		if _, made, dups, err := s.Filing(ctx, f, c); err != nil || !made || dups == nil || len(dups) != 0 {
			t.Fatalf("Filing with %+v = made %v, duplicates %#v, %v; want an empty list", c, made, dups, err)
		}
	}
}

// dupRef is the reference hash of projectDuplicates' person.
var dupRef = []byte{1, 2, 3, 0}

// projectDuplicates projects cases for the duplicate check at now, of
// the person dupRef and another, and returns the id of the one filed
// at now, whose duplicates are c-open-old and c-closed-recent.
func projectDuplicates(t *testing.T, db sqldb.DB, s intake.Store, now time.Time) (self string) {
	t.Helper()
	other := []byte{1, 2, 3, 1}
	mk := func(id, post string, cat assist.Category, st assist.State, hash []byte, created, updated time.Time) *assist.Case {
		c := listCase(id, post, st, assist.Urgent, created)
		c.Category, c.BeneficiaryRefHash, c.UpdatedAt = cat, hash, updated
		return c
	}
	old, recent := now.Add(-60*24*time.Hour), now.Add(-24*time.Hour)
	project(t, db, s,
		mk("c-open-old", "NPL-KTM", assist.Shelter, assist.StateUnderReview, dupRef, old, old),
		mk("c-closed-recent", "BGD-DHAKA", assist.Shelter, assist.StateDisbursed, dupRef, old.Add(time.Hour), recent),
		mk("c-closed-long-ago", "BGD-DHAKA", assist.Shelter, assist.StateRejected, dupRef, old, old),
		mk("c-other-category", "BGD-DHAKA", assist.Medical, assist.StateSubmitted, dupRef, recent, recent),
		mk("c-other-person", "BGD-DHAKA", assist.Shelter, assist.StateSubmitted, other, recent, recent),
		mk("c-self", "BGD-DHAKA", assist.Shelter, assist.StateSubmitted, dupRef, now, now),
	)
	return "c-self"
}
