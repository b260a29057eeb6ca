package assist

import (
	"errors"
	"fmt"
	"strings"
)

// Code classifies an error. Each edge maps a Code once: to an HTTP status in
// the gateway, to a micro error code in request/reply, to Term or Nak in
// consumers.
type Code string

// The error vocabulary of EVA.
const (
	CodeInvalid             Code = "invalid"              // malformed or invalid input; Fields names what
	CodeUnauthenticated     Code = "unauthenticated"      // no or bad credentials
	CodeForbidden           Code = "forbidden"            // authenticated, not allowed
	CodeNotFound            Code = "not_found"            // absent, or not visible to the caller
	CodeGone                Code = "gone"                 // there was something, destroyed for good (erased personal data)
	CodeConflict            Code = "conflict"             // invalid transition, lost race, already claimed
	CodeInsufficientFunds   Code = "insufficient_funds"   // a conflict: the fund cannot cover an amount
	CodeTooLarge            Code = "too_large"            // body or field too large
	CodeIdempotencyMismatch Code = "idempotency_mismatch" // key reused with another body
	CodeRateLimited         Code = "rate_limited"         // slow down
	CodeUnavailable         Code = "unavailable"          // a dependency is down; retry
	CodeInternal            Code = "internal"             // a bug or an unexpected failure; detail hidden
)

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the one error type that crosses service boundaries.
type Error struct {
	Code    Code         `json:"code"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
	// AvailableUSDCents is set with CodeInsufficientFunds: what the fund
	// could still cover when the request was refused.
	AvailableUSDCents *int64 `json:"available_usd_cents,omitempty"`
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, strings.Join(parts, "; "))
}

// Errorf returns an *Error with the given code.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, CodeInternal when err is not an *Error.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err carries the code.
func IsCode(err error, code Code) bool { return err != nil && ErrorCode(err) == code }

// Problems collects field errors while validating input.
type Problems struct{ fields []FieldError }

// Add records that field is invalid.
func (p *Problems) Add(field, format string, args ...any) {
	p.fields = append(p.fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns nil when nothing was added, else a CodeInvalid *Error naming
// every field.
func (p *Problems) Err() error {
	if len(p.fields) == 0 {
		return nil
	}
	names := make([]string, len(p.fields))
	for i, f := range p.fields {
		names[i] = f.Field
	}
	return &Error{Code: CodeInvalid, Message: "invalid " + strings.Join(names, ", "), Fields: p.fields}
}

func conflict(format string, args ...any) error { return Errorf(CodeConflict, format, args...) }
