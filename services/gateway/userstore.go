package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/eventcodec"
	"github.com/eva-org/eva/pkg/sqldb"
)

// AccountEdit decides an admin's change to an account from the account
// as stored (found is false when there is none): the account to store and
// the event that records the change. It does no I/O.
type AccountEdit func(old Account, found bool) (Account, assist.Event, error)

// Accounts implements Store.
func (s *SQLStore) Accounts(ctx context.Context, after string, limit int) ([]Account, error) {
	rows, err := s.db.Query(ctx, `SELECT username, roles, posts, created_at, disabled, email FROM gateway_users
		WHERE username > $1 ORDER BY username LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	defer rows.Close()
	out := []Account{}
	for rows.Next() {
		var (
			a            Account
			roles, posts string
			created      int64
			disabled     int
		)
		if err := rows.Scan(&a.Username, &roles, &posts, &created, &disabled, &a.Email); err != nil {
			return nil, fmt.Errorf("accounts: %w", err)
		}
		a.Roles, a.Posts, a.CreatedAt, a.Disabled = splitList(roles), splitList(posts), sqldb.Time(created), disabled != 0
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	return out, nil
}

// EditAccount implements Store. In one transaction, after every other
// account change (they are serialized on one row), it reads the account,
// runs edit, and stores the account, the event edit made in the user
// outbox (appended to the event log afterwards, ADR 0026), and — when an
// existing account's password, roles, posts or disabled flag changed — a
// RevokeUser revocation, so that its tokens stop holding on every replica.
// A command whose id is the account's last one changed nothing more: the
// account is answered as it is.
//
// Errors: those of edit; CodeConflict when the change would leave no
// enabled admin account.
func (s *SQLStore) EditAccount(ctx context.Context, username, commandID string, edit AccountEdit) (Account, error) {
	var out Account
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		if _, err := q.Exec(ctx, `UPDATE gateway_user_lock SET n = n + 1 WHERE id = 1`); err != nil {
			return err
		}
		var (
			old                  Account
			hash, roles, posts   string
			created              int64
			disabled             int
			lastCommand          string
			found                = true
			enabledAdminsBesides int
		)
		err := q.QueryRow(ctx, `SELECT username, password_hash, roles, posts, created_at, disabled, last_command_id,
			email FROM gateway_users WHERE username = $1`, username).
			Scan(&old.Username, &hash, &roles, &posts, &created, &disabled, &lastCommand, &old.Email)
		switch {
		case errors.Is(err, sqldb.ErrNoRows):
			found = false
		case err != nil:
			return err
		}
		if found {
			old.PasswordHash, old.Roles, old.Posts = []byte(hash), splitList(roles), splitList(posts)
			old.CreatedAt, old.Disabled = sqldb.Time(created), disabled != 0
		}
		if found && commandID != "" && lastCommand == commandID {
			out = old
			return nil
		}
		next, e, err := edit(old, found)
		if err != nil {
			return err
		}
		if e.Body == nil { // nothing changed, nothing to record
			out = old
			return nil
		}
		next.Username = username
		if found {
			next.CreatedAt = old.CreatedAt
		}
		rows, err := q.Query(ctx, `SELECT roles FROM gateway_users WHERE disabled = 0 AND username <> $1`, username)
		if err != nil {
			return err
		}
		for rows.Next() {
			var rs string
			if err := rows.Scan(&rs); err != nil {
				rows.Close()
				return err
			}
			if slices.Contains(splitList(rs), assist.RoleAdmin) {
				enabledAdminsBesides++
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		enabledAdmin := func(a Account) bool { return !a.Disabled && a.Has(assist.RoleAdmin) }
		if enabledAdminsBesides == 0 && found && enabledAdmin(old) && !enabledAdmin(next) {
			return assist.Errorf(assist.CodeConflict, "%s is the last enabled admin: disabling it or taking its admin role "+
				"would leave nobody to administer users; make another admin first", username)
		}
		data, err := eventcodec.Encode(e)
		if err != nil {
			return err
		}
		newRoles, newPosts := strings.Join(next.Roles, ","), strings.Join(next.Posts, ",")
		if _, err := q.Exec(ctx, `INSERT INTO gateway_users (username, password_hash, roles, posts, created_at, disabled,
				last_command_id, email)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, roles = excluded.roles,
				posts = excluded.posts, disabled = excluded.disabled, last_command_id = excluded.last_command_id,
				email = excluded.email`,
			username, string(next.PasswordHash), newRoles, newPosts, sqldb.Micros(next.CreatedAt), boolInt(next.Disabled),
			commandID, next.Email); err != nil {
			return err
		}
		if _, err := q.Exec(ctx, `INSERT INTO gateway_user_outbox (event_id, event_type, event, created_at)
			VALUES ($1, $2, $3, $4)`, e.ID, e.Type(), data, sqldb.Micros(e.At)); err != nil {
			return err
		}
		changed := string(next.PasswordHash) != hash || newRoles != roles || newPosts != posts || next.Disabled != old.Disabled
		if found && changed {
			if err := revoke(ctx, q, Revocation{Kind: RevokeUser, Subject: username, At: time.Now()}); err != nil {
				return err
			}
		}
		out = next
		return nil
	})
	if err != nil {
		var ae *assist.Error
		if errors.As(err, &ae) {
			return Account{}, err
		}
		return Account{}, fmt.Errorf("edit account %s: %w", username, err)
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// UserOutbox implements Store.
func (s *SQLStore) UserOutbox(ctx context.Context, limit int) ([]assist.Event, error) {
	rows, err := s.db.Query(ctx, `SELECT event_type, event FROM gateway_user_outbox ORDER BY seq LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("user outbox: %w", err)
	}
	defer rows.Close()
	var out []assist.Event
	for rows.Next() {
		var (
			typ  string
			data []byte
		)
		if err := rows.Scan(&typ, &data); err != nil {
			return nil, fmt.Errorf("user outbox: %w", err)
		}
		e, err := eventcodec.Decode(typ, data)
		if err != nil {
			return nil, fmt.Errorf("user outbox: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("user outbox: %w", err)
	}
	return out, nil
}

// DeleteUserOutbox implements Store.
func (s *SQLStore) DeleteUserOutbox(ctx context.Context, eventID string) error {
	if _, err := s.db.Exec(ctx, `DELETE FROM gateway_user_outbox WHERE event_id = $1`, eventID); err != nil {
		return fmt.Errorf("delete from user outbox: %w", err)
	}
	return nil
}
