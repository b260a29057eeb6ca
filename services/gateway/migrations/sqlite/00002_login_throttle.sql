-- +goose Up
-- Failed sign-ins counted per account ('account', username), per client
-- address ('addr', address) and per both ('pair', "username address"),
-- shared by every gateway replica (ThrottlePolicy). Times in microseconds
-- since the epoch; 0 is never.
CREATE TABLE gateway_login_throttle (
    scope         TEXT NOT NULL,
    key           TEXT NOT NULL,
    failures      INTEGER NOT NULL,
    last_failure  INTEGER NOT NULL,
    blocked_until INTEGER NOT NULL,
    -- the last successful sign-in of the pair: its address is known
    succeeded_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

-- +goose Down
DROP TABLE gateway_login_throttle;
