//! **E-02 No phantom reversal** — tier A, critical; needs SQLite (with `completed_at`) and memory.
//!
//! Rule: a terminal execution never becomes non-terminal. Each cycle, terminal rows completed
//! within `window_seconds` (1800) of `taken_at` are remembered as `id → status, seen_at`; entries
//! first seen more than `retention_seconds` (3600) ago are forgotten. Any remembered id whose row
//! is now non-terminal (`running`, `queued`, or any word outside the terminal set) is a violation
//! carrying the previous terminal status and the current one.
//!
//! Guards: a stale cleanup pass or a late worker overwriting a finished execution back to
//! `running` (lost-update race). Rows with an unparseable `completed_at` are not remembered (the
//! collector notes them as anomalies). A reversed id stays remembered until its retention ends, so
//! the invariant stays red while the reversal persists; after that E-01 (stale running rows) is the
//! net. Rows deleted by a purge are not reversals.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use crate::params::{Params, Problems, human_seconds, invariant_params};
use crate::catalog::{Input, Invariant, InvariantMeta, Need};
use crate::lookup::{self, LookupMap};
use crate::memory::{Memory, SeenTerminal};
use crate::snapshot::{Execution, Field, Source};
use crate::violation::{Severity, Tier, Violation};

/// E-02.
#[derive(Debug)]
pub struct E02;

static META: InvariantMeta = InvariantMeta {
    id: "E-02",
    name: "No phantom reversal",
    tier: Tier::A,
    severity: Severity::Critical,
    needs: &[
        Need::Source(Source::Sqlite),
        Need::Field(Field::ExecCompletedAt),
    ],
    guards: "Stale cleanup passes or late workers overwriting a finished execution back to running.",
    runbook: "Find the writer that set the status after completion: compare the row's \
              completed_at with the last UPDATE in the platform logs; look for cleanup jobs \
              that write status without a WHERE status guard.",
};

invariant_params! {
    /// E-02 parameters.
    pub struct E02Params {
        /// Terminal rows completed within this window are remembered.
        window_seconds: i64 = 1800,
        /// Remembered ids are forgotten this long after they were first seen.
        retention_seconds: i64 = 3600,
    }
}

impl Invariant for E02 {
    fn meta(&self) -> &'static InvariantMeta {
        &META
    }

    fn rule(&self, params: &Params) -> String {
        format!("A terminal execution never becomes non-terminal (terminal rows completed in the last \
                 {} are remembered for {}).",
                human_seconds(params.e02.window_seconds), human_seconds(params.e02.retention_seconds))
    }

    #[cfg(any(test, feature = "testing"))]
    fn examples(&self, t0: i64) -> Vec<Violation> {
        use crate::testing::example as v;
        use serde_json::json;
        use crate::violation::Severity::Critical;
        let id = META.id;
        vec![v(
            id,
            Critical,
            "0d1e2f3a4b5c6d7e",
            "reversal",
            "execution 0d1e2f3a4b5c6d7e of agent agent-0061 went from success back to running",
            json!({"execution_id": "0d1e2f3a4b5c6d7e", "agent": "agent-0061", "previous_status": "success", "current_status": "running", "seen_terminal_at_ms": t0 - 60_000}),
        )]
    }

    fn validate(&self, params: &Params, problems: &mut Problems<'_>) {
        let p = &params.e02;
        if p.window_seconds <= 0 {
            problems.push("window_seconds", "must be greater than 0");
        }
        // Forgetting an id before it leaves the window would let a reversal go unseen.
        if p.retention_seconds < p.window_seconds {
            problems.push(
                "retention_seconds",
                format!(
                    "must be at least window_seconds ({}), got {}",
                    p.window_seconds, p.retention_seconds
                ),
            );
        }
    }

    fn check(&self, input: &Input<'_>) -> Vec<Violation> {
        let remembered = &input.memory.seen_terminal;
        if remembered.is_empty() {
            return Vec::new();
        }
        let reversal = |row: &Execution, seen: &SeenTerminal| {
            input.violation(
                &META,
                row.id.as_str(),
                "reversal",
                format!(
                    "execution {} of agent {} went from {} back to {}",
                    row.id, row.agent_name, seen.status, row.status
                ),
                json!({
                    "execution_id": row.id,
                    "agent": row.agent_name,
                    "previous_status": seen.status,
                    "current_status": row.status,
                    "seen_terminal_at_ms": seen.seen_at_ms,
                }),
            )
        };
        let rows = input
            .sql
            .executions
            .iter()
            .filter(|row| !row.phase.is_terminal());
        let mut remembered = Remembered::new(remembered, &input.sql.executions);
        rows.filter_map(|row| Some(reversal(row, remembered.find(&row.id)?)))
            .collect()
    }

    fn remember(&self, input: &Input<'_>, next: &mut Memory) {
        let now = input.now_ms();
        let window_ms = input.params.e02.window_seconds.saturating_mul(1000);
        let retention_ms = input.params.e02.retention_seconds.saturating_mul(1000);
        next.seen_terminal
            .retain(|_, seen| now.saturating_sub(seen.seen_at_ms) <= retention_ms);
        let recent = input.sql.executions.iter().filter(|row| {
            row.phase.is_terminal()
                && row
                    .completed_at_ms
                    .is_some_and(|at| now.saturating_sub(at) <= window_ms)
        });
        // In steady state nearly every recent row is already remembered: find the new ones
        // without allocating a key for the others.
        let fresh: Vec<&Execution> = {
            let mut known = Remembered::new(&next.seen_terminal, &input.sql.executions);
            recent.filter(|row| known.find(&row.id).is_none()).collect()
        };
        for row in fresh {
            // An id listed twice keeps its first status, as in input order.
            if next.seen_terminal.contains_key(row.id.as_str()) {
                continue;
            }
            next.seen_terminal.insert(
                Arc::from(row.id.as_str()),
                SeenTerminal {
                    status: Arc::from(row.status.as_str()),
                    seen_at_ms: now,
                },
            );
        }
    }
}

