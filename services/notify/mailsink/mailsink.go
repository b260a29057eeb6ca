// Package mailsink is a development mail server (emersion/go-smtp): it
// accepts every message and prints it, so that EVA's e-mail can be seen
// without a real mail server (eva mail-sink; README demo).
package mailsink

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-smtp"
)

// MaxMessage is the largest message accepted (EVA's are a few hundred
// bytes).
const MaxMessage = 1 << 20

// New returns a server that prints each accepted message to out: its
// envelope, then the message as sent. It offers no TLS and no AUTH: point
// EVA at it with smtp://<addr>?from=... (no credentials), on loopback.
func New(out io.Writer) *smtp.Server {
	s := smtp.NewServer(&backend{out: out})
	s.Domain = "localhost"
	s.MaxMessageBytes = MaxMessage
	s.MaxRecipients = 10
	return s
}

type backend struct {
	mu  sync.Mutex
	out io.Writer
}

func (b *backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{b: b}, nil }

type session struct {
	b    *backend
	from string
	to   []string
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = append(s.to, to); return nil }

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxMessage+1))
	if err != nil {
		return err
	}
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	fmt.Fprintf(s.b.out, "--- mail from %s to %s (%d bytes)\n%s\n", s.from, strings.Join(s.to, ", "), len(data),
		strings.ReplaceAll(string(data), "\r\n", "\n"))
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }
