package notify

import (
	"context"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
)

//go:embed migrations
var migrationFS embed.FS

// Migrations is notify's schema.
var Migrations = sqldb.Embedded("notify", migrationFS)

// Delivery is one event to POST to one webhook: its outbox row.
type Delivery struct {
	WebhookID string
	EventID   string
	CaseID    string
	Type      string
	Seq       uint64
	At        time.Time
	Status    assist.State
	// Attempts made so far; NextAt the earliest time of the next;
	// DeliveredAt zero until a 2xx.
	Attempts    int
	NextAt      time.Time
	DeliveredAt time.Time
	Dropped     bool
	LastError   string
}

// Store is notify's state: webhooks (projected from their events), the
// status of each case, and the outbox of deliveries. The methods that take
// a Querier run inside a consumer's transaction.
type Store interface {
	// SaveWebhook records a registration at log position seq (a repeat is
	// a no-op).
	SaveWebhook(ctx context.Context, q sqldb.Querier, w assist.Webhook, seq uint64) error
	// RemoveWebhook marks a webhook removed and drops its undelivered
	// deliveries.
	RemoveWebhook(ctx context.Context, q sqldb.Querier, id string) error
	// Webhooks are the webhooks not removed, oldest first.
	Webhooks(ctx context.Context) ([]assist.Webhook, error)
	// Webhook is one webhook, removed or not.
	// Errors: CodeNotFound.
	Webhook(ctx context.Context, id string) (assist.Webhook, error)
	// CaseState is the part of a case notify keeps (keptPart: status,
	// requester, urgency, version, post, category, amounts, deadline,
	// escalation); nil when none.
	CaseState(ctx context.Context, q sqldb.Querier, id string) (*assist.Case, error)
	// CaseStates are those parts of the cases of ids that the store has,
	// by id, read in one statement.
	CaseStates(ctx context.Context, q sqldb.Querier, ids []string) (map[string]*assist.Case, error)
	// SaveCase stores that part.
	SaveCase(ctx context.Context, q sqldb.Querier, c *assist.Case) error
	// SaveCases stores that part of cases of distinct ids, many a
	// statement.
	SaveCases(ctx context.Context, q sqldb.Querier, cs []*assist.Case) error
	// Enqueue adds a delivery of each event to every webhook not removed,
	// registered before it (seq) and asking for its type; a delivery
	// already there stays as it is. It reads the webhooks once for all
	// the events and writes their deliveries in statements of many rows.
	Enqueue(ctx context.Context, q sqldb.Querier, ds ...Delivery) error
	// Due are undelivered, not dropped deliveries whose NextAt is at or
	// before now, the oldest first.
	Due(ctx context.Context, now time.Time, limit int) ([]Delivery, error)
	// Claim takes a due delivery for an attempt until until: false when
	// another worker took it, or it is delivered or dropped.
	Claim(ctx context.Context, d Delivery, now, until time.Time) (bool, error)
	// Delivered records a 2xx answer to the attempt.
	Delivered(ctx context.Context, d Delivery, at time.Time) error
	// Failed records a failed attempt and when to try again.
	Failed(ctx context.Context, d Delivery, next time.Time, reason string) error
	// Deliveries of a webhook, in log order (for tests and operators).
	Deliveries(ctx context.Context, webhookID string) ([]Delivery, error)

	// SaveUser records an account as its event at log position seq
	// leaves it (an older position than the one stored is a no-op).
	SaveUser(ctx context.Context, q sqldb.Querier, u User, seq uint64) error
	// Users are the accounts notify knows, by username.
	Users(ctx context.Context, q sqldb.Querier) ([]User, error)
	// EnqueueMail adds a mail; one already there for the same event and
	// recipient stays as it is.
	EnqueueMail(ctx context.Context, q sqldb.Querier, m Mail) error
	// DueMails are unsent, not dropped mails whose NextAt is at or before
	// now, the oldest first.
	DueMails(ctx context.Context, now time.Time, limit int) ([]Mail, error)
	// ClaimMail takes a due mail for an attempt until until: false when
	// another worker took it, or it is sent or dropped.
	ClaimMail(ctx context.Context, m Mail, now, until time.Time) (bool, error)
	// MailSent records that the server accepted the mail.
	MailSent(ctx context.Context, m Mail, at time.Time) error
	// MailFailed records a failed attempt and when to try again; with a
	// zero next the mail is dropped (the server refused it for good).
	MailFailed(ctx context.Context, m Mail, next time.Time, reason string) error
	// Mails of a case, in log order then by recipient (for tests and
	// operators).
	Mails(ctx context.Context, caseID string) ([]Mail, error)
	// Sweep deletes the deliveries and mails delivered (or dropped)
	// before cutoff and says how many.
	Sweep(ctx context.Context, cutoff time.Time) (int64, error)
}

