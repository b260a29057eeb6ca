-- +goose Up
-- TOTP second factors (RFC 6238): the confirmed secret, one waiting for
-- its first code, and the last time step used (a code is good once).
CREATE TABLE gateway_totp (
    username       TEXT PRIMARY KEY REFERENCES gateway_users (username) ON DELETE CASCADE,
    secret         TEXT NOT NULL DEFAULT '',
    pending_secret TEXT NOT NULL DEFAULT '',
    last_step      BIGINT NOT NULL DEFAULT 0
);

-- +goose Down
DROP TABLE gateway_totp;
