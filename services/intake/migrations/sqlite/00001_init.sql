-- +goose Up
-- Per-case data keys, wrapped by the master key. Deleting a row erases the
-- person: the sealed personal data in the log can no longer be opened.
CREATE TABLE intake_data_keys (
    case_id    TEXT PRIMARY KEY,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL
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
DROP TABLE intake_data_keys;
