-- Schema version 3 (issue 11 §1): violations are stored as EPISODES, and every cycle's full
-- violation count is kept per invariant, so what a cycle writes grows with what changed, not with
-- how much is red.
--
--   * violation_episodes  one row per (invariant, subject) while the subject stays in violation:
--                         first seen, the latest evidence (rewritten only when it changed), closed
--                         when a cycle that evaluated the invariant no longer finds the subject.
--                         Unknown closes nothing. "Last seen" and "cycles" of an OPEN episode are
--                         derived from cycle_invariants (the red cycles of its invariant since it
--                         opened), so nothing is rewritten per cycle; they are frozen on close.
--   * cycle_invariants    one row per cycle and RED invariant: the full violation count, how many
--                         were kept as evidence (`stored`, capped by
--                         state.max_subjects_per_invariant), the worst severity. Green invariants
--                         need no row (cycles.outcomes says green, the count is 0).
--
-- Existing `violations` rows are converted, then the table is dropped:
--   * per (cycle, invariant): a cycle_invariants row with the row count (violations = stored);
--   * per (invariant, subject): ONE episode from its first to its last sighting, the evidence of
--     its newest row. It is open when the subject was in the newest cycle that recorded any
--     violation of its invariant and that invariant is red in the newest cycle that ran it;
--     otherwise closed at the first later cycle that evaluated the invariant (or at its last
--     sighting when there is none). A subject that came and went several times becomes one
--     episode spanning all its sightings: older history was not kept per episode.

CREATE TABLE cycle_invariants (
    cycle_id     INTEGER NOT NULL REFERENCES cycles (id) ON DELETE CASCADE,
    invariant_id TEXT    NOT NULL,
    severity     TEXT    NOT NULL CHECK (severity IN ('minor', 'major', 'critical')),
    violations   INTEGER NOT NULL CHECK (violations >= 1),
    stored       INTEGER NOT NULL CHECK (stored >= 0 AND stored <= violations),
    PRIMARY KEY (invariant_id, cycle_id)
) STRICT, WITHOUT ROWID;

-- Retention deletes by cycle.
CREATE INDEX cycle_invariants_cycle_id ON cycle_invariants (cycle_id);

CREATE TABLE violation_episodes (
    id              INTEGER PRIMARY KEY,
    invariant_id    TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    -- No foreign keys to cycles: retention prunes cycles while an episode stays open.
    first_cycle_id  INTEGER NOT NULL,
    first_seen      INTEGER NOT NULL,                 -- ms, snapshot that found it
    -- Set when the episode closes (NULL while open: derived from cycle_invariants).
    last_cycle_id   INTEGER,
    last_seen       INTEGER,                          -- ms
    cycles          INTEGER CHECK (cycles IS NULL OR cycles >= 1),
    closed_cycle_id INTEGER,
    closed_at       INTEGER,                          -- ms, snapshot that no longer found it
    -- The latest evidence, and when it was taken.
    evidence_cycle_id INTEGER NOT NULL,
    evidence_at     INTEGER NOT NULL,                 -- ms
    tier            TEXT    NOT NULL CHECK (tier IN ('A', 'B')),
    severity        TEXT    NOT NULL CHECK (severity IN ('minor', 'major', 'critical')),
    summary         TEXT    NOT NULL,
    observed_state  TEXT    NOT NULL CHECK (json_valid(observed_state)),
    signal          TEXT    NOT NULL,
    CHECK ((closed_at IS NULL) = (closed_cycle_id IS NULL)),
    CHECK ((closed_at IS NULL) = (last_seen IS NULL))
) STRICT;

-- At most one open episode per invariant and subject; the per-cycle lookup of open episodes.
CREATE UNIQUE INDEX violation_episodes_open ON violation_episodes (invariant_id, subject)
    WHERE closed_at IS NULL;
-- History newest first, filtered by invariant or not.
CREATE INDEX violation_episodes_invariant_first ON violation_episodes (invariant_id, first_seen);
CREATE INDEX violation_episodes_first_seen ON violation_episodes (first_seen);
-- Retention: closed episodes by age.
CREATE INDEX violation_episodes_closed_at ON violation_episodes (closed_at)
    WHERE closed_at IS NOT NULL;

