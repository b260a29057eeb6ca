-- +goose Up
-- Whether the settlement callback of a payment was sent (the HTTP
-- simulator's callbacks, ADR 27).
ALTER TABLE provsim_payments ADD COLUMN notified INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE provsim_payments DROP COLUMN notified;
