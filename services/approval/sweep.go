package approval

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/eva-org/eva/pkg/timers"
)

// Deadlines and claim leases are swept (ADR 45). The queue keeps, for each
// case, when something of it falls due (due_at, dueAt). A sweep fires the
// timers of every case due by its time (fireCase, which re-checks each
// case against the log) and asks for the next sweep. Sweeps are timers of
// the timers stream like any other, one per quarter second (a slot) that
// has something due (TimerSweep, its id the slot's start in Unix
// milliseconds), so they survive restarts and any replica may fire them;
// a slot asked for twice is one timer. What asks for them:
//   - the queue's projection, once its transaction committed, for the due
//     times it wrote (SQLStore.dues: sweeper.want);
//   - every sweep, for the earliest due time left, and never later than
//     sweepAtLeast from now: a due time whose asking was lost (a crash
//     right after the commit, the stream unreachable) is swept at most
//     that late, and the sweeps go on while nothing is due;
//   - Run, when it starts: a sweep two seconds later, for what fell due
//     while no approval ran.
//
// A case filed, claimed and decided used to set two timers and purge one,
// three fsynced writes to the timers stream, and the log's events were
// read by a consumer of their own to do it; now a busy approval asks for
// at most four sweeps a second.

// The sweeps' bounds.
const (
	// sweepSlot is the time one sweep sees to: the server checks its
	// schedules every 250 ms.
	sweepSlot = 250 * time.Millisecond
	// sweepAtLeast is the longest a sweep asks for the next one ahead.
	sweepAtLeast = time.Minute
	// sweepSoon is how far ahead a time due already (or too near to
	// trust a stored sweep for it) is swept: all such times of the next
	// slot share one sweep.
	sweepSoon = 2 * time.Second
	// sweepGuard is how far ahead a sweep this process stored must be to
	// be trusted still pending: one that is due may have fired already.
	sweepGuard = time.Second
	// sweepPage is how many cases a sweep reads at once, sweepWorkers how
	// many of their timers it fires at once.
	sweepPage    = 256
	sweepWorkers = 8
	// wantTimeout bounds the asking for the sweeps of one transaction.
	wantTimeout = 10 * time.Second
)

// sweeper asks the timers stream for sweeps, and remembers which slots it
// asked for while they are ahead, so that the cases due in the same slot
// ask once.
type sweeper struct {
	timers *timers.Timers
	now    func() time.Time
	zl     *zap.Logger

	mu sync.Mutex
	// asked are the slots this process asked a sweep for, by their start
	// (Unix milliseconds): being set, or stored (true).
	asked   map[int64]bool
	cleaned time.Time // when asked last lost the slots passed
	// ctx ends the askings in the background (want), wg counts them
	// (bind).
	ctx context.Context
	wg  sync.WaitGroup
}

// newSweeper returns a sweeper on tm; nil (which asks for nothing) when tm
// is nil.
func newSweeper(tm *timers.Timers, now func() time.Time, zl *zap.Logger) *sweeper {
	if tm == nil {
		return nil
	}
	return &sweeper{timers: tm, now: now, zl: zl, asked: map[int64]bool{}, ctx: context.Background()}
}

// bind ends the askings in the background when ctx ends, and returns a
// function that waits for them to end (Run's last step, once its
// consumers, which ask, have stopped).
func (w *sweeper) bind(ctx context.Context) (wait func()) {
	if w == nil {
		return func() {}
	}
	w.mu.Lock()
	w.ctx = ctx
	w.mu.Unlock()
	return w.wg.Wait
}

// slot is the slot whose sweep sees to what falls due at at, by its start
// in Unix milliseconds: the one that starts at or after at, or, for a
// time already due or too near, the one sweepSoon from now.
func slot(at, now time.Time) int64 {
	at = at.Add(sweepSlot - 1).Truncate(sweepSlot)
	if soon := now.Add(sweepSoon).Truncate(sweepSlot); at.Before(soon) {
		at = soon
	}
	return at.UnixMilli()
}

// pending reports whether the sweep of slot s is stored and still ahead
// enough to be trusted; w.mu held.
func (w *sweeper) pending(s int64, now time.Time) bool {
	return w.asked[s] && time.UnixMilli(s).After(now.Add(sweepGuard))
}

// forget drops the slots passed, every ten seconds at most; w.mu held.
func (w *sweeper) forget(now time.Time) {
	if now.Sub(w.cleaned) < 10*time.Second {
		return
	}
	w.cleaned = now
	for s := range w.asked {
		if s <= now.UnixMilli() {
			delete(w.asked, s)
		}
	}
}

// ask sets the sweep of slot s and waits until the stream stored it.
func (w *sweeper) ask(ctx context.Context, s int64) error {
	err := w.timers.Set(ctx, TimerSweep, strconv.FormatInt(s, 10), time.UnixMilli(s))
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.asked[s] = true
	} else if !w.asked[s] {
		delete(w.asked, s)
	}
	return err
}

// ensure asks for a sweep at or after at, unless one is pending for its
// slot, and waits until the stream stored it.
func (w *sweeper) ensure(ctx context.Context, at time.Time) error {
	if w == nil {
		return nil
	}
	now := w.now()
	s := slot(at, now)
	w.mu.Lock()
	pending := w.pending(s, now)
	w.mu.Unlock()
	if pending {
		return nil
	}
	return w.ask(ctx, s)
}

