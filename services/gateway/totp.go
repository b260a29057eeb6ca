package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/sqldb"
)

// TOTP second factor (RFC 6238: 6 digits, 30 s, SHA-1, as authenticator
// apps expect; ADR 0018). An account enrols with its password
// (POST /v1/auth/totp), confirms with a first code (POST
// /v1/auth/totp/confirm), and from then on signs in with a code as well
// ("otp"). A code is accepted one step either side of now, and only once.

// totpIssuer names EVA in authenticator apps.
const totpIssuer = "EVA"

// totpPeriod is the length of a time step.
const totpPeriod = 30 * time.Second

var totpOpts = totp.ValidateOpts{Period: uint(totpPeriod / time.Second), Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// secondFactorRoles must enrol a second factor when Config.RequireTOTP.
var secondFactorRoles = []string{approver, finance, admin}

// TOTPFactor is an account's second factor.
type TOTPFactor struct {
	// Secret is the confirmed base32 secret, "" when none.
	Secret string
	// Pending is a secret enrolled but not yet confirmed.
	Pending string
	// LastStep is the last time step whose code was used.
	LastStep int64
}

// totpStep returns the time step of code under secret at now (one step
// either side), ok false when it matches none.
func totpStep(secret, code string, now time.Time) (int64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	for _, off := range []int64{0, -1, 1} {
		t := now.Add(time.Duration(off) * totpPeriod)
		want, err := totp.GenerateCodeCustom(secret, t, totpOpts)
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return t.Unix() / int64(totpPeriod/time.Second), true
		}
	}
	return 0, false
}

var errBadOTP = &assist.Error{Code: assist.CodeUnauthenticated, Message: "wrong or used one-time code",
	Fields: []assist.FieldError{{Field: "otp", Message: "is not the current code of your authenticator"}}}

// checkSecondFactor is the second step of a sign-in whose password was
// right. Errors: CodeUnauthenticated naming otp; CodeForbidden when the
// account must enrol first.
func (s *server) checkSecondFactor(ctx context.Context, acct Account, code string, now time.Time) error {
	f, err := s.store.TOTP(ctx, acct.Username)
	if err != nil {
		return err
	}
	if f.Secret == "" {
		if s.cfg.RequireTOTP && slices.ContainsFunc(secondFactorRoles, acct.Has) {
			return assist.Errorf(assist.CodeForbidden,
				"this account needs a second factor: enrol with POST /v1/auth/totp, then sign in with its code")
		}
		return nil
	}
	if code == "" {
		return &assist.Error{Code: assist.CodeUnauthenticated, Message: "this account signs in with a one-time code",
			Fields: []assist.FieldError{{Field: "otp", Message: "is required: the code your authenticator shows"}}}
	}
	step, ok := totpStep(f.Secret, code, now)
	if !ok {
		return errBadOTP
	}
	used, err := s.store.UseTOTPStep(ctx, acct.Username, step)
	if err != nil {
		return err
	}
	if !used {
		return errBadOTP
	}
	return nil
}

type totpEnrolRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	// OTP is the current code, required to replace a confirmed factor.
	OTP string `json:"otp,omitempty"`
}

type totpEnrolResponse struct {
	Secret string `json:"secret" jsonschema_description:"the base32 secret, to type into an authenticator app"`
	URL    string `json:"url" jsonschema_description:"the otpauth:// URL, for a QR code"`
}

type totpConfirmRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	OTP      string `json:"otp"`
}

type totpConfirmResponse struct {
	Enabled bool `json:"enabled"`
}

// checkPassword is the first step of every password check: the sign-in
// throttle, then the password. Errors: CodeRateLimited (with
// Retry-After), CodeUnauthenticated; store errors.
func (s *server) checkPassword(r *http.Request, username, password string, now time.Time) (Account, LoginAttempt, error) {
	var probs assist.Problems
	if username == "" {
		probs.Add("username", "is required")
	} else if len(username) > maxUsername {
		probs.Add("username", "must be at most %d bytes", maxUsername)
	}
	if password == "" {
		probs.Add("password", "is required")
	}
	if err := probs.Err(); err != nil {
		return Account{}, LoginAttempt{}, err
	}
	attempt := LoginAttempt{Username: username, Addr: clientAddr(r)}
	wait, err := s.store.CountLoginAttempt(r.Context(), attempt, s.cfg.Throttle, now)
	if err != nil {
		return Account{}, attempt, err
	}
	if wait > 0 {
		secs := retryAfterSeconds(wait)
		return Account{}, attempt, &retryAfter{seconds: secs,
			err: assist.Errorf(assist.CodeRateLimited, "too many failed sign-ins; try again in %d s", secs)}
	}
	acct, err := s.store.Account(r.Context(), username)
	switch {
	case assist.IsCode(err, assist.CodeNotFound):
		s.cfg.Password.verify(s.dummyHash, password)
		return Account{}, attempt, errBadCredentials
	case err != nil:
		return Account{}, attempt, err
	}
	if isSSO(acct) { // signs in with single sign-on only; as long as a wrong password
		s.cfg.Password.verify(s.dummyHash, password)
		return Account{}, attempt, errBadCredentials
	}
	ok, stale := s.cfg.Password.verify(acct.PasswordHash, password)
	if !ok {
		return Account{}, attempt, errBadCredentials
	}
	if stale {
		s.upgradeHash(r.Context(), acct, password)
	}
	return acct, attempt, nil
}

