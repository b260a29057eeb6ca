-- +goose Up
-- Webhooks as their events leave them (the secret sealed, as in the log),
-- the part of each case a notification tells (its status), and the outbox
-- of deliveries: one row per (webhook, event), written in the consumer's
-- transaction, delivered until a 2xx and then never again.
CREATE TABLE notify_webhooks (
    id            TEXT PRIMARY KEY,
    url           TEXT NOT NULL,
    events        TEXT NOT NULL,
    secret        TEXT NOT NULL,
    secret_key    TEXT NOT NULL,
    registered_by TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    seq           BIGINT NOT NULL,
    removed       BIGINT NOT NULL
);
CREATE TABLE notify_cases (
    id        TEXT PRIMARY KEY,
    status    TEXT NOT NULL,
    requester TEXT NOT NULL,
    urgency   TEXT NOT NULL,
    version   BIGINT NOT NULL
);
CREATE TABLE notify_deliveries (
    webhook_id   TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    case_id      TEXT NOT NULL,
    type         TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    next_at      BIGINT NOT NULL,
    delivered_at BIGINT NOT NULL,
    dropped      BIGINT NOT NULL,
    last_error   TEXT NOT NULL,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (delivered_at, dropped, next_at);

-- +goose Down
DROP TABLE notify_deliveries;
DROP TABLE notify_cases;
DROP TABLE notify_webhooks;