// SQLStore is the Store on sqldb.
type SQLStore struct{ db sqldb.DB }

// NewSQLStore returns a store on a migrated database.
func NewSQLStore(db sqldb.DB) *SQLStore { return &SQLStore{db: db} }

var b64 = base64.StdEncoding

// SaveWebhook implements Store.
func (s *SQLStore) SaveWebhook(ctx context.Context, q sqldb.Querier, w assist.Webhook, seq uint64) error {
	sealed := w.Secret.KeyID + ":" + b64.EncodeToString(w.Secret.Ciphertext)
	_, err := q.Exec(ctx, `INSERT INTO notify_webhooks (id, url, events, secret, secret_key, registered_by, registered_at, seq, removed)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0) ON CONFLICT (id) DO NOTHING`,
		w.ID, w.URL, strings.Join(w.Events, ","), sealed, b64.EncodeToString(w.SecretKey), w.By, sqldb.Micros(w.At), int64(seq))
	return err
}

// RemoveWebhook implements Store.
func (s *SQLStore) RemoveWebhook(ctx context.Context, q sqldb.Querier, id string) error {
	if _, err := q.Exec(ctx, `UPDATE notify_webhooks SET removed = 1 WHERE id = $1`, id); err != nil {
		return err
	}
	_, err := q.Exec(ctx, `UPDATE notify_deliveries SET dropped = 1 WHERE webhook_id = $1 AND delivered_at = 0`, id)
	return err
}

const webhookCols = `id, url, events, secret, secret_key, registered_by, registered_at, seq, removed`

func scanWebhook(row interface{ Scan(...any) error }) (assist.Webhook, uint64, error) {
	var (
		w                   assist.Webhook
		events, sealed, key string
		at, seq, removed    int64
	)
	if err := row.Scan(&w.ID, &w.URL, &events, &sealed, &key, &w.By, &at, &seq, &removed); err != nil {
		return w, 0, err
	}
	w.Events = strings.Split(events, ",")
	keyID, ct, _ := strings.Cut(sealed, ":")
	ctBytes, err := b64.DecodeString(ct)
	if err != nil {
		return w, 0, fmt.Errorf("webhook %s: sealed secret: %w", w.ID, err)
	}
	if w.SecretKey, err = b64.DecodeString(key); err != nil {
		return w, 0, fmt.Errorf("webhook %s: secret key: %w", w.ID, err)
	}
	w.Secret = assist.Sealed{KeyID: keyID, Ciphertext: ctBytes}
	w.At, w.Removed = sqldb.Time(at), removed != 0
	return w, uint64(seq), nil
}

