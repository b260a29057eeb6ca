-- +goose Up
-- A case whose deadline is near (DeadlineWarning, ADR 12) is marked due
-- soon in the queue. No warning was recorded before this column.
ALTER TABLE approval_queue ADD COLUMN warned BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE approval_queue DROP COLUMN warned;
