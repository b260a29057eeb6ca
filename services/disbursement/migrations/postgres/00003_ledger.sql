-- +goose Up
-- The double-entry ledger (ADR 29): a read model of the log. Each entry
-- moves amount from the credit account to the debit account, so every
-- entry balances by construction; an account's balance is its debits
-- minus its credits. Accounts: allocation:<fund> (where a fund's money
-- comes from; its balance is minus the allocation), fund:<fund>:available,
-- fund:<fund>:reserved, fund:<fund>:paid. seq is the log position of the
-- event that caused the entry and n its place among that event's entries:
-- applying an event again inserts nothing.
CREATE TABLE disb_ledger_entries (
    seq          BIGINT NOT NULL,
    n            INTEGER NOT NULL,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    kind         TEXT NOT NULL,
    fund_id      TEXT NOT NULL,
    case_id      TEXT NOT NULL DEFAULT '',
    hold_id      TEXT NOT NULL DEFAULT '',
    payout_id    TEXT NOT NULL DEFAULT '',
    payee_id     TEXT NOT NULL DEFAULT '',
    provider_ref TEXT NOT NULL DEFAULT '',
    debit        TEXT NOT NULL,
    credit       TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (seq, n),
    CHECK (amount > 0 AND debit <> credit)
);
CREATE INDEX disb_ledger_entries_fund ON disb_ledger_entries (fund_id, seq, n);
CREATE INDEX disb_ledger_entries_payout ON disb_ledger_entries (payout_id);

-- The ledger's own view of each hold that the log recorded (an approval
-- named it): its fund, its amount still reserved, and where it went
-- (held, paid, voided). Built from events only, so the ledger replays
-- from the log alone.
CREATE TABLE disb_ledger_holds (
    hold_id  TEXT PRIMARY KEY,
    fund_id  TEXT NOT NULL,
    case_id  TEXT NOT NULL,
    payee_id TEXT NOT NULL,
    amount   BIGINT NOT NULL,
    state    TEXT NOT NULL
);

-- Which hold a payout pays (FundsReserved), and what the provider called
-- it (PayoutSent), for settlement and reconciliation.
CREATE TABLE disb_ledger_payouts (
    payout_id    TEXT PRIMARY KEY,
    hold_id      TEXT NOT NULL,
    payee_id     TEXT NOT NULL DEFAULT '',
    provider_ref TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE disb_ledger_payouts;
DROP TABLE disb_ledger_holds;
DROP TABLE disb_ledger_entries;
