// Package providerhttp is disbursement's payment provider over HTTP: the
// adapter (Client, a disbursement.Provider), the wire format it speaks,
// and the handler of the provider's settlement callbacks (ADR 27).
//
// The provider's API:
//
//	POST /v1/payments        {"key","payee_id","account","amount_cents"}
//	                         with Idempotency-Key: <key>; the same key
//	                         again answers the first result, never pays
//	                         twice → 200 Receipt
//	GET  /v1/payments/{key}  → 200 Receipt, or 404 problem with code
//	                         "unknown_payment" for a key never paid
//	GET  /v1/statement       → 200, every payment settled, as JSON lines
//	                         in the format of package reconcile (one
//	                         line a payment: provider_ref, key, payee_id,
//	                         account, amount_usd_cents, currency,
//	                         settled_at), for reconciliation
//
// and its callback, POSTed to EVA when a payment settles (possibly more
// than once, late, or out of order): {"key","ref","status"}. A callback
// is a hint that carries no authority: EVA asks the provider (GET) and
// records what the provider answers there, so a duplicate, late or forged
// callback can pay or settle nothing.
package providerhttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/eva-org/eva/services/disbursement"
)

// PaymentRequest is the body of POST /v1/payments.
type PaymentRequest struct {
	Key         string `json:"key"`
	PayeeID     string `json:"payee_id"`
	Account     string `json:"account"`
	AmountCents int64  `json:"amount_cents"`
}

// Receipt is the provider's answer about one payment.
type Receipt struct {
	Key    string `json:"key"`
	Ref    string `json:"ref"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Callback is the provider's notice that a payment changed status.
type Callback struct {
	Key    string `json:"key"`
	Ref    string `json:"ref"`
	Status string `json:"status"`
}

// Problem is the provider's error body (application/problem+json).
type Problem struct {
	Title string `json:"title"`
	// Code is "unknown_payment" for a key the provider never paid.
	Code  string `json:"code,omitempty"`
	Field string `json:"field,omitempty"`
}

// CodeUnknownPayment is the Problem code of GET for a key never paid.
const CodeUnknownPayment = "unknown_payment"

// MaxBody bounds the bodies either side reads.
const MaxBody = 4 << 10

// FieldError names the field of a request or answer that is wrong.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// CheckKey validates a payment key: 1–128 printable characters, no
// spaces or slashes (it is a path segment).
func CheckKey(field, key string) error {
	if key == "" {
		return &FieldError{field, "required"}
	}
	if len(key) > 128 {
		return &FieldError{field, "more than 128 bytes"}
	}
	for _, r := range key {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' || r == '/' || r == '?' || r == '#' || r == '%' {
			return &FieldError{field, "only printable ASCII without spaces, '/', '?', '#' or '%'"}
		}
	}
	return nil
}

func checkText(field, v string, required bool) error {
	if v == "" && required {
		return &FieldError{field, "required"}
	}
	if len(v) > 256 {
		return &FieldError{field, "more than 256 bytes"}
	}
	for _, r := range v {
		if unicode.IsControl(r) || r == unicode.ReplacementChar || unicode.Is(unicode.Bidi_Control, r) {
			return &FieldError{field, "control characters"}
		}
	}
	return nil
}

func validStatus(s string) bool {
	return s == disbursement.ReceiptSent || s == disbursement.ReceiptSettled || s == disbursement.ReceiptFailed
}

// decodeStrict decodes exactly one JSON object of at most MaxBody bytes
// into v, refusing unknown fields and trailing data.
func decodeStrict(r io.Reader, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxBody+1))
	if err != nil {
		return &FieldError{"body", "unreadable: " + err.Error()}
	}
	if len(data) > MaxBody {
		return &FieldError{"body", fmt.Sprintf("more than %d bytes", MaxBody)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &FieldError{te.Field, "wrong type"}
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			if f = strings.Trim(f, `"`); f == "" {
				f = "body" // a field with an empty name (found by FuzzDecodeCallback)
			}
			return &FieldError{f, "unknown field"}
		}
		return &FieldError{"body", "not a JSON object: " + err.Error()}
	}
	if dec.More() {
		return &FieldError{"body", "data after the JSON object"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &FieldError{"body", "data after the JSON object"}
	}
	return nil
}

// DecodeCallback reads and validates a provider callback. Errors are
// *FieldError naming the field.
func DecodeCallback(r io.Reader) (Callback, error) {
	var c Callback
	if err := decodeStrict(r, &c); err != nil {
		return Callback{}, err
	}
	if err := CheckKey("key", c.Key); err != nil {
		return Callback{}, err
	}
	if err := checkText("ref", c.Ref, false); err != nil {
		return Callback{}, err
	}
	if !validStatus(c.Status) {
		return Callback{}, &FieldError{"status", "one of sent, settled, failed"}
	}
	return c, nil
}

// DecodePaymentRequest reads and validates the body of POST
// /v1/payments. Errors are *FieldError naming the field.
func DecodePaymentRequest(r io.Reader) (PaymentRequest, error) {
	var p PaymentRequest
	if err := decodeStrict(r, &p); err != nil {
		return PaymentRequest{}, err
	}
	if err := CheckKey("key", p.Key); err != nil {
		return PaymentRequest{}, err
	}
	if err := checkText("payee_id", p.PayeeID, true); err != nil {
		return PaymentRequest{}, err
	}
	if err := checkText("account", p.Account, true); err != nil {
		return PaymentRequest{}, err
	}
	if p.AmountCents <= 0 {
		return PaymentRequest{}, &FieldError{"amount_cents", "must be positive"}
	}
	return p, nil
}

// decodeReceipt reads the provider's receipt for key; an answer about
// another key, or with a status the adapter does not know, is an error,
// never a receipt.
func decodeReceipt(r io.Reader, key string) (disbursement.Receipt, error) {
	var rc Receipt
	dec := json.NewDecoder(io.LimitReader(r, MaxBody))
	if err := dec.Decode(&rc); err != nil {
		return disbursement.Receipt{}, fmt.Errorf("provider answer: %w", err)
	}
	if rc.Key != key {
		return disbursement.Receipt{}, fmt.Errorf("provider answered about key %q, asked %q", rc.Key, key)
	}
	if !validStatus(rc.Status) {
		return disbursement.Receipt{}, fmt.Errorf("provider answered status %q", rc.Status)
	}
	return disbursement.Receipt{Ref: rc.Ref, Status: rc.Status, Error: rc.Error}, nil
}
