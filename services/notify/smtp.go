package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTP is where notify sends e-mail: a submission server, how to reach
// it and whom the mail is from. The zero SMTP is e-mail off.
type SMTP struct {
	// Host and Port of the server.
	Host, Port string
	// ImplicitTLS (smtps://) speaks TLS from the first byte; otherwise
	// (smtp://) STARTTLS is used whenever the server offers it.
	ImplicitTLS bool
	// Username and Password authenticate (SASL PLAIN) when Username is
	// set. They are never sent in clear: without TLS, only to a server on
	// the loopback interface.
	Username, Password string
	// From is the sender's address (MAIL FROM and the From header).
	From string
}

// On reports whether e-mail is configured.
func (c SMTP) On() bool { return c.Host != "" }

// String is the server's URL without its password, for logs.
func (c SMTP) String() string {
	if !c.On() {
		return "off"
	}
	u := url.URL{Scheme: "smtp", Host: net.JoinHostPort(c.Host, c.Port), RawQuery: url.Values{"from": {c.From}}.Encode()}
	if c.ImplicitTLS {
		u.Scheme = "smtps"
	}
	if c.Username != "" {
		u.User = url.UserPassword(c.Username, "REDACTED")
	}
	return u.String()
}

// ParseSMTP reads an SMTP URL: smtp://[user:password@]host[:port]?from=
// address (STARTTLS when offered; port 587 by default) or smtps://...
// (implicit TLS; port 465). "" is e-mail off. Errors never repeat the
// password.
func ParseSMTP(raw string) (SMTP, error) {
	if strings.TrimSpace(raw) == "" {
		return SMTP{}, nil
	}
	fail := func(format string, a ...any) (SMTP, error) {
		return SMTP{}, fmt.Errorf("smtp url: "+format+" (want smtp://user:password@host:587?from=eva@example.org or smtps://...)", a...)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fail("does not parse") // url's error repeats the URL, password and all
	}
	var c SMTP
	switch u.Scheme {
	case "smtp":
		c.Port = "587"
	case "smtps":
		c.Port, c.ImplicitTLS = "465", true
	default:
		return fail("scheme %q is neither smtp nor smtps", u.Scheme)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return fail("names no host")
	}
	if (u.Path != "" && u.Path != "/") || u.Fragment != "" {
		return fail("has a path or fragment")
	}
	c.Host = u.Hostname()
	if p := u.Port(); p != "" {
		c.Port = p
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
		if c.Username == "" {
			return fail("has a password but no user name")
		}
	}
	q := u.Query()
	for k := range q {
		if k != "from" {
			return fail("unknown parameter %q (only from)", k)
		}
	}
	c.From = q.Get("from")
	if c.From == "" {
		return fail("needs ?from=<sender address>")
	}
	if a, err := mail.ParseAddress(c.From); err != nil || a.Address != c.From || !strings.Contains(c.From, "@") ||
		strings.ContainsAny(c.From, "<>\r\n \"") {
		return fail("from %q is not a bare e-mail address", c.From)
	}
	return c, nil
}

// fromDomain is the domain of the sender's address (for Message-IDs).
func (c SMTP) fromDomain() string {
	_, d, _ := strings.Cut(c.From, "@")
	return d
}

// sendError is a failed attempt: Permanent when the server refused the
// mail or its recipient for good (a 5xx answer to MAIL, RCPT or DATA), so
// that trying again cannot help.
type sendError struct {
	Permanent bool
	err       error
}

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// errNoStartTLS is the error of go-smtp's NewClientStartTLS when the
// server offers no STARTTLS (tested by TestSMTPWithoutTLS).
const errNoStartTLS = "doesn't support STARTTLS"

// mailer sends one message to one recipient per connection.
type mailer struct {
	cfg     SMTP
	tls     *tls.Config
	timeout time.Duration
}

// send delivers msg to the address to. Errors: *sendError.
func (m mailer) send(ctx context.Context, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	c, err := m.dial(ctx)
	if err != nil {
		return &sendError{err: err}
	}
	defer c.Close()
	if m.cfg.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return &sendError{err: errors.New("the server offers no AUTH")}
		}
		if err := c.Auth(sasl.NewPlainClient("", m.cfg.Username, m.cfg.Password)); err != nil {
			return &sendError{err: fmt.Errorf("authenticate: %w", err)}
		}
	}
	step := func(what string, err error) error {
		if err == nil {
			return nil
		}
		var se *smtp.SMTPError
		perm := errors.As(err, &se) && se.Code >= 500 && se.Code < 600
		return &sendError{Permanent: perm, err: fmt.Errorf("%s: %w", what, err)}
	}
	if err := step("MAIL FROM", c.Mail(m.cfg.From, nil)); err != nil {
		return err
	}
	if err := step("RCPT TO", c.Rcpt(to, nil)); err != nil {
		return err
	}
	w, err := c.Data()
	if err := step("DATA", err); err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return &sendError{err: fmt.Errorf("DATA: %w", err)}
	}
	if err := step("DATA", w.Close()); err != nil {
		return err
	}
	_ = c.Quit() // accepted already: a failed QUIT changes nothing
	return nil
}

// dial connects and secures the connection: implicit TLS, or STARTTLS
// when the server offers it. Without TLS it goes on only when there are
// no credentials to send, or the server is on the loopback interface.
func (m mailer) dial(ctx context.Context) (*smtp.Client, error) {
	addr := net.JoinHostPort(m.cfg.Host, m.cfg.Port)
	tc := m.tls.Clone()
	if tc == nil {
		tc = &tls.Config{}
	}
	if tc.ServerName == "" {
		tc.ServerName = m.cfg.Host
	}
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	conn, err := m.connect(ctx, addr)
	if err != nil {
		return nil, err
	}
	if m.cfg.ImplicitTLS {
		return smtp.NewClient(tls.Client(conn, tc)), nil
	}
	c, err := smtp.NewClientStartTLS(conn, tc)
	if err == nil {
		return c, nil
	}
	if !strings.Contains(err.Error(), errNoStartTLS) {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	if m.cfg.Username != "" && !loopback(m.cfg.Host) {
		return nil, errors.New("the server offers no STARTTLS: the credentials are never sent in clear (use a server " +
			"with STARTTLS, or smtps://)")
	}
	if conn, err = m.connect(ctx, addr); err != nil {
		return nil, err
	}
	return smtp.NewClient(conn), nil
}

// connect opens a TCP connection that ctx's end closes.
func (m mailer) connect(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	context.AfterFunc(ctx, func() { _ = conn.Close() })
	return conn, nil
}

// loopback reports whether host is a loopback name or address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
