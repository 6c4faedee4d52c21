//! "canary is blind" (DESIGN §5, issue 11 §4): each platform source's readability as a
//! pseudo-invariant state keyed `source:<name>` (`source:redis`, `source:sqlite`), so a source
//! that stays unreadable fires ONE critical alert and resolves ONCE when it is readable again,
//! through the very same state machine ([`crate::transitions::diff`]), `invariant_states` rows,
//! `transitions` rows and outbox as the invariants (silences, history and metrics can follow).
//!
//! Decisions:
//! - `blind_after` is a count of *consecutive unavailable cycles* (the `fire_after` of these
//!   pseudo states); a readable cycle resets it, and one readable cycle resolves.
//! - A source neither read nor reported unavailable this cycle (not configured, not needed) gets
//!   no verdict: its state stays untouched, like an invariant that was not selected.
//! - These ids never enter the cycle's `checks_run` / `outcomes` (a public contract): the cycle
//!   result reports them in its own `blind` section.
//!
//! Pure: it must not read clocks, the state DB or the stores; it only maps a [`Snapshot`] to
//! verdicts.

use std::collections::BTreeMap;

use crate::snapshot::{Millis, Snapshot, Source};
use crate::transitions::{Hysteresis, Verdict};
use crate::violation::{Outcome, Severity};

/// Prefix of the pseudo-invariant ids (never a catalog or custom id: those have no `:`).
pub const ID_PREFIX: &str = "source:";

/// Every source canary knows, in a stable order (a new [`Source`] variant is added here too;
/// the `sources_are_complete` test fails until it is).
pub const SOURCES: [Source; 4] = [
    Source::Sqlite,
    Source::Redis,
    Source::Docker,
    Source::QueueCount,
];

/// The pseudo-invariant id of `source`: `source:redis`.
pub fn state_id(source: Source) -> String {
    format!("{ID_PREFIX}{}", source.as_str())
}

/// The source a pseudo-invariant id names (`None` for an ordinary invariant id).
pub fn source_of(id: &str) -> Option<Source> {
    let name = id.strip_prefix(ID_PREFIX)?;
    SOURCES.into_iter().find(|s| s.as_str() == name)
}

/// This cycle's verdict per source: red (critical) when it is listed unavailable, green when it
/// was read, nothing when it was neither (its state is left as it was).
pub fn verdicts(snapshot: &Snapshot) -> BTreeMap<String, Verdict> {
    SOURCES
        .into_iter()
        .filter_map(|source| {
            let unreadable = snapshot
                .sources_unavailable
                .iter()
                .any(|u| u.source == source);
            let verdict = if unreadable {
                Verdict {
                    outcome: Outcome::Red,
                    severity: Some(Severity::Critical),
                }
            } else if snapshot.has(source) {
                Verdict {
                    outcome: Outcome::Green,
                    severity: None,
                }
            } else {
                return None;
            };
            Some((state_id(source), verdict))
        })
        .collect()
}

/// The hysteresis of the source states: fire after `blind_after` consecutive unreadable cycles
/// (at least 1), resolve after one readable cycle, remind like the invariants do.
pub fn hysteresis(blind_after: u32, renotify_after_ms: Option<Millis>) -> Hysteresis {
    Hysteresis {
        fire_after: blind_after.max(1),
        resolve_after: 1,
        renotify_after_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{RedisState, SourceUnavailable, SqlState};
    use crate::transitions::{InvariantState, TransitionKind, diff};

    fn snapshot(redis: bool, sqlite: bool) -> Snapshot {
        let mut s = Snapshot::default();
        if redis {
            s.redis = Some(RedisState::default());
        } else {
            s.sources_unavailable.push(SourceUnavailable {
                source: Source::Redis,
                error: "connection refused".to_owned(),
            });
        }
        if sqlite {
            s.sql = Some(SqlState::default());
        } else {
            s.sources_unavailable.push(SourceUnavailable {
                source: Source::Sqlite,
                error: "unable to open database file".to_owned(),
            });
        }
        s
    }

    /// Runs the cycles (redis readable?) and returns the `source:redis` transitions.
    fn replay(readable: &[bool], blind_after: u32) -> Vec<TransitionKind> {
        let mut states: BTreeMap<String, InvariantState> = BTreeMap::new();
        let mut kinds = Vec::new();
        for (i, r) in readable.iter().enumerate() {
            let v = verdicts(&snapshot(*r, true));
            let (next, ts) = diff(&states, &v, i as i64, hysteresis(blind_after, None));
            states.extend(next.into_iter().map(|s| (s.invariant_id.clone(), s)));
            kinds.extend(
                ts.into_iter()
                    .filter(|t| t.invariant_id == "source:redis")
                    .map(|t| t.kind),
            );
        }
        kinds
    }

    use TransitionKind::{Fired, Resolved};

    #[test]
    fn unreadable_for_blind_after_cycles_fires_once_and_resolves_once() {
        assert_eq!(replay(&[false, false], 3), []);
        assert_eq!(replay(&[false, false, false], 3), [Fired]);
        assert_eq!(
            replay(&[true, false, false, false, false, false, true, true], 3),
            [Fired, Resolved]
        );
        assert_eq!(replay(&[false, false, true, false, false, true], 3), []);
        assert_eq!(replay(&[false], 1), [Fired]);
        assert_eq!(replay(&[false], 0), [Fired], "0 is read as 1");
    }

    #[test]
    fn verdicts_are_critical_red_green_or_absent() {
        let v = verdicts(&snapshot(false, true));
        assert_eq!(v["source:redis"].outcome, Outcome::Red);
        assert_eq!(v["source:redis"].severity, Some(Severity::Critical));
        assert_eq!(v["source:sqlite"].outcome, Outcome::Green);
        assert!(
            verdicts(&Snapshot::default()).is_empty(),
            "not read, not failed"
        );
    }

    #[test]
    fn sources_are_complete() {
        // An exhaustive match: a new variant does not compile until it is listed in SOURCES.
        for source in SOURCES {
            match source {
                Source::Sqlite | Source::Redis | Source::Docker | Source::QueueCount => {}
            }
        }
        assert_eq!(SOURCES.len(), 4);
    }

    #[test]
    fn ids_round_trip_and_never_name_an_invariant() {
        for source in SOURCES {
            assert_eq!(source_of(&state_id(source)), Some(source));
        }
        assert_eq!(source_of("S-01"), None);
        // The serialized name (sources_unavailable, the API) is the same name.
        for source in SOURCES {
            assert_eq!(
                serde_json::to_value(source).ok(),
                Some(source.as_str().into())
            );
        }
        assert_eq!(source_of("source:kafka"), None);
    }
}
