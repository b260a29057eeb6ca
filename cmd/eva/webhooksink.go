package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/eva-org/eva/services/notify/webhooksink"
)

// webhookSink serves a webhook receiver that checks each delivery's
// signature and prints it, until ctx ends.
func webhookSink(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("eva webhook-sink", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9999", "address to receive deliveries at (any path)")
	secret := fs.String("secret", os.Getenv("EVA_WEBHOOK_SECRET"), "the webhook's secret (env EVA_WEBHOOK_SECRET)")
	tolerance := fs.Duration("tolerance", webhooksink.DefaultTolerance, "how old a signature may be; negative: any")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		return errors.New("webhook-sink: --secret is required")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("webhook-sink: %w", err)
	}
	fmt.Fprintf(out, "receiving webhooks at http://%s/\n", ln.Addr())
	srv := &http.Server{Handler: &webhooksink.Sink{Secret: []byte(*secret), Tolerance: *tolerance, Out: out},
		ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("webhook-sink: %w", err)
	}
	return nil
}