// Webhooks implements Store.
func (s *SQLStore) Webhooks(ctx context.Context) ([]assist.Webhook, error) {
	rows, err := s.db.Query(ctx, `SELECT `+webhookCols+` FROM notify_webhooks WHERE removed = 0 ORDER BY registered_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []assist.Webhook{}
	for rows.Next() {
		w, _, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// Webhook implements Store.
func (s *SQLStore) Webhook(ctx context.Context, id string) (assist.Webhook, error) {
	w, _, err := scanWebhook(s.db.QueryRow(ctx, `SELECT `+webhookCols+` FROM notify_webhooks WHERE id = $1`, id))
	if errors.Is(err, sqldb.ErrNoRows) {
		return w, assist.Errorf(assist.CodeNotFound, "no webhook %s", id)
	}
	return w, err
}

const caseCols = `id, status, requester, urgency, version, post, category, amount_cents, approved_cents, deadline, escalated`

// CaseState implements Store.
func (s *SQLStore) CaseState(ctx context.Context, q sqldb.Querier, id string) (*assist.Case, error) {
	cs, err := s.CaseStates(ctx, q, []string{id})
	return cs[id], err
}

// CaseStates implements Store.
func (s *SQLStore) CaseStates(ctx context.Context, q sqldb.Querier, ids []string) (map[string]*assist.Case, error) {
	return sqldb.ByID(ctx, q, `SELECT `+caseCols+` FROM notify_cases`, ids, scanCase,
		func(c *assist.Case) string { return c.ID })
}

func scanCase(row sqldb.Row) (*assist.Case, error) {
	var (
		c                            assist.Case
		status, urgency, category    string
		version, deadline, escalated int64
	)
	if err := row.Scan(&c.ID, &status, &c.Requester, &urgency, &version, &c.Post, &category, &c.AmountCents,
		&c.ApprovedCents, &deadline, &escalated); err != nil {
		return nil, err
	}
	c.State, c.Urgency, c.Version = assist.State(status), assist.Urgency(urgency), uint64(version)
	c.Category, c.Escalated = assist.Category(category), escalated != 0
	if deadline != 0 {
		c.Deadline = sqldb.Time(deadline)
	}
	return &c, nil
}

// keptPart is the part of c that SaveCase stores, as CaseState reads it
// back (times to the microsecond): a case folded in memory within a
// consumer batch goes on from exactly what the next event would have
// read from the store, whatever the batch's bounds.
func keptPart(c *assist.Case) *assist.Case {
	return &assist.Case{ID: c.ID, State: c.State, Requester: c.Requester, Urgency: c.Urgency, Version: c.Version,
		Post: c.Post, Category: c.Category, AmountCents: c.AmountCents, ApprovedCents: c.ApprovedCents,
		Deadline: sqldb.Time(sqldb.Micros(c.Deadline)), Escalated: c.Escalated}
}

// SaveCase implements Store.
func (s *SQLStore) SaveCase(ctx context.Context, q sqldb.Querier, c *assist.Case) error {
	return s.SaveCases(ctx, q, []*assist.Case{c})
}

// SaveCases implements Store.
func (s *SQLStore) SaveCases(ctx context.Context, q sqldb.Querier, cs []*assist.Case) error {
	rows := make([][]any, len(cs))
	for i, c := range cs {
		rows[i] = []any{c.ID, string(c.State), c.Requester, string(c.Urgency), int64(c.Version), c.Post, string(c.Category),
			c.AmountCents, c.ApprovedCents, sqldb.Micros(c.Deadline), boolInt(c.Escalated)}
	}
	return sqldb.InsertRows(ctx, q, `INSERT INTO notify_cases (`+caseCols+`)`,
		`ON CONFLICT (id) DO UPDATE SET status = excluded.status, requester = excluded.requester, urgency = excluded.urgency,
			version = excluded.version, post = excluded.post, category = excluded.category,
			amount_cents = excluded.amount_cents, approved_cents = excluded.approved_cents, deadline = excluded.deadline,
			escalated = excluded.escalated`, rows)
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// hook is what Enqueue needs of a webhook: the event types it asks for
// and the log position of its registration.
type hook struct {
	id     string
	events []string
	seq    uint64
}

// Enqueue implements Store.
func (s *SQLStore) Enqueue(ctx context.Context, q sqldb.Querier, ds ...Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	hooks, err := liveHooks(ctx, q)
	if err != nil {
		return err
	}
	var rows [][]any
	for _, d := range ds {
		for _, h := range hooks {
			if h.seq < d.Seq && slices.Contains(h.events, d.Type) {
				rows = append(rows, []any{h.id, d.EventID, d.CaseID, d.Type, int64(d.Seq), sqldb.Micros(d.At), string(d.Status),
					int64(0), sqldb.Micros(d.NextAt), int64(0), int64(0), ""})
			}
		}
	}
	return sqldb.InsertRows(ctx, q, `INSERT INTO notify_deliveries (`+deliveryCols+`)`,
		`ON CONFLICT (webhook_id, event_id) DO NOTHING`, rows)
}

// liveHooks are the webhooks not removed, by id.
func liveHooks(ctx context.Context, q sqldb.Querier) ([]hook, error) {
	rows, err := q.Query(ctx, `SELECT id, events, seq FROM notify_webhooks WHERE removed = 0 ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []hook
	for rows.Next() {
		var (
			h      hook
			events string
			seq    int64
		)
		if err := rows.Scan(&h.id, &events, &seq); err != nil {
			return nil, err
		}
		h.events, h.seq = strings.Split(events, ","), uint64(seq)
		out = append(out, h)
	}
	return out, rows.Err()
}

const deliveryCols = `webhook_id, event_id, case_id, type, seq, at, status, attempts, next_at, delivered_at, dropped, last_error`

func scanDeliveries(rows sqldb.Rows, err error) ([]Delivery, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var (
			d                                      Delivery
			status                                 string
			seq, at, attempts, next, done, dropped int64
		)
		if err := rows.Scan(&d.WebhookID, &d.EventID, &d.CaseID, &d.Type, &seq, &at, &status, &attempts, &next, &done,
			&dropped, &d.LastError); err != nil {
			return nil, err
		}
		d.Seq, d.At, d.Status, d.Attempts, d.NextAt = uint64(seq), sqldb.Time(at), assist.State(status), int(attempts), sqldb.Time(next)
		if done != 0 {
			d.DeliveredAt = sqldb.Time(done)
		}
		d.Dropped = dropped != 0
		out = append(out, d)
	}
	return out, rows.Err()
}

