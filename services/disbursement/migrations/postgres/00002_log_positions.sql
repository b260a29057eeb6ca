-- +goose Up
-- Funds and payees are read models of their events (ADR 24): the log
-- position of the fund's event, and of the event that set the payee's
-- account. 0: a row from before, which disbursement records in the log
-- when it starts.
ALTER TABLE disb_funds ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE disb_payees ADD COLUMN account_seq BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE disb_payees DROP COLUMN account_seq;
ALTER TABLE disb_funds DROP COLUMN seq;
