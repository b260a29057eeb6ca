-- +goose Up
-- Data keys, wrapped by the master key. Each case's personal data is
-- sealed under its own key (its id is in the sealed data). Keys are made
-- ahead, in batches, so that filing waits for no write here. Deleting a
-- key erases the person: the sealed data in the log no longer opens.
CREATE TABLE intake_data_keys (
    key_id     TEXT PRIMARY KEY,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

-- Cases whose personal data was erased: erasure is permanent.
CREATE TABLE intake_erasures (
    case_id   TEXT PRIMARY KEY,
    erased_at INTEGER NOT NULL
);

-- Which case an Idempotency-Key filed (the key is hashed with its user),
-- and a hash of the request, so that a retry finds its case and a reused
-- key with another request is refused.
CREATE TABLE intake_filings (
    key_hash     BLOB PRIMARY KEY,
    case_id      TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    created_at   INTEGER NOT NULL
);

-- The list of requests, projected from the log; it can be dropped and
-- rebuilt by replaying the log.
CREATE TABLE intake_cases (
    id         TEXT PRIMARY KEY,
    post       TEXT NOT NULL,
    requester  TEXT NOT NULL,
    status     TEXT NOT NULL,
    urgency    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    state      TEXT NOT NULL
);
CREATE INDEX intake_cases_created ON intake_cases (created_at DESC, id DESC);
CREATE INDEX intake_cases_post ON intake_cases (post, created_at DESC, id DESC);

-- +goose Down
DROP TABLE intake_cases;
DROP TABLE intake_filings;
DROP TABLE intake_erasures;
DROP TABLE intake_data_keys;
