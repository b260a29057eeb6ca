package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestE2EBadSMTPURL: eva dev and eva serve notify refuse a malformed
// --smtp (or EVA_SMTP) at startup with a clear error that never repeats
// the password, before opening anything.
func TestE2EBadSMTPURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"dev", "--smtp", "http://u:s3cr3t-pw@mail.example.org?from=eva@example.org"}, "", "scheme"},
		{[]string{"dev", "--smtp", "smtp://u:s3cr3t-pw@mail.example.org"}, "", "from"},
		{[]string{"serve", "notify", "--smtp", "smtp://u:s3cr3t-pw@%zz?from=eva@example.org"}, "", "does not parse"},
		{[]string{"dev"}, "EVA_SMTP=smtps://u:s3cr3t-pw@mail.example.org?from=eva", "from"},
		{[]string{"dev", "--smtp", "smtp://mail.example.org?from=eva@example.org", "--public-url", "ftp://eva"}, "", "--public-url"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a binary that started is killed
		defer cancel()
		cmd := exec.CommandContext(ctx, evaBin, append(c.args, "--data", t.TempDir(), "--http", "127.0.0.1:0")...)
		cmd.Env = childEnv()
		if c.env != "" {
			cmd.Env = append(cmd.Env, c.env)
		}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("%v %s: started", c.args, c.env)
		}
		if !strings.Contains(string(out), c.want) || strings.Contains(string(out), "s3cr3t") {
			t.Fatalf("%v %s: %s (want it to name %q, never the password)", c.args, c.env, out, c.want)
		}
	}
}

// A payout worker count below one is refused at startup, naming the flag,
// before anything is opened.
func TestBadPayoutWorkers(t *testing.T) {
	for _, n := range []string{"0", "-3"} {
		err := run(context.Background(), "dev", []string{"--payout-workers", n, "--data", t.TempDir(), "--http", "127.0.0.1:0"})
		if err == nil || !strings.Contains(err.Error(), "--payout-workers") {
			t.Errorf("--payout-workers %s: %v, want an error naming the flag", n, err)
		}
	}
}
