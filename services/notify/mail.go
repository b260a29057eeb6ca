package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
)

// User is an account as its events (UserCreated, UserChanged) leave it:
// what notify needs to address mail to it.
type User struct {
	Username     string
	Email        string
	Roles, Posts []string
	Disabled     bool
}

// Reason is why a recipient gets a mail.
type Reason string

// The reasons.
const (
	// ReasonRequester: the recipient filed the case.
	ReasonRequester Reason = "requester"
	// ReasonApprover: the recipient is an approver.
	ReasonApprover Reason = "approver"
)

// Mail is one e-mail to one recipient about one event: its outbox row.
// It holds everything the message says — the case's status, post,
// category, urgency, amounts and deadline right after the event — and
// never personal data of the beneficiary.
type Mail struct {
	EventID  string
	Username string
	Address  string
	Reason   Reason
	CaseID   string
	Type     string
	Seq      uint64
	At       time.Time

	Status        assist.State
	Post          string
	Category      assist.Category
	Urgency       assist.Urgency
	AmountCents   int64
	ApprovedCents int64
	Deadline      time.Time
	Escalated     bool

	// Attempts made so far; NextAt the earliest time of the next;
	// DeliveredAt zero until the server accepted it; Dropped when it
	// refused it for good.
	Attempts    int
	NextAt      time.Time
	DeliveredAt time.Time
	Dropped     bool
	LastError   string
}

// mailAudience says who is mailed about event e of case c (c as it stands
// after e): its requester when information is requested or a decision is
// made; the approvers when a critical request is filed, a deadline is
// near (DeadlineWarning) or missed, or a first approval waits for a
// second.
func mailAudience(e assist.Event, c *assist.Case) (requester, approvers bool) {
	switch e.Body.(type) {
	case assist.InfoRequested, assist.RequestRejected:
		return true, false
	case assist.RequestApproved:
		return true, c.State == assist.StateAwaitingSecondApproval
	case assist.RequestSubmitted:
		return false, c.Urgency == assist.Critical
	case assist.DeadlineMissed, assist.DeadlineWarning:
		return false, true
	}
	return false, false
}

// applyUser records an account event.
func (s *Service) applyUser(ctx context.Context, q sqldb.Querier, e assist.Event, seq uint64) error {
	switch b := e.Body.(type) {
	case assist.UserCreated:
		return s.store.SaveUser(ctx, q, User{Username: b.Username, Email: b.Email, Roles: b.Roles, Posts: b.Posts}, seq)
	case assist.UserChanged:
		return s.store.SaveUser(ctx, q, User{Username: b.Username, Email: b.Email, Roles: b.Roles, Posts: b.Posts,
			Disabled: b.Disabled}, seq)
	}
	return nil
}

// enqueueMails adds, in the consumer's transaction, one mail per
// recipient of event e of case c: the accounts with an address, not
// disabled, never the event's own actor. Nothing when e-mail is off.
func (s *Service) enqueueMails(ctx context.Context, q sqldb.Querier, e assist.Event, seq uint64, c *assist.Case) error {
	if !s.cfg.SMTP.On() {
		return nil
	}
	toRequester, toApprovers := mailAudience(e, c)
	if !toRequester && !toApprovers {
		return nil
	}
	users, err := s.store.Users(ctx, q)
	if err != nil {
		return err
	}
	base := Mail{EventID: e.ID, CaseID: c.ID, Type: e.Type(), Seq: seq, At: e.At, Status: c.State, Post: c.Post,
		Category: c.Category, Urgency: c.Urgency, AmountCents: c.AmountCents, ApprovedCents: c.ApprovedCents,
		Deadline: c.Deadline, Escalated: c.Escalated, NextAt: s.now()}
	for _, u := range users {
		if u.Disabled || u.Email == "" || u.Username == e.Actor.Username {
			continue
		}
		m := base
		switch {
		case toRequester && u.Username == c.Requester:
			m.Reason = ReasonRequester
		case toApprovers && slices.Contains(u.Roles, assist.RoleApprover) && !slices.Contains(approversOf(c), u.Username):
			m.Reason = ReasonApprover
		default:
			continue
		}
		m.Username, m.Address = u.Username, u.Email
		if err := s.store.EnqueueMail(ctx, q, m); err != nil {
			return err
		}
	}
	return nil
}

// approversOf are the approvers who already approved c: a mail asking for
// a second approval does not go to the first approver.
func approversOf(c *assist.Case) []string {
	var out []string
	for _, a := range c.Approvals {
		out = append(out, a.Approver)
	}
	if c.ApprovedBy != "" {
		out = append(out, c.ApprovedBy)
	}
	return out
}

