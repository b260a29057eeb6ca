package wire

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/services/disbursement/provsim"
)

// ProvSimOptions configure eva provsim.
type ProvSimOptions struct {
	// Listen is the host:port to serve at (port 0: any free one).
	Listen string
	// DataDir holds provsim.db when DatabaseURL is empty.
	DataDir     string
	DatabaseURL string
	Sim         provsim.Config
}

// ProvSim serves the payment provider simulator over HTTP until ctx
// ends, printing its URL to out once it listens.
func ProvSim(ctx context.Context, o ProvSimOptions, zl *zap.Logger, out io.Writer) error {
	if o.Sim.FailureRate < 0 || o.Sim.FailureRate > 1 || o.Sim.DeclineRate < 0 || o.Sim.DeclineRate > 1 {
		return fmt.Errorf("provsim: --failure-rate and --decline-rate are between 0 and 1")
	}
	url := o.DatabaseURL
	if url == "" {
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return fmt.Errorf("provsim: %w", err)
		}
		url = "sqlite:" + filepath.Join(o.DataDir, "provsim.db")
	}
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		return fmt.Errorf("provsim: %w", err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, provsim.Migrations); err != nil {
		return fmt.Errorf("provsim: %w", err)
	}
	srv, err := provsim.Listen(ctx, provsim.New(o.Sim, db), o.Listen, zl)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(out, "provsim: listening on %s\n", srv.URL())
	<-ctx.Done()
	return nil
}
