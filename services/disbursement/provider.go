package disbursement

import (
	"context"
	"errors"
)

// Provider pays payees: a bank or payment service behind an adapter.
type Provider interface {
	// Pay asks for a payment. The same key again never pays twice: it
	// returns what the first call did.
	Pay(ctx context.Context, p Payment) (Receipt, error)
	// Status reports a payment by its key.
	// Errors: ErrUnknownPayment when no payment has the key.
	Status(ctx context.Context, key string) (Receipt, error)
}

// ErrUnknownPayment is returned by Provider.Status for a key never paid.
var ErrUnknownPayment = errors.New("unknown payment")

// Payment is one payment order.
type Payment struct {
	Key         string // idempotency key: payout id and attempt
	PayeeID     string
	Account     string
	AmountCents int64
}

// Provider statuses of a payment.
const (
	ReceiptSent    = "sent"
	ReceiptSettled = "settled"
	ReceiptFailed  = "failed"
)

// Receipt is the provider's answer about a payment.
type Receipt struct {
	Ref    string
	Status string
	Error  string
}