// subject is a mail's subject line: what happened to which case, never
// personal data.
func (m Mail) subject() string {
	id := m.CaseID
	switch m.Type {
	case "InfoRequested":
		return "EVA: information requested on case " + id
	case "RequestRejected":
		return "EVA: case " + id + " rejected"
	case "RequestApproved":
		if m.Status == assist.StateAwaitingSecondApproval {
			if m.Reason == ReasonApprover {
				return "EVA: case " + id + " needs a second approval"
			}
			return "EVA: case " + id + " approved once, awaiting a second approval"
		}
		return "EVA: case " + id + " approved"
	case "RequestSubmitted":
		return fmt.Sprintf("EVA: %s request %s filed at %s", m.Urgency, id, m.Post)
	case "DeadlineMissed":
		return fmt.Sprintf("EVA: deadline missed on %s case %s", m.Urgency, id)
	case "DeadlineWarning":
		return fmt.Sprintf("EVA: deadline near on %s case %s", m.Urgency, id)
	}
	return "EVA: " + m.Type + " on case " + id
}

// what is the first line of a mail's body.
func (m Mail) what() string {
	switch m.Type {
	case "InfoRequested":
		return "An approver asked for more information on a request you filed. Open the case to read the question and answer it."
	case "RequestRejected":
		return "A request you filed was rejected. Open the case to read the reason."
	case "RequestApproved":
		switch {
		case m.Status != assist.StateAwaitingSecondApproval:
			return "A request you filed was approved."
		case m.Reason == ReasonApprover:
			return "A request was approved once and needs a second approval by a different approver."
		}
		return "A request you filed was approved once; it now awaits a second approval."
	case "RequestSubmitted":
		return "A critical request was filed and waits in the queue."
	case "DeadlineMissed":
		return "A request passed its decision deadline without a decision; it is escalated to the top of the queue."
	case "DeadlineWarning":
		return "A request is near its decision deadline without a decision."
	}
	return "Case event " + m.Type + "."
}

// cents is an amount as 1,234.56 USD.
func cents(n int64) string {
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	whole := fmt.Sprint(n / 100)
	for i := len(whole) - 3; i > 0; i -= 3 {
		whole = whole[:i] + "," + whole[i:]
	}
	return fmt.Sprintf("%s%s.%02d USD", sign, whole, n%100)
}

// messageID is the mail's Message-ID: the same on every attempt, so a
// receiver may drop a repeat (the one left after a crash between the
// server's acceptance and its record).
func (m Mail) messageID(domain string) string {
	h := sha256.Sum256([]byte(m.Username))
	return "<" + m.EventID + "." + hex.EncodeToString(h[:6]) + "@" + domain + ">"
}

// render is the mail as sent: RFC 5322 headers (Date, Message-ID, From,
// To, Subject) and a text/plain body, CRLF line ends, ASCII only. It
// names the case by id, its status, post, category, urgency, amounts and
// deadline, and links to its page; nothing about the beneficiary.
func (m Mail) render(from, fromDomain, publicURL string) []byte {
	var b strings.Builder
	h := func(k, v string) { b.WriteString(k + ": " + headerSafe(v) + "\r\n") }
	h("Date", m.At.UTC().Format(time.RFC1123Z))
	h("Message-ID", m.messageID(fromDomain))
	h("From", "EVA <"+from+">")
	h("To", "<"+m.Address+">")
	h("Subject", m.subject())
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=us-ascii")
	h("Content-Transfer-Encoding", "7bit")
	h("Auto-Submitted", "auto-generated")
	h("X-EVA-Event-Id", m.EventID)
	b.WriteString("\r\n")
	line := func(s string) { b.WriteString(asciiLine(s) + "\r\n") }
	line(m.what())
	line("")
	row := func(k, v string) { line(fmt.Sprintf("%-10s %s", k+":", v)) }
	row("Case", m.CaseID)
	row("Event", m.Type)
	row("Status", string(m.Status))
	row("Post", m.Post)
	row("Category", string(m.Category))
	urgency := string(m.Urgency)
	if m.Escalated {
		urgency += " (escalated)"
	}
	row("Urgency", urgency)
	row("Amount", cents(m.AmountCents)+" requested")
	if m.ApprovedCents > 0 {
		row("Approved", cents(m.ApprovedCents))
	}
	if !m.Deadline.IsZero() {
		row("Deadline", m.Deadline.UTC().Format("2006-01-02 15:04 MST"))
	}
	row("At", m.At.UTC().Format("2006-01-02 15:04:05 MST"))
	line("")
	if publicURL != "" {
		line("Open the case: " + strings.TrimRight(publicURL, "/") + "/requests/" + m.CaseID)
		line("")
	}
	line("This message carries no personal data: sign in to EVA to see the case.")
	switch m.Reason {
	case ReasonRequester:
		line("You receive it because you filed the request (EVA account " + m.Username + ").")
	case ReasonApprover:
		line("You receive it because your EVA account " + m.Username + " is an approver.")
	}
	return []byte(b.String())
}

// headerSafe keeps a header value on its line: no CR, LF or other
// control character survives (the values are checked when they enter
// EVA; this is the last guard).
func headerSafe(v string) string { return asciiLine(v) }

// asciiLine is s with every byte outside printable ASCII replaced by '?'.
func asciiLine(s string) string {
	out := []byte(s)
	for i, c := range out {
		if c < 0x20 || c > 0x7e {
			out[i] = '?'
		}
	}
	return string(out)
}
