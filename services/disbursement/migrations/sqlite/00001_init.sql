-- +goose Up
-- A fund's money: allocated = available + reserved + paid. The CHECK is
-- the last guard of invariant 3: no write can overspend a fund.
CREATE TABLE disb_funds (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    allocated  INTEGER NOT NULL,
    reserved   INTEGER NOT NULL DEFAULT 0,
    paid       INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    CHECK (allocated > 0 AND reserved >= 0 AND paid >= 0 AND reserved + paid <= allocated)
);

-- Money set aside for one approval. held: placed, expires unless the
-- approval is recorded; reserved: the approval is recorded; paid; released.
CREATE TABLE disb_holds (
    id         TEXT PRIMARY KEY,
    fund_id    TEXT NOT NULL REFERENCES disb_funds (id),
    case_id    TEXT NOT NULL,
    payee_id   TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    status     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX disb_holds_expiry ON disb_holds (status, expires_at);

CREATE TABLE disb_payees (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    country    TEXT NOT NULL,
    account    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- One payout per approval (hold). stage drives the payout worker:
-- reserve -> pay -> sent -> settled, or failed (retry: pay again; cancel:
-- cancelled). cmd_id is the command id of the stage's next event, fixed
-- before the event is appended, so a repeated step is recognised.
CREATE TABLE disb_payouts (
    id           TEXT PRIMARY KEY,
    case_id      TEXT NOT NULL,
    hold_id      TEXT NOT NULL UNIQUE REFERENCES disb_holds (id),
    fund_id      TEXT NOT NULL,
    payee_id     TEXT NOT NULL,
    amount       INTEGER NOT NULL,
    stage        TEXT NOT NULL,
    cmd_id       TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    provider_ref TEXT NOT NULL DEFAULT '',
    last_error   TEXT NOT NULL DEFAULT '',
    next_at      INTEGER NOT NULL,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX disb_payouts_work ON disb_payouts (stage, next_at);
CREATE INDEX disb_payouts_case ON disb_payouts (case_id);

-- +goose Down
DROP TABLE disb_payouts;
DROP TABLE disb_payees;
DROP TABLE disb_holds;
DROP TABLE disb_funds;
