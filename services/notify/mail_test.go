package notify_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap/zaptest"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/devcerts"
	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
	"github.com/eva-org/eva/services/notify"
)

// mailServer is a real SMTP server (emersion/go-smtp) on a loopback port
// that keeps every message it accepts and refuses, with 451, the first
// refuse attempts of each message (by Message-ID).
type mailServer struct {
	t      *testing.T
	srv    *smtp.Server
	addr   string
	mu     sync.Mutex
	refuse int
	// user and pass, when set, are required (AUTH PLAIN).
	user, pass string
	attempts   map[string]int // by Message-ID
	got        []received
	// raw is every byte of every message offered, accepted or not.
	raw  bytes.Buffer
	tlsd int // sessions that ran over TLS
}

type received struct {
	from, to string
	msg      *mail.Message
	body     string
}

// newMailServer starts one; with tlsConf it offers STARTTLS (or, with
// implicit, speaks TLS from the start).
func newMailServer(t *testing.T, refuse int, tlsConf *tls.Config, implicit bool) *mailServer {
	t.Helper()
	m := &mailServer{t: t, refuse: refuse, attempts: map[string]int{}}
	m.srv = smtp.NewServer(m)
	m.srv.Domain = "localhost"
	m.srv.ReadTimeout, m.srv.WriteTimeout = time.Minute, time.Minute
	m.srv.TLSConfig = tlsConf
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicit {
		l = tls.NewListener(l, tlsConf)
	}
	m.addr = l.Addr().String()
	go func() { _ = m.srv.Serve(l) }()
	t.Cleanup(func() { _ = m.srv.Close() })
	return m
}

// url is an smtp URL of the server.
func (m *mailServer) url(scheme, userinfo string) string {
	if userinfo != "" {
		userinfo += "@"
	}
	return scheme + "://" + userinfo + m.addr + "?from=eva@eva.example.org"
}

func (m *mailServer) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	return &mailSession{m: m, tls: isTLS}, nil
}

type mailSession struct {
	m        *mailServer
	tls      bool
	authed   bool
	from, to string
}

func (s *mailSession) AuthMechanisms() []string {
	if s.m.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.m.user || pass != s.m.pass {
			return errors.New("bad credentials")
		}
		s.authed = true
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.m.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = to; return nil }

func (s *mailSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	msg, perr := mail.ReadMessage(bytes.NewReader(data))
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	s.m.raw.WriteString(s.from + "\n" + s.to + "\n")
	s.m.raw.Write(data)
	if perr != nil {
		s.m.t.Errorf("a message that does not parse: %v\n%s", perr, data)
		return perr
	}
	id := msg.Header.Get("Message-ID")
	s.m.attempts[id]++
	if s.m.attempts[id] <= s.m.refuse {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	body, _ := io.ReadAll(msg.Body)
	s.m.got = append(s.m.got, received{from: s.from, to: s.to, msg: msg, body: string(body)})
	if s.tls {
		s.m.tlsd++
	}
	return nil
}

func (s *mailSession) Reset()        {}
func (s *mailSession) Logout() error { return nil }

// mails are the accepted messages to address to about case caseID.
func (m *mailServer) mails(to, caseID string) []received {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []received
	for _, r := range m.got {
		if r.to == to && strings.Contains(r.msg.Header.Get("Subject"), caseID) {
			out = append(out, r)
		}
	}
	return out
}

func (m *mailServer) total() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.got)
}

// mailService is notify sending mail through url, with quick retries.
func (h *harness) mailService(url string, tc *tls.Config) *notify.Service {
	h.t.Helper()
	cfg, err := notify.ParseSMTP(url)
	if err != nil {
		h.t.Fatal(err)
	}
	return notify.New(notify.Deps{Config: notify.Config{RetryFirst: 10 * time.Millisecond, RetryMax: 80 * time.Millisecond,
		Poll: 10 * time.Millisecond, Timeout: 10 * time.Second, SMTP: cfg, PublicURL: "https://eva.example.org/"},
		Log: h.log, DB: h.db, Keys: h.keys, Logger: zaptest.NewLogger(h.t), SMTPTLS: tc})
}

