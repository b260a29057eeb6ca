package gateway

import (
	"context"
	"embed"
	"encoding/hex"
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

// Migrations is the gateway's schema: accounts, tokens, idempotency keys.
var Migrations = sqldb.Embedded("gateway", migrationFS)

// Account is a stored local account.
type Account struct {
	Username string
	// PasswordHash is the argon2id hash of the password (PHC string; an
	// older bcrypt hash until the account's next sign-in).
	PasswordHash []byte
	Roles        []string
	// Posts binds a requester to the posts it files for.
	Posts     []string
	CreatedAt time.Time
	// Disabled accounts neither sign in nor use their tokens.
	Disabled bool
	// Email is where notify e-mails the account (empty: nowhere).
	Email string
}

// Has reports whether the account holds role.
func (a Account) Has(role string) bool { return slices.Contains(a.Roles, role) }

// Revocation kinds.
const (
	// RevokeSession: the session whose hex SHA-256 id hash is Subject
	// signed out.
	RevokeSession = "session"
	// RevokeUser: access tokens of the account Subject issued until At
	// no longer hold (its roles or posts changed, or it was disabled);
	// its sessions must be read again.
	RevokeUser = "user"
)

// Revocation is a revocation every gateway replica learns of.
type Revocation struct {
	Kind, Subject string
	At            time.Time
}

// Token is a session, known to the store only by the hash of its id.
type Token struct {
	// Hash is the SHA-256 of the token.
	Hash      []byte
	Username  string
	ExpiresAt time.Time
	CreatedAt time.Time
}

// Idempotency key states.
const (
	IdemPending = "pending" // the command may or may not have run: a retry runs it again, same command id
	IdemDone    = "done"    // the response is stored: a retry replays it
)

// IdemRecord is the use of one Idempotency-Key by one user.
type IdemRecord struct {
	Username string
	Key      string
	// RequestHash is the SHA-256 of the request (method, path, body) the
	// key was first used with.
	RequestHash []byte
	// CommandID is the command id the services were called with.
	CommandID string
	Status    string
	// The stored response, once Status is IdemDone.
	ResponseStatus   int
	ResponseBody     []byte
	ResponseLocation string
	CreatedAt        time.Time
}

// Store is the gateway's state.
type Store interface {
	// Account reads an account. Errors: CodeNotFound.
	Account(ctx context.Context, username string) (Account, error)
	// PutAccount creates an account or replaces its password hash, roles
	// and posts; CreatedAt is kept from the first time.
	PutAccount(ctx context.Context, a Account) error
	// Accounts lists accounts by username, after the username after
	// ("" from the first), at most limit.
	Accounts(ctx context.Context, after string, limit int) ([]Account, error)
	// EditAccount runs an admin's change on an account and stores it with
	// its event (see SQLStore.EditAccount).
	EditAccount(ctx context.Context, username, commandID string, edit AccountEdit) (Account, error)
	// UserOutbox returns up to limit user events waiting to be appended
	// to the event log, oldest first.
	UserOutbox(ctx context.Context, limit int) ([]assist.Event, error)
	// DeleteUserOutbox forgets an event once appended.
	DeleteUserOutbox(ctx context.Context, eventID string) error
	// ReplacePasswordHash sets the account's password hash to new if it is
	// still old; replaced is false when the account is gone or its hash
	// changed meanwhile.
	ReplacePasswordHash(ctx context.Context, username string, old, new []byte) (replaced bool, err error)
	// CountLoginAttempt counts a sign-in attempt as failed, unless a
	// counter of it is waiting: then it returns how long, and counts
	// nothing. Checking and counting are one transaction, so concurrent
	// attempts never exceed the policy's allowances.
	CountLoginAttempt(ctx context.Context, a LoginAttempt, p ThrottlePolicy, now time.Time) (wait time.Duration, err error)
	// LoginSucceeded takes back the counted attempt of a successful
	// sign-in, clears the counter of its account and address, and marks
	// the address as known for the account.
	LoginSucceeded(ctx context.Context, a LoginAttempt, now time.Time) error
	// DeleteStaleThrottles forgets counters that hold nothing back any
	// more.
	DeleteStaleThrottles(ctx context.Context, p ThrottlePolicy, now time.Time) (int64, error)
	// SigningKey returns the key access tokens are signed with and its
	// id, first storing fresh as the key if there is none: every replica
	// gets the same.
	SigningKey(ctx context.Context, fresh []byte, now time.Time) (kid string, key []byte, err error)
	// Revoke records a revocation, or moves an existing one's time
	// forward.
	Revoke(ctx context.Context, v Revocation) error
	// Revocations returns the revocations made after since.
	Revocations(ctx context.Context, since time.Time) ([]Revocation, error)
	// DeleteRevocationsBefore forgets revocations made before t.
	DeleteRevocationsBefore(ctx context.Context, t time.Time) (int64, error)
	// TOTP returns the account's second factor, zero when none.
	TOTP(ctx context.Context, username string) (TOTPFactor, error)
	// PutPendingTOTP enrols secret, pending until ConfirmTOTP.
	PutPendingTOTP(ctx context.Context, username, secret string) error
	// ConfirmTOTP makes the pending secret, if still pending, the
	// account's factor, step used. Errors: CodeConflict.
	ConfirmTOTP(ctx context.Context, username, pending string, step int64) error
	// UseTOTPStep records that a code of step was used; used is false when
	// that step or a later one was used already.
	UseTOTPStep(ctx context.Context, username string, step int64) (used bool, err error)
	// CreateToken stores an issued token.
	CreateToken(ctx context.Context, t Token) error
	// TokenAccount returns the account holding the token with hash and
	// when the token expires. Errors: CodeUnauthenticated when the token is
	// unknown, expired at now, or its account is gone or disabled.
	TokenAccount(ctx context.Context, hash []byte, now time.Time) (Account, time.Time, error)
	// DeleteToken revokes a token.
	DeleteToken(ctx context.Context, hash []byte) error
	// DeleteExpiredTokens removes tokens that expired before now.
	DeleteExpiredTokens(ctx context.Context, now time.Time) (int64, error)
	// LookupIdem returns the record of (username, key), found=false when
	// there is none. It writes nothing.
	LookupIdem(ctx context.Context, username, key string) (rec IdemRecord, found bool, err error)
	// StoreKeys stores, all or none, done records with their responses
	// (answers: a key without a record gets its record, a pending record
	// is finished, its request hash and command id kept, a record already
	// done is left as it is) and new keys' pending records (begins, after
	// the answers: each inserted as pending unless its key has a record);
	// it returns each begin's key's record as stored, and whether the
	// begin made it, in order. The caller compares request hashes.
	StoreKeys(ctx context.Context, begins, answers []IdemRecord) ([]Begun, error)
	// DeleteIdemBefore forgets idempotency keys first used before t.
	DeleteIdemBefore(ctx context.Context, t time.Time) (int64, error)
}

// SQLStore is the Store on sqldb.
type SQLStore struct{ db sqldb.DB }

// NewSQLStore returns a store on a database migrated with Migrations.
func NewSQLStore(db sqldb.DB) *SQLStore { return &SQLStore{db: db} }

// Account implements Store.
func (s *SQLStore) Account(ctx context.Context, username string) (Account, error) {
	var (
		a            Account
		hash         string
		roles, posts string
		created      int64
	)
	var disabled int
	err := s.db.QueryRow(ctx, `SELECT username, password_hash, roles, posts, created_at, disabled FROM gateway_users
		WHERE username = $1`, username).Scan(&a.Username, &hash, &roles, &posts, &created, &disabled)
	if errors.Is(err, sqldb.ErrNoRows) {
		return Account{}, assist.Errorf(assist.CodeNotFound, "no account %q", username)
	}
	if err != nil {
		return Account{}, fmt.Errorf("account: %w", err)
	}
	a.PasswordHash, a.Roles, a.Posts, a.CreatedAt = []byte(hash), splitList(roles), splitList(posts), sqldb.Time(created)
	a.Disabled = disabled != 0
	return a, nil
}

// PutAccount implements Store. When it changes an existing account it
// also revokes the account's access tokens (RevokeUser, now), so that
// every replica reads the account again.
func (s *SQLStore) PutAccount(ctx context.Context, a Account) error {
	roles, posts := strings.Join(a.Roles, ","), strings.Join(a.Posts, ",")
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		var oldHash, oldRoles, oldPosts string
		err := q.QueryRow(ctx, `SELECT password_hash, roles, posts FROM gateway_users WHERE username = $1`, a.Username).
			Scan(&oldHash, &oldRoles, &oldPosts)
		existed := err == nil
		if err != nil && !errors.Is(err, sqldb.ErrNoRows) {
			return err
		}
		_, err = q.Exec(ctx, `INSERT INTO gateway_users (username, password_hash, roles, posts, created_at)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, roles = excluded.roles,
				posts = excluded.posts`,
			a.Username, string(a.PasswordHash), roles, posts, sqldb.Micros(a.CreatedAt))
		if err != nil || !existed || (oldHash == string(a.PasswordHash) && oldRoles == roles && oldPosts == posts) {
			return err
		}
		return revoke(ctx, q, Revocation{Kind: RevokeUser, Subject: a.Username, At: time.Now()})
	})
	if err != nil {
		return fmt.Errorf("put account: %w", err)
	}
	return nil
}

