-- +goose Up
-- A fund's or payee's name belongs to one id (ADR 30): the creating
-- command reserves it here before it appends the creation event, so of
-- two creations of one name exactly one is appended. The read models no
-- longer refuse a name: they hold what the log holds, and a log written
-- before this may hold two creations of one name.
CREATE TABLE disb_names (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    id   TEXT NOT NULL,
    at   BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);
INSERT INTO disb_names (kind, name, id, at) SELECT 'fund', name, id, created_at FROM disb_funds;
INSERT INTO disb_names (kind, name, id, at) SELECT 'payee', name, id, created_at FROM disb_payees;
ALTER TABLE disb_funds DROP CONSTRAINT disb_funds_name_key;
ALTER TABLE disb_payees DROP CONSTRAINT disb_payees_name_key;

-- +goose Down
ALTER TABLE disb_payees ADD CONSTRAINT disb_payees_name_key UNIQUE (name);
ALTER TABLE disb_funds ADD CONSTRAINT disb_funds_name_key UNIQUE (name);
DROP TABLE disb_names;