-- ---- conversion of schema-2 rows ----

INSERT INTO cycle_invariants (cycle_id, invariant_id, severity, violations, stored)
SELECT cycle_id, invariant_id,
       CASE MAX(CASE severity WHEN 'critical' THEN 3 WHEN 'major' THEN 2 ELSE 1 END)
           WHEN 3 THEN 'critical' WHEN 2 THEN 'major' ELSE 'minor' END,
       COUNT(*), COUNT(*)
FROM violations
GROUP BY cycle_id, invariant_id;

-- The newest row of each (invariant, subject) carries the evidence.
CREATE TEMP TABLE episode_seed AS
SELECT v.invariant_id, v.subject,
       (SELECT MIN(cycle_id) FROM violations f
         WHERE f.invariant_id = v.invariant_id AND f.subject = v.subject) AS first_cycle_id,
       (SELECT MIN(taken_at) FROM violations f
         WHERE f.invariant_id = v.invariant_id AND f.subject = v.subject) AS first_seen,
       (SELECT COUNT(DISTINCT cycle_id) FROM violations f
         WHERE f.invariant_id = v.invariant_id AND f.subject = v.subject) AS cycles,
       v.cycle_id AS last_cycle_id, v.taken_at AS last_seen,
       v.tier, v.severity, v.summary, v.observed_state, v.signal
FROM violations v
WHERE v.id IN (SELECT MAX(id) FROM violations GROUP BY invariant_id, subject);

-- Open: seen in its invariant's newest red cycle, and that invariant still red in the newest
-- cycle that ran it (outcomes is a JSON object id -> state).
CREATE TEMP TABLE episode_open AS
SELECT s.invariant_id, s.subject
FROM episode_seed s
WHERE s.last_cycle_id = (SELECT MAX(cycle_id) FROM cycle_invariants ci
                         WHERE ci.invariant_id = s.invariant_id)
  AND (SELECT json_extract(c.outcomes, '$."' || s.invariant_id || '"')
       FROM cycles c
       WHERE json_type(c.outcomes, '$."' || s.invariant_id || '"') IS NOT NULL
         AND json_extract(c.outcomes, '$."' || s.invariant_id || '"') <> 'unknown'
       ORDER BY c.id DESC LIMIT 1) = 'red';

INSERT INTO violation_episodes (invariant_id, subject, first_cycle_id, first_seen,
                                last_cycle_id, last_seen, cycles, closed_cycle_id, closed_at,
                                evidence_cycle_id, evidence_at,
                                tier, severity, summary, observed_state, signal)
SELECT s.invariant_id, s.subject, s.first_cycle_id, s.first_seen,
       CASE WHEN o.subject IS NULL THEN s.last_cycle_id END,
       CASE WHEN o.subject IS NULL THEN s.last_seen END,
       CASE WHEN o.subject IS NULL THEN s.cycles END,
       CASE WHEN o.subject IS NULL THEN COALESCE(
           (SELECT MIN(c.id) FROM cycles c WHERE c.id > s.last_cycle_id
              AND json_extract(c.outcomes, '$."' || s.invariant_id || '"') IN ('green', 'red')),
           s.last_cycle_id) END,
       CASE WHEN o.subject IS NULL THEN COALESCE(
           (SELECT c.taken_at FROM cycles c WHERE c.id > s.last_cycle_id
              AND json_extract(c.outcomes, '$."' || s.invariant_id || '"') IN ('green', 'red')
            ORDER BY c.id LIMIT 1),
           s.last_seen) END,
       s.last_cycle_id, s.last_seen,
       s.tier, s.severity, s.summary, s.observed_state, s.signal
FROM episode_seed s
LEFT JOIN episode_open o ON o.invariant_id = s.invariant_id AND o.subject = s.subject
ORDER BY s.first_cycle_id, s.invariant_id, s.subject;

DROP TABLE episode_open;
DROP TABLE episode_seed;
DROP TABLE violations;
