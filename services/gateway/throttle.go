package gateway

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/eva-org/eva/pkg/sqldb"
)

// ThrottlePolicy says how failed sign-ins slow down the next ones (ADR
// 0012). Failures are counted three ways, each with its own free
// allowance, after which every further failure doubles the wait before
// the next attempt (1 s, 2 s, 4 s, ... up to MaxDelay):
//   - per account and client address: stops guessing one account from one
//     place, and stops nobody else;
//   - per client address: stops one place from guessing many accounts;
//   - per account: stops many places guessing one account, but holds back
//     only addresses that have not signed in to that account within
//     KnownFor, so that an attacker cannot lock the real user out.
//
// An attempt is counted before its password is checked, in one database
// transaction shared by every gateway replica, and a successful one is
// taken back: concurrent attempts can never exceed an allowance.
type ThrottlePolicy struct {
	PairFree, AddrFree, AccountFree int
	// Window forgets a counter whose last failure is older.
	Window time.Duration
	// MaxDelay caps the wait.
	MaxDelay time.Duration
	// KnownFor is how long a successful sign-in exempts its address from
	// the account's counter.
	KnownFor time.Duration
}

// DefaultThrottlePolicy: 5 free failures per account and address, 20 per
// address, 100 per account; forgotten after 15 minutes without failure;
// waits up to 15 minutes; an address stays known for 30 days.
var DefaultThrottlePolicy = ThrottlePolicy{PairFree: 5, AddrFree: 20, AccountFree: 100,
	Window: 15 * time.Minute, MaxDelay: 15 * time.Minute, KnownFor: 30 * 24 * time.Hour}

func (p ThrottlePolicy) orDefault() ThrottlePolicy {
	if p.PairFree <= 0 || p.AddrFree <= 0 || p.AccountFree <= 0 || p.Window <= 0 || p.MaxDelay <= 0 || p.KnownFor <= 0 {
		return DefaultThrottlePolicy
	}
	return p
}

// delay is the wait after the nth failure of a counter with free failures
// allowed: none before the free-th, then 1 s, doubling, up to MaxDelay.
func (p ThrottlePolicy) delay(n, free int) time.Duration {
	if n < free {
		return 0
	}
	exp := n - free
	if exp > 30 {
		return p.MaxDelay
	}
	return min(time.Duration(1<<exp)*time.Second, p.MaxDelay)
}

// LoginAttempt is one sign-in: the username given (known or not) and the
// client's address.
type LoginAttempt struct {
	Username string
	Addr     string
}

// Throttle scopes, in the order their rows are locked.
const (
	scopeAccount = "account"
	scopeAddr    = "addr"
	scopePair    = "pair"
)

func (a LoginAttempt) keys() [3][2]string {
	return [3][2]string{{scopeAccount, a.Username}, {scopeAddr, a.Addr}, {scopePair, a.Username + " " + a.Addr}}
}

type throttleRow struct {
	failures                               int
	lastFailure, blockedUntil, succeededAt int64
}

// CountLoginAttempt implements Store.
func (s *SQLStore) CountLoginAttempt(ctx context.Context, a LoginAttempt, p ThrottlePolicy, now time.Time) (time.Duration, error) {
	p = p.orDefault()
	var wait time.Duration
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		wait = 0
		keys := a.keys()
		var rows [3]throttleRow
		for i, k := range keys {
			// The no-op update locks the row until the transaction ends.
			err := q.QueryRow(ctx, `INSERT INTO gateway_login_throttle (scope, key, failures, last_failure, blocked_until, succeeded_at)
				VALUES ($1, $2, 0, 0, 0, 0)
				ON CONFLICT (scope, key) DO UPDATE SET failures = gateway_login_throttle.failures
				RETURNING failures, last_failure, blocked_until, succeeded_at`, k[0], k[1]).
				Scan(&rows[i].failures, &rows[i].lastFailure, &rows[i].blockedUntil, &rows[i].succeededAt)
			if err != nil {
				return err
			}
		}
		known := rows[2].succeededAt > sqldb.Micros(now.Add(-p.KnownFor))
		for i, r := range rows {
			if i == 0 && known {
				continue
			}
			if until := sqldb.Time(r.blockedUntil); until.After(now) {
				wait = max(wait, until.Sub(now))
			}
		}
		if wait > 0 {
			return nil
		}
		free := [3]int{p.AccountFree, p.AddrFree, p.PairFree}
		for i, r := range rows {
			n := r.failures + 1
			if sqldb.Time(r.lastFailure).Before(now.Add(-p.Window)) {
				n = 1
			}
			blocked := r.blockedUntil
			if d := p.delay(n, free[i]); d > 0 {
				blocked = sqldb.Micros(now.Add(d))
			}
			if _, err := q.Exec(ctx, `UPDATE gateway_login_throttle SET failures = $3, last_failure = $4, blocked_until = $5
				WHERE scope = $1 AND key = $2`, keys[i][0], keys[i][1], n, sqldb.Micros(now), blocked); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count sign-in attempt: %w", err)
	}
	return wait, nil
}

// LoginSucceeded implements Store.
func (s *SQLStore) LoginSucceeded(ctx context.Context, a LoginAttempt, now time.Time) error {
	keys := a.keys()
	err := s.db.Tx(ctx, func(q sqldb.Querier) error {
		for _, k := range keys[:2] {
			if _, err := q.Exec(ctx, `UPDATE gateway_login_throttle SET failures = failures - 1
				WHERE scope = $1 AND key = $2 AND failures > 0`, k[0], k[1]); err != nil {
				return err
			}
		}
		_, err := q.Exec(ctx, `UPDATE gateway_login_throttle SET failures = 0, blocked_until = 0, succeeded_at = $3
			WHERE scope = $1 AND key = $2`, keys[2][0], keys[2][1], sqldb.Micros(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("record sign-in: %w", err)
	}
	return nil
}

// DeleteStaleThrottles implements Store.
func (s *SQLStore) DeleteStaleThrottles(ctx context.Context, p ThrottlePolicy, now time.Time) (int64, error) {
	p = p.orDefault()
	n, err := s.db.Exec(ctx, `DELETE FROM gateway_login_throttle
		WHERE last_failure < $1 AND blocked_until < $2 AND succeeded_at < $3`,
		sqldb.Micros(now.Add(-p.Window)), sqldb.Micros(now), sqldb.Micros(now.Add(-p.KnownFor)))
	if err != nil {
		return 0, fmt.Errorf("delete stale sign-in counters: %w", err)
	}
	return n, nil
}

type clientAddrKey struct{}

// clientAddr is the address failed sign-ins are counted against: the
// peer's IP address (an IPv6 address by its /64, which one holder
// usually has whole); for the web UI's in-process calls, the browser's.
func clientAddr(r *http.Request) string {
	if a, ok := r.Context().Value(clientAddrKey{}).(string); ok {
		return a
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }
