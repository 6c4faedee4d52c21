-- Schema version 4 (issue 14): silences, and which transitions they kept out of Slack.
--
--   * silences           operator-made mutes (CLI `canary silence`, `/api/canary/silences`).
--                        A silence names one or more invariant ids (or `source:<name>` for a blind
--                        source) and optionally a subject glob; it is active on [starts_at,
--                        ends_at), or until expired_at when expired early. end_noted_at is set by
--                        the first cycle that sees it over (so its end is logged exactly once).
--   * transitions        every transition is still recorded. silenced_by names what covered it
--                        (`silence:<id>` or `window:<n>` for alerts.maintenance_windows[n]); NULL =
--                        announced (queued for Slack, or a silent sink). released_at is set when a
--                        silenced transition was announced after all because its silence ended
--                        while Slack's view of the invariant was out of date (one message, then).

CREATE TABLE silences (
    id            INTEGER PRIMARY KEY,
    invariant_ids TEXT    NOT NULL CHECK (json_valid(invariant_ids)
                                          AND json_array_length(invariant_ids) >= 1),
    subject_glob  TEXT,
    starts_at     INTEGER NOT NULL,                  -- ms
    ends_at       INTEGER NOT NULL CHECK (ends_at > starts_at),
    author        TEXT    NOT NULL,
    comment       TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,                  -- ms
    expired_at    INTEGER,                           -- ms, ended early by an operator
    end_noted_at  INTEGER                            -- ms, the cycle that logged its end
) STRICT;

-- The cycle's lookup of silences that are or may become active.
CREATE INDEX silences_ends_at ON silences (ends_at);

ALTER TABLE transitions ADD COLUMN silenced_by TEXT;
ALTER TABLE transitions ADD COLUMN released_at INTEGER;

-- The cycle's lookup of transitions still waiting for their silence to end.
CREATE INDEX transitions_silenced ON transitions (invariant_id, id)
    WHERE silenced_by IS NOT NULL AND released_at IS NULL;
