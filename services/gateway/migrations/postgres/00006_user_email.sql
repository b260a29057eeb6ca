-- +goose Up
-- An account's e-mail address (empty: none), where notify e-mails it
-- (ADR 0028); it travels in UserCreated and UserChanged.
ALTER TABLE gateway_users ADD COLUMN email TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE gateway_users DROP COLUMN email;
