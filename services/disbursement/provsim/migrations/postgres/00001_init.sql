-- +goose Up
-- The simulated provider's books: one row per payment key, so a key can
-- never be paid twice, and tests can count what was paid.
CREATE TABLE provsim_payments (
    key        TEXT PRIMARY KEY,
    ref        TEXT NOT NULL,
    payee_id   TEXT NOT NULL,
    account    TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    status     TEXT NOT NULL,
    error      TEXT NOT NULL,
    settle_at  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE provsim_payments;
