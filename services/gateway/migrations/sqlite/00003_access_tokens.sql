-- +goose Up
-- The key access tokens are signed with (HMAC-SHA256), shared by every
-- gateway replica; secret is hex.
CREATE TABLE gateway_keys (
    id         TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Revocations every replica polls: a signed-out session ('session', the
-- hex SHA-256 of its id) or an account whose tokens issued until at no
-- longer hold ('user', username). Kept a little longer than an access
-- token lives.
CREATE TABLE gateway_revocations (
    kind    TEXT NOT NULL CHECK (kind IN ('session', 'user')),
    subject TEXT NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX gateway_revocations_at ON gateway_revocations (at);

-- +goose Down
DROP TABLE gateway_revocations;
DROP TABLE gateway_keys;