// user appends an account's event as the gateway would (UserCreated, or
// UserChanged when it has one already).
func (h *harness) user(versions map[string]uint64, name, email string, disabled bool, roles ...string) {
	h.t.Helper()
	var posts []string
	if slices.Contains(roles, assist.RoleRequester) {
		posts = []string{"BGD-DHAKA"}
	}
	var b assist.Body = assist.UserCreated{Username: name, Email: email, Roles: roles, Posts: posts}
	if _, ok := versions[name]; ok {
		b = assist.UserChanged{Username: name, Email: email, Roles: roles, Posts: posts, Disabled: disabled}
	}
	seq, err := h.log.Append(h.ctx, assist.Event{ID: newID(), CaseID: assist.UserID(name), At: time.Now().UTC(), Actor: adm,
		Body: b}, versions[name])
	if err != nil {
		h.t.Fatal(err)
	}
	versions[name] = seq
}

// The beneficiary's personal data as a requester types it: none of it
// may leave in a mail.
const (
	victimName = "Ayesha Rahmanova"
	victimRef  = "BGD-REF-77310"
	victimTel  = "+880-1711-555000"
)

// fileSensitive files a case whose every free-text field and sealed
// bytes hold the beneficiary's personal data.
func (h *harness) fileSensitive(urgency assist.Urgency) (string, uint64) {
	h.t.Helper()
	id := newID()
	secretish := []byte(victimName + " " + victimRef + " " + victimTel + " 1999-02-03")
	c, err := h.log.Start(h.ctx, assist.Event{ID: newID(), CaseID: id, At: time.Now().UTC(), Actor: ana,
		Reason: "for " + victimName,
		Body: assist.RequestSubmitted{Post: "BGD-DHAKA", Category: assist.Medical, Urgency: urgency, AmountCents: 123_456,
			Justification: victimName + " (" + victimRef + ") needs surgery; call " + victimTel,
			Beneficiary:   assist.Sealed{KeyID: id, Ciphertext: secretish}, BeneficiaryRefHash: []byte(victimRef),
			Deadline: time.Now().Add(4 * time.Hour).UTC()}})
	if err != nil {
		h.t.Fatal(err)
	}
	return id, c.Version
}

var mei = assist.Actor{Username: "mei", Role: assist.RoleApprover}