// ReplacePasswordHash implements Store.
func (s *SQLStore) ReplacePasswordHash(ctx context.Context, username string, old, new []byte) (bool, error) {
	n, err := s.db.Exec(ctx, `UPDATE gateway_users SET password_hash = $3 WHERE username = $1 AND password_hash = $2`,
		username, string(old), string(new))
	if err != nil {
		return false, fmt.Errorf("replace password hash: %w", err)
	}
	return n == 1, nil
}

// SigningKey implements Store.
func (s *SQLStore) SigningKey(ctx context.Context, fresh []byte, now time.Time) (string, []byte, error) {
	const kid = "1"
	if _, err := s.db.Exec(ctx, `INSERT INTO gateway_keys (id, secret, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO NOTHING`, kid, hex.EncodeToString(fresh), sqldb.Micros(now)); err != nil {
		return "", nil, fmt.Errorf("signing key: %w", err)
	}
	var secret string
	if err := s.db.QueryRow(ctx, `SELECT secret FROM gateway_keys WHERE id = $1`, kid).Scan(&secret); err != nil {
		return "", nil, fmt.Errorf("signing key: %w", err)
	}
	key, err := hex.DecodeString(secret)
	if err != nil || len(key) < 32 {
		return "", nil, fmt.Errorf("signing key %s is not 32 hex bytes", kid)
	}
	return kid, key, nil
}

