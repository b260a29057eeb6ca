-- +goose Up
-- The access log of personal-data reads (stream EVA_ACCESS), archived in
-- stream order with no gap, with its own RFC 6962 Merkle tree and signed
-- checkpoints (origin "<key name>/access"), verified like the event log's.
CREATE TABLE audit_access (
    seq     BIGINT PRIMARY KEY,
    subject TEXT NOT NULL,
    at      BIGINT NOT NULL,
    data    BYTEA NOT NULL
);
CREATE TABLE audit_access_tree (
    idx  BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL
);
CREATE TABLE audit_access_checkpoints (
    size BIGINT PRIMARY KEY,
    note TEXT NOT NULL,
    at   BIGINT NOT NULL
);

-- +goose Down
DROP TABLE audit_access_checkpoints;
DROP TABLE audit_access_tree;
DROP TABLE audit_access;
