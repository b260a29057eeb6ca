package disbursement

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/rpc"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// holdGroups places the concurrent holds of one fund together (group
// commit, on PostgreSQL): each hold updates its fund's row, which stays
// locked until the hold's commit is durable, so the holds of one fund
// take turns at the pace of the log's flushes. Each caller waits until
// its own hold is answered; the first to find no write of its fund under
// way writes what is waiting, and the holds of the fund that arrive
// meanwhile wait for the next write, all of them in one transaction and
// one flush. When a write ends, the first of those waiting writes the
// next batch, so no caller writes for others once answered. An idle
// store places each hold alone, as before; nothing waits on a timer.
type holdGroups struct {
	// write places a batch of one fund's holds (the first is its
	// writer's) and answers each (SQLStore.placeHolds).
	write func(ctx context.Context, batch []*holdCall)

	// timeout bounds the write of a batch of several, which runs apart
	// from its callers' cancellation; 0 is rpc.DefaultTimeout, as long as
	// one caller's own call may take.
	timeout time.Duration

	mu sync.Mutex
	// waiting holds, by fund, the holds waiting for the next write; a
	// fund is there only while a write of its holds is under way.
	waiting map[string][]*holdCall
}

// holdCall is a caller's hold, and its answer once written.
type holdCall struct {
	r            disbursementapi.PlaceHoldRequest
	expires, now time.Time

	h        disbursementapi.Hold
	err      error
	answered bool // by its batch's writer
	// done says true when the hold is answered, false when its caller is
	// to write the next batch.
	done chan bool
}

// answer gives the hold its answer and wakes its caller.
func (c *holdCall) answer(h disbursementapi.Hold, err error) {
	c.h, c.err, c.answered = h, err, true
	c.done <- true
}

// place places r with the holds of its fund that wait meanwhile, and
// returns when it is answered.
func (g *holdGroups) place(ctx context.Context, r disbursementapi.PlaceHoldRequest, expires, now time.Time) (disbursementapi.Hold, error) {
	c := &holdCall{r: r, expires: expires, now: now, done: make(chan bool, 1)}
	fund := r.FundID
	g.mu.Lock()
	if g.waiting == nil {
		g.waiting = map[string][]*holdCall{}
	}
	waiting, writing := g.waiting[fund]
	g.waiting[fund] = append(waiting, c)
	g.mu.Unlock()
	if writing {
		if answered := <-c.done; answered {
			return c.h, c.err
		}
	}
	g.mu.Lock()
	batch := g.waiting[fund]
	g.waiting[fund] = nil
	g.mu.Unlock()
	defer g.handOff(fund)
	defer unwedge(batch)
	g.write(ctx, batch)
	return c.h, c.err
}

// handOff wakes the first of the fund's holds that waited for the write
// that ended, to write them, or forgets the fund when none did.
func (g *holdGroups) handOff(fund string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if next := g.waiting[fund]; len(next) > 0 {
		next[0].done <- false
	} else {
		delete(g.waiting, fund)
	}
}

// unwedge answers, when the write of batch panicked, the holds it left
// unanswered, with an internal error, and panics again: their callers
// return, and the fund's next holds are written (handOff), instead of
// every later hold of the fund waiting for good on a writer gone.
func unwedge(batch []*holdCall) {
	p := recover()
	if p == nil {
		return
	}
	for _, c := range batch {
		if !c.answered {
			c.answer(disbursementapi.Hold{}, fmt.Errorf("place hold: the batch's writer panicked: %v", p))
		}
	}
	panic(p)
}

// placeHolds places a batch of one fund's holds and answers each: one
// alone (placeAlone); several in one transaction (placeTogether), with
// context.WithoutCancel of the writer's ctx, so that its caller's going
// away fails no other, bounded by holdGroups.timeout, so that a store
// that stops answering (a lock never released, a connection gone quiet)
// answers them unavailable rather than never. When that transaction
// fails for another reason than an outage (the same hold placed at once
// by another store, a deadlock), each is placed alone, so that one
// hold's failure fails no other.
func (s *SQLStore) placeHolds(ctx context.Context, batch []*holdCall) {
	if len(batch) == 1 {
		c := batch[0]
		c.answer(s.placeAlone(ctx, c.r, c.expires, c.now))
		return
	}
	timeout := s.holds.timeout
	if timeout <= 0 {
		timeout = rpc.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	placed, err := s.placeTogether(ctx, batch)
	for i, c := range batch {
		switch {
		case err == nil:
			c.answer(s.placedAnswer(ctx, c.r, c.expires, placed[i]))
		case assist.IsCode(err, assist.CodeUnavailable):
			c.answer(disbursementapi.Hold{}, err)
		default:
			c.answer(s.placeAlone(ctx, c.r, c.expires, c.now))
		}
	}
}

// placeTogether places holds in one transaction, each with placeHold in
// turn, so that each one's guard sees the money that the ones before it
// took, and commits them with one flush. It answers none.
func (s *SQLStore) placeTogether(ctx context.Context, batch []*holdCall) ([]placement, error) {
	var out []placement
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		out = make([]placement, len(batch)) // afresh if the transaction runs again
		for i, c := range batch {
			var err error
			if out[i], err = runPlaceHold(ctx, q, c.r, c.expires, c.now); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}