// Due implements Store.
func (s *SQLStore) Due(ctx context.Context, now time.Time, limit int) ([]Delivery, error) {
	return scanDeliveries(s.db.Query(ctx, `SELECT `+deliveryCols+` FROM notify_deliveries
		WHERE delivered_at = 0 AND dropped = 0 AND next_at <= $1 ORDER BY next_at, seq, webhook_id LIMIT $2`,
		sqldb.Micros(now), limit))
}

// Claim implements Store.
func (s *SQLStore) Claim(ctx context.Context, d Delivery, now, until time.Time) (bool, error) {
	n, err := s.db.Exec(ctx, `UPDATE notify_deliveries SET next_at = $1, attempts = attempts + 1
		WHERE webhook_id = $2 AND event_id = $3 AND delivered_at = 0 AND dropped = 0 AND next_at <= $4`,
		sqldb.Micros(until), d.WebhookID, d.EventID, sqldb.Micros(now))
	return n == 1, err
}

// Delivered implements Store.
func (s *SQLStore) Delivered(ctx context.Context, d Delivery, at time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE notify_deliveries SET delivered_at = $1, last_error = '' WHERE webhook_id = $2 AND event_id = $3`,
		max(sqldb.Micros(at), 1), d.WebhookID, d.EventID)
	return err
}

// Failed implements Store.
func (s *SQLStore) Failed(ctx context.Context, d Delivery, next time.Time, reason string) error {
	_, err := s.db.Exec(ctx, `UPDATE notify_deliveries SET next_at = $1, last_error = $2
		WHERE webhook_id = $3 AND event_id = $4 AND delivered_at = 0`,
		sqldb.Micros(next), truncate(reason, 500), d.WebhookID, d.EventID)
	return err
}

// Deliveries implements Store.
func (s *SQLStore) Deliveries(ctx context.Context, webhookID string) ([]Delivery, error) {
	return scanDeliveries(s.db.Query(ctx, `SELECT `+deliveryCols+` FROM notify_deliveries WHERE webhook_id = $1 ORDER BY seq`,
		webhookID))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// SaveUser implements Store.
func (s *SQLStore) SaveUser(ctx context.Context, q sqldb.Querier, u User, seq uint64) error {
	_, err := q.Exec(ctx, `INSERT INTO notify_users (username, email, roles, posts, disabled, seq)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (username) DO UPDATE SET email = excluded.email, roles = excluded.roles, posts = excluded.posts,
			disabled = excluded.disabled, seq = excluded.seq WHERE notify_users.seq < excluded.seq`,
		u.Username, u.Email, strings.Join(u.Roles, ","), strings.Join(u.Posts, ","), boolInt(u.Disabled), int64(seq))
	return err
}

// Users implements Store.
func (s *SQLStore) Users(ctx context.Context, q sqldb.Querier) ([]User, error) {
	rows, err := q.Query(ctx, `SELECT username, email, roles, posts, disabled FROM notify_users ORDER BY username`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var (
			u            User
			roles, posts string
			disabled     int64
		)
		if err := rows.Scan(&u.Username, &u.Email, &roles, &posts, &disabled); err != nil {
			return nil, err
		}
		u.Roles, u.Posts, u.Disabled = splitList(roles), splitList(posts), disabled != 0
		out = append(out, u)
	}
	return out, rows.Err()
}

func splitList(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// EnqueueMail implements Store.
func (s *SQLStore) EnqueueMail(ctx context.Context, q sqldb.Querier, m Mail) error {
	_, err := q.Exec(ctx, `INSERT INTO notify_mails (event_id, username, address, reason, case_id, type, seq, at, status,
			post, category, urgency, amount_cents, approved_cents, deadline, escalated, attempts, next_at, delivered_at,
			dropped, last_error)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 0, $17, 0, 0, '')
		ON CONFLICT (event_id, username) DO NOTHING`,
		m.EventID, m.Username, m.Address, string(m.Reason), m.CaseID, m.Type, int64(m.Seq), sqldb.Micros(m.At),
		string(m.Status), m.Post, string(m.Category), string(m.Urgency), m.AmountCents, m.ApprovedCents,
		sqldb.Micros(m.Deadline), boolInt(m.Escalated), sqldb.Micros(m.NextAt))
	return err
}

const mailCols = `event_id, username, address, reason, case_id, type, seq, at, status, post, category, urgency,
	amount_cents, approved_cents, deadline, escalated, attempts, next_at, delivered_at, dropped, last_error`

func scanMails(rows sqldb.Rows, err error) ([]Mail, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Mail
	for rows.Next() {
		var (
			m                                      Mail
			reason, status, category, urgency      string
			seq, at, deadline, escalated, attempts int64
			next, done, dropped                    int64
		)
		if err := rows.Scan(&m.EventID, &m.Username, &m.Address, &reason, &m.CaseID, &m.Type, &seq, &at, &status, &m.Post,
			&category, &urgency, &m.AmountCents, &m.ApprovedCents, &deadline, &escalated, &attempts, &next, &done, &dropped,
			&m.LastError); err != nil {
			return nil, err
		}
		m.Reason, m.Seq, m.At, m.Status = Reason(reason), uint64(seq), sqldb.Time(at), assist.State(status)
		m.Category, m.Urgency, m.Escalated = assist.Category(category), assist.Urgency(urgency), escalated != 0
		if deadline != 0 {
			m.Deadline = sqldb.Time(deadline)
		}
		m.Attempts, m.NextAt, m.Dropped = int(attempts), sqldb.Time(next), dropped != 0
		if done != 0 {
			m.DeliveredAt = sqldb.Time(done)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// DueMails implements Store.
func (s *SQLStore) DueMails(ctx context.Context, now time.Time, limit int) ([]Mail, error) {
	return scanMails(s.db.Query(ctx, `SELECT `+mailCols+` FROM notify_mails
		WHERE delivered_at = 0 AND dropped = 0 AND next_at <= $1 ORDER BY next_at, seq, username LIMIT $2`,
		sqldb.Micros(now), limit))
}

// ClaimMail implements Store.
func (s *SQLStore) ClaimMail(ctx context.Context, m Mail, now, until time.Time) (bool, error) {
	n, err := s.db.Exec(ctx, `UPDATE notify_mails SET next_at = $1, attempts = attempts + 1
		WHERE event_id = $2 AND username = $3 AND delivered_at = 0 AND dropped = 0 AND next_at <= $4`,
		sqldb.Micros(until), m.EventID, m.Username, sqldb.Micros(now))
	return n == 1, err
}

// MailSent implements Store.
func (s *SQLStore) MailSent(ctx context.Context, m Mail, at time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE notify_mails SET delivered_at = $1, last_error = '' WHERE event_id = $2 AND username = $3`,
		max(sqldb.Micros(at), 1), m.EventID, m.Username)
	return err
}