// TestMailWhoGetsWhat: on a real SMTP server that refuses the first two
// attempts of every message (451), the requester gets a mail when
// information is requested and on each decision (first and second
// approval, rejection); the approvers with an address (not disabled, not
// the actor, not the first approver when a second is needed) get one
// when a critical request is filed, a first approval needs a second, and
// a deadline is missed. Each exactly once, with its headers, a link to
// the case, and not a byte of the beneficiary's personal data.
func TestMailWhoGetsWhat(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		ms := newMailServer(t, 2, nil, false)
		users := map[string]uint64{}
		h.user(users, "ana", "ana@post.example.org", false, assist.RoleRequester)
		h.user(users, "olu", "olu@hq.example.org", false, assist.RoleApprover)
		h.user(users, "mei", "mei@hq.example.org", false, assist.RoleApprover)
		h.user(users, "raj", "raj@hq.example.org", false, assist.RoleApprover)
		h.user(users, "raj", "raj@hq.example.org", true, assist.RoleApprover) // disabled
		h.user(users, "bob", "", false, assist.RoleApprover)                  // no address
		h.user(users, "fin", "fin@hq.example.org", false, assist.RoleFinance)
		s := h.mailService(ms.url("smtp", ""), nil)
		h.run(s)

		// A critical request: approved twice.
		a, va := h.fileSensitive(assist.Critical)
		va = h.append(a, va, olu, assist.ReviewClaimed{ExpiresAt: time.Now().Add(time.Hour)})
		va = h.append(a, va, olu, assist.InfoRequested{Question: "Is " + victimName + " at the shelter?"})
		va = h.append(a, va, ana, assist.InfoProvided{Answer: victimName + " is there"})
		va = h.append(a, va, olu, assist.ReviewClaimed{ExpiresAt: time.Now().Add(time.Hour)})
		va = h.append(a, va, olu, assist.RequestApproved{AmountCents: 100_000, Step: assist.ApprovalFirst, FundID: "EVA-DEMO"})
		h.append(a, va, mei, assist.RequestApproved{AmountCents: 90_000, Step: assist.ApprovalSecond, FundID: "EVA-DEMO"})
		// A routine request: its deadline missed, then rejected.
		b, vb := h.fileSensitive(assist.Routine)
		vb = h.append(b, vb, assist.Actor{Username: "eva", Role: assist.RoleSystem}, assist.DeadlineWarning{Deadline: time.Now().UTC()})
		vb = h.append(b, vb, assist.Actor{Username: "eva", Role: assist.RoleSystem}, assist.DeadlineMissed{Deadline: time.Now().UTC()})
		vb = h.append(b, vb, mei, assist.ReviewClaimed{ExpiresAt: time.Now().Add(time.Hour)})
		h.append(b, vb, mei, assist.RequestRejected{})

		want := map[string]map[string][]string{ // case → address → subjects
			a: {
				"olu@hq.example.org":   {"EVA: critical request " + a + " filed at BGD-DHAKA"},
				"mei@hq.example.org":   {"EVA: critical request " + a + " filed at BGD-DHAKA", "EVA: case " + a + " needs a second approval"},
				"ana@post.example.org": {"EVA: information requested on case " + a, "EVA: case " + a + " approved once, awaiting a second approval", "EVA: case " + a + " approved"},
			},
			b: {
				"olu@hq.example.org":   {"EVA: deadline near on routine case " + b, "EVA: deadline missed on routine case " + b},
				"mei@hq.example.org":   {"EVA: deadline near on routine case " + b, "EVA: deadline missed on routine case " + b},
				"ana@post.example.org": {"EVA: case " + b + " rejected"},
			},
		}
		n := 0
		for _, byAddr := range want {
			for _, subjects := range byAddr {
				n += len(subjects)
			}
		}
		evatest.Await(t, evatest.Patience, "every mail accepted", func() (bool, string) {
			return ms.total() >= n, fmt.Sprintf("%d of %d", ms.total(), n)
		})
		// Every mail is recorded as sent: nothing can be sent again.
		evatest.Eventually(t, "every mail recorded as sent", func() bool {
			for _, id := range []string{a, b} {
				ms, err := s.Store().Mails(h.ctx, id)
				if err != nil || slices.ContainsFunc(ms, func(m notify.Mail) bool { return m.DeliveredAt.IsZero() }) {
					return false
				}
			}
			return true
		})
		if got := ms.total(); got != n {
			t.Fatalf("%d mails accepted, want %d", got, n)
		}
		for id, byAddr := range want {
			for addr, subjects := range byAddr {
				got := ms.mails(addr, id)
				var gotSubjects []string
				for _, r := range got {
					gotSubjects = append(gotSubjects, r.msg.Header.Get("Subject"))
					checkMail(t, r, id, addr)
				}
				slices.Sort(gotSubjects)
				slices.Sort(subjects)
				if !slices.Equal(gotSubjects, subjects) {
					t.Errorf("%s about %s: got %q, want %q", addr, id, gotSubjects, subjects)
				}
			}
		}
		for _, addr := range []string{"raj@hq.example.org", "fin@hq.example.org"} {
			if got := ms.mails(addr, a); len(got) != 0 {
				t.Errorf("%s got %d mails", addr, len(got))
			}
		}
		ms.mu.Lock()
		defer ms.mu.Unlock()
		for _, secret := range []string{victimName, victimRef, victimTel, "1999-02-03", "surgery", "shelter?"} {
			if bytes.Contains(ms.raw.Bytes(), []byte(secret)) {
				t.Fatalf("personal data %q left in a mail:\n%s", secret, ms.raw.String())
			}
		}
		for id, n := range ms.attempts {
			if n != 3 {
				t.Errorf("message %s: %d attempts, want 3 (two refused, one accepted)", id, n)
			}
		}
	})
}

