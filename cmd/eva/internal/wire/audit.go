package wire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/audit/auditapi"
	"github.com/eva-org/eva/services/audit/auditexport"
	"github.com/eva-org/eva/services/disbursement"
	"github.com/eva-org/eva/services/disbursement/providerhttp"
	"github.com/eva-org/eva/services/disbursement/reconcile"
)

// DevAuditOrigin is the name of the checkpoint key `eva dev` makes: the
// origin line of its checkpoints.
const DevAuditOrigin = "eva-dev/audit"

// auditKey is the checkpoint signing key: Config.AuditKey, else
// DataDir/audit.key, made on first use (dev only).
func auditKey(cfg Config) (*audit.Key, error) {
	skey := cfg.AuditKey
	if skey == "" {
		if cfg.DataDir == "" {
			return nil, errors.New("no audit signing key: set EVA_AUDIT_KEY (eva audit keygen makes one)")
		}
		path := filepath.Join(cfg.DataDir, "audit.key")
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			s, _, err := audit.GenerateKey(DevAuditOrigin)
			if err != nil {
				return nil, err
			}
			if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
				return nil, fmt.Errorf("data dir: %w", err)
			}
			if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
				return nil, fmt.Errorf("write audit key: %w", err)
			}
			data = []byte(s)
		} else if err != nil {
			return nil, fmt.Errorf("read audit key: %w", err)
		}
		skey = string(data)
	}
	k, err := audit.ParseKey(skey)
	if err != nil {
		return nil, err
	}
	return &k, nil
}

// AuditKeygen prints a new checkpoint signing key for the log named
// origin (to keep secret, as EVA_AUDIT_KEY) and its verifier key (to
// publish).
func AuditKeygen(origin string, out io.Writer) error {
	skey, vkey, err := audit.GenerateKey(origin)
	if err != nil {
		return fmt.Errorf("audit key for %q: %w", origin, err)
	}
	_, err = fmt.Fprintf(out, "EVA_AUDIT_KEY=%s\nverifier key (publish it): %s\n", skey, vkey)
	return err
}

// AuditVerifyOptions are the checkpoints `eva audit verify` checks the
// log against.
type AuditVerifyOptions struct {
	// Checkpoints are files of signed checkpoints saved earlier (one or
	// several notes each, as `eva audit witness` keeps them).
	Checkpoints []string
	// Key is the verifier key text; empty is the key of this installation
	// (EVA_AUDIT_KEY or --data's audit.key).
	Key string
}

// AuditVerify checks the audit archive in the database against its hash
// chain, its Merkle tree, its kept checkpoints, the checkpoints of o and
// the event log, without any service running, and prints the result. It
// fails when the log does not verify, saying why.
func AuditVerify(ctx context.Context, p *Platform, o AuditVerifyOptions, out io.Writer) error {
	db, err := p.DB(ctx, "audit")
	if err != nil {
		return err
	}
	if err := audit.Migrate(ctx, db); err != nil {
		return err
	}
	vkey := strings.TrimSpace(o.Key)
	if vkey == "" {
		k, err := auditKey(p.Config)
		if err != nil {
			return err
		}
		vkey = k.Verifier
	}
	opt := audit.VerifyOptions{VerifierKey: vkey}
	for _, path := range o.Checkpoints {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		opt.Checkpoints = append(opt.Checkpoints, auditapi.SplitCheckpoints(data)...)
	}
	res, err := audit.VerifyAll(ctx, audit.NewSQLStore(db), p.ToolLog(), opt)
	if err != nil {
		return err
	}
	// The payees' rows against the log: a row edited outside the log
	// redirects no payout (ADR 24), but the auditor is told.
	ddb, err := p.DB(ctx, "disbursement")
	if err != nil {
		return err
	}
	if err := disbursement.Migrate(ctx, ddb); err != nil {
		return err
	}
	payees, err := disbursement.CheckPayeeRows(ctx, ddb, p.ToolLog())
	if err != nil {
		return err
	}
	if res.OK && !payees.OK {
		d := payees.Differ[0]
		res.OK, res.Reason = false, fmt.Sprintf("payee rows: payee %s: %s: %s", d.PayeeID, d.Field, d.Reason)
		if n := len(payees.Differ); n > 1 {
			res.Reason += fmt.Sprintf(" (and %d more differences)", n-1)
		}
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(struct {
		auditapi.VerifyResult
		Payees disbursement.PayeeRowCheck `json:"payees"`
	}{res, payees}); err != nil {
		return err
	}
	if !res.OK {
		if res.FirstBad != nil {
			return fmt.Errorf("the audit log does not verify: event %d: %s", *res.FirstBad, res.Reason)
		}
		return fmt.Errorf("the audit log does not verify: %s", res.Reason)
	}
	return nil
}

// AuditExport writes the audit archive with its proofs (the auditexport
// format) to the file path ("-": out), against the latest checkpoint kept,
// with a progress bar on progress, and says what it wrote on progress.
//
// Errors: those of audit.Export and of the file.
func AuditExport(ctx context.Context, p *Platform, path string, out, progress io.Writer) error {
	db, err := p.DB(ctx, "audit")
	if err != nil {
		return err
	}
	if err := audit.Migrate(ctx, db); err != nil {
		return err
	}
	k, err := auditKey(p.Config)
	if err != nil {
		return err
	}
	w, closeFile := out, func() error { return nil }
	if path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		w, closeFile = f, f.Close
	}
	bar := NewProgress(progress, "export")
	start := time.Now()
	n, err := audit.Export(ctx, audit.NewSQLStore(db), k.Verifier, w, bar.Update)
	if cerr := closeFile(); err == nil {
		err = cerr
	}
	if err != nil {
		if path != "-" {
			_ = os.Remove(path) // never leave half an export
		}
		return err
	}
	bar.Finish(uint64(n))
	took := time.Since(start)
	fmt.Fprintf(progress, "exported %d events with their proofs in %s, %.0f events/s\n", n, took.Round(time.Millisecond), float64(n)/took.Seconds())
	return nil
}

