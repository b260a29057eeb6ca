// Package sim is a deterministic simulator of EVA's money path, in the
// spirit of TigerBeetle's VOPR: one seed drives approvals racing for small
// funds, the payout worker, the provider, the ledger's consumer and the
// hold sweeper — the services' real code on a real embedded SQLite
// database — through redeliveries, lost acks, provider faults, crashes
// between any two calls and clock jumps, and the money invariants of
// DESIGN.md §5 are checked after every step. A failure names its seed;
// the same seed replays the same schedule.
//
// The event log is a fake of the JetStream stream (fakeStream), the
// provider a fake bank (fakeBank); everything between them is EVA's.
package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
)

// Config is one simulation.
type Config struct {
	Seed uint64
	// Steps bounds the faulty phase, in scheduler steps; default 300.
	Steps int
	// Dir holds the simulation's database, removed at the end; default
	// /dev/shm when there is one (no fsync cost), else the temp dir.
	Dir string
	// Provider, when set, wraps the fake bank as the services see it:
	// tests plant bugs with it to prove that the simulator finds them.
	Provider func(disbursement.Provider) disbursement.Provider
	// Trace, when set, receives each step as it happens.
	Trace func(line string)
}

// Result is what a simulation did.
type Result struct {
	Seed      uint64
	Steps     int // scheduler steps, both phases
	Events    int // events in the log at the end
	Approved  int // approvals acknowledged to a client
	Refused   int // approvals definitely refused
	Paid      int // payments the bank made
	Crashes   int
	Redeliver int // deliveries of an event after its first
	Gaps      int // batches left unacked because an event came before the one it follows
	Batches   int // atomic batches stored (a payment sent and settled at once)
	// Types counts the log's events by type (FundsReleased by cause):
	// what the seed exercised.
	Types map[string]int
	// Err is the broken invariant (a *Failure), or an error running the
	// simulation itself.
	Err error
}

// Failure is a broken invariant: the seed, the step, what broke, and the
// steps that led there.
type Failure struct {
	Seed      uint64
	Step      int
	Invariant string
	Trace     []string
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, step %d: %s\nreplay: eva sim -seed %d -v", f.Seed, f.Step, f.Invariant, f.Seed)
	tail := f.Trace
	if len(tail) > 60 {
		fmt.Fprintf(&b, "\n  … %d steps before", len(tail)-60)
		tail = tail[len(tail)-60:]
	}
	for _, l := range tail {
		b.WriteString("\n  ")
		b.WriteString(l)
	}
	return b.String()
}

const holdTTL = 5 * time.Minute

// policy is the default one, but for a second approval above 120 USD:
// about half the requests need two approvers.
var policy = func() assist.Policy {
	p := assist.DefaultPolicy()
	p.SecondApprovalAboveUSDCents = 12_000
	return p
}()

// Kinds of fault and how likely each may be (per mille, the most a seed
// chooses: each seed draws its own rate for each, from calm to stormy).
const (
	faultLogBefore = iota
	faultLogAfter
	faultLogRead
	faultProviderBefore
	faultProviderAfter
	faultProviderDecline
	faultProviderSlow
	faultRPCBefore
	faultRPCAfter
	faultAckLost
	nFaults
)

var (
	faultMax      = [nFaults]int{50, 50, 30, 150, 150, 300, 400, 80, 80, 150}
	faultVariants = [nFaults]int{3, 1, 1, 1, 1, 1, 1, 1, 1, 1}
)

