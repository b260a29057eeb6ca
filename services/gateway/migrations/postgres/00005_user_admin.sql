-- +goose Up
-- User administration (ADR 0025): an account may be disabled; every change
-- an admin makes is written with its event in gateway_user_outbox, in the
-- same transaction, and the outbox is then appended to the event log.
ALTER TABLE gateway_users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
-- The command id of the last admin change: a retried command (the same
-- Idempotency-Key) answers without changing the account again.
ALTER TABLE gateway_users ADD COLUMN last_command_id TEXT NOT NULL DEFAULT '';

CREATE TABLE gateway_user_outbox (
    seq        BIGSERIAL PRIMARY KEY,
    event_id   TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    event      BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

-- One row that every account change updates first: changes are serialized,
-- so that the check that an enabled admin remains holds under concurrency.
CREATE TABLE gateway_user_lock (
    id INTEGER PRIMARY KEY,
    n  BIGINT NOT NULL
);
INSERT INTO gateway_user_lock (id, n) VALUES (1, 0);

-- +goose Down
DROP TABLE gateway_user_lock;
DROP TABLE gateway_user_outbox;
ALTER TABLE gateway_users DROP COLUMN last_command_id;
ALTER TABLE gateway_users DROP COLUMN disabled;
