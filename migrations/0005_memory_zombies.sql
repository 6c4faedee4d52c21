-- Schema version 5 (issue 12): R-01's dwell memory. One row per agent container and zombie pid
-- while the pid persists: keyed by container id + the container's start time (the generation:
-- a restarted container starts fresh) + pid. first_seen is written when the dwell starts and
-- never rewritten while the pid persists; last_seen moves every cycle that sees it.
CREATE TABLE memory_zombies (
    container_id TEXT    NOT NULL,
    started_at   INTEGER,                            -- ms; NULL when the engine gave none
    pid          INTEGER NOT NULL,
    agent        TEXT    NOT NULL,
    first_count  INTEGER NOT NULL,                   -- zombies in the container when the dwell began
    first_seen   INTEGER NOT NULL,                   -- ms
    last_seen    INTEGER NOT NULL,                   -- ms
    PRIMARY KEY (container_id, pid)
) STRICT, WITHOUT ROWID;
