package wire

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/disbursementapi"
	"github.com/eva-org/eva/services/intake"
)

// AuditReplayOptions choose what `eva audit replay` rebuilds.
type AuditReplayOptions struct {
	// Service rebuilds only that service's read models; empty: every
	// service's.
	Service string
	// Case prints that case's timeline, folded from the log, and
	// rebuilds nothing.
	Case string
}

// readModel is a read model that Replay rebuilds: the service whose
// database holds it, its projection, and the tables that make it.
type readModel struct {
	service string
	migrate func(context.Context, sqldb.DB) error
	project func(sqldb.DB) eventlog.Projection
	tables  []string
}

// readModels are the read models folded from the log alone, case by
// case. Disbursement's payout and hold rows are not among them: its holds
// are placed by commands and its payout ids are minted as it applies the
// log, so only its consumer, in order and once, makes them. Its
// double-entry ledger is made from the events alone, in log order, and is
// replayed apart (replayLedger).
var readModels = []readModel{
	{service: "intake", migrate: intake.Migrate, tables: []string{"intake_cases"},
		project: func(db sqldb.DB) eventlog.Projection { return intake.NewSQLStore(db) }},
	{service: "approval", migrate: approval.Migrate, tables: []string{"approval_queue"},
		project: func(db sqldb.DB) eventlog.Projection { return approval.NewSQLStore(db) }},
}

// ledgerService is the name `eva audit replay --service` knows
// disbursement's double-entry ledger by.
const ledgerService = "ledger"

// ReplayServices are the names `eva audit replay --service` takes: the
// services whose read models it rebuilds, and the ledger it checks.
func ReplayServices() []string {
	out := make([]string, 0, len(readModels)+1)
	for _, m := range readModels {
		out = append(out, m.service)
	}
	return append(out, ledgerService)
}

// AuditReplay rebuilds the read models of o.Service (every replayable
// service's when empty) from the event log, each in one transaction of its
// service's database, with a progress bar on progress, and prints what it
// did on out; it also replays the ledger (replayLedger) when o.Service is
// empty or "ledger". With o.Case it prints that case's timeline instead.
//
// Errors: an unknown service; a live ledger that differs from the one the
// log makes; those of the log and the stores.
func AuditReplay(ctx context.Context, p *Platform, o AuditReplayOptions, out, progress io.Writer) error {
	if o.Case != "" {
		return CaseTimeline(ctx, p.Log, o.Case, out)
	}
	models, ledger := readModels, true
	if o.Service != "" {
		i := slices.IndexFunc(readModels, func(m readModel) bool { return m.service == o.Service })
		ledger = o.Service == ledgerService
		if i < 0 && !ledger {
			return fmt.Errorf("audit replay: --service %q: not a service with read models folded from the log (want one of %v)",
				o.Service, ReplayServices())
		}
		models = nil
		if i >= 0 {
			models = readModels[i : i+1]
		}
	}
	if len(models) > 0 {
		if err := replayReadModels(ctx, p, models, out, progress); err != nil {
			return err
		}
	}
	if ledger {
		return replayLedger(ctx, p, out, progress)
	}
	return nil
}

// replayReadModels rebuilds models from one reading of the log.
func replayReadModels(ctx context.Context, p *Platform, models []readModel, out, progress io.Writer) error {
	// One reading of the log folds the cases once for every read model;
	// each is then written in its own transaction.
	targets := make([]eventlog.RebuildTarget, len(models))
	names := make([]string, len(models))
	for i, m := range models {
		db, err := p.DB(ctx, m.service)
		if err != nil {
			return err
		}
		if err := m.migrate(ctx, db); err != nil {
			return err
		}
		targets[i] = eventlog.RebuildTarget{DB: db, Projection: m.project(db), Tables: m.tables,
			Reset: eventlog.DeleteAll(m.tables...)}
		names[i] = m.service
	}
	bar := NewProgress(progress, "replay "+strings.Join(names, ", "))
	start := time.Now()
	res, err := p.ToolLog().RebuildAll(ctx, targets, bar.Update)
	if err != nil {
		return fmt.Errorf("audit replay %s: %w", strings.Join(names, ", "), err)
	}
	bar.Finish(res[len(res)-1].Last)
	took := time.Since(start)
	for i, r := range res {
		fmt.Fprintf(out, "%s: rebuilt %d cases from %d events (log at %d)\n", names[i], r.Cases, r.Events, r.Last)
	}
	fmt.Fprintf(out, "read the log once for %d read models in %s, %.0f events/s\n", len(res), took.Round(time.Millisecond),
		float64(res[len(res)-1].Events)/took.Seconds())
	return nil
}

