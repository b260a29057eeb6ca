-- +goose Up
-- The duplicate check at filing looks cases up by the keyed hash of their
-- beneficiary reference (base64, as in the stored state) and category.
ALTER TABLE intake_cases ADD COLUMN ref_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE intake_cases ADD COLUMN category TEXT NOT NULL DEFAULT '';
UPDATE intake_cases SET ref_hash = COALESCE(state::json->>'BeneficiaryRefHash', ''),
    category = COALESCE(state::json->>'Category', '');
CREATE INDEX intake_cases_ref ON intake_cases (ref_hash, category, updated_at);

-- +goose Down
DROP INDEX intake_cases_ref;
ALTER TABLE intake_cases DROP COLUMN category;
ALTER TABLE intake_cases DROP COLUMN ref_hash;