/// The rows are in ascending id order (as the collector delivers them; duplicates adjacent).
fn by_id(rows: &[Execution]) -> bool {
    rows.is_sorted_by(|a, b| a.id <= b.id)
}

/// The remembered entries, looked up by the ids of `rows` in their order: by one merge walk
/// beside the ordered memory when the rows come sorted by id (the collector's order), else
/// through a hash index (a hand-built snapshot; the ordered map costs a dozen string
/// comparisons per lookup).
enum Remembered<'m, V> {
    Walk(Walk<'m, V>),
    Index(LookupMap<&'m str, &'m V>),
}

impl<'m, V> Remembered<'m, V> {
    fn new(map: &'m BTreeMap<Arc<str>, V>, rows: &[Execution]) -> Self {
        if by_id(rows) {
            return Remembered::Walk(Walk::new(map));
        }
        let mut index = lookup::map(map.len());
        index.extend(map.iter().map(|(id, value)| (&**id, value)));
        Remembered::Index(index)
    }

    /// The entry for `id`, the id of the next row in the order `new` was given.
    fn find(&mut self, id: &str) -> Option<&'m V> {
        match self {
            Remembered::Walk(walk) => walk.find(id),
            Remembered::Index(index) => index.get(id).copied(),
        }
    }
}

/// Looks up ascending ids in an id-ordered map by walking it once alongside them: each entry
/// is passed at most once, so a whole cycle's look-ups cost one pass over the map.
struct Walk<'m, V> {
    entries: std::iter::Peekable<std::collections::btree_map::Iter<'m, Arc<str>, V>>,
}

impl<'m, V> Walk<'m, V> {
    fn new(map: &'m BTreeMap<Arc<str>, V>) -> Self {
        Walk {
            entries: map.iter().peekable(),
        }
    }

