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

	"github.com/eva-org/eva/services/audit"
	"github.com/eva-org/eva/services/audit/auditapi"
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
	res, err := audit.VerifyAll(ctx, audit.NewSQLStore(db), p.Log, opt)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
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
