//! The transition diff (DESIGN §7): from the previous per-invariant states and this cycle's
//! outcomes, the next states and the fired/resolved transitions. Pure.
//!
//! Rules: an invariant *fires* when it has been red for `fire_after` consecutive cycles while not
//! firing (never evaluated counts as not firing); it *resolves* when it has been green for
//! `resolve_after` consecutive cycles while firing. Staying red, and unknown, change nothing about
//! firing: unknown never resolves an open red. Invariants absent from `outcomes` (not selected
//! this cycle) keep their state untouched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::snapshot::Millis;
use crate::violation::{Outcome, Severity};

/// Persisted per-invariant state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantState {
    /// Catalog id.
    pub invariant_id: String,
    /// The last outcome.
    pub state: Outcome,
    /// When the current run of `state` began.
    pub since_ms: Millis,
    /// How many consecutive cycles have had `state`.
    pub consecutive: u32,
    /// A fired transition is open (not yet resolved).
    pub firing: bool,
    /// Severity of the open incident (set when it fired), for the resolved message.
    pub severity: Option<Severity>,
    /// When it last fired.
    pub last_fired_at_ms: Option<Millis>,
    /// When it last resolved.
    pub last_resolved_at_ms: Option<Millis>,
}

/// Fired or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    /// Turned red.
    Fired,
    /// Turned green after red.
    Resolved,
}

impl TransitionKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionKind::Fired => "fired",
            TransitionKind::Resolved => "resolved",
        }
    }
}

/// One alertable change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Catalog id.
    pub invariant_id: String,
    /// Fired or resolved.
    pub kind: TransitionKind,
    /// Severity of the incident.
    pub severity: Severity,
    /// The cycle's snapshot time.
    pub at_ms: Millis,
    /// Resolved: when the incident fired (so the message can say how long it was red).
    /// Fired: when the previous incident resolved, if any (so it can say "last red Xm ago").
    /// Reminder: when the last notification for this still-open incident was sent.
    pub previous_at_ms: Option<Millis>,
    /// A `renotify_after` reminder for an incident that is still red (kind `Fired`, stored as
    /// such: it is one more notification of the same incident, not a new one).
    #[serde(default)]
    pub reminder: bool,
}

/// Consecutive-cycle thresholds and the reminder interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hysteresis {
    /// Red cycles needed to fire (≥ 1).
    pub fire_after: u32,
    /// Green cycles needed to resolve (≥ 1).
    pub resolve_after: u32,
    /// While an incident stays red, notify again once this long has passed since the last
    /// notification (`None`: never).
    pub renotify_after_ms: Option<Millis>,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            fire_after: 1,
            resolve_after: 1,
            renotify_after_ms: None,
        }
    }
}

/// This cycle's verdict on one invariant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Green, red or unknown.
    pub outcome: Outcome,
    /// Worst violation severity when red.
    pub severity: Option<Severity>,
}

/// Whether a still-red incident is due a reminder: only while red in this very cycle (unknown
/// never notifies), and only once `renotify_after` has passed since the last notification.
fn reminder_due(state: &InvariantState, at_ms: Millis, hysteresis: Hysteresis) -> bool {
    match (hysteresis.renotify_after_ms, state.last_fired_at_ms) {
        (Some(every), Some(last)) => at_ms.saturating_sub(last) >= every.max(1),
        _ => false,
    }
}

/// Computes next states and transitions. Returns only the states that changed hands this cycle
/// (every invariant in `verdicts`), in id order, and the transitions in id order.
pub fn diff(
    previous: &BTreeMap<String, InvariantState>,
    verdicts: &BTreeMap<String, Verdict>,
    at_ms: Millis,
    hysteresis: Hysteresis,
) -> (Vec<InvariantState>, Vec<Transition>) {
    let mut states = Vec::with_capacity(verdicts.len());
    let mut transitions = Vec::new();
    for (id, verdict) in verdicts {
        let (state, transition) = step(id, previous.get(id), *verdict, at_ms, hysteresis);
        states.push(state);
        transitions.extend(transition);
    }
    (states, transitions)
}