// checkMail checks a mail's headers and body.
func checkMail(t *testing.T, r received, caseID, addr string) {
	t.Helper()
	hd := r.msg.Header
	if r.from != "eva@eva.example.org" || hd.Get("From") != "EVA <eva@eva.example.org>" || hd.Get("To") != "<"+addr+">" {
		t.Errorf("envelope %s → %s, From %q To %q", r.from, r.to, hd.Get("From"), hd.Get("To"))
	}
	if _, err := hd.Date(); err != nil {
		t.Errorf("Date %q: %v", hd.Get("Date"), err)
	}
	if id := hd.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@eva.example.org>") {
		t.Errorf("Message-ID %q", id)
	}
	if !strings.HasPrefix(hd.Get("Content-Type"), "text/plain") || hd.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("Content-Type %q Auto-Submitted %q", hd.Get("Content-Type"), hd.Get("Auto-Submitted"))
	}
	for _, part := range []string{"https://eva.example.org/requests/" + caseID, "BGD-DHAKA", "medical", "1,234.56 USD requested"} {
		if !strings.Contains(r.body, part) {
			t.Errorf("body lacks %q:\n%s", part, r.body)
		}
	}
}

// TestMailRestartNeitherLosesNorFloods: mails the server refused before
// notify stopped, and events appended while it was down, are sent after
// it comes back; those it had sent are not sent again: each (event,
// recipient) exactly once.
func TestMailRestartNeitherLosesNorFloods(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		h := newHarness(t, db)
		ms := newMailServer(t, 0, nil, false)
		users := map[string]uint64{}
		h.user(users, "olu", "olu@hq.example.org", false, assist.RoleApprover)
		h.user(users, "mei", "mei@hq.example.org", false, assist.RoleApprover)
		s1 := h.mailService(ms.url("smtp", ""), nil)
		stop := h.run(s1)
		var cases []string
		for range 2 {
			id, _ := h.fileSensitive(assist.Critical)
			cases = append(cases, id)
		}
		evatest.Await(t, evatest.Patience, "sent before the restart", func() (bool, string) {
			return ms.total() == 4, fmt.Sprintf("%d of 4", ms.total())
		})
		// The server starts refusing; notify tries, then stops mid-way.
		ms.mu.Lock()
		ms.refuse = 1_000_000
		ms.mu.Unlock()
		for range 2 {
			id, _ := h.fileSensitive(assist.Critical)
			cases = append(cases, id)
		}
		evatest.Eventually(t, "the refused mails tried", func() bool {
			ms.mu.Lock()
			defer ms.mu.Unlock()
			return len(ms.attempts) >= 8
		})
		stop()
		for range 2 { // while notify is down
			id, _ := h.fileSensitive(assist.Critical)
			cases = append(cases, id)
		}
		ms.mu.Lock()
		ms.refuse = 0
		clear(ms.attempts) // the server recovers
		ms.mu.Unlock()
		s2 := h.mailService(ms.url("smtp", ""), nil)
		h.run(s2)
		evatest.Await(t, evatest.Patience, "every mail sent after the restart", func() (bool, string) {
			return ms.total() >= 12, fmt.Sprintf("%d of 12", ms.total())
		})
		evatest.Eventually(t, "every mail recorded as sent", func() bool {
			for _, id := range cases {
				mails, err := s2.Store().Mails(h.ctx, id)
				if err != nil || len(mails) != 2 || slices.ContainsFunc(mails, func(m notify.Mail) bool { return m.DeliveredAt.IsZero() }) {
					return false
				}
			}
			return true
		})
		for _, id := range cases {
			for _, addr := range []string{"olu@hq.example.org", "mei@hq.example.org"} {
				if got := ms.mails(addr, id); len(got) != 1 {
					t.Errorf("%s got %d mails about %s, want exactly one", addr, len(got), id)
				}
			}
		}
		if got := ms.total(); got != 12 {
			t.Fatalf("%d mails accepted, want 12", got)
		}
	})
}

