package wire

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/eva-org/eva/services/audit"
)

// AuditVerify checks the audit archive in the database against its hash
// chain and against the event log, without any service running, and
// prints the result. It fails when the archive does not verify.
func AuditVerify(ctx context.Context, p *Platform, out io.Writer) error {
	db, err := p.DB(ctx, "audit")
	if err != nil {
		return err
	}
	if err := audit.Migrate(ctx, db); err != nil {
		return err
	}
	res, err := audit.Verify(ctx, audit.NewSQLStore(db), p.Log)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return err
	}
	if !res.OK {
		return fmt.Errorf("the audit archive does not verify: event %d: %s", *res.FirstBad, res.Reason)
	}
	return nil
}