    /// The value for `id`, which must not be smaller than the previous id asked (an id asked
    /// again is found again).
    fn find(&mut self, id: &str) -> Option<&'m V> {
        while self.entries.next_if(|(key, _)| &***key < id).is_some() {}
        match self.entries.peek() {
            Some((key, value)) if &***key == id => Some(*value),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::evaluate::{Selection, evaluate};
    use crate::memory::{Memory, SeenTerminal};
    use crate::params::Params;
    use crate::snapshot::{Field, Phase, Source};
    use crate::testing::{SnapshotBuilder, T0, run_with};
    use crate::violation::Outcome;

    #[test]
    fn the_walk_finds_ascending_ids_and_repeats() {
        let map: std::collections::BTreeMap<std::sync::Arc<str>, u32> =
            [("b", 1), ("d", 2), ("f", 3)].map(|(k, v)| (k.into(), v)).into();
        let mut walk = super::Walk::new(&map);
        let found: Vec<Option<u32>> = ["a", "b", "b", "c", "d", "e", "g", "h"]
            .iter()
            .map(|id| walk.find(id).copied())
            .collect();
        assert_eq!(
            found,
            [None, Some(1), Some(1), None, Some(2), None, None, None]
        );
        assert!(super::by_id(&[]));
    }

    fn remembered(id: &str, status: &str, seen_at: i64) -> Memory {
        let mut m = Memory::default();
        m.seen_terminal.insert(
            id.into(),
            SeenTerminal {
                status: status.into(),
                seen_at_ms: seen_at,
            },
        );
        m
    }

    fn next_memory(snap: &crate::Snapshot, memory: &Memory) -> Memory {
        let only = ["E-02".to_owned()];
        evaluate(snap, memory, &Params::default(), Selection::Only(&only)).memory
    }

    #[test]
    fn remembers_recent_terminal_rows_and_then_catches_a_reversal() {
        let first = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "success", T0)
            .build();
        let memory = next_memory(&first, &Memory::default());
        assert_eq!(&*memory.seen_terminal["e1"].status, "success");

        let second = SnapshotBuilder::new()
            .at(T0 + 60_000)
            .agent("a")
            .running("e1", "a", T0)
            .build();
        let v = run_with("E-02", &second, &memory, &Params::default());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].subject, "e1");
        assert_eq!(v[0].observed_state["previous_status"], "success");
        assert_eq!(v[0].observed_state["current_status"], "running");
    }

    #[test]
    fn holds_while_the_row_stays_terminal() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "failed", T0)
            .build();
        assert!(
            run_with(
                "E-02",
                &snap,
                &remembered("e1", "failed", T0),
                &Params::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn any_non_terminal_word_is_a_reversal() {
        for (status, phase) in [
            ("queued", Phase::Queued),
            ("pending_retry", Phase::PendingRetry),
            ("weird", Phase::Other),
        ] {
            let snap = SnapshotBuilder::new()
                .agent("a")
                .with_status("e1", "a", status, phase)
                .build();
            let v = run_with(
                "E-02",
                &snap,
                &remembered("e1", "cancelled", T0),
                &Params::default(),
            );
            assert_eq!(v.len(), 1, "{status}");
        }
    }

    #[test]
    fn a_purged_row_is_not_a_reversal() {
        let snap = SnapshotBuilder::new().agent("a").build();
        assert!(
            run_with(
                "E-02",
                &snap,
                &remembered("e1", "success", T0),
                &Params::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn rows_completed_outside_the_window_are_not_remembered() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .terminal("old", "a", "success", T0 - 1_800_001)
            .terminal("edge", "a", "success", T0 - 1_800_000)
            .build();
        let memory = next_memory(&snap, &Memory::default());
        assert!(!memory.seen_terminal.contains_key("old"));
        assert!(memory.seen_terminal.contains_key("edge"));
    }

    #[test]
    fn unparseable_completion_is_not_remembered() {
        let mut b = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "success", T0);
        b.last_execution().completed_at_ms = None;
        assert!(
            next_memory(&b.build(), &Memory::default())
                .seen_terminal
                .is_empty()
        );
    }

    #[test]
    fn memory_is_dropped_after_retention_and_first_sighting_is_kept() {
        let snap = SnapshotBuilder::new()
            .agent("a")
            .terminal("e1", "a", "skipped", T0)
            .build();
        let memory = next_memory(&snap, &remembered("e1", "success", T0 - 1_000));
        assert_eq!(
            memory.seen_terminal["e1"].seen_at_ms,
            T0 - 1_000,
            "first sighting kept"
        );

        let later = SnapshotBuilder::new().at(T0 + 3_600_001).agent("a").build();
        assert!(
            next_memory(&later, &remembered("e1", "success", T0))
                .seen_terminal
                .is_empty()
        );
        let edge = SnapshotBuilder::new().at(T0 + 3_600_000).agent("a").build();
        assert_eq!(
            next_memory(&edge, &remembered("e1", "success", T0))
                .seen_terminal
                .len(),
            1
        );
    }

    #[test]
    fn unknown_without_completed_at_column_and_memory_untouched() {
        let snap = SnapshotBuilder::new()
            .missing_field(Field::ExecCompletedAt)
            .running("e1", "a", T0)
            .build();
        let memory = remembered("e1", "success", T0 - 3_600_000 * 5);
        let only = ["E-02".to_owned()];
        let eval = evaluate(&snap, &memory, &Params::default(), Selection::Only(&only));
        assert_eq!(eval.outcomes["E-02"], Outcome::Unknown);
        assert_eq!(eval.memory, memory);
    }

    #[test]
    fn still_evaluated_when_redis_is_down() {
        let snap = SnapshotBuilder::new()
            .unavailable(Source::Redis)
            .running("e1", "a", T0)
            .build();
        let only = ["E-02".to_owned()];
        let eval = evaluate(
            &snap,
            &remembered("e1", "success", T0),
            &Params::default(),
            Selection::Only(&only),
        );
        assert_eq!(eval.outcomes["E-02"], Outcome::Red);
    }
}