type world struct {
	cfg    Config
	ctx    context.Context
	rng    *rand.Rand
	clock  *clock
	sched  *scheduler
	stream *fakeStream
	bank   *fakeBank
	prov   disbursement.Provider
	db     sqldb.DB
	log    *eventlog.Log
	nodes  []*node
	cons   *consumer
	funds  []disbursementapi.Fund
	payees []string
	cases  []*simCase
	fin    bool // a finance task is in flight
	faultP [nFaults]int
	calm   bool
	dirty  bool // the database or the bank changed since the last check
	step   int
	trace  []string
	failed *Failure
	res    Result
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

type node struct {
	i                         int
	approval                  *approval.Service
	money                     *disbursement.Service
	worker, sweeper, consumer bool // its loop has a task in flight
}

// simCase is a request and the approvers trying to approve it.
type simCase struct {
	i       int
	id      string
	amount  int64
	clients []*client
}

// client is an approver at a browser: it claims and approves, retrying
// with the same command id when it got no answer and with a new one when
// it was refused.
type client struct {
	c        *simCase
	name     string
	actor    assist.Actor
	fund     disbursementapi.Fund
	cmdID    string
	rejects  bool // rejects rather than approves
	busy     bool
	done     bool
	tries    int // with this command id
	rounds   int // command ids used
	acked    []string
	refused  []string
	unsure   []string
	lastCode assist.Code
}

// Run runs one simulation. It returns when the seed's schedule ran and
// the system settled, or at the first broken invariant.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Steps <= 0 {
		cfg.Steps = 300
	}
	if cfg.Dir == "" {
		cfg.Dir = os.TempDir()
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			cfg.Dir = "/dev/shm"
		}
	}
	w := &world{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x45564153494d)), // "EVASIM"
		clock: &clock{t: time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)}, sched: newScheduler()}
	w.ctx = context.WithValue(ctx, schedKey{}, w.sched)
	w.res.Seed = cfg.Seed
	err := w.run()
	w.res.Steps = w.step
	if w.stream != nil {
		w.res.Events, w.res.Batches = len(w.stream.msgs), w.stream.batches
		w.res.Types = map[string]int{}
		for _, r := range w.events() {
			t := r.Event.Type()
			if b, ok := r.Event.Body.(assist.FundsReleased); ok {
				t += releaseCauses[b.Cause]
			}
			w.res.Types[t]++
		}
	}
	if w.bank != nil {
		w.res.Paid = len(w.bank.paid())
	}
	switch {
	case w.failed != nil:
		w.res.Err = w.failed
	case err != nil:
		w.res.Err = fmt.Errorf("seed %d: %w", cfg.Seed, err)
	}
	return w.res
}

func (w *world) run() error {
	dir, err := os.MkdirTemp(w.cfg.Dir, "eva-sim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	schema, err := migrated(w.ctx, dir)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "disbursement.db")
	if err := os.WriteFile(path, schema, 0o600); err != nil {
		return err
	}
	db, err := sqldb.OpenSQLite(w.ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	w.db = db
	for k := range w.faultP {
		w.faultP[k] = w.rng.IntN(faultMax[k] + 1)
	}
	w.stream = newFakeStream(w)
	w.log = eventlog.OnStore(w.stream)
	w.bank = newFakeBank(w)
	w.prov = w.bank
	if w.cfg.Provider != nil {
		w.prov = w.cfg.Provider(w.bank)
	}
	w.cons = &consumer{acked: map[uint64]bool{}, inflight: map[uint64]int{}, delivered: map[uint64]int{}}
	for i := range 1 + w.rng.IntN(3) {
		n := &node{i: i}
		w.boot(n)
		w.nodes = append(w.nodes, n)
	}
	if err := w.setup(); err != nil {
		return err
	}
	w.tracef("setup: %d nodes, %d funds %v, %d cases, dedupe-first %v, faults ‰ %v", len(w.nodes), len(w.funds),
		fundsText(w.funds), len(w.cases), w.stream.dedupeFirst, w.faultP)

	for w.step < w.cfg.Steps && w.failed == nil {
		w.step++
		w.act()
		w.check()
	}
	if w.failed != nil {
		w.drain()
		return nil
	}
	w.calm = true
	w.tracef("calm: faults end; the system must settle")
	w.settle()
	w.drain()
	if w.failed == nil {
		w.checkFinal()
	}
	return nil
}

// schema is an empty database file with disbursement's schema, made once:
// each seed starts from a copy instead of migrating.
var schema struct {
	once sync.Once
	file []byte
	err  error
}

func migrated(ctx context.Context, dir string) ([]byte, error) {
	schema.once.Do(func() {
		path := filepath.Join(dir, "schema.db")
		db, err := sqldb.OpenSQLite(ctx, path)
		if err != nil {
			schema.err = err
			return
		}
		schema.err = disbursement.Migrate(ctx, db)
		db.Close() // checkpoints the log into the file
		if schema.err == nil {
			schema.file, schema.err = os.ReadFile(path)
		}
		os.Remove(path)
	})
	return schema.file, schema.err
}

// boot (re)starts a node's services from the stores: whatever it held in
// memory is gone.
func (w *world) boot(n *node) {
	db := yieldingDB{DB: w.db, w: w}
	zl := w.logger(n)
	n.money = disbursement.New(disbursement.Deps{Config: disbursement.Config{HoldTTL: holdTTL, Workers: 1,
		Poll: time.Second, SettlePoll: 5 * time.Second}, Log: w.log, DB: db, Provider: w.prov, Logger: zl, Now: w.clock.now})
	n.approval = approval.New(approval.Deps{Config: approval.Config{Policy: policy}, Log: w.log, DB: db,
		Holds: holdsCall{w: w, node: n}, Logger: zl, Now: w.clock.now})
}

// logger writes what a node's services log into the trace.
func (w *world) logger(n *node) *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.TimeKey, enc.CallerKey, enc.StacktraceKey = "", "", ""
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(traceWriter{w, n.i}), zap.DebugLevel))
}

