-- +goose Up
-- Every case as the approvers see it, projected from the log; it can be
-- dropped and rebuilt by replaying the log.
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

-- +goose Down
DROP TABLE approval_cases;
