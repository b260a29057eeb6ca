-- +goose Up
-- The queue keeps only its own columns: what orders it, what finds
-- possible duplicates, and each case's version. The whole case is intake's
-- read model. The table is rebuilt from the log by a new durable consumer
-- (approval-queue), which starts at the beginning of the log.
DROP TABLE approval_cases;
CREATE TABLE approval_queue (
    id               TEXT PRIMARY KEY,
    status           TEXT NOT NULL,
    urgency          TEXT NOT NULL,
    category         TEXT NOT NULL,
    ref_hash         TEXT NOT NULL,
    deadline         BIGINT NOT NULL,
    escalated        BIGINT NOT NULL,
    claimed_by       TEXT NOT NULL,
    claim_expires_at BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    version          BIGINT NOT NULL
);
CREATE INDEX approval_queue_order ON approval_queue (status, deadline, id);
CREATE INDEX approval_queue_ref ON approval_queue (ref_hash, category);

-- +goose Down
DROP TABLE approval_queue;
CREATE TABLE approval_cases (
    id         TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    deadline   BIGINT NOT NULL,
    category   TEXT NOT NULL,
    ref_hash   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    state      TEXT NOT NULL
);
CREATE INDEX approval_cases_queue ON approval_cases (status, deadline, id);
CREATE INDEX approval_cases_ref ON approval_cases (ref_hash, category);
