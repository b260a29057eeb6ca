package wire

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/approval"
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

// readModels are the read models folded from the log alone. Disbursement's
// ledger is not one of them: its holds are placed by commands and its
// payout ids are minted as it applies the log, so only its consumer, in
// order and once, makes it.
var readModels = []readModel{
	{service: "intake", migrate: intake.Migrate, tables: []string{"intake_cases"},
		project: func(db sqldb.DB) eventlog.Projection { return intake.NewSQLStore(db) }},
	{service: "approval", migrate: approval.Migrate, tables: []string{"approval_queue"},
		project: func(db sqldb.DB) eventlog.Projection { return approval.NewSQLStore(db) }},
}

// ReplayServices are the services whose read models `eva audit replay`
// rebuilds.
func ReplayServices() []string {
	out := make([]string, len(readModels))
	for i, m := range readModels {
		out[i] = m.service
	}
	return out
}

// AuditReplay rebuilds the read models of o.Service (every replayable
// service's when empty) from the event log, each in one transaction of its
// service's database, with a progress bar on progress, and prints what it
// did on out. With o.Case it prints that case's timeline instead.
//
// Errors: an unknown service; those of the log and the stores.
func AuditReplay(ctx context.Context, p *Platform, o AuditReplayOptions, out, progress io.Writer) error {
	if o.Case != "" {
		return CaseTimeline(ctx, p.Log, o.Case, out)
	}
	models := readModels
	if o.Service != "" {
		i := slices.IndexFunc(readModels, func(m readModel) bool { return m.service == o.Service })
		if i < 0 {
			return fmt.Errorf("audit replay: --service %q: not a service with read models folded from the log (want one of %v)",
				o.Service, ReplayServices())
		}
		models = readModels[i : i+1]
	}
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
		tables := m.tables
		targets[i] = eventlog.RebuildTarget{DB: db, Projection: m.project(db),
			Reset: func(ctx context.Context, q sqldb.Querier) error {
				for _, t := range tables {
					if _, err := q.Exec(ctx, `DELETE FROM `+t); err != nil {
						return err
					}
				}
				return nil
			}}
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