// testTLS is a server TLS configuration for 127.0.0.1 and a client one
// that trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	f, err := devcerts.Write(t.TempDir(), []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, &tls.Config{RootCAs: pool}
}

// TestMailOverTLSWithCredentials: smtp:// upgrades with STARTTLS when the
// server offers it, smtps:// speaks TLS at once; both authenticate; a
// wrong password is not accepted (the mail waits, retried).
func TestMailOverTLSWithCredentials(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	for _, implicit := range []bool{false, true} {
		scheme := map[bool]string{false: "smtp", true: "smtps"}[implicit]
		t.Run(scheme, func(t *testing.T) {
			h := newHarness(t, sqldbtest.SQLite(t))
			ms := newMailServer(t, 0, serverTLS, implicit)
			ms.user, ms.pass = "eva", "p@ss word/1"
			users := map[string]uint64{}
			h.user(users, "olu", "olu@hq.example.org", false, assist.RoleApprover)
			bad := h.mailService(ms.url(scheme, "eva:wrong"), clientTLS)
			stop := h.run(bad)
			id, _ := h.fileSensitive(assist.Critical)
			evatest.Eventually(t, "a failed attempt recorded", func() bool {
				mails, err := bad.Store().Mails(h.ctx, id)
				return err == nil && len(mails) == 1 && mails[0].Attempts > 0 && mails[0].LastError != ""
			})
			stop()
			if ms.total() != 0 {
				t.Fatalf("accepted without the right password")
			}
			mails, _ := bad.Store().Mails(h.ctx, id)
			if strings.Contains(mails[0].LastError, "wrong") {
				t.Fatalf("the password is in the recorded error: %s", mails[0].LastError)
			}
			good := h.mailService(ms.url(scheme, "eva:p%40ss%20word%2F1"), clientTLS)
			h.run(good)
			evatest.Eventually(t, "the mail accepted over TLS", func() bool { return ms.total() == 1 })
			ms.mu.Lock()
			defer ms.mu.Unlock()
			if ms.tlsd != 1 {
				t.Fatalf("%d TLS sessions delivered, want 1", ms.tlsd)
			}
		})
	}
}

// TestParseSMTP: good URLs parse, the String never shows the password;
// bad ones fail naming what is wrong, never repeating the password.
func TestParseSMTP(t *testing.T) {
	c, err := notify.ParseSMTP("smtp://user:s3cr%40t@mail.example.org?from=eva@example.org")
	if err != nil || c.Host != "mail.example.org" || c.Port != "587" || c.ImplicitTLS || c.Username != "user" ||
		c.Password != "s3cr@t" || c.From != "eva@example.org" {
		t.Fatalf("%+v %v", c, err)
	}
	if s := c.String(); strings.Contains(s, "s3cr") || !strings.Contains(s, "mail.example.org:587") {
		t.Fatalf("String %q", s)
	}
	c, err = notify.ParseSMTP("smtps://mail.example.org:2465?from=eva@example.org")
	if err != nil || c.Port != "2465" || !c.ImplicitTLS || c.Username != "" {
		t.Fatalf("%+v %v", c, err)
	}
	if c, err := notify.ParseSMTP(""); err != nil || c.On() {
		t.Fatalf("empty: %+v %v", c, err)
	}
	for raw, want := range map[string]string{
		"http://mail.example.org?from=eva@example.org":             "scheme",
		"smtp://?from=eva@example.org":                             "no host",
		"smtp://mail.example.org":                                  "from",
		"smtp://mail.example.org?from=not-an-address":              "from",
		"smtp://mail.example.org?from=Eva%20%3Ceva@example.org%3E": "from",
		"smtp://mail.example.org?from=eva@example.org&tls=off":     "unknown parameter",
		"smtp://mail.example.org/path?from=eva@example.org":        "path",
		"smtp://u:s3cr3t@mail.example.org:99999999999?from=x":      "",
		"smtp://u:s3cr3t@%zz?from=eva@example.org":                 "",
		"smtp://:s3cr3t@mail.example.org?from=eva@example.org":     "user name",
	} {
		_, err := notify.ParseSMTP(raw)
		if err == nil {
			t.Errorf("%s: accepted", raw)
			continue
		}
		if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%s: %v (want it to say %q, never the password)", raw, err, want)
		}
	}
}

