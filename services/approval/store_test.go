package approval_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/listing"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
)

// The conformance suite of approval.Store. Every case runs on a fresh
// database of every driver; a new implementation joins storeImpls.

var storeImpls = map[string]func(t *testing.T, db sqldb.DB) approval.Store{
	"SQLStore": func(t *testing.T, db sqldb.DB) approval.Store {
		t.Helper()
		migrate(t, db, eventlog.Migrations, approval.Migrations)
		return approval.NewSQLStore(db)
	},
}

func migrate(tb testing.TB, db sqldb.DB, ms ...sqldb.Migrations) {
	tb.Helper()
	for _, m := range ms {
		if err := db.Migrate(context.Background(), m); err != nil {
			tb.Fatal(err)
		}
	}
}

var storeSuite = []struct {
	name string
	f    func(t *testing.T, db sqldb.DB, s approval.Store)
}{
	{"ProjectRoundTripsFullCase", testProjectRoundTripsFullCase},
	{"ProjectUpdatesInPlace", testProjectUpdatesInPlace},
	{"ProjectedNilWhenNone", testProjectedNilWhenNone},
	{"QueueOrder", testQueueOrder},
	{"QueueEscalatedBeforeItsDeadline", testQueueEscalatedBeforeItsDeadline},
	{"QueueOnlyWaitingStates", testQueueOnlyWaitingStates},
	{"QueueEmpty", testQueueEmpty},
	{"QueueDefaultLimit", testQueueDefaultLimit},
	{"QueuePagesAcrossOverdueBoundary", testQueuePagesAcrossOverdueBoundary},
	{"QueuePagesWithEqualDeadlines", testQueuePagesWithEqualDeadlines},
	{"QueuePossibleDuplicates", testQueuePossibleDuplicates},
	{"QueueBadCursor", testQueueBadCursor},
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

// now is the clock of the queue tests, with nanoseconds.
var now = time.Date(2025, 3, 4, 12, 0, 0, 987654321, time.UTC)

func fullCase(id string) *assist.Case {
	return &assist.Case{
		ID: id, Requester: "ana", Post: "BGD-DHAKA", Category: assist.Medical, Urgency: assist.Urgent,
		AmountCents: 123_456, Justification: "clinic — ünïcode",
		Beneficiary:        assist.Sealed{KeyID: id, Ciphertext: []byte{0, 1, 2, 0xfe, 0xff}},
		BeneficiaryRefHash: []byte{9, 8, 7, 0},
		PayeeID:            "payee-1", Deadline: now.Add(24 * time.Hour), Escalated: true, State: assist.StateAwaitingSecondApproval,
		ClaimedBy: "olu", ClaimExpiresAt: now.Add(30 * time.Minute), Question: "which clinic?",
		ApprovedCents: 100_000, ApprovedBy: "olu", FundID: "fund-1", HoldID: "hold-2", PayoutID: "payout-1",
		ReleasedHolds: []string{"hold-0", "hold-1"},
		CreatedAt:     now.Add(-time.Hour), UpdatedAt: now.Add(-time.Minute + 3*time.Nanosecond), Version: 42, Events: 7,
	}
}

func project(t *testing.T, db sqldb.DB, s approval.Store, cs ...*assist.Case) {
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

func projected(t *testing.T, db sqldb.DB, s approval.Store, id string) *assist.Case {
	t.Helper()
	c, err := s.Projected(context.Background(), db, id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testProjectRoundTripsFullCase(t *testing.T, db sqldb.DB, s approval.Store) {
	full := fullCase(newID())
	project(t, db, s, full)
	want := approval.QueueFields(full)
	if got := projected(t, db, s, full.ID); !reflect.DeepEqual(got, want) {
		t.Fatalf("Projected differs:\n got %+v\nwant %+v", got, want)
	}
	page, err := s.Queue(context.Background(), now, approvalapi.QueueRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wantItem := approvalapi.QueueItem{CaseID: full.ID, Status: string(full.State), Urgency: string(full.Urgency),
		Deadline: full.Deadline, Escalated: full.Escalated, ClaimedBy: full.ClaimedBy, ClaimExpiresAt: full.ClaimExpiresAt,
		PossibleDuplicates: []string{}}
	if len(page.Items) != 1 || !sameItem(page.Items[0], wantItem) {
		t.Fatalf("Queue = %+v, want the projected case %+v", page.Items, wantItem)
	}
}

func testProjectUpdatesInPlace(t *testing.T, db sqldb.DB, s approval.Store) {
	c := fullCase(newID())
	c.State = assist.StateSubmitted
	project(t, db, s, c)
	next := *c
	next.State, next.Version, next.Deadline, next.Category = assist.StateRejected, 43, now.Add(-time.Hour), assist.Shelter
	project(t, db, s, &next)
	if got := projected(t, db, s, c.ID); !reflect.DeepEqual(got, approval.QueueFields(&next)) {
		t.Fatalf("Projected after update = %+v, want %+v", got, approval.QueueFields(&next))
	}
	page, err := s.Queue(context.Background(), now, approvalapi.QueueRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 0 {
		t.Fatalf("a rejected case is still queued: %+v", page.Items)
	}
}

func testProjectedNilWhenNone(t *testing.T, db sqldb.DB, s approval.Store) {
	if c := projected(t, db, s, newID()); c != nil {
		t.Fatalf("Projected of an unknown case = %+v", c)
	}
}

// queued is a minimal case waiting for review.
func queued(id string, state assist.State, deadline time.Time) *assist.Case {
	return &assist.Case{ID: id, Requester: "ana", Post: "BGD-DHAKA", Category: assist.Shelter, Urgency: assist.Urgent,
		AmountCents: 1000, State: state, Deadline: deadline, CreatedAt: deadline.Add(-24 * time.Hour),
		UpdatedAt: deadline.Add(-24 * time.Hour), Version: 1, Events: 1}
}

func itemIDs(items []approvalapi.QueueItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.CaseID
	}
	return out
}

// queueOrder is the order the queue must have at clock t: escalated or
// overdue first (deadline <= t), then by deadline (to the microsecond),
// then by id.
func queueOrder(cs []*assist.Case, t time.Time) []string {
	cs = slices.Clone(cs)
	bucket := func(c *assist.Case) int {
		if c.Escalated || sqldb.Micros(c.Deadline) <= sqldb.Micros(t) {
			return 0
		}
		return 1
	}
	slices.SortFunc(cs, func(a, b *assist.Case) int {
		if d := bucket(a) - bucket(b); d != 0 {
			return d
		}
		if x, y := sqldb.Micros(a.Deadline), sqldb.Micros(b.Deadline); x != y {
			if x < y {
				return -1
			}
			return 1
		}
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

func testQueueOrder(t *testing.T, db sqldb.DB, s approval.Store) {
	late2h := queued(newID(), assist.StateSubmitted, now.Add(-2*time.Hour))
	late1h := queued(newID(), assist.StateUnderReview, now.Add(-time.Hour))
	dueNow := queued(newID(), assist.StateSubmitted, now) // deadline == now: overdue
	in1h := queued(newID(), assist.StateAwaitingSecondApproval, now.Add(time.Hour))
	in1hB := queued(newID(), assist.StateSubmitted, now.Add(time.Hour)) // same deadline: by id
	in3d := queued(newID(), assist.StateSubmitted, now.Add(72*time.Hour))
	justAfter := queued(newID(), assist.StateSubmitted, now.Add(time.Microsecond))
	all := []*assist.Case{in3d, in1hB, late1h, justAfter, dueNow, in1h, late2h}
	project(t, db, s, all...)
	page, err := s.Queue(context.Background(), now, approvalapi.QueueRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := itemIDs(page.Items)
	want := queueOrder(all, now)
	if !slices.Equal(got, want) {
		t.Fatalf("queue order = %v, want %v", got, want)
	}
	if got[0] != late2h.ID || got[1] != late1h.ID || got[2] != dueNow.ID {
		t.Fatalf("the overdue cases do not lead, oldest deadline first: %v", got)
	}
	overdue := map[string]bool{late2h.ID: true, late1h.ID: true, dueNow.ID: true}
	for _, it := range page.Items {
		if it.Overdue != overdue[it.CaseID] {
			t.Fatalf("case %s (deadline %s) overdue = %v", it.CaseID, it.Deadline, it.Overdue)
		}
		if it.PossibleDuplicates == nil {
			t.Fatal("PossibleDuplicates is nil; want [] (it is JSON)")
		}
	}
	if page.NextCursor != "" {
		t.Fatalf("a complete page has a cursor %q", page.NextCursor)
	}
	// Later, the clock moves some cases into the overdue bucket.
	later := now.Add(2 * time.Hour)
	page, err = s.Queue(context.Background(), later, approvalapi.QueueRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := itemIDs(page.Items), queueOrder(all, later); !slices.Equal(got, want) {
		t.Fatalf("queue order later = %v, want %v", got, want)
	}
}

// An escalated case whose deadline is still ahead (its urgency amended
// after it was escalated) is in the first bucket, among the overdue cases
// by deadline, whole pages and page by page.
func testQueueEscalatedBeforeItsDeadline(t *testing.T, db sqldb.DB, s approval.Store) {
	late := queued(newID(), assist.StateSubmitted, now.Add(-time.Hour))
	ahead := queued(newID(), assist.StateUnderReview, now.Add(2*time.Hour))
	ahead.Escalated = true
	soon := queued(newID(), assist.StateSubmitted, now.Add(time.Hour))
	later := queued(newID(), assist.StateSubmitted, now.Add(3*time.Hour))
	doneEscalated := queued(newID(), assist.StateApproved, now.Add(time.Minute))
	doneEscalated.Escalated = true
	all := []*assist.Case{later, soon, ahead, late}
	project(t, db, s, append(all, doneEscalated)...)
	want := []string{late.ID, ahead.ID, soon.ID, later.ID}
	if got := queueOrder(all, now); !slices.Equal(got, want) {
		t.Fatalf("the test's own order = %v, want %v", got, want)
	}
	page, err := s.Queue(context.Background(), now, approvalapi.QueueRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := itemIDs(page.Items); !slices.Equal(got, want) {
		t.Fatalf("queue = %v, want %v", got, want)
	}
	if got := itemIDs(pageQueue(t, s, 1, func(int) time.Time { return now })); !slices.Equal(got, want) {
		t.Fatalf("queue page by page = %v, want %v", got, want)
	}
}

func testQueueOnlyWaitingStates(t *testing.T, db sqldb.DB, s approval.Store) {
	var all []*assist.Case
	var want []*assist.Case
	for i, st := range assist.States {
		c := queued(newID(), st, now.Add(time.Duration(i)*time.Minute))
		all = append(all, c)
		if st == assist.StateSubmitted || st == assist.StateUnderReview || st == assist.StateAwaitingSecondApproval {
			want = append(want, c)
		}
	}
	project(t, db, s, all...)
	page, err := s.Queue(context.Background(), now, approvalapi.QueueRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if got := itemIDs(page.Items); !slices.Equal(got, queueOrder(want, now)) {
		t.Fatalf("queued = %v, want only submitted, under_review and awaiting_second_approval %v", got, queueOrder(want, now))
	}
}

func testQueueEmpty(t *testing.T, db sqldb.DB, s approval.Store) {
	page, err := s.Queue(context.Background(), now, approvalapi.QueueRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if page.Items == nil || len(page.Items) != 0 || page.NextCursor != "" {
		t.Fatalf("empty queue = %+v, want no items ([]) and no cursor", page)
	}
}

func testQueueDefaultLimit(t *testing.T, db sqldb.DB, s approval.Store) {
	var cs []*assist.Case
	for i := range listing.DefaultLimit + 3 {
		cs = append(cs, queued(newID(), assist.StateSubmitted, now.Add(time.Duration(i)*time.Second)))
	}
	project(t, db, s, cs...)
	for _, limit := range []int{0, -1} {
		page, err := s.Queue(context.Background(), now, approvalapi.QueueRequest{Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != listing.DefaultLimit || page.NextCursor == "" {
			t.Fatalf("Queue(limit %d) = %d items, cursor %q; want %d and a cursor", limit, len(page.Items), page.NextCursor, listing.DefaultLimit)
		}
	}
}

// pageQueue follows cursors to the end, each page read at its own clock,
// failing on a repeat.
func pageQueue(t *testing.T, s approval.Store, limit int, clocks func(page int) time.Time) []approvalapi.QueueItem {
	t.Helper()
	var out []approvalapi.QueueItem
	seen := map[string]bool{}
	r := approvalapi.QueueRequest{Limit: limit}
	for page := 0; page < 1000; page++ {
		p, err := s.Queue(context.Background(), clocks(page), r)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Items) > limit {
			t.Fatalf("page of %d items with limit %d", len(p.Items), limit)
		}
		for _, it := range p.Items {
			if seen[it.CaseID] {
				t.Fatalf("case %s queued twice (page %d)", it.CaseID, page)
			}
			seen[it.CaseID] = true
			out = append(out, it)
		}
		if p.NextCursor == "" {
			return out
		}
		if len(p.Items) == 0 {
			t.Fatalf("empty page with cursor %q", p.NextCursor)
		}
		r.Cursor = p.NextCursor
	}
	t.Fatal("paging did not end")
	return nil
}

// Cases whose deadline passes while an approver pages through the queue
// keep the bucket they had on the first page: no gap, no repeat.
func testQueuePagesAcrossOverdueBoundary(t *testing.T, db sqldb.DB, s approval.Store) {
	var cs []*assist.Case
	for i := range 45 {
		// Deadlines every 5 minutes from 1h ago to 2h40 ahead.
		cs = append(cs, queued(newID(), assist.StateSubmitted, now.Add(time.Duration(i-12)*5*time.Minute)))
	}
	project(t, db, s, cs...)
	// Each page is read an hour later than the one before.
	got := pageQueue(t, s, 4, func(page int) time.Time { return now.Add(time.Duration(page) * time.Hour) })
	if ids, want := itemIDs(got), queueOrder(cs, now); !slices.Equal(ids, want) {
		t.Fatalf("paged queue = %v\nwant the order at the first page's clock %v", ids, want)
	}
	for _, it := range got {
		if want := !it.Deadline.After(now); it.Overdue != want {
			t.Fatalf("case with deadline %s: overdue %v on a later page, want %v as of the first page", it.Deadline, it.Overdue, want)
		}
	}
}

// Equal deadlines on both sides of the boundary are paged by id.
func testQueuePagesWithEqualDeadlines(t *testing.T, db sqldb.DB, s approval.Store) {
	var cs []*assist.Case
	for i := range 30 {
		d := now.Add(-time.Hour)
		if i%2 == 1 {
			d = now.Add(time.Hour)
		}
		if i%5 == 0 {
			d = now
		}
		cs = append(cs, queued(newID(), assist.StateSubmitted, d))
	}
	project(t, db, s, cs...)
	for _, limit := range []int{1, 3, 7} {
		got := pageQueue(t, s, limit, func(int) time.Time { return now })
		if ids, want := itemIDs(got), queueOrder(cs, now); !slices.Equal(ids, want) {
			t.Fatalf("limit %d: paged queue = %v\nwant %v", limit, ids, want)
		}
	}
}

func testQueuePossibleDuplicates(t *testing.T, db sqldb.DB, s approval.Store) {
	ref, otherRef := []byte("ref-hash-1"), []byte("ref-hash-2")
	mk := func(post string, cat assist.Category, st assist.State, h []byte, age time.Duration) *assist.Case {
		c := queued(newID(), st, now.Add(time.Hour))
		c.Post, c.Category, c.BeneficiaryRefHash = post, cat, h
		c.CreatedAt = now.Add(-age)
		return c
	}
	a := mk("BGD-DHAKA", assist.Shelter, assist.StateSubmitted, ref, 5*time.Hour)
	b := mk("NPL-KTM", assist.Shelter, assist.StateUnderReview, ref, 4*time.Hour)           // another post: a duplicate
	infoReq := mk("THA-BKK", assist.Shelter, assist.StateInfoRequested, ref, 3*time.Hour)   // not queued, but unfinished
	approved := mk("THA-BKK", assist.Shelter, assist.StateApproved, ref, 2*time.Hour)       // unfinished
	failed := mk("THA-BKK", assist.Shelter, assist.StateDisbursementFailed, ref, time.Hour) // unfinished
	withdrawn := mk("BGD-DHAKA", assist.Shelter, assist.StateWithdrawn, ref, time.Hour)     // finished
	rejected := mk("BGD-DHAKA", assist.Shelter, assist.StateRejected, ref, time.Hour)       // finished
	disbursed := mk("BGD-DHAKA", assist.Shelter, assist.StateDisbursed, ref, time.Hour)     // finished
	closed := mk("BGD-DHAKA", assist.Shelter, assist.StateClosed, ref, time.Hour)           // finished
	medical := mk("BGD-DHAKA", assist.Medical, assist.StateSubmitted, ref, time.Hour)       // other category
	stranger := mk("BGD-DHAKA", assist.Shelter, assist.StateSubmitted, otherRef, time.Hour) // other person
	noRef1 := mk("BGD-DHAKA", assist.Other, assist.StateSubmitted, nil, time.Hour)          // no reference
	noRef2 := mk("NPL-KTM", assist.Other, assist.StateSubmitted, nil, time.Hour)            // no reference
	project(t, db, s, a, b, infoReq, approved, failed, withdrawn, rejected, disbursed, closed, medical, stranger, noRef1, noRef2)
	page, err := s.Queue(context.Background(), now, approvalapi.QueueRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		a.ID:        {b.ID, infoReq.ID, approved.ID, failed.ID}, // oldest first
		b.ID:        {a.ID, infoReq.ID, approved.ID, failed.ID},
		medical.ID:  {},
		stranger.ID: {},
		noRef1.ID:   {},
		noRef2.ID:   {},
	}
	if len(page.Items) != len(want) {
		t.Fatalf("queued %v, want %d cases", itemIDs(page.Items), len(want))
	}
	for _, it := range page.Items {
		w, ok := want[it.CaseID]
		if !ok {
			t.Fatalf("case %s (%s) is queued", it.CaseID, it.Status)
		}
		if !slices.Equal(it.PossibleDuplicates, w) {
			t.Fatalf("possible duplicates of %s = %v, want %v", it.CaseID, it.PossibleDuplicates, w)
		}
	}
}

func testQueueBadCursor(t *testing.T, db sqldb.DB, s approval.Store) {
	project(t, db, s, queued(newID(), assist.StateSubmitted, now))
	for name, cursor := range map[string]string{
		"not base64":          "%%%",
		"too few parts":       listing.Encode("1", "2", "3"),
		"too many parts":      listing.Encode("1", "0", "2", newID(), "x"),
		"clock not a number":  listing.Encode("noon", "0", "2", newID()),
		"bucket not a number": listing.Encode("1", "x", "2", newID()),
		"deadline not number": listing.Encode("1", "0", "2.5", newID()),
		"intake cursor":       listing.Encode("12345", newID()),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Queue(context.Background(), now, approvalapi.QueueRequest{Cursor: cursor})
			requireField(t, err, "cursor")
		})
	}
}

func requireField(tb testing.TB, err error, field string) {
	tb.Helper()
	var e *assist.Error
	if !errors.As(err, &e) || e.Code != assist.CodeInvalid {
		tb.Fatalf("err = %v, want %s naming %q", err, assist.CodeInvalid, field)
	}
	for _, f := range e.Fields {
		if f.Field == field {
			return
		}
	}
	tb.Fatalf("err = %v does not name the field %q", err, field)
}

func requireCode(tb testing.TB, err error, code assist.Code) {
	tb.Helper()
	if !assist.IsCode(err, code) {
		tb.Fatalf("err = %v, want %s", err, code)
	}
}

// sameItem compares queue items with times to the microsecond, as stored.
func sameItem(a, b approvalapi.QueueItem) bool {
	a.Deadline, b.Deadline = a.Deadline.Truncate(time.Microsecond), b.Deadline.Truncate(time.Microsecond)
	a.ClaimExpiresAt, b.ClaimExpiresAt = a.ClaimExpiresAt.Truncate(time.Microsecond), b.ClaimExpiresAt.Truncate(time.Microsecond)
	return reflect.DeepEqual(a, b)
}