fn step(
    id: &str,
    prev: Option<&InvariantState>,
    verdict: Verdict,
    at_ms: Millis,
    hysteresis: Hysteresis,
) -> (InvariantState, Option<Transition>) {
    let mut next = match prev {
        Some(p) => p.clone(),
        None => InvariantState {
            invariant_id: id.to_owned(),
            state: verdict.outcome,
            since_ms: at_ms,
            consecutive: 0,
            firing: false,
            severity: None,
            last_fired_at_ms: None,
            last_resolved_at_ms: None,
        },
    };
    if prev.is_some_and(|p| p.state == verdict.outcome) {
        next.consecutive = next.consecutive.saturating_add(1);
    } else {
        next.state = verdict.outcome;
        next.since_ms = at_ms;
        next.consecutive = 1;
    }

    let mut transition = None;
    match verdict.outcome {
        Outcome::Red if !next.firing && next.consecutive >= hysteresis.fire_after.max(1) => {
            let severity = verdict.severity.unwrap_or(Severity::Critical);
            transition = Some(Transition {
                invariant_id: id.to_owned(),
                kind: TransitionKind::Fired,
                severity,
                at_ms,
                previous_at_ms: next.last_resolved_at_ms,
                reminder: false,
            });
            next.firing = true;
            next.severity = Some(severity);
            next.last_fired_at_ms = Some(at_ms);
        }
        Outcome::Green if next.firing && next.consecutive >= hysteresis.resolve_after.max(1) => {
            transition = Some(Transition {
                invariant_id: id.to_owned(),
                kind: TransitionKind::Resolved,
                severity: next.severity.unwrap_or(Severity::Critical),
                at_ms,
                previous_at_ms: next.last_fired_at_ms,
                reminder: false,
            });
            next.firing = false;
            next.last_resolved_at_ms = Some(at_ms);
        }
        Outcome::Red if next.firing && reminder_due(&next, at_ms, hysteresis) => {
            transition = Some(Transition {
                invariant_id: id.to_owned(),
                kind: TransitionKind::Fired,
                severity: next.severity.unwrap_or(Severity::Critical),
                at_ms,
                previous_at_ms: next.last_fired_at_ms,
                reminder: true,
            });
            next.last_fired_at_ms = Some(at_ms);
        }
        _ => {}
    }
    (next, transition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(id: &str, outcome: Outcome) -> BTreeMap<String, Verdict> {
        let severity = (outcome == Outcome::Red).then_some(Severity::Critical);
        BTreeMap::from([(id.to_owned(), Verdict { outcome, severity })])
    }

    /// Runs a sequence of outcomes for one invariant, returning the transition kinds.
    fn replay(outcomes: &[Outcome], h: Hysteresis) -> Vec<TransitionKind> {
        let mut states = BTreeMap::new();
        let mut kinds = Vec::new();
        for (i, outcome) in outcomes.iter().enumerate() {
            let (next, ts) = diff(&states, &verdicts("S-01", *outcome), i as i64 * 1000, h);
            for s in next {
                states.insert(s.invariant_id.clone(), s);
            }
            kinds.extend(ts.into_iter().map(|t| t.kind));
        }
        kinds
    }

    use Outcome::{Green as G, Red as R, Unknown as U};
    use TransitionKind::{Fired, Resolved};

    #[test]
    fn red_after_never_evaluated_fires_once() {
        assert_eq!(replay(&[R, R, R], Hysteresis::default()), [Fired]);
    }

    #[test]
    fn red_green_red_gives_two_fired_one_resolved() {
        assert_eq!(
            replay(&[G, R, G, R], Hysteresis::default()),
            [Fired, Resolved, Fired]
        );
    }

    #[test]
    fn unknown_neither_fires_nor_resolves() {
        assert_eq!(replay(&[R, U, U, R], Hysteresis::default()), [Fired]);
        assert_eq!(replay(&[U, U], Hysteresis::default()), []);
        assert_eq!(replay(&[G, U, G], Hysteresis::default()), []);
    }

    #[test]
    fn hysteresis_needs_consecutive_cycles() {
        let h = Hysteresis {
            fire_after: 2,
            resolve_after: 3,
            renotify_after_ms: None,
        };
        assert_eq!(replay(&[R, G, R, G], h), []);
        assert_eq!(replay(&[R, R, G, G, R, G, G, G], h), [Fired, Resolved]);
    }

    #[test]
    fn resolved_carries_when_it_fired_and_fired_carries_last_resolution() {
        let mut states = BTreeMap::new();
        let h = Hysteresis::default();
        let mut all = Vec::new();
        for (at, o) in [(1, R), (5, G), (9, R)] {
            let (next, ts) = diff(&states, &verdicts("E-02", o), at, h);
            states = next
                .into_iter()
                .map(|s| (s.invariant_id.clone(), s))
                .collect();
            all.extend(ts);
        }
        assert_eq!(all[1].previous_at_ms, Some(1));
        assert_eq!(all[2].previous_at_ms, Some(5));
    }

    #[test]
    fn renotify_reminds_while_red_and_never_on_unknown() {
        let h = Hysteresis {
            renotify_after_ms: Some(2_500),
            ..Hysteresis::default()
        };
        // Cycles every second: fired at 0, reminders at 3 and 6 (2.5 s after each notification).
        let mut outcomes = vec![R; 7];
        let kinds = replay(&outcomes, h);
        assert_eq!(kinds, [Fired, Fired, Fired]);
        outcomes[3] = U;
        assert_eq!(
            replay(&outcomes, h),
            [Fired, Fired],
            "no reminder on an unknown cycle"
        );
        assert_eq!(
            replay(&[R, R, R, R], Hysteresis::default()),
            [Fired],
            "off by default"
        );
    }

    #[test]
    fn invariants_not_in_this_cycle_keep_their_state() {
        let (states, _) = diff(
            &BTreeMap::new(),
            &verdicts("S-01", R),
            0,
            Hysteresis::default(),
        );
        let prev: BTreeMap<_, _> = states
            .into_iter()
            .map(|s| (s.invariant_id.clone(), s))
            .collect();
        let (next, ts) = diff(&prev, &verdicts("E-02", G), 1, Hysteresis::default());
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].invariant_id, "E-02");
        assert!(ts.is_empty());
    }
}
