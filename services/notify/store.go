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
	// CaseState is the part of a case notify keeps (status, requester,
	// urgency, version); nil when none.
	CaseState(ctx context.Context, q sqldb.Querier, id string) (*assist.Case, error)
	// SaveCase stores that part.
	SaveCase(ctx context.Context, q sqldb.Querier, c *assist.Case) error
	// Enqueue adds a delivery of the event to every webhook not removed,
	// registered before it (seq) and asking for its type; a delivery
	// already there stays as it is.
	Enqueue(ctx context.Context, q sqldb.Querier, d Delivery) error
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

// CaseState implements Store.
func (s *SQLStore) CaseState(ctx context.Context, q sqldb.Querier, id string) (*assist.Case, error) {
	var (
		c               assist.Case
		status, urgency string
		version         int64
	)
	err := q.QueryRow(ctx, `SELECT status, requester, urgency, version FROM notify_cases WHERE id = $1`, id).
		Scan(&status, &c.Requester, &urgency, &version)
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.ID, c.State, c.Urgency, c.Version = id, assist.State(status), assist.Urgency(urgency), uint64(version)
	return &c, nil
}

// SaveCase implements Store.
func (s *SQLStore) SaveCase(ctx context.Context, q sqldb.Querier, c *assist.Case) error {
	_, err := q.Exec(ctx, `INSERT INTO notify_cases (id, status, requester, urgency, version) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, requester = excluded.requester, urgency = excluded.urgency,
			version = excluded.version`,
		c.ID, string(c.State), c.Requester, string(c.Urgency), int64(c.Version))
	return err
}

// Enqueue implements Store.
func (s *SQLStore) Enqueue(ctx context.Context, q sqldb.Querier, d Delivery) error {
	rows, err := q.Query(ctx, `SELECT id, events FROM notify_webhooks WHERE removed = 0 AND seq < $1 ORDER BY id`, int64(d.Seq))
	if err != nil {
		return err
	}
	var ids []string
	for rows.Next() {
		var id, events string
		if err := rows.Scan(&id, &events); err != nil {
			rows.Close()
			return err
		}
		if slices.Contains(strings.Split(events, ","), d.Type) {
			ids = append(ids, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, id := range ids {
		_, err := q.Exec(ctx, `INSERT INTO notify_deliveries (webhook_id, event_id, case_id, type, seq, at, status,
			attempts, next_at, delivered_at, dropped, last_error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, 0, 0, '') ON CONFLICT (webhook_id, event_id) DO NOTHING`,
			id, d.EventID, d.CaseID, d.Type, int64(d.Seq), sqldb.Micros(d.At), string(d.Status), sqldb.Micros(d.NextAt))
		if err != nil {
			return err
		}
	}
	return nil
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
