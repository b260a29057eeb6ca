-- +goose Up
-- Which events each consumer has applied: written in the same transaction
-- as the consumer's effect, so a redelivered event is recognised.
CREATE TABLE event_seen (
    consumer TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (consumer, seq)
);

-- Events a consumer gave up on, with the reason; also published to the
-- dead-letter subject.
CREATE TABLE dead_letters (
    consumer TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    subject  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    reason   TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (consumer, seq)
);

-- +goose Down
DROP TABLE dead_letters;
DROP TABLE event_seen;
