-- +goose Up
-- Local accounts. roles and posts are comma-separated lists; a password is
-- stored only as its bcrypt hash.
CREATE TABLE gateway_users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,
    posts         TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- Bearer tokens (and session cookies), stored as the hex SHA-256 of the
-- token: a copy of this table opens no session.
CREATE TABLE gateway_tokens (
    hash       TEXT PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES gateway_users (username) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX gateway_tokens_expires ON gateway_tokens (expires_at);

-- Idempotency keys per user: the request they were first used with, the
-- command id given to the services, and, once done, the response to replay.
CREATE TABLE gateway_idempotency (
    username          TEXT NOT NULL,
    key               TEXT NOT NULL,
    request_hash      TEXT NOT NULL,
    command_id        TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'done')),
    response_status   INTEGER NOT NULL DEFAULT 0,
    response_body     BYTEA,
    response_location TEXT NOT NULL DEFAULT '',
    created_at        BIGINT NOT NULL,
    PRIMARY KEY (username, key)
);
CREATE INDEX gateway_idempotency_created ON gateway_idempotency (created_at);

-- +goose Down
DROP TABLE gateway_idempotency;
DROP TABLE gateway_tokens;
DROP TABLE gateway_users;
