-- +goose Up
-- The audit archive: every event of the log, in log order, with no gap.
-- hash is SHA-256 over the canonical encoding of (seq, subject, id, data);
-- chain is SHA-256(chain of seq-1 || hash), 32 zero bytes before seq 1.
-- Rows are only ever inserted: the archive is never updated or deleted.
CREATE TABLE audit_events (
    seq     BIGINT PRIMARY KEY,
    id      TEXT NOT NULL,
    case_id TEXT NOT NULL,
    type    TEXT NOT NULL,
    subject TEXT NOT NULL,
    at      BIGINT NOT NULL,
    data    BYTEA NOT NULL,
    hash    BYTEA NOT NULL,
    chain   BYTEA NOT NULL
);
CREATE INDEX audit_events_case ON audit_events (case_id, seq);

-- +goose Down
DROP TABLE audit_events;
