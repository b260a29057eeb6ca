package disbursement

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// holdsAt is a store on a fresh PostgreSQL schema with funds and a payee
// (the same ids in every store it makes).
type holdsAt struct {
	ctx   context.Context
	now   time.Time
	funds []disbursementapi.Fund
	payee disbursementapi.Payee
}

func newHoldsAt(allocated ...int64) holdsAt {
	h := holdsAt{ctx: context.Background(), now: time.Now().UTC().Truncate(time.Microsecond)}
	for _, a := range allocated {
		id := newID()
		h.funds = append(h.funds, disbursementapi.Fund{ID: id, Name: "fund " + id, AllocatedCents: a, CreatedAt: h.now})
	}
	h.payee = disbursementapi.Payee{ID: newID(), Name: "Clinic", Account: "ACC", CreatedAt: h.now}
	return h
}

func (h holdsAt) store(t *testing.T) *SQLStore {
	t.Helper()
	db := sqldbtest.Postgres(t)
	if err := db.Migrate(h.ctx, Migrations); err != nil {
		t.Fatal(err)
	}
	s := NewSQLStore(db)
	for _, f := range h.funds {
		if _, err := s.CreateFund(h.ctx, f, "fin"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreatePayee(h.ctx, h.payee, "fin"); err != nil {
		t.Fatal(err)
	}
	return s
}

func (h holdsAt) request(fund int, amount int64) disbursementapi.PlaceHoldRequest {
	return disbursementapi.PlaceHoldRequest{HoldID: newID(), FundID: h.funds[fund].ID, CaseID: newID(), PayeeID: h.payee.ID, AmountCents: amount}
}

func (h holdsAt) place(s *SQLStore, r disbursementapi.PlaceHoldRequest) string {
	return answerText(s.PlaceHold(h.ctx, r, h.now.Add(time.Hour), h.now))
}

// answerText writes a PlaceHold answer down whole: the hold, or the
// error with its code, fields and available money.
func answerText(h disbursementapi.Hold, err error) string {
	var ae *assist.Error
	switch {
	case errors.As(err, &ae):
		avail := "-"
		if ae.AvailableUSDCents != nil {
			avail = fmt.Sprint(*ae.AvailableUSDCents)
		}
		return fmt.Sprintf("%s %q %v available %s", ae.Code, ae.Message, ae.Fields, avail)
	case err != nil:
		return "error " + err.Error()
	}
	return fmt.Sprintf("%+v", h)
}

// batched places the first request, holding its write until the others
// wait for the fund in that order, so that they are written together (as
// a second batch, unless writes fail); it returns the answers in the
// requests' order and the batches written, as their requests' indexes.
func (h holdsAt) batched(t *testing.T, s *SQLStore, rs []disbursementapi.PlaceHoldRequest) ([]string, [][]int) {
	t.Helper()
	index := map[*holdCall]int{}
	var mu sync.Mutex
	var batches [][]int
	first, release := make(chan struct{}), make(chan struct{})
	write := s.holds.write
	s.holds.write = func(ctx context.Context, batch []*holdCall) {
		mu.Lock()
		var ids []int
		for _, c := range batch {
			ids = append(ids, index[c])
		}
		batches = append(batches, ids)
		firstWrite := len(batches) == 1
		mu.Unlock()
		if firstWrite {
			close(first)
			<-release
		}
		write(ctx, batch)
	}
	// The holdCall of each request is known once it waits.
	queued := func() []*holdCall {
		s.holds.mu.Lock()
		defer s.holds.mu.Unlock()
		return append([]*holdCall(nil), s.holds.waiting[rs[0].FundID]...)
	}
	answers := make([]string, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() { answers[i] = h.place(s, r) })
		if i == 0 {
			<-first
			continue
		}
		evatest.Eventually(t, fmt.Sprintf("request %d to wait", i), func() bool { return len(queued()) == i })
		mu.Lock()
		index[queued()[i-1]] = i
		mu.Unlock()
	}
	close(release)
	wg.Wait()
	return answers, batches
}

// batchedAsOneByOne places rs on a store of their own as batched does,
// checks that the batches written were wantBatches (their requests'
// indexes) and that each request answered as when the requests are placed
// one by one, on another store; it returns the first store and those
// answers.
func (h holdsAt) batchedAsOneByOne(t *testing.T, rs []disbursementapi.PlaceHoldRequest, wantBatches string) (*SQLStore, []string) {
	t.Helper()
	s := h.store(t)
	got, batches := h.batched(t, s, rs)
	if fmt.Sprint(batches) != wantBatches {
		t.Fatalf("batches written %v, want %s", batches, wantBatches)
	}
	want := h.oneByOne(t, rs)
	for i := range rs {
		t.Logf("request %d: %s", i, got[i])
		if got[i] != want[i] {
			t.Errorf("request %d answered\n %s\nplaced one by one\n %s", i, got[i], want[i])
		}
	}
	return s, want
}

// oneByOne is the answers of the requests placed one after the other, on
// a store of their own.
func (h holdsAt) oneByOne(t *testing.T, rs []disbursementapi.PlaceHoldRequest) []string {
	t.Helper()
	s := h.store(t)
	var out []string
	for _, r := range rs {
		out = append(out, h.place(s, r))
	}
	return out
}

// committedIn is the transaction id that committed each hold's row.
func committedIn(t *testing.T, s *SQLStore, rs []disbursementapi.PlaceHoldRequest) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range rs {
		var xid string
		err := s.db.QueryRow(context.Background(), `SELECT xmin::text FROM disb_holds WHERE id = $1`, r.HoldID).Scan(&xid)
		if err != nil && !errors.Is(err, sqldb.ErrNoRows) {
			t.Fatal(err)
		}
		out[r.HoldID] = xid
	}
	return out
}