// replayLedger builds disbursement's double-entry ledger from the whole
// log into a scratch SQLite database (removed afterwards), compares it
// with the live ledger up to the same log position — every entry, every
// fund's balances — and prints the comparison. The live ledger is read,
// never changed: it is written by disbursement's consumer beside the
// funds' rows, and an auditor's replay must not move money figures.
//
// Errors: a live ledger that differs, with how many entries; those of
// the log and the databases.
func replayLedger(ctx context.Context, p *Platform, out, progress io.Writer) error {
	live, err := p.DB(ctx, "disbursement")
	if err != nil {
		return err
	}
	if err := disbursement.Migrate(ctx, live); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "eva-ledger-replay-")
	if err != nil {
		return fmt.Errorf("audit replay ledger: %w", err)
	}
	defer os.RemoveAll(dir)
	scratch, err := sqldb.OpenSQLite(ctx, filepath.Join(dir, "ledger.db"))
	if err != nil {
		return fmt.Errorf("audit replay ledger: %w", err)
	}
	defer scratch.Close()
	if err := disbursement.Migrate(ctx, scratch); err != nil {
		return fmt.Errorf("audit replay ledger: %w", err)
	}
	end, err := p.Log.LastSeq(ctx)
	if err != nil {
		return err
	}
	bar := NewProgress(progress, "replay ledger")
	start := time.Now()
	events, last, err := disbursement.ReplayLedger(ctx, scratch, func(f func(eventlog.Msg) error) (uint64, error) {
		n := 0
		return p.ToolLog().Scan(ctx, 1, end, func(m eventlog.Msg) error {
			if n++; n%4096 == 0 {
				bar.Update(m.Seq, end)
			}
			return f(m)
		})
	})
	if err != nil {
		return fmt.Errorf("audit replay ledger: %w", err)
	}
	bar.Finish(last)
	took := time.Since(start)
	c, err := disbursement.CheckLedger(ctx, live, scratch, last)
	if err != nil {
		return fmt.Errorf("audit replay ledger: %w", err)
	}
	fmt.Fprintf(out, "ledger: replayed %d events (log at %d) in %s, %.0f events/s: %d entries; the live ledger has %d up to %d\n",
		events, last, took.Round(time.Millisecond), float64(events)/took.Seconds(), c.Entries, c.LiveEntries, last)
	if err := printLedgerCheck(out, c); err != nil {
		return err
	}
	if !c.OK {
		return fmt.Errorf("audit replay ledger: the live ledger differs from the one the log makes: %d entries differ", c.DifferCount)
	}
	fmt.Fprintln(out, "ledger: the live ledger equals the one the log makes, entry for entry and in every fund's balances")
	return nil
}

// printLedgerCheck prints each fund's balances as the log makes them,
// whether the live ledger has the same, and the entries that differ.
func printLedgerCheck(out io.Writer, c disbursement.LedgerCheck) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "FUND\tALLOCATED\tRESERVED\tPAID\tAVAILABLE\tLIVE LEDGER\t")
	usd := func(b disbursementapi.Balances) string {
		return fmt.Sprintf("%s\t%s\t%s\t%s", cents(b.AllocatedCents), cents(b.ReservedCents), cents(b.PaidCents), cents(b.AvailableCents))
	}
	for _, f := range c.Funds {
		live := "equal"
		if !f.Equal {
			live = "differs: " + strings.ReplaceAll(usd(f.Live), "\t", " / ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", f.FundID, usd(f.Log), live)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range c.Differ {
		fmt.Fprintln(out, "  "+d)
	}
	if more := c.DifferCount - len(c.Differ); more > 0 {
		fmt.Fprintf(out, "  (and %d more entries)\n", more)
	}
	return nil
}

// cents formats US cents as dollars with two decimals.
func cents(c int64) string {
	return strings.TrimSuffix(assist.FormatUSD(c), " USD")
}

// CaseTimeline prints a case's events from the log, one line each: its
// sequence, time, type, actor and the case's state after it.
//
// Errors: CodeNotFound for a case the log does not hold; those of the log.
func CaseTimeline(ctx context.Context, l *eventlog.Log, caseID string, out io.Writer) error {
	if !eventlog.ValidCaseID(caseID) {
		return fmt.Errorf("audit replay: --case %q is not a case id (a UUID)", caseID)
	}
	msgs, err := l.LoadOf(ctx, assist.KindCase, caseID)
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return assist.Errorf(assist.CodeNotFound, "audit replay: the log holds no case %s", caseID)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "case %s: %d events\n", caseID, len(msgs))
	fmt.Fprintln(tw, "SEQ\tAT (UTC)\tEVENT\tACTOR\tSTATE AFTER")
	var c assist.Case
	for _, m := range msgs {
		e, err := eventcodec.Decode(m.Type, m.Data)
		if err != nil {
			return fmt.Errorf("audit replay: event %d of case %s does not decode: %w", m.Seq, caseID, err)
		}
		c.Apply(e, m.Seq)
		actor := e.Actor.Username
		if e.Actor.Role != "" {
			actor += " (" + e.Actor.Role + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", m.Seq, e.At.UTC().Format("2006-01-02T15:04:05.000Z"), e.Type(), actor, c.State)
	}
	return tw.Flush()
}
