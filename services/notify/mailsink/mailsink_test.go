package mailsink_test

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/eva-org/eva/services/notify/mailsink"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestSinkPrintsEachMessage: a message sent over SMTP is printed with its
// envelope.
func TestSinkPrintsEachMessage(t *testing.T) {
	var out syncBuffer
	srv := mailsink.New(&out)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	c, err := smtp.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "Subject: EVA: case x approved\r\n\r\nA request you filed was approved.\r\n"
	if err := c.SendMail("eva@example.org", []string{"ana@example.org"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	_ = c.Quit()
	got := out.String()
	if !strings.Contains(got, "mail from eva@example.org to ana@example.org") ||
		!strings.Contains(got, "Subject: EVA: case x approved\nA request you filed was approved.") &&
			!strings.Contains(got, "Subject: EVA: case x approved\n\nA request you filed was approved.") {
		t.Fatalf("printed %q", got)
	}
}
