package sqldb

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// A gate keeps the connections of a PostgreSQL pool that are in use at
// once near a small number (its places), softly: a statement or
// transaction that finds every place taken waits for one, and goes on
// without one, on a connection of the pool beyond the gate, once no place
// has been given back for gateWait (ADR 44). So the connections in use
// are about the places, or a place's time held divided by gateWait when
// that is more (Little's law): a few on a busy database whose statements
// take milliseconds, many when every round trip is slow.
//
// Why: on two CPUs, `eva bench` on PostgreSQL burnt 12–17 % less CPU per
// lifecycle and completed 15–40 % more lifecycles with a pool of four
// connections than with 32: fewer backends at once wait less on each
// other's WAL flushes and locks. But a pool of four starves the process
// when every round trip is slow (a database across a slow link:
// TestE2EFaultSlowAndDroppingDatabase took 54 s instead of 16). A caller
// that holds a place and needs another (a statement outside its
// transaction) cannot deadlock on the gate either.
type gate struct {
	places chan struct{}
	wait   time.Duration
	freed  atomic.Int64 // when a place was last given back, Unix ns
	beyond atomic.Int64 // callers that went on without a place
}

// gateWait is how long the places may all stay taken before callers go
// on beyond them: far longer than a statement or transaction holds one on
// a healthy database, far shorter than a round trip across a slow link.
const gateWait = 25 * time.Millisecond

// gatePlaces is the gate's size for this machine: twice its CPUs, and at
// least four, never more than the pool holds.
func gatePlaces(maxConns int32) int {
	return min(max(4, 2*runtime.NumCPU()), int(maxConns))
}

func newGate(places int, wait time.Duration) *gate {
	g := &gate{places: make(chan struct{}, places), wait: wait}
	g.freed.Store(time.Now().UnixNano())
	return g
}

// enter takes a place, waiting while places are being given back; it
// goes on without one when none was given back for g.wait (counted
// beyond), or when ctx ends. It reports whether it took one, which the
// caller gives back to exit when done.
func (g *gate) enter(ctx context.Context) bool {
	select {
	case g.places <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	for {
		select {
		case g.places <- struct{}{}:
			return true
		case <-ctx.Done():
			return false // the pool answers ctx's error
		case <-t.C:
		}
		idle := time.Duration(time.Now().UnixNano() - g.freed.Load())
		if idle >= g.wait {
			g.beyond.Add(1)
			return false
		}
		t.Reset(g.wait - idle)
	}
}

// exit gives back the place enter took.
func (g *gate) exit(took bool) {
	if took {
		g.freed.Store(time.Now().UnixNano())
		<-g.places
	}
}

// gatedPool runs each statement on a connection of the pool once through
// the gate; a query's place is given back when its rows are closed or
// read to the end, a row's once it is scanned.
type gatedPool struct {
	pool *pgxpool.Pool
	gate *gate
}

func (p gatedPool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	took := p.gate.enter(ctx)
	defer p.gate.exit(took)
	return p.pool.Exec(ctx, sql, args...)
}

func (p gatedPool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	took := p.gate.enter(ctx)
	rows, err := p.pool.Query(ctx, sql, args...)
	if err != nil {
		p.gate.exit(took)
		return nil, err
	}
	return &gatedRows{Rows: rows, gate: p.gate, took: took}, nil
}

func (p gatedPool) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	took := p.gate.enter(ctx)
	return gatedRow{row: p.pool.QueryRow(ctx, sql, args...), gate: p.gate, took: took}
}

type gatedRows struct {
	pgx.Rows
	gate *gate
	took bool
	done bool
}

func (r *gatedRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.leave()
	return false
}

func (r *gatedRows) Close() {
	r.Rows.Close()
	r.leave()
}

func (r *gatedRows) leave() {
	if !r.done {
		r.done = true
		r.gate.exit(r.took)
	}
}

type gatedRow struct {
	row  pgx.Row
	gate *gate
	took bool
}

func (r gatedRow) Scan(dest ...any) error {
	defer r.gate.exit(r.took)
	return r.row.Scan(dest...)
}

// GateFigures are a PostgreSQL pool's gate: its places, those in use, and
// how many callers went on without one since the pool opened.
type GateFigures struct {
	Places, InUse int
	Beyond        int64
}

// Gate returns db's gate figures; ok is false for a database without one
// (SQLite, whose one writer commits every caller's transaction in turn).
func Gate(db DB) (f GateFigures, ok bool) {
	d, ok := db.(*pgDB)
	if !ok {
		return GateFigures{}, false
	}
	return GateFigures{Places: cap(d.gate.places), InUse: len(d.gate.places), Beyond: d.gate.beyond.Load()}, true
}

// GateMetrics are db's gate figures as Prometheus metrics
// (eva_db_gate_places, eva_db_gate_in_use, eva_db_gate_beyond_total);
// none for a database without a gate. Callers going beyond on a healthy
// database say the places are too few; on a slow one, that it is slow.
func GateMetrics(db DB) []prometheus.Collector {
	if _, ok := Gate(db); !ok {
		return nil
	}
	figure := func(f func(GateFigures) float64) func() float64 {
		return func() float64 { g, _ := Gate(db); return f(g) }
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eva_db_gate_places",
			Help: "Connections to PostgreSQL the gate lets be in use at once while they are given back (ADR 44)."},
			figure(func(g GateFigures) float64 { return float64(g.Places) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "eva_db_gate_in_use",
			Help: "The gate's places in use now."},
			figure(func(g GateFigures) float64 { return float64(g.InUse) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "eva_db_gate_beyond_total",
			Help: "Statements and transactions that went on without a place, none having been given back for " + gateWait.String() + "."},
			figure(func(g GateFigures) float64 { return float64(g.Beyond) })),
	}
}
