-- +goose Up
-- The duplicate check finds cases by reference hash and category, then
-- filters; updated_at, which every projected event changes, leaves the
-- index, so that projecting an event into a case's row writes no index
-- entry (a HOT update) when its page has room, which the fill factor
-- keeps for the row's next versions.
DROP INDEX intake_cases_ref;
CREATE INDEX intake_cases_ref ON intake_cases (ref_hash, category);
ALTER TABLE intake_cases SET (fillfactor = 70);

-- +goose Down
ALTER TABLE intake_cases RESET (fillfactor);
DROP INDEX intake_cases_ref;
CREATE INDEX intake_cases_ref ON intake_cases (ref_hash, category, updated_at);
