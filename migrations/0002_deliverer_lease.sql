-- One active alert deliverer per state database: two `canary run` processes (or a future
-- delivering `canary check`) pointed at the same state DB would otherwise both send every
-- pending outbox row. Same shape and rules as `cycle_lease`: one row, taken under
-- BEGIN IMMEDIATE, expiring so a crashed holder blocks delivery for at most one TTL.
CREATE TABLE deliverer_lease (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    holder      TEXT    NOT NULL,
    acquired_at INTEGER NOT NULL,                    -- ms
    expires_at  INTEGER NOT NULL                     -- ms
) STRICT;
