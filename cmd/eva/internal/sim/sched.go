package sim

import (
	"context"
	"fmt"
	"runtime"
)

// The scheduler runs the real code of the money path in goroutines, one at
// a time: a task runs until it reaches a yield point — a call to the
// database, the event log, the provider or another service, which is
// where a real process could be overtaken or die — and parks there; the
// seed then chooses which parked task goes on. So every interleaving of
// those calls can happen, and the same seed gives the same one.

// task is one activity of a node (a request being served, the payout
// worker's pass, a consumer's batch) or of a client.
type task struct {
	id      int
	name    string
	node    int // the node it runs on
	at      string
	resume  chan bool // true: go on; false: the node crashed
	crashed bool
	cancel  context.CancelFunc
	// onDone runs in the scheduler when the task ends, crashed or not.
	onDone func(crashed bool)
}

type taskKey struct{}

type schedEvent struct {
	t    *task
	done bool
}

type scheduler struct {
	events chan schedEvent
	parked []*task // in the order they parked
	next   int
}

func newScheduler() *scheduler { return &scheduler{events: make(chan schedEvent)} }

// spawn makes a task that starts parked: it runs f when first chosen.
func (s *scheduler) spawn(ctx context.Context, name string, node int, f func(ctx context.Context), onDone func(crashed bool)) {
	s.next++
	t := &task{id: s.next, name: name, node: node, at: "start", resume: make(chan bool), onDone: onDone}
	ctx, t.cancel = context.WithCancel(context.WithValue(ctx, taskKey{}, t))
	go func() {
		defer func() { s.events <- schedEvent{t: t, done: true} }()
		if !<-t.resume {
			runtime.Goexit()
		}
		f(ctx)
	}()
	s.parked = append(s.parked, t)
}

// yield parks the calling task at a named point until the scheduler lets
// it go on; a task whose node crashed meanwhile ends there, doing nothing
// more (deferred calls run: a transaction not committed rolls back). Code
// outside any task (setup, checks) does not park.
func yield(ctx context.Context, at string) {
	t, _ := ctx.Value(taskKey{}).(*task)
	if t == nil {
		return
	}
	if t.crashed {
		runtime.Goexit()
	}
	// The sender is whichever goroutine of the task reached the point.
	sched := ctx.Value(schedKey{}).(*scheduler)
	t.at = at
	sched.events <- schedEvent{t: t}
	if !<-t.resume {
		runtime.Goexit()
	}
}

type schedKey struct{}

// step lets parked task i go on until it parks again or ends; it reports
// whether it ended.
func (s *scheduler) step(i int) (t *task, ended bool) {
	t = s.parked[i]
	s.parked = append(s.parked[:i], s.parked[i+1:]...)
	t.resume <- true
	return t, s.wait(t)
}

// wait waits for the running task t to park or end.
func (s *scheduler) wait(t *task) bool {
	ev := <-s.events
	if ev.t != t {
		panic(fmt.Sprintf("sim: task %d (%s) moved while %d (%s) was running", ev.t.id, ev.t.name, t.id, t.name))
	}
	if ev.done {
		t.cancel()
		if t.onDone != nil {
			t.onDone(t.crashed)
		}
		return true
	}
	s.parked = append(s.parked, t)
	return false
}

// crash ends every task of node: each leaves its yield point at once and
// does nothing more.
func (s *scheduler) crash(node int) []*task {
	var dead, kept []*task
	for _, t := range s.parked {
		if t.node == node {
			dead = append(dead, t)
		} else {
			kept = append(kept, t)
		}
	}
	s.parked = kept
	for _, t := range dead {
		t.crashed = true
		t.cancel()
		t.resume <- false
		if !s.wait(t) {
			panic("sim: a crashed task parked again")
		}
	}
	return dead
}
