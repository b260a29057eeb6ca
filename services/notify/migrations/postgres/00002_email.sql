-- +goose Up
-- E-mail (ADR 0028). The accounts as their events leave them (address,
-- roles, disabled): who gets which mail is decided from the log alone.
CREATE TABLE notify_users (
    username TEXT PRIMARY KEY,
    email    TEXT NOT NULL,
    roles    TEXT NOT NULL,
    posts    TEXT NOT NULL,
    disabled BIGINT NOT NULL,
    seq      BIGINT NOT NULL
);
-- What a mail tells of a case besides its status: never personal data.
ALTER TABLE notify_cases ADD COLUMN post TEXT NOT NULL DEFAULT '';
ALTER TABLE notify_cases ADD COLUMN category TEXT NOT NULL DEFAULT '';
ALTER TABLE notify_cases ADD COLUMN amount_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notify_cases ADD COLUMN approved_cents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notify_cases ADD COLUMN deadline BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notify_cases ADD COLUMN escalated BIGINT NOT NULL DEFAULT 0;
-- The e-mail outbox: one row per (event, recipient), written in the
-- consumer's transaction with everything the message says, sent until
-- the server accepts it and then never again.
CREATE TABLE notify_mails (
    event_id       TEXT NOT NULL,
    username       TEXT NOT NULL,
    address        TEXT NOT NULL,
    reason         TEXT NOT NULL,
    case_id        TEXT NOT NULL,
    type           TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    at             BIGINT NOT NULL,
    status         TEXT NOT NULL,
    post           TEXT NOT NULL,
    category       TEXT NOT NULL,
    urgency        TEXT NOT NULL,
    amount_cents   BIGINT NOT NULL,
    approved_cents BIGINT NOT NULL,
    deadline       BIGINT NOT NULL,
    escalated      BIGINT NOT NULL,
    attempts       BIGINT NOT NULL,
    next_at        BIGINT NOT NULL,
    delivered_at   BIGINT NOT NULL,
    dropped        BIGINT NOT NULL,
    last_error     TEXT NOT NULL,
    PRIMARY KEY (event_id, username)
);
CREATE INDEX notify_mails_due ON notify_mails (delivered_at, dropped, next_at);

-- +goose Down
DROP TABLE notify_mails;
ALTER TABLE notify_cases DROP COLUMN escalated;
ALTER TABLE notify_cases DROP COLUMN deadline;
ALTER TABLE notify_cases DROP COLUMN approved_cents;
ALTER TABLE notify_cases DROP COLUMN amount_cents;
ALTER TABLE notify_cases DROP COLUMN category;
ALTER TABLE notify_cases DROP COLUMN post;
DROP TABLE notify_users;