// TestSweep: delivered (and dropped) webhook deliveries and mails older
// than the cutoff are deleted; recent and pending ones stay.
func TestSweep(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, db sqldb.DB) {
		newHarness(t, db) // migrates
		st := notify.NewSQLStore(db)
		ctx := context.Background()
		now := time.Now().UTC().Truncate(time.Second)
		old, recent := now.Add(-8*24*time.Hour), now.Add(-time.Hour)
		if err := db.Tx(ctx, func(q sqldb.Querier) error {
			if err := st.SaveWebhook(ctx, q, assist.Webhook{ID: "w1", URL: "https://example.org", Events: []string{"RequestSubmitted"},
				Secret: assist.Sealed{KeyID: "k", Ciphertext: []byte{1}}, SecretKey: []byte{2}, At: old}, 1); err != nil {
				return err
			}
			for i, e := range []string{"e-old", "e-recent", "e-pending", "e-dropped"} {
				d := notify.Delivery{EventID: e, CaseID: "c", Type: "RequestSubmitted", Seq: uint64(10 + i), At: old, NextAt: old}
				if err := st.Enqueue(ctx, q, d); err != nil {
					return err
				}
				if err := st.EnqueueMail(ctx, q, notify.Mail{EventID: e, Username: "olu", Address: "olu@hq.example.org",
					Reason: notify.ReasonApprover, CaseID: "c", Type: "RequestSubmitted", Seq: uint64(10 + i), At: old, NextAt: old}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		mark := func(e string, at time.Time) {
			if err := st.Delivered(ctx, notify.Delivery{WebhookID: "w1", EventID: e}, at); err != nil {
				t.Fatal(err)
			}
			if err := st.MailSent(ctx, notify.Mail{EventID: e, Username: "olu"}, at); err != nil {
				t.Fatal(err)
			}
		}
		mark("e-old", old)
		mark("e-recent", recent)
		if err := st.MailFailed(ctx, notify.Mail{EventID: "e-dropped", Username: "olu"}, time.Time{}, "550 no such user"); err != nil {
			t.Fatal(err)
		}
		if err := st.RemoveWebhook(ctx, db, "w1"); err != nil { // drops the undelivered deliveries
			t.Fatal(err)
		}
		n, err := st.Sweep(ctx, now.Add(-7*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		ds, err := st.Deliveries(ctx, "w1")
		if err != nil {
			t.Fatal(err)
		}
		mails, err := st.Mails(ctx, "c")
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, d := range ds {
			left = append(left, "webhook "+d.EventID)
		}
		for _, m := range mails {
			left = append(left, "mail "+m.EventID)
		}
		want := []string{"webhook e-recent", "mail e-recent", "mail e-pending"}
		if n != 5 || !slices.Equal(left, want) {
			t.Fatalf("swept %d, left %v; want 5 swept, %v left", n, left, want)
		}
	})
}