// MailFailed implements Store.
func (s *SQLStore) MailFailed(ctx context.Context, m Mail, next time.Time, reason string) error {
	dropped := int64(0)
	if next.IsZero() {
		dropped = 1
	}
	_, err := s.db.Exec(ctx, `UPDATE notify_mails SET next_at = $1, last_error = $2, dropped = $3
		WHERE event_id = $4 AND username = $5 AND delivered_at = 0`,
		sqldb.Micros(next), truncate(reason, 500), dropped, m.EventID, m.Username)
	return err
}

// Mails implements Store.
func (s *SQLStore) Mails(ctx context.Context, caseID string) ([]Mail, error) {
	return scanMails(s.db.Query(ctx, `SELECT `+mailCols+` FROM notify_mails WHERE case_id = $1 ORDER BY seq, username`,
		caseID))
}

// Sweep implements Store. A delivered row is swept by the time it was
// delivered; a dropped one (its webhook removed, or refused for good)
// by the time of its event.
func (s *SQLStore) Sweep(ctx context.Context, cutoff time.Time) (int64, error) {
	var n int64
	for _, table := range []string{"notify_deliveries", "notify_mails"} {
		k, err := s.db.Exec(ctx, `DELETE FROM `+table+` WHERE (delivered_at > 0 AND delivered_at < $1)
			OR (delivered_at = 0 AND dropped = 1 AND at < $1)`, sqldb.Micros(cutoff))
		if err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}
