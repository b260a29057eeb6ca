package disbursement

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// BenchmarkReplayLedger times ReplayLedger (the ledger part of eva audit
// replay) over a synthetic log held in memory, so that only the decoding
// and the journal's SQL count: one fund, then per case a filing's claim
// and release (events the ledger decodes and skips), its approval, the
// reservation, the sending and the settlement: six events, two entries
// (the hold and the post). Reported as events of the log per second of
// the wall clock and per CPU-second of the process.
func BenchmarkReplayLedger(b *testing.B) {
	const cases = 10_000
	msgs := synthLedgerLog(b, cases)
	ctx := context.Background()
	scan := func(f func(eventlog.Msg) error) (uint64, error) {
		for _, m := range msgs {
			if err := f(m); err != nil {
				return 0, err
			}
		}
		return msgs[len(msgs)-1].Seq, nil
	}
	for b.Loop() {
		b.StopTimer()
		db := sqldbtest.SQLite(b)
		if err := Migrate(ctx, db); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start, cpu0 := time.Now(), cpuTime(b)
		n, _, err := ReplayLedger(ctx, db, scan)
		if err != nil || n != len(msgs) {
			b.Fatalf("%d of %d events: %v", n, len(msgs), err)
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
		b.ReportMetric(float64(n)/(cpuTime(b)-cpu0).Seconds(), "events/CPU-s")
	}
}

// cpuTime is the process's CPU time so far: on a shared machine, events
// per CPU-second say more than events per second of the wall clock.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// synthLedgerLog makes the log BenchmarkReplayLedger replays.
func synthLedgerLog(tb testing.TB, cases int) []eventlog.Msg {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var msgs []eventlog.Msg
	emit := func(kind assist.Kind, of string, body assist.Body) {
		at = at.Add(time.Second)
		id := newID()
		data, err := eventcodec.Encode(assist.Event{ID: id, CaseID: of, At: at, Actor: fin, CommandID: id, Body: body})
		if err != nil {
			tb.Fatal(err)
		}
		m := eventlog.Msg{Seq: uint64(len(msgs) + 1), Kind: kind, Of: of, Type: body.Type(), ID: id, Time: at, Data: data}
		if kind == assist.KindCase {
			m.CaseID = of
		}
		msgs = append(msgs, m)
	}
	fund, payee := newID(), newID()
	emit(assist.KindFund, fund, assist.FundCreated{Name: "F", AllocatedCents: int64(cases) * 10_000})
	for i := range cases {
		c, hold, payout, ref := newID(), newID(), newID(), fmt.Sprintf("REF-%d", i)
		amount := int64(1_000 + i%5_000)
		emit(assist.KindCase, c, assist.ReviewClaimed{ExpiresAt: at.Add(time.Hour)})
		emit(assist.KindCase, c, assist.ReviewReleased{})
		emit(assist.KindCase, c, assist.RequestApproved{AmountCents: amount, FundID: fund, HoldID: hold, PayeeID: payee, Step: assist.ApprovalOnly})
		emit(assist.KindCase, c, assist.FundsReserved{HoldID: hold, FundID: fund, AmountCents: amount, PayeeID: payee, PayoutID: payout})
		emit(assist.KindCase, c, assist.PayoutSent{PayoutID: payout, PayeeID: payee, AmountCents: amount, ProviderRef: ref, Attempt: 1})
		emit(assist.KindCase, c, assist.PayoutSettled{PayoutID: payout, ProviderRef: ref})
	}
	return msgs
}
