-- canary state database, schema version 1 (DESIGN §6). Applied by `rusqlite_migration` from
-- `src/store/schema.rs`; never edit once released, add a numbered file instead.
--
-- Conventions:
--   * Every time column is INTEGER unix milliseconds (UTC). Columns keep DESIGN §6's names
--     (`started_at`, `taken_at`, `since`, `at`, ...) even though they hold ms, not text.
--   * JSON columns are TEXT checked with json_valid(), so a hand edit cannot plant garbage that
--     the history queries would choke on later.
--   * Tables are STRICT so an integer time can never silently become a string.
--
-- Additions beyond DESIGN §6 (kept in sync with the issue note):
--   * cycles.outcomes        per-invariant green/red/unknown of the cycle (JSON object)
--   * cycles.taken_at        the snapshot time of the cycle (what the cycle result calls taken_at)
--   * invariant_states.firing / .severity   needed for hysteresis and the resolved message
--   * transitions.previous_at               "last red Xm ago" / "red for Xm" in the alert text
--   * transitions.cycle_id is ON DELETE SET NULL so retention never removes an alert's transition
--   * alert_outbox.abandoned_at             DESIGN §7 "marked abandoned" after give_up_after
--   * memory_seen_terminal / memory_flags   the "memory tables for E-02 and H-01"
--   * cycle_lease                            DESIGN §2 cross-process single-flight lease
--   * extra indexes: violations(taken_at), cycles(started_at), transitions(cycle_id),
--     a partial index on pending outbox rows.

CREATE TABLE cycles (
    id                  INTEGER PRIMARY KEY,
    started_at          INTEGER NOT NULL,            -- ms
    finished_at         INTEGER NOT NULL,            -- ms
    duration_ms         REAL    NOT NULL,
    taken_at            INTEGER NOT NULL,            -- ms, the snapshot's one "now"
    "trigger"           TEXT    NOT NULL,            -- schedule | manual | api | ...
    checks_run          TEXT    NOT NULL CHECK (json_valid(checks_run)),          -- ["S-01", ...]
    outcomes            TEXT    NOT NULL CHECK (json_valid(outcomes)),            -- {"S-01": "red"}
    sources_unavailable TEXT    NOT NULL CHECK (json_valid(sources_unavailable)), -- [{source, error}]
    violation_count     INTEGER NOT NULL CHECK (violation_count >= 0)
) STRICT;

-- Retention deletes by age.
CREATE INDEX cycles_started_at ON cycles (started_at);

CREATE TABLE violations (
    id             INTEGER PRIMARY KEY,
    cycle_id       INTEGER NOT NULL REFERENCES cycles (id) ON DELETE CASCADE,
    invariant_id   TEXT    NOT NULL,
    tier           TEXT    NOT NULL CHECK (tier IN ('A', 'B')),
    severity       TEXT    NOT NULL CHECK (severity IN ('minor', 'major', 'critical')),
    subject        TEXT    NOT NULL,
    summary        TEXT    NOT NULL,
    observed_state TEXT    NOT NULL CHECK (json_valid(observed_state)),
    signal         TEXT    NOT NULL,
    taken_at       INTEGER NOT NULL                  -- ms, copied from the cycle
) STRICT;

-- History filtered by invariant, newest first.
CREATE INDEX violations_invariant_taken_at ON violations (invariant_id, taken_at);
-- Cascade deletes and "violations of cycle N".
CREATE INDEX violations_cycle_id ON violations (cycle_id);
-- Unfiltered history and stats by time window.
CREATE INDEX violations_taken_at ON violations (taken_at);

CREATE TABLE invariant_states (
    invariant_id     TEXT    PRIMARY KEY,
    state            TEXT    NOT NULL CHECK (state IN ('green', 'red', 'unknown')),
    since            INTEGER NOT NULL,               -- ms, start of the current run of `state`
    consecutive      INTEGER NOT NULL CHECK (consecutive >= 0),
    firing           INTEGER NOT NULL CHECK (firing IN (0, 1)),
    severity         TEXT    CHECK (severity IS NULL OR severity IN ('minor', 'major', 'critical')),
    last_fired_at    INTEGER,                        -- ms
    last_resolved_at INTEGER                         -- ms
) STRICT, WITHOUT ROWID;

CREATE TABLE transitions (
    id           INTEGER PRIMARY KEY,
    -- SET NULL, not CASCADE: pruning an old cycle must never take an undelivered alert with it.
    cycle_id     INTEGER REFERENCES cycles (id) ON DELETE SET NULL,
    invariant_id TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('fired', 'resolved')),
    severity     TEXT    NOT NULL CHECK (severity IN ('minor', 'major', 'critical')),
    at           INTEGER NOT NULL,                   -- ms
    previous_at  INTEGER                             -- ms
) STRICT;

-- Without it every pruned cycle would scan transitions to apply SET NULL.
CREATE INDEX transitions_cycle_id ON transitions (cycle_id);
CREATE INDEX transitions_invariant_at ON transitions (invariant_id, at);

CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY,
    transition_id   INTEGER NOT NULL UNIQUE REFERENCES transitions (id),
    payload         TEXT    NOT NULL CHECK (json_valid(payload)),
    created_at      INTEGER NOT NULL,                -- ms
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,                -- ms
    delivered_at    INTEGER,                         -- ms
    last_error      TEXT,
    abandoned_at    INTEGER                          -- ms
) STRICT;

-- The deliverer only ever looks at pending rows; keep that lookup independent of history size.
CREATE INDEX alert_outbox_pending ON alert_outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND abandoned_at IS NULL;

-- E-02: execution id -> terminal status seen recently.
CREATE TABLE memory_seen_terminal (
    execution_id TEXT    PRIMARY KEY,
    status       TEXT    NOT NULL,
    seen_at      INTEGER NOT NULL                    -- ms
) STRICT, WITHOUT ROWID;

-- Scalar memory; H-01 stores 'h01.blind_suspected_since' (ms). Absent key = no suspicion.
CREATE TABLE memory_flags (
    key   TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- DESIGN §2: at most one row; taken under BEGIN IMMEDIATE. A row whose expires_at lies in the
-- past is free, so a crashed holder blocks for at most one lease TTL.
CREATE TABLE cycle_lease (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    holder      TEXT    NOT NULL,
    acquired_at INTEGER NOT NULL,                    -- ms
    expires_at  INTEGER NOT NULL                     -- ms
) STRICT;
