-- +goose Up
-- The duplicate check finds cases by reference hash and category, then
-- filters; updated_at, which every projected event changes, leaves the
-- index (as on PostgreSQL), which no longer has an entry to move for it.
DROP INDEX intake_cases_ref;
CREATE INDEX intake_cases_ref ON intake_cases (ref_hash, category);

-- +goose Down
DROP INDEX intake_cases_ref;
CREATE INDEX intake_cases_ref ON intake_cases (ref_hash, category, updated_at);
