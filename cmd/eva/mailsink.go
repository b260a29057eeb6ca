package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"

	"github.com/emersion/go-smtp"

	"github.com/eva-org/eva/services/notify/mailsink"
)

// mailSink serves a development SMTP server that prints every message it
// is sent, until ctx ends.
func mailSink(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("eva mail-sink", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:2525", "address to take mail at (SMTP, no TLS, no AUTH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("mail-sink: %w", err)
	}
	fmt.Fprintf(out, "taking mail at smtp://%s (eva dev --smtp 'smtp://%s?from=eva@localhost.localdomain')\n", ln.Addr(), ln.Addr())
	srv := mailsink.New(out)
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) && ctx.Err() == nil {
		return fmt.Errorf("mail-sink: %w", err)
	}
	return nil
}