// Revoke implements Store.
func (s *SQLStore) Revoke(ctx context.Context, v Revocation) error {
	if err := revoke(ctx, s.db, v); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

func revoke(ctx context.Context, q sqldb.Querier, v Revocation) error {
	_, err := q.Exec(ctx, `INSERT INTO gateway_revocations (kind, subject, at) VALUES ($1, $2, $3)
		ON CONFLICT (kind, subject) DO UPDATE SET at = excluded.at WHERE excluded.at > gateway_revocations.at`,
		v.Kind, v.Subject, sqldb.Micros(v.At))
	return err
}

// Revocations implements Store.
func (s *SQLStore) Revocations(ctx context.Context, since time.Time) ([]Revocation, error) {
	rows, err := s.db.Query(ctx, `SELECT kind, subject, at FROM gateway_revocations WHERE at > $1`, sqldb.Micros(since))
	if err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	defer rows.Close()
	var rs []Revocation
	for rows.Next() {
		var (
			v  Revocation
			at int64
		)
		if err := rows.Scan(&v.Kind, &v.Subject, &at); err != nil {
			return nil, fmt.Errorf("revocations: %w", err)
		}
		v.At = sqldb.Time(at)
		rs = append(rs, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revocations: %w", err)
	}
	return rs, nil
}

// DeleteRevocationsBefore implements Store.
func (s *SQLStore) DeleteRevocationsBefore(ctx context.Context, t time.Time) (int64, error) {
	n, err := s.db.Exec(ctx, `DELETE FROM gateway_revocations WHERE at < $1`, sqldb.Micros(t))
	if err != nil {
		return 0, fmt.Errorf("delete old revocations: %w", err)
	}
	return n, nil
}

// CreateToken implements Store.
func (s *SQLStore) CreateToken(ctx context.Context, t Token) error {
	_, err := s.db.Exec(ctx, `INSERT INTO gateway_tokens (hash, username, expires_at, created_at) VALUES ($1, $2, $3, $4)`,
		hex.EncodeToString(t.Hash), t.Username, sqldb.Micros(t.ExpiresAt), sqldb.Micros(t.CreatedAt))
	if err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	return nil
}

// TokenAccount implements Store.
func (s *SQLStore) TokenAccount(ctx context.Context, hash []byte, now time.Time) (Account, time.Time, error) {
	var (
		a            Account
		pw           string
		roles, posts string
		created      int64
		expires      int64
	)
	var disabled int
	err := s.db.QueryRow(ctx, `SELECT u.username, u.password_hash, u.roles, u.posts, u.created_at, u.disabled, t.expires_at
		FROM gateway_tokens t JOIN gateway_users u ON u.username = t.username WHERE t.hash = $1`,
		hex.EncodeToString(hash)).Scan(&a.Username, &pw, &roles, &posts, &created, &disabled, &expires)
	if errors.Is(err, sqldb.ErrNoRows) {
		return Account{}, time.Time{}, assist.Errorf(assist.CodeUnauthenticated, "unknown token")
	}
	if err != nil {
		return Account{}, time.Time{}, fmt.Errorf("token: %w", err)
	}
	exp := sqldb.Time(expires)
	if disabled != 0 {
		return Account{}, time.Time{}, assist.Errorf(assist.CodeUnauthenticated, "the account is disabled")
	}
	if !now.Before(exp) {
		return Account{}, time.Time{}, assist.Errorf(assist.CodeUnauthenticated, "the token expired; sign in again")
	}
	a.PasswordHash, a.Roles, a.Posts, a.CreatedAt = []byte(pw), splitList(roles), splitList(posts), sqldb.Time(created)
	return a, exp, nil
}

// DeleteToken implements Store.
func (s *SQLStore) DeleteToken(ctx context.Context, hash []byte) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM gateway_tokens WHERE hash = $1`, hex.EncodeToString(hash)); err != nil {
		return fmt.Errorf("delete token: %w", err)
	}
	return nil
}

// DeleteExpiredTokens implements Store.
func (s *SQLStore) DeleteExpiredTokens(ctx context.Context, now time.Time) (int64, error) {
	n, err := s.db.Exec(ctx, `DELETE FROM gateway_tokens WHERE expires_at <= $1`, sqldb.Micros(now))
	if err != nil {
		return 0, fmt.Errorf("delete expired tokens: %w", err)
	}
	return n, nil
}

// beginIdem returns the record of (rec.Username, rec.Key), first
// inserting rec as pending when there is none; created reports whether it
// did. A new key, the usual case, costs one statement: the insert tells
// whether it made the row. A key already there is read after the insert
// found it, committed (an insert of the same key waits for the other's
// commit).
func beginIdem(ctx context.Context, q sqldb.Querier, rec IdemRecord) (IdemRecord, bool, error) {
	n, err := q.Exec(ctx, `INSERT INTO gateway_idempotency (username, key, request_hash, command_id, status, created_at)
			VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (username, key) DO NOTHING`,
		rec.Username, rec.Key, hex.EncodeToString(rec.RequestHash), rec.CommandID, sqldb.Micros(rec.CreatedAt))
	switch {
	case err != nil:
		return IdemRecord{}, false, err
	case n == 1:
		rec.Status = IdemPending
		return rec, true, nil
	}
	stored, found, err := lookupIdem(ctx, q, rec.Username, rec.Key)
	if err == nil && !found {
		err = sqldb.ErrNoRows // removed since: old keys are swept
	}
	if err != nil {
		return IdemRecord{}, false, err
	}
	return stored, false, nil
}

// LookupIdem implements Store.
func (s *SQLStore) LookupIdem(ctx context.Context, username, key string) (IdemRecord, bool, error) {
	rec, found, err := lookupIdem(ctx, s.db, username, key)
	if err != nil {
		return IdemRecord{}, false, fmt.Errorf("look up idempotency key: %w", err)
	}
	return rec, found, nil
}

func lookupIdem(ctx context.Context, q sqldb.Querier, username, key string) (IdemRecord, bool, error) {
	var (
		rec  IdemRecord
		hash string
		at   int64
	)
	err := q.QueryRow(ctx, `SELECT username, key, request_hash, command_id, status, response_status, response_body,
			response_location, created_at
		FROM gateway_idempotency WHERE username = $1 AND key = $2`, username, key).
		Scan(&rec.Username, &rec.Key, &hash, &rec.CommandID, &rec.Status, &rec.ResponseStatus,
			&rec.ResponseBody, &rec.ResponseLocation, &at)
	if errors.Is(err, sqldb.ErrNoRows) {
		return IdemRecord{}, false, nil
	}
	if err != nil {
		return IdemRecord{}, false, err
	}
	if rec.RequestHash, err = hex.DecodeString(hash); err != nil {
		return IdemRecord{}, false, err
	}
	rec.CreatedAt = sqldb.Time(at)
	return rec, true, nil
}

// Begun is a key's record as a begin found or made it.
type Begun struct {
	Rec IdemRecord
	// Created is true when the begin made the record.
	Created bool
}

// StoreKeys implements Store, in one transaction: each answer's statement
// sent with the next (sqldb.Defer), then each begin's (on PostgreSQL, one
// round trip a begin, the answers with the first, and one commit for
// all). A begin alone is one statement without a transaction.
func (s *SQLStore) StoreKeys(ctx context.Context, begins, answers []IdemRecord) ([]Begun, error) {
	if len(begins) == 1 && len(answers) == 0 {
		// Alone (an idle gateway): one statement, no transaction.
		stored, created, err := beginIdem(ctx, s.db, begins[0])
		if err != nil {
			return nil, fmt.Errorf("begin idempotency key: %w", err)
		}
		return []Begun{{Rec: stored, Created: created}}, nil
	}
	var begun []Begun
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		begun = begun[:0]
		for _, rec := range answers {
			body := rec.ResponseBody
			if body == nil {
				body = []byte{}
			}
			if err := sqldb.Defer(ctx, q, `INSERT INTO gateway_idempotency (username, key, request_hash, command_id, status,
					response_status, response_body, response_location, created_at)
				VALUES ($1, $2, $3, $4, 'done', $5, $6, $7, $8)
				ON CONFLICT (username, key) DO UPDATE SET status = 'done', response_status = excluded.response_status,
					response_body = excluded.response_body, response_location = excluded.response_location
				WHERE gateway_idempotency.status = 'pending'`,
				rec.Username, rec.Key, hex.EncodeToString(rec.RequestHash), rec.CommandID, rec.ResponseStatus, body,
				rec.ResponseLocation, sqldb.Micros(rec.CreatedAt)); err != nil {
				return err
			}
		}
		for _, rec := range begins {
			stored, created, err := beginIdem(ctx, q, rec)
			if err != nil {
				return err
			}
			begun = append(begun, Begun{Rec: stored, Created: created})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store idempotency keys: %w", err)
	}
	return begun, nil
}

// DeleteIdemBefore implements Store.
func (s *SQLStore) DeleteIdemBefore(ctx context.Context, t time.Time) (int64, error) {
	n, err := s.db.Exec(ctx, `DELETE FROM gateway_idempotency WHERE created_at < $1`, sqldb.Micros(t))
	if err != nil {
		return 0, fmt.Errorf("delete old idempotency keys: %w", err)
	}
	return n, nil
}

func splitList(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}