// enrolTOTP is POST /v1/auth/totp: a new secret, pending until confirmed.
func (s *server) enrolTOTP(_ http.ResponseWriter, r *http.Request, _ noQuery, in totpEnrolRequest) (totpEnrolResponse, error) {
	now := s.now()
	acct, attempt, err := s.checkPassword(r, in.Username, in.Password, now)
	if err != nil {
		return totpEnrolResponse{}, err
	}
	f, err := s.store.TOTP(r.Context(), acct.Username)
	if err != nil {
		return totpEnrolResponse{}, err
	}
	if f.Secret != "" {
		// Replacing a factor takes the current one.
		if in.OTP == "" {
			return totpEnrolResponse{}, &assist.Error{Code: assist.CodeUnauthenticated, Message: "a second factor is enrolled already",
				Fields: []assist.FieldError{{Field: "otp", Message: "is required to replace it: the current code"}}}
		}
		if err := s.checkSecondFactor(r.Context(), acct, in.OTP, now); err != nil {
			return totpEnrolResponse{}, err
		}
	}
	if err := s.store.LoginSucceeded(r.Context(), attempt, now); err != nil {
		return totpEnrolResponse{}, err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: totpIssuer, AccountName: acct.Username,
		Period: totpOpts.Period, Digits: totpOpts.Digits, Algorithm: totpOpts.Algorithm})
	if err != nil {
		return totpEnrolResponse{}, fmt.Errorf("totp: %w", err)
	}
	if err := s.store.PutPendingTOTP(r.Context(), acct.Username, key.Secret()); err != nil {
		return totpEnrolResponse{}, err
	}
	return totpEnrolResponse{Secret: key.Secret(), URL: key.URL()}, nil
}

// confirmTOTP is POST /v1/auth/totp/confirm: the pending secret becomes
// the account's factor once a code of it is right.
func (s *server) confirmTOTP(_ http.ResponseWriter, r *http.Request, _ noQuery, in totpConfirmRequest) (totpConfirmResponse, error) {
	now := s.now()
	acct, attempt, err := s.checkPassword(r, in.Username, in.Password, now)
	if err != nil {
		return totpConfirmResponse{}, err
	}
	f, err := s.store.TOTP(r.Context(), acct.Username)
	if err != nil {
		return totpConfirmResponse{}, err
	}
	if f.Pending == "" {
		return totpConfirmResponse{}, assist.Errorf(assist.CodeConflict, "nothing to confirm: enrol first with POST /v1/auth/totp")
	}
	step, ok := totpStep(f.Pending, in.OTP, now)
	if !ok {
		return totpConfirmResponse{}, errBadOTP
	}
	if err := s.store.ConfirmTOTP(r.Context(), acct.Username, f.Pending, step); err != nil {
		return totpConfirmResponse{}, err
	}
	if err := s.store.LoginSucceeded(r.Context(), attempt, now); err != nil {
		return totpConfirmResponse{}, err
	}
	return totpConfirmResponse{Enabled: true}, nil
}

// TOTP implements Store.
func (s *SQLStore) TOTP(ctx context.Context, username string) (TOTPFactor, error) {
	var f TOTPFactor
	err := s.db.QueryRow(ctx, `SELECT secret, pending_secret, last_step FROM gateway_totp WHERE username = $1`, username).
		Scan(&f.Secret, &f.Pending, &f.LastStep)
	if err != nil && !errors.Is(err, sqldb.ErrNoRows) {
		return TOTPFactor{}, fmt.Errorf("totp: %w", err)
	}
	return f, nil
}

// PutPendingTOTP implements Store.
func (s *SQLStore) PutPendingTOTP(ctx context.Context, username, secret string) error {
	_, err := s.db.Exec(ctx, `INSERT INTO gateway_totp (username, pending_secret) VALUES ($1, $2)
		ON CONFLICT (username) DO UPDATE SET pending_secret = excluded.pending_secret`, username, secret)
	if err != nil {
		return fmt.Errorf("enrol totp: %w", err)
	}
	return nil
}

// ConfirmTOTP implements Store.
func (s *SQLStore) ConfirmTOTP(ctx context.Context, username, pending string, step int64) error {
	n, err := s.db.Exec(ctx, `UPDATE gateway_totp SET secret = pending_secret, pending_secret = '', last_step = $3
		WHERE username = $1 AND pending_secret = $2`, username, pending, step)
	if err != nil {
		return fmt.Errorf("confirm totp: %w", err)
	}
	if n != 1 {
		return assist.Errorf(assist.CodeConflict, "the enrolment changed meanwhile; enrol again")
	}
	return nil
}

// UseTOTPStep implements Store.
func (s *SQLStore) UseTOTPStep(ctx context.Context, username string, step int64) (bool, error) {
	n, err := s.db.Exec(ctx, `UPDATE gateway_totp SET last_step = $2 WHERE username = $1 AND last_step < $2`, username, step)
	if err != nil {
		return false, fmt.Errorf("use totp code: %w", err)
	}
	return n == 1, nil
}