type traceWriter struct {
	w    *world
	node int
}

func (t traceWriter) Write(p []byte) (int, error) {
	t.w.tracef("n%d log: %s", t.node, strings.TrimSpace(string(p)))
	return len(p), nil
}

var (
	requester = assist.Actor{Username: "req", Role: assist.RoleRequester, Post: "SIM-POST"}
	finance   = assist.Actor{Username: "fin", Role: assist.RoleFinance}
)

// setup creates funds, payees and cases through the services, calm.
func (w *world) setup() error {
	w.calm = true
	defer func() { w.calm = false }()
	ctx, money := w.ctx, w.nodes[0].money
	for i := range 1 + w.rng.IntN(2) {
		f, err := money.CreateFund(ctx, disbursementapi.CreateFundRequest{CommandID: w.newID(), Actor: finance,
			Name: fmt.Sprintf("fund %d", i), AllocatedCents: int64(2+w.rng.IntN(5)) * 10_000})
		if err != nil {
			return fmt.Errorf("create fund: %w", err)
		}
		w.funds = append(w.funds, f)
	}
	for i := range 1 + w.rng.IntN(2) {
		p, err := money.CreatePayee(ctx, disbursementapi.CreatePayeeRequest{CommandID: w.newID(), Actor: finance,
			Name: fmt.Sprintf("payee %d", i), Account: fmt.Sprintf("ACC-%d", i)})
		if err != nil {
			return fmt.Errorf("create payee: %w", err)
		}
		w.payees = append(w.payees, p.ID)
	}
	for i := range 3 + w.rng.IntN(6) {
		c := &simCase{i: i, id: w.newID(), amount: int64(5+w.rng.IntN(16)) * 1_000}
		ev, err := assist.Submit(assist.Cmd{ID: c.id, Actor: requester, At: w.clock.now()}, assist.SubmitInput{
			Post: requester.Post, Category: assist.Shelter, Urgency: assist.Urgent, AmountCents: c.amount,
			Justification: "simulated", BeneficiaryRefHash: []byte{byte(i)}, PayeeID: w.payees[w.rng.IntN(len(w.payees))]}, policy)
		if err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		if _, err := w.log.Start(ctx, ev); err != nil {
			return fmt.Errorf("start case: %w", err)
		}
		// One or two approvers; always two above the second-approval
		// threshold. Some reject instead of approving.
		first := 1 + w.rng.IntN(3)
		approvers := []int{first}
		if c.amount > policy.SecondApprovalAboveUSDCents || w.rng.IntN(2) == 0 {
			approvers = append(approvers, 1+(first+w.rng.IntN(2))%3)
		}
		fund := w.funds[w.rng.IntN(len(w.funds))] // the second approver approves from the first's
		for _, a := range approvers {
			name := fmt.Sprintf("ap%d", a)
			c.clients = append(c.clients, &client{c: c, name: fmt.Sprintf("%s/case%d", name, i),
				actor: assist.Actor{Username: name, Role: assist.RoleApprover}, fund: fund,
				cmdID: w.newID(), rejects: w.rng.IntN(6) == 0})
		}
		w.cases = append(w.cases, c)
	}
	return nil
}