// AuditCheckExport checks the export in the file path with nothing but the
// verifier key and prints the result as JSON on out.
//
// Errors: no key; a file that cannot be read; an export that does not
// check, naming the event to blame.
func AuditCheckExport(path, key string, out, progress io.Writer) error {
	if strings.TrimSpace(key) == "" {
		return errors.New("audit check-export: --key is required: the verifier key you trust")
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("audit check-export: %w", err)
	}
	defer f.Close()
	start := time.Now()
	res, err := auditexport.Check(f, key)
	if err != nil {
		return fmt.Errorf("audit check-export: %w", err)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return err
	}
	if !res.OK {
		return fmt.Errorf("the export does not check: %s", res.Reason)
	}
	took := time.Since(start)
	fmt.Fprintf(progress, "checked %d events in %s, %.0f events/s\n", res.Events, took.Round(time.Millisecond), float64(res.Events)/took.Seconds())
	return nil
}

// ReconcileOptions say where `eva audit reconcile` reads the provider's
// statement: a file, or the provider itself; exactly one.
type ReconcileOptions struct {
	// Statement is a file of the statement (the JSON-lines format of
	// services/disbursement/reconcile), "-" for standard input.
	Statement string
	// Provider is the provider's base URL: the statement is fetched from
	// its GET /v1/statement (eva provsim serves it).
	Provider string
}

// statement reads the statement o names.
func (o ReconcileOptions) statement(ctx context.Context, in io.Reader) ([]reconcile.Line, error) {
	switch {
	case (o.Statement == "") == (o.Provider == ""):
		return nil, errors.New("audit reconcile: give the statement as --statement FILE (- for standard input) or --provider URL, one of them")
	case o.Provider != "":
		c, err := providerhttp.New(providerhttp.Config{URL: o.Provider})
		if err != nil {
			return nil, fmt.Errorf("audit reconcile: --provider: %w", err)
		}
		return c.Statement(ctx)
	case o.Statement == "-":
		return reconcile.Parse(in)
	}
	f, err := os.Open(o.Statement)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return reconcile.Parse(f)
}

// AuditReconcile checks a provider's statement, read from where o says,
// against disbursement's double-entry ledger, prints the report as JSON,
// and fails when it is not clean.
func AuditReconcile(ctx context.Context, p *Platform, o ReconcileOptions, in io.Reader, out io.Writer) error {
	lines, err := o.statement(ctx, in)
	if err != nil {
		return fmt.Errorf("audit reconcile: %w", err)
	}
	db, err := p.DB(ctx, "disbursement")
	if err != nil {
		return err
	}
	if err := disbursement.Migrate(ctx, db); err != nil {
		return err
	}
	posted, err := disbursement.NewSQLStore(db).Posted(ctx)
	if err != nil {
		return err
	}
	rep := reconcile.Reconcile(posted, lines)
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return err
	}
	if !rep.OK {
		return fmt.Errorf("the statement does not reconcile with the ledger: %d findings, the first: %s", len(rep.Findings), rep.Findings[0].Detail)
	}
	return nil
}