// Holds of one fund that wait while another is written are placed
// together, in one transaction, and each answers what placing them one by
// one answers: holds that fit, one more than is left, an unknown payee,
// and the same hold twice (placed once).
func TestHoldsOfOneFundWaitingMeanwhileCommitTogether(t *testing.T) {
	h := newHoldsAt(1_000)
	unknownPayee := h.request(0, 10)
	unknownPayee.PayeeID = newID()
	again := h.request(0, 300)
	rs := []disbursementapi.PlaceHoldRequest{
		h.request(0, 100), // written alone, while the others wait
		again,
		h.request(0, 400),
		again, // the same hold again: placed by the first
		unknownPayee,
		h.request(0, 150),
		h.request(0, 500), // 50 left
	}
	s, want := h.batchedAsOneByOne(t, rs, "[[0] [1 2 3 4 5 6]]")
	if !strings.HasPrefix(want[3], "{ID:"+again.HoldID) || !strings.HasPrefix(want[4], string(assist.CodeInvalid)) ||
		!strings.HasPrefix(want[6], string(assist.CodeInsufficientFunds)) || !strings.HasSuffix(want[6], "available 50") {
		t.Errorf("one by one answered %q", want)
	}
	if f, err := s.Fund(h.ctx, h.funds[0].ID); err != nil || f.ReservedCents != 950 {
		t.Errorf("fund after the holds: %+v %v, want 950 reserved", f, err)
	}
	xids := committedIn(t, s, rs)
	if xids[rs[0].HoldID] == "" || xids[rs[1].HoldID] == "" || xids[rs[1].HoldID] == xids[rs[0].HoldID] ||
		xids[rs[2].HoldID] != xids[rs[1].HoldID] || xids[rs[5].HoldID] != xids[rs[1].HoldID] {
		t.Errorf("the holds' transactions %v: want the first alone, the batch's in one", xids)
	}
}

