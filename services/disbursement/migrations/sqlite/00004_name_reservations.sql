-- +goose Up
-- A fund's or payee's name belongs to one id (ADR 30): the creating
-- command reserves it here before it appends the creation event, so of
-- two creations of one name exactly one is appended. The read models no
-- longer refuse a name: they hold what the log holds, and a log written
-- before this may hold two creations of one name.
CREATE TABLE disb_names (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    id   TEXT NOT NULL,
    at   BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);
INSERT INTO disb_names (kind, name, id, at) SELECT 'fund', name, id, created_at FROM disb_funds;
INSERT INTO disb_names (kind, name, id, at) SELECT 'payee', name, id, created_at FROM disb_payees;

-- SQLite cannot drop a column's UNIQUE: both tables are made again
-- without it. The holds refer to the funds; their check waits for the
-- commit, when every fund is back.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE disb_funds_before AS SELECT * FROM disb_funds;
DROP TABLE disb_funds;
CREATE TABLE disb_funds (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    allocated  INTEGER NOT NULL,
    reserved   INTEGER NOT NULL DEFAULT 0,
    paid       INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    seq        BIGINT NOT NULL DEFAULT 0,
    CHECK (allocated > 0 AND reserved >= 0 AND paid >= 0 AND reserved + paid <= allocated)
);
INSERT INTO disb_funds (id, name, allocated, reserved, paid, created_by, created_at, seq)
    SELECT id, name, allocated, reserved, paid, created_by, created_at, seq FROM disb_funds_before;
DROP TABLE disb_funds_before;

CREATE TABLE disb_payees_before AS SELECT * FROM disb_payees;
DROP TABLE disb_payees;
CREATE TABLE disb_payees (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    country     TEXT NOT NULL,
    account     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    account_seq BIGINT NOT NULL DEFAULT 0
);
INSERT INTO disb_payees (id, name, country, account, created_by, created_at, account_seq)
    SELECT id, name, country, account, created_by, created_at, account_seq FROM disb_payees_before;
DROP TABLE disb_payees_before;

-- +goose Down
DROP TABLE disb_names;