// newID is a UUID drawn from the seed, so that the ids the simulator
// chooses (cases, commands) are the same on a replay.
func (w *world) newID() string {
	var u uuid.UUID
	for i := range u {
		u[i] = byte(w.rng.UintN(256))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u.String()
}

// fault draws whether a fault of kind k happens now: 0 for none, else
// which variant.
func (w *world) fault(k int) int {
	// Once calm, only what a healthy provider does goes on: it declines
	// some payments and answers some slowly.
	if w.calm && k != faultProviderDecline && k != faultProviderSlow || w.rng.IntN(1000) >= w.faultP[k] {
		return 0
	}
	return 1 + w.rng.IntN(faultVariants[k])
}

func (w *world) tracef(format string, args ...any) {
	line := fmt.Sprintf("%4d %s ", w.step, w.clock.now().Format("15:04:05.000")) + fmt.Sprintf(format, args...)
	w.trace = append(w.trace, line)
	if w.cfg.Trace != nil {
		w.cfg.Trace(line)
	}
}

func (w *world) fail(format string, args ...any) {
	if w.failed != nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	w.tracef("BROKEN: %s", msg)
	w.failed = &Failure{Seed: w.cfg.Seed, Step: w.step, Invariant: msg, Trace: slices.Clone(w.trace)}
}

// act takes one step: a parked task goes on, a new task starts, a node
// crashes and restarts, or the clock jumps.
func (w *world) act() {
	type choice struct {
		weight int
		do     func()
	}
	var cs []choice
	if len(w.sched.parked) > 0 {
		cs = append(cs, choice{60, w.runOne})
	}
	if cl := w.idleClients(); len(cl) > 0 {
		cs = append(cs, choice{10, func() { w.startClient(cl[w.rng.IntN(len(cl))], w.pickNode()) }})
	}
	if w.cons.pending(w) > 0 {
		cs = append(cs, choice{15, func() { w.startDelivery(w.pickNode()) }})
	}
	cs = append(cs, choice{10, func() { w.startWorker(w.pickNode()) }},
		choice{3, func() { w.startSweeper(w.pickNode()) }},
		choice{4, w.jump},
		choice{2, func() { w.crash(w.pickNode()) }})
	cs = append(cs, choice{3, func() { w.startFinance(false) }})
	total := 0
	for _, c := range cs {
		total += c.weight
	}
	r := w.rng.IntN(total)
	for _, c := range cs {
		if r < c.weight {
			c.do()
			return
		}
		r -= c.weight
	}
}

func (w *world) pickNode() *node { return w.nodes[w.rng.IntN(len(w.nodes))] }

// runOne lets a parked task, chosen by the seed, go on to its next yield
// point.
func (w *world) runOne() {
	i := w.rng.IntN(len(w.sched.parked))
	t := w.sched.parked[i]
	from := t.at
	_, ended := w.sched.step(i)
	if ended {
		w.tracef("n%d %s: %s → end", t.node, t.name, from)
	} else {
		w.tracef("n%d %s: %s → %s", t.node, t.name, from, t.at)
	}
}

// jump moves the clock: a little, past a worker's lease, or past holds
// and claims.
func (w *world) jump() {
	var d time.Duration
	switch r := w.rng.IntN(10); {
	case r < 4:
		d = time.Duration(1+w.rng.IntN(5000)) * time.Millisecond
	case r < 8:
		d = time.Duration(10+w.rng.IntN(50)) * time.Second
	default:
		d = time.Duration(5+w.rng.IntN(30)) * time.Minute
	}
	w.clock.t = w.clock.t.Add(d)
	w.tracef("clock +%s", d)
}

// crash kills a node between two of its calls, and restarts it from the
// stores.
func (w *world) crash(n *node) {
	dead := w.sched.crash(n.i)
	names := make([]string, len(dead))
	for i, t := range dead {
		names[i] = t.name + "@" + t.at
	}
	w.boot(n)
	w.res.Crashes++
	w.tracef("n%d CRASH and restart; lost in flight: %s", n.i, strings.Join(names, ", "))
}

func (w *world) spawn(n *node, name string, f func(ctx context.Context), onDone func(crashed bool)) {
	w.sched.spawn(w.ctx, name, n.i, f, onDone)
	w.tracef("n%d %s: start", n.i, name)
}

func (w *world) idleClients() []*client {
	var out []*client
	for _, c := range w.cases {
		for _, cl := range c.clients {
			if !cl.busy && !cl.done {
				out = append(out, cl)
			}
		}
	}
	return out
}

// startClient sends a client's claim and approval to a node.
func (w *world) startClient(cl *client, n *node) {
	cl.busy = true
	cmdID := cl.cmdID
	var outcome error
	verb := "approve "
	if cl.rejects {
		verb = "reject "
	}
	w.spawn(n, verb+cl.name, func(ctx context.Context) {
		_, err := n.approval.Claim(ctx, approvalapi.CaseCommand{CommandID: w.newID(), Actor: cl.actor, CaseID: cl.c.id})
		if err != nil && !assist.IsCode(err, assist.CodeConflict) {
			outcome = err
			return
		}
		if cl.rejects {
			_, outcome = n.approval.Reject(ctx, approvalapi.RejectRequest{CommandID: cmdID, Actor: cl.actor, CaseID: cl.c.id,
				Reason: "simulated"})
			return
		}
		_, outcome = n.approval.Approve(ctx, approvalapi.ApproveRequest{CommandID: cmdID, Actor: cl.actor, CaseID: cl.c.id,
			AmountCents: cl.c.amount, FundID: cl.fund.ID})
	}, func(crashed bool) {
		cl.busy = false
		w.answer(cl, cmdID, crashed, outcome)
	})
}

// answer is what the client does with an answer: done when approved or
// refused for lack of money, the same command again when it got no
// answer, a new command when refused otherwise.
func (w *world) answer(cl *client, cmdID string, crashed bool, err error) {
	code := assist.ErrorCode(err)
	switch {
	case crashed:
		w.tracef("client %s: no answer (node crashed)", cl.name)
	case err == nil && cl.rejects:
		w.tracef("client %s: rejected", cl.name)
		cl.done = true
		return
	case err == nil:
		w.tracef("client %s: approved", cl.name)
		cl.acked = append(cl.acked, cmdID)
		w.res.Approved++
		cl.done = true
		return
	default:
		w.tracef("client %s: %s: %v", cl.name, code, firstLine(err))
	}
	cl.lastCode = code
	switch {
	case crashed, code == assist.CodeUnavailable, code == assist.CodeInternal:
		cl.tries++
		if cl.tries >= 8 {
			cl.unsure = append(cl.unsure, cmdID)
			cl.done = true
		}
	case code == assist.CodeInsufficientFunds:
		cl.refused = append(cl.refused, cmdID) // an approval: rejecting needs no money
		w.res.Refused++
		cl.done = true
	default:
		cl.refused = append(cl.refused, cmdID)
		w.res.Refused++
		cl.rounds++
		cl.cmdID, cl.tries = w.newID(), 0
		if cl.rounds >= 3 {
			cl.done = true
		}
	}
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

func (w *world) startWorker(n *node) {
	if n.worker {
		return
	}
	n.worker = true
	w.spawn(n, "worker", func(ctx context.Context) { n.money.RunDue(ctx) }, func(bool) { n.worker = false })
}

func (w *world) startSweeper(n *node) {
	if n.sweeper {
		return
	}
	n.sweeper = true
	w.spawn(n, "sweeper", func(ctx context.Context) { n.money.SweepHolds(ctx) }, func(bool) { n.sweeper = false })
}

// startFinance has finance retry or cancel a failed payout; when settling,
// a payout failed thrice is cancelled.
func (w *world) startFinance(settling bool) {
	if w.fin {
		return
	}
	var id string
	var attempt int
	err := w.db.QueryRow(w.ctx, `SELECT id, attempt FROM disb_payouts WHERE stage = 'failed' ORDER BY created_at, id LIMIT 1`).Scan(&id, &attempt)
	if errors.Is(err, sqldb.ErrNoRows) {
		return
	}
	if err != nil {
		w.fail("read failed payouts: %v", err)
		return
	}
	cancel := w.rng.IntN(2) == 0
	if settling {
		cancel = attempt >= 3
	}
	w.fin = true
	n := w.pickNode()
	name := "finance retry"
	if cancel {
		name = "finance cancel"
	}
	cmdID := w.newID()
	w.spawn(n, name, func(ctx context.Context) {
		r := disbursementapi.PayoutCommand{CommandID: cmdID, Actor: finance, PayoutID: id, Reason: "simulated"}
		if cancel {
			_, err = n.money.CancelPayout(ctx, r)
		} else {
			_, err = n.money.RetryPayout(ctx, r)
		}
	}, func(crashed bool) {
		w.fin = false
		if !crashed && err != nil {
			w.tracef("%s: %v", name, firstLine(err))
		}
	})
}

// ledger is disbursement's consumer: its name and the events it takes.
var ledger = disbursement.Consumer()

// takes reports whether a consumer's filters take subject (tokens, *
// matching one, > the rest).
func takes(cfg eventlog.ConsumerConfig, subject string) bool {
	for _, f := range cfg.Filters {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

func subjectMatches(filter, subject string) bool {
	fs, ss := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range fs {
		switch {
		case f == ">":
			return len(ss) > i
		case i >= len(ss):
			return false
		case f != "*" && f != ss[i]:
			return false
		}
	}
	return len(fs) == len(ss)
}

// consumer is disbursement's durable consumer as the JetStream server
// keeps it: which events were acked, which are being delivered. It
// survives the nodes' crashes. Events are first delivered in log order;
// one not acked (its node crashed, its ack was lost, its handler failed)
// is delivered again later, after others — and one whose ack wait ran out
// while it was still being handled is delivered to a second node at once.
type consumer struct {
	queue     []eventlog.Msg // the ledger's events, in log order
	scanned   int            // log messages looked at
	next      int            // queue[next] is the first never delivered
	acked     map[uint64]bool
	inflight  map[uint64]int
	delivered map[uint64]int
}

func (c *consumer) refresh(w *world) {
	for ; c.scanned < len(w.stream.msgs); c.scanned++ {
		m := eventlog.FromRaw(w.stream.msgs[c.scanned])
		if takes(ledger, m.Subject) {
			c.queue = append(c.queue, m)
		}
	}
}

func (c *consumer) pending(w *world) int {
	c.refresh(w)
	n := 0
	for _, m := range c.queue {
		if !c.acked[m.Seq] {
			n++
		}
	}
	return n
}

// take picks a batch: some events to deliver again, then new ones in order.
func (c *consumer) take(w *world) []eventlog.Msg {
	c.refresh(w)
	var batch []eventlog.Msg
	for _, m := range c.queue[:c.next] {
		if c.acked[m.Seq] {
			continue
		}
		if (c.inflight[m.Seq] == 0 && w.rng.IntN(2) == 0) || w.rng.IntN(20) == 0 {
			batch = append(batch, m)
		}
	}
	for n := 1 + w.rng.IntN(3); n > 0 && c.next < len(c.queue); n-- {
		batch = append(batch, c.queue[c.next])
		c.next++
	}
	for _, m := range batch {
		c.inflight[m.Seq]++
		c.delivered[m.Seq]++
		if c.delivered[m.Seq] > 1 {
			w.res.Redeliver++
		}
	}
	return batch
}

func (w *world) startDelivery(n *node) {
	if n.consumer {
		return
	}
	batch := w.cons.take(w)
	if len(batch) == 0 {
		return
	}
	n.consumer = true
	seqs := make([]string, len(batch))
	for i, m := range batch {
		seqs[i] = fmt.Sprintf("%d:%s", m.Seq, m.Type)
	}
	var acks []bool
	w.spawn(n, "consume "+strings.Join(seqs, ","), func(ctx context.Context) {
		yield(ctx, "consumer pull")
		failed, err := eventlog.Deliver(ctx, yieldingDB{DB: w.db, w: w}, ledger, n.money.Apply, batch)
		if errors.Is(err, eventlog.ErrGap) {
			// An event delivered before the one it follows (another
			// node's batch holds that one): as the real consumer does,
			// leave the batch unacked, to be delivered again.
			w.res.Gaps++
			return
		}
		if err != nil {
			at := "the transaction"
			if failed >= 0 {
				at = fmt.Sprintf("event %d (%s)", batch[failed].Seq, batch[failed].Type)
			}
			// No fault the simulator injects is the database's: a ledger
			// event that fails would be retried and dead-lettered, and
			// its money lost to the ledger.
			w.fail("disbursement's consumer failed on %s: %v", at, err)
			return
		}
		yield(ctx, "consumer ack")
		for range batch {
			acks = append(acks, w.fault(faultAckLost) == 0)
		}
	}, func(bool) {
		n.consumer = false
		for i, m := range batch {
			w.cons.inflight[m.Seq]--
			if i < len(acks) && acks[i] {
				w.cons.acked[m.Seq] = true
			}
		}
	})
}

// settle ends the faults and drives the system until nothing is left to
// do: every client answered, every event applied, every payout settled or
// cancelled, every expired hold swept. It fails when the system does not
// settle.
func (w *world) settle() {
	for round := 0; round < 200 && w.failed == nil; round++ {
		for len(w.sched.parked) > 0 && w.failed == nil {
			w.step++
			w.runOne()
			w.check()
		}
		if w.failed != nil {
			return
		}
		if w.settled() {
			w.tracef("settled after %d rounds", round)
			return
		}
		w.reviveSecondApprovers()
		for _, cl := range w.idleClients() {
			w.startClient(cl, w.pickNode())
		}
		n := w.nodes[round%len(w.nodes)]
		w.startDelivery(n)
		w.startWorker(n)
		w.startSweeper(n)
		w.startFinance(true)
		if round%3 == 2 {
			w.clock.t = w.clock.t.Add(time.Minute)
			w.tracef("clock +1m")
		}
	}
	if w.failed == nil {
		var open []string
		rows, err := w.db.Query(w.ctx, `SELECT stage, count(*) FROM disb_payouts WHERE stage NOT IN ('settled', 'cancelled') GROUP BY stage`)
		if err == nil {
			for rows.Next() {
				var st string
				var n int
				_ = rows.Scan(&st, &n)
				open = append(open, fmt.Sprintf("%d %s", n, st))
			}
			rows.Close()
		}
		w.fail("the system did not settle once the faults ended: %d events not applied, payouts open: %v, clients waiting: %d",
			w.cons.pending(w), open, len(w.idleClients()))
	}
}

// reviveSecondApprovers has the approver who did not give a case's first
// approval try again while the case awaits its second: a case would hold
// its money for ever otherwise (its deadline escalates it to people).
func (w *world) reviveSecondApprovers() {
	for _, c := range w.cases {
		cs := w.caseNow(c.id)
		if cs == nil || cs.State != assist.StateAwaitingSecondApproval {
			continue
		}
		for _, cl := range c.clients {
			if cl.done && !cl.busy && !slices.ContainsFunc(cs.Approvals, func(a assist.Approval) bool { return a.Approver == cl.actor.Username }) {
				cl.done, cl.rounds, cl.tries, cl.cmdID = false, 0, 0, w.newID()
				w.tracef("client %s: back for the second approval", cl.name)
			}
		}
	}
}

// caseNow folds a case from the log, outside any task.
func (w *world) caseNow(id string) *assist.Case {
	var recs []assist.Recorded
	for _, r := range w.events() {
		if r.Event.CaseID == id {
			recs = append(recs, r)
		}
	}
	return assist.Fold(recs)
}

func (w *world) settled() bool {
	if len(w.idleClients()) > 0 || w.cons.pending(w) > 0 {
		return false
	}
	var open, held int
	if err := w.db.QueryRow(w.ctx, `SELECT count(*) FROM disb_payouts WHERE stage NOT IN ('settled', 'cancelled')`).Scan(&open); err != nil {
		w.fail("read payouts: %v", err)
		return false
	}
	if err := w.db.QueryRow(w.ctx, `SELECT count(*) FROM disb_holds WHERE status = 'held'`).Scan(&held); err != nil {
		w.fail("read holds: %v", err)
		return false
	}
	return open == 0 && held == 0
}

// drain ends every task still parked, as a crash of every node.
func (w *world) drain() {
	for _, n := range w.nodes {
		w.sched.crash(n.i)
	}
}

// events decodes the log, read outside any task.
func (w *world) events() []assist.Recorded {
	var out []assist.Recorded
	for _, m := range w.stream.all() {
		e, err := eventcodec.Decode(m.Type, m.Data)
		if err != nil {
			w.fail("event %d does not decode: %v", m.Seq, err)
			return nil
		}
		out = append(out, assist.Recorded{Seq: m.Seq, Event: e})
	}
	return out
}

func fundsText(fs []disbursementapi.Fund) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = assist.FormatUSD(f.AllocatedCents)
	}
	return strings.Join(parts, " ")
}

var releaseCauses = map[assist.ReleaseCause]string{assist.ReleaseHoldExpired: " (hold expired)",
	assist.ReleasePayoutCancelled: " (payout cancelled)", assist.ReleaseNotApproved: " (not approved)"}

// Summary is what a run of many seeds did.
type Summary struct {
	Seeds                                           int
	Elapsed                                         time.Duration
	Steps, Events, Approved, Refused, Paid, Crashes int
	Redeliveries                                    int
	Gaps                                            int // batches redelivered because an event came before its predecessor
	Batches                                         int // atomic batches stored
	Types                                           map[string]int
	// Failures are the seeds whose invariants broke, in seed order.
	Failures []Result
}

// SeedsPerSecond is the rate the seeds ran at.
func (s Summary) SeedsPerSecond() float64 { return float64(s.Seeds) / s.Elapsed.Seconds() }

// Seeds says which seeds RunSeeds runs and how.
type Seeds struct {
	First uint64
	N     int
	// Parallel seeds run at once (each seed is its own world: running
	// them side by side changes none); default 1.
	Parallel int
	// Stop ends the run at the first failure.
	Stop bool
	// Progress, when set, is called after each seed with the number done.
	Progress func(done int)
}

// RunSeeds runs a range of seeds, each with cfg (whose Seed is ignored).
func RunSeeds(ctx context.Context, cfg Config, o Seeds) Summary {
	start := time.Now()
	parallel := max(1, o.Parallel)
	results := make([]Result, o.N)
	next := make(chan int)
	var failed atomic.Bool
	var done atomic.Int64
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c := cfg
				c.Seed = o.First + uint64(i)
				results[i] = Run(ctx, c)
				if results[i].Err != nil {
					failed.Store(true)
				}
				if n := done.Add(1); o.Progress != nil {
					o.Progress(int(n))
				}
			}
		}()
	}
	ran := 0
	for i := 0; i < o.N && ctx.Err() == nil && !(o.Stop && failed.Load()); i++ {
		next <- i
		ran++
	}
	close(next)
	wg.Wait()
	s := Summary{Seeds: ran, Elapsed: time.Since(start), Types: map[string]int{}}
	for _, r := range results[:ran] {
		s.Steps += r.Steps
		s.Events += r.Events
		s.Approved += r.Approved
		s.Refused += r.Refused
		s.Paid += r.Paid
		s.Crashes += r.Crashes
		s.Redeliveries += r.Redeliver
		s.Gaps += r.Gaps
		s.Batches += r.Batches
		for t, n := range r.Types {
			s.Types[t] += n
		}
		if r.Err != nil {
			s.Failures = append(s.Failures, r)
		}
	}
	return s
}