// A batch whose transaction fails (here a hold the schema refuses: an
// amount of 0, which the service refuses before the store) is placed
// again one hold at a time, so that its failure fails no other hold.
func TestHoldsOfAFailedBatchArePlacedOneByOne(t *testing.T) {
	h := newHoldsAt(1_000)
	rs := []disbursementapi.PlaceHoldRequest{
		h.request(0, 100),
		h.request(0, 300),
		h.request(0, 0),
		h.request(0, 400),
		h.request(0, 300), // 200 left
	}
	s, _ := h.batchedAsOneByOne(t, rs, "[[0] [1 2 3 4]]")
	if f, err := s.Fund(h.ctx, h.funds[0].ID); err != nil || f.ReservedCents != 800 {
		t.Errorf("fund after the holds: %+v %v, want 800 reserved", f, err)
	}
	if xids := committedIn(t, s, rs); xids[rs[1].HoldID] == "" || xids[rs[1].HoldID] == xids[rs[3].HoldID] || xids[rs[2].HoldID] != "" {
		t.Errorf("the holds' transactions %v: want the batch's placed one by one", xids)
	}
}

// Many callers placing holds on two funds at once, some of them the same
// hold again, never hold more than a fund has, and each fund's reserved
// money is the sum of its holds; the holds were placed in batches.
func TestConcurrentBatchesNeverOverspendAFund(t *testing.T) {
	h := newHoldsAt(5_000, 3_000)
	s := h.store(t)
	write := s.holds.write
	var mu sync.Mutex
	largest := 0
	s.holds.write = func(ctx context.Context, batch []*holdCall) {
		mu.Lock()
		largest = max(largest, len(batch))
		mu.Unlock()
		write(ctx, batch)
	}
	const callers, each = 24, 25
	held := make([]map[string]int64, callers) // by caller: the holds answered placed, with their amounts
	var wg sync.WaitGroup
	for i := range callers {
		held[i] = map[string]int64{}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			var last disbursementapi.PlaceHoldRequest
			for range each {
				r := h.request(rng.IntN(2), 1+rng.Int64N(60))
				if last.HoldID != "" && rng.IntN(4) == 0 {
					r = last // the same hold again
				}
				last = r
				got, err := s.PlaceHold(h.ctx, r, h.now.Add(time.Hour), h.now)
				var ae *assist.Error
				switch {
				case err == nil && got.ID == r.HoldID && got.AmountCents == r.AmountCents && got.AvailableCents >= 0:
					held[i][r.HoldID] = r.AmountCents
				case errors.As(err, &ae) && ae.Code == assist.CodeInsufficientFunds && *ae.AvailableUSDCents < r.AmountCents:
				default:
					t.Errorf("hold %+v: %+v %v", r, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	sums := map[string]int64{}
	for _, hs := range held {
		for id := range hs {
			hold, err := s.Hold(h.ctx, id)
			if err != nil {
				t.Fatalf("hold %s answered placed: %v", id, err)
			}
			sums[hold.FundID] += hold.AmountCents
		}
	}
	for _, f := range h.funds {
		got, err := s.Fund(h.ctx, f.ID)
		if err != nil {
			t.Fatal(err)
		}
		var stored int64
		if err := s.db.QueryRow(h.ctx, `SELECT COALESCE(sum(amount), 0) FROM disb_holds WHERE fund_id = $1`, f.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if got.ReservedCents != stored || stored != sums[f.ID] || stored > f.AllocatedCents {
			t.Errorf("fund of %d: %d reserved, holds of %d stored, of %d answered", f.AllocatedCents, got.ReservedCents, stored, sums[f.ID])
		}
		t.Logf("fund of %d: %d held", f.AllocatedCents, stored)
	}
	if largest < 2 {
		t.Errorf("the largest batch written held %d holds: none was placed with another", largest)
	}
}

// A batch's writer that panics (a bug) answers the holds it left waiting
// with an error and panics again, and the fund's next holds are still
// placed: a panic does not leave every later hold of the fund waiting
// for a writer gone.
func TestAWriterThatPanicsWedgesNoFund(t *testing.T) {
	h := newHoldsAt(1_000)
	s := h.store(t)
	write := s.holds.write
	var writes atomic.Int32
	started, release := make(chan struct{}), make(chan struct{})
	s.holds.write = func(ctx context.Context, batch []*holdCall) {
		switch writes.Add(1) {
		case 1:
			close(started)
			<-release
		case 2:
			panic("a bug in the batch's write")
		}
		write(ctx, batch)
	}
	waiting := func() int {
		s.holds.mu.Lock()
		defer s.holds.mu.Unlock()
		return len(s.holds.waiting[h.funds[0].ID])
	}
	rs := []disbursementapi.PlaceHoldRequest{h.request(0, 100), h.request(0, 200), h.request(0, 300), h.request(0, 400)}
	answers := make([]string, len(rs))
	var panicked any
	var wg sync.WaitGroup
	wg.Go(func() { answers[0] = h.place(s, rs[0]) })
	<-started
	wg.Go(func() {
		defer func() { panicked = recover() }()
		answers[1] = h.place(s, rs[1]) // the second batch's writer
	})
	evatest.Eventually(t, "the second hold to wait", func() bool { return waiting() == 1 })
	wg.Go(func() { answers[2] = h.place(s, rs[2]) })
	evatest.Eventually(t, "the third hold to wait", func() bool { return waiting() == 2 })
	close(release)
	wg.Wait()
	answers[3] = h.place(s, rs[3])

	if panicked != "a bug in the batch's write" {
		t.Errorf("the second batch's writer recovered %v, want its panic", panicked)
	}
	if !strings.HasPrefix(answers[0], "{ID:"+rs[0].HoldID) || !strings.HasPrefix(answers[3], "{ID:"+rs[3].HoldID) {
		t.Errorf("the holds written before and after the panic answered %q and %q", answers[0], answers[3])
	}
	if !strings.Contains(answers[2], "panicked") {
		t.Errorf("the hold left waiting by the panic answered %q, want the writer's panic", answers[2])
	}
	if f, err := s.Fund(h.ctx, h.funds[0].ID); err != nil || f.ReservedCents != 500 {
		t.Errorf("fund: %+v %v, want 500 reserved (the first and the last hold)", f, err)
	}
	if n := waiting(); n != 0 || len(s.holds.waiting) != 0 {
		t.Errorf("%d holds still waiting, %d funds known, want none", n, len(s.holds.waiting))
	}
}

// A batch of holds runs apart from its callers' cancellation, but not for
// good: when the store stops answering (here, the fund's row locked by a
// transaction that does not end), the batch's holds are answered
// unavailable once holdGroups.timeout has passed, and none is placed.
func TestABatchStuckOnItsFundGivesUp(t *testing.T) {
	h := newHoldsAt(1_000)
	s := h.store(t)
	s.holds.timeout = 300 * time.Millisecond
	var once sync.Once
	locked, unlock, unlocked := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		unlocked <- s.db.Tx(h.ctx, func(q sqldb.Querier) error {
			if _, err := q.Exec(h.ctx, `SELECT 1 FROM disb_funds WHERE id = $1 FOR UPDATE`, h.funds[0].ID); err != nil {
				return err
			}
			once.Do(func() { close(locked) })
			<-unlock
			return nil
		})
	}()
	<-locked
	batch := []*holdCall{
		{r: h.request(0, 100), expires: h.now.Add(time.Hour), now: h.now, done: make(chan bool, 1)},
		{r: h.request(0, 200), expires: h.now.Add(time.Hour), now: h.now, done: make(chan bool, 1)},
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		s.placeHolds(h.ctx, batch)
	}()
	select {
	case <-written:
	case <-time.After(30 * time.Second):
		close(unlock)
		t.Fatal("the batch still waits for the locked fund")
	}
	for i, c := range batch {
		if !c.answered || !assist.IsCode(c.err, assist.CodeUnavailable) {
			t.Errorf("hold %d: answered %v with %v, want unavailable", i, c.answered, c.err)
		}
	}
	close(unlock)
	if err := <-unlocked; err != nil {
		t.Fatal(err)
	}
	if f, err := s.Fund(h.ctx, h.funds[0].ID); err != nil || f.ReservedCents != 0 {
		t.Errorf("fund: %+v %v, want nothing reserved", f, err)
	}
}