// want asks for the sweeps of the times due, without waiting (a
// projection's after-commit hook): the slots pending or being set are not
// asked again; the others are set in the background. One that cannot be
// set is logged: the sweep before it asks for it (sweepAtLeast).
func (w *sweeper) want(dues []time.Time) {
	now := w.now()
	var slots []int64
	w.mu.Lock()
	base := w.ctx
	w.forget(now)
	for _, at := range dues {
		s := slot(at, now)
		if stored, ok := w.asked[s]; ok && (!stored || w.pending(s, now)) {
			continue
		}
		w.asked[s] = false
		slots = append(slots, s)
	}
	w.mu.Unlock()
	if len(slots) == 0 {
		return
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		ctx, cancel := context.WithTimeout(base, wantTimeout)
		defer cancel()
		for _, s := range slots {
			if err := w.ask(ctx, s); err != nil && base.Err() == nil {
				w.zl.Warn("ask for a sweep; an earlier sweep asks for it again", zap.Time("slot", time.UnixMilli(s)), zap.Error(err))
			}
		}
	}()
}

// sweep fires the timers of every case due by now, in the order of their
// due times, sweepWorkers at once, then asks for the next sweep: at the
// earliest due time left, or sweepAtLeast from now if that is sooner. A
// case that fails does not stop the others; the sweep then fails, and is
// delivered again (the cases handled find nothing left to do). A case
// that keeps failing is fired again at growing intervals, not at every
// sweep (backoffs), and the next sweep is asked for at the earliest of
// them too. One sweep runs at a time in a process.
func (s *Service) sweep(ctx context.Context) error {
	s.sweeping.Lock()
	defer s.sweeping.Unlock()
	now := s.now()
	var (
		cursor dueCursor
		mu     sync.Mutex
		errs   []error
		due    = map[string]bool{}
	)
	for {
		cases, last, err := s.store.dueCases(ctx, now, cursor, sweepPage)
		if err != nil {
			return err
		}
		var g errgroup.Group
		g.SetLimit(sweepWorkers)
		for _, c := range cases {
			due[c.ID] = true
			if s.backoffs.waiting(c.ID, now) {
				continue
			}
			for _, kind := range dueKinds(c, now) {
				g.Go(func() error {
					err := s.fire(ctx, kind, c.ID)
					if err == nil {
						s.backoffs.succeeded(c.ID, now)
						return nil
					}
					n, at := s.backoffs.failed(c.ID, now)
					s.zl.Warn("due action failed; will retry", zap.String("case", c.ID), zap.String("kind", kind),
						zap.Int("failures", n), zap.Time("retry_at", at), zap.Error(err))
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return nil
				})
			}
		}
		_ = g.Wait()
		if len(cases) < sweepPage {
			break
		}
		cursor = last
	}
	s.backoffs.keep(due)
	next := now.Add(sweepAtLeast)
	if at, ok := s.backoffs.earliest(); ok && at.Before(next) {
		next = at
	}
	at, ok, err := s.store.nextDue(ctx, now)
	if err != nil {
		return err
	}
	if ok && at.Before(next) {
		next = at
	}
	if err := s.sweeper.ensure(ctx, next); err != nil {
		return err
	}
	if len(errs) > 0 {
		return errors.Join(errs[:min(len(errs), 3)]...)
	}
	return nil
}

// backoffs are the cases whose due action failed, each with its failures
// in a row and when a sweep may fire it again: after one failure a
// second, then twice as long after each, at most sweepAtLeast. A case
// that cannot be fired (its history unreadable, say) is thus tried a few
// times a minute, and less and less, rather than by every sweep (up to
// four a second while other cases fall due) and by each redelivery of
// the sweep it failed. Kept in memory: a restart fires each at once
// again. A case no longer due when a sweep ends is dropped, so there are
// never more than the cases due.
type backoffs struct {
	mu sync.Mutex
	m  map[string]backoff
}

type backoff struct {
	failures int
	at       time.Time
}

// retryAfter is how long a case that failed n times in a row waits.
func retryAfter(n int) time.Duration {
	if n > 16 {
		return sweepAtLeast
	}
	return min(time.Second<<(n-1), sweepAtLeast)
}

// waiting reports whether the case failed and may not be fired yet.
func (r *backoffs) waiting(id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.m[id]
	return ok && f.at.After(now)
}

// failed counts a failure of the case at now; it returns the failures in
// a row and when the case may be fired again.
func (r *backoffs) failed(id string, now time.Time) (int, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]backoff{}
	}
	f := r.m[id]
	if f.at.After(now) {
		return f.failures, f.at // another of its kinds failed in this sweep
	}
	f.failures++
	f.at = now.Add(retryAfter(f.failures))
	r.m[id] = f
	return f.failures, f.at
}

// succeeded forgets the case's failures, unless another of its kinds
// failed in the same sweep (at now): its wait then stands.
func (r *backoffs) succeeded(id string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.m[id]; ok && !f.at.After(now) {
		delete(r.m, id)
	}
}

// keep forgets the cases not in due.
func (r *backoffs) keep(due map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.m {
		if !due[id] {
			delete(r.m, id)
		}
	}
}

// earliest is the soonest time a failed case may be fired again.
func (r *backoffs) earliest() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var first time.Time
	for _, f := range r.m {
		if first.IsZero() || f.at.Before(first) {
			first = f.at
		}
	}
	return first, !first.IsZero()
}
