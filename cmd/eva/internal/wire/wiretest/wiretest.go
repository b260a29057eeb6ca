// Package wiretest starts a whole EVA in the test process — an embedded
// JetStream server, a real database (embedded SQLite or a fresh schema in
// PostgreSQL) and every service — for integration tests.
package wiretest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/cmd/eva/internal/wire"
	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/approval/approvalapi"
	"github.com/eva-org/eva/services/audit/auditapi"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/intake/intakeapi"
)

// Options of a stack.
type Options struct {
	// Postgres selects a fresh PostgreSQL schema instead of SQLite.
	Postgres bool
	// DataDir reuses a data directory (to restart on the same data);
	// empty is a new temporary one.
	DataDir string
	// DatabaseURL reuses a database (with DataDir, to restart).
	DatabaseURL string
	HoldTTL     time.Duration
	SettleAfter time.Duration
	Policy      *assist.Policy
	Quiet       bool // log warnings and errors only
	// NATSURL runs against these NATS servers (a cluster) instead of an
	// embedded one, with Replicas replicas of the streams.
	NATSURL  string
	Replicas int
}

// Stack is a running EVA.
type Stack struct {
	P            *wire.Platform
	URL          string // the gateway
	Intake       *intakeapi.Client
	Approval     *approvalapi.Client
	Disbursement *disbursementapi.Client
	Audit        *auditapi.Client
	Options      Options
	stop         func()
}

// Start runs every service with the demo data, and stops them after the
// test.
func Start(tb testing.TB, o Options) *Stack {
	tb.Helper()
	if o.DataDir == "" {
		o.DataDir = tb.TempDir()
	}
	if o.DatabaseURL == "" && o.Postgres {
		url, schema := sqldbtest.Schema(tb)
		o.DatabaseURL = sqldbtest.URLWithSchema(url, schema)
	}
	policy := assist.DefaultPolicy()
	if o.Policy != nil {
		policy = *o.Policy
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String() // the gateway serves l: no other process can take the port meanwhile
	zl := zaptest.NewLogger(tb)
	if o.Quiet {
		zl = zl.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	}
	cfg := wire.Config{DataDir: o.DataDir, HTTPAddr: addr, HTTPListener: l, DatabaseURL: o.DatabaseURL, DevPassword: "demo",
		Policy: policy, HoldTTL: o.HoldTTL, SettleAfter: o.SettleAfter, NATSURL: o.NATSURL, Replicas: o.Replicas}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := wire.Open(ctx, cfg, zl)
	if err != nil {
		cancel()
		l.Close()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	stopped := make(chan struct{}) // closed when wire.Dev returns
	go func() {
		err := wire.Dev(ctx, p, discard{})
		done <- err
		close(stopped)
	}()
	s := &Stack{P: p, URL: "http://" + addr, Intake: intakeapi.NewClient(p.NC), Approval: approvalapi.NewClient(p.NC),
		Disbursement: disbursementapi.NewClient(p.NC), Audit: auditapi.NewClient(p.NC), Options: o}
	var once bool
	s.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("eva stopped with: %v", err)
		}
		p.Close()
	}
	tb.Cleanup(s.stop)
	s.waitReady(tb, stopped)
	return s
}

// AwaitConsumers waits until every consumer of the event log runs and
// has taken every event so far (Platform.AwaitConsumers), a minute at
// most.
func (s *Stack) AwaitConsumers(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.P.AwaitConsumers(ctx); err != nil {
		tb.Fatal(err)
	}
}

// waitReady waits until the gateway answers /readyz and the demo fund
// exists, and fails at once if EVA stopped (its error is reported by
// the cleanup).
func (s *Stack) waitReady(tb testing.TB, stopped <-chan struct{}) {
	tb.Helper()
	evatest.Await(tb, evatest.Patience, "EVA to be ready with its demo fund", func() (bool, string) {
		select {
		case <-stopped:
			s.stop()
			tb.Fatal("EVA stopped before it was ready")
		default:
		}
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Sprintf("/readyz %d %s", resp.StatusCode, body)
		}
		if _, err = s.Disbursement.Fund(context.Background(), wire.DemoFundID); err != nil {
			return false, "demo fund: " + err.Error()
		}
		return true, ""
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
