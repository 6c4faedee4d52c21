//! Retention (DESIGN §6): [`StateDb::prune`] deletes cycles older than a cutoff together with
//! their violations, in small batches so a cycle's write transaction never waits long behind it.
//!
//! Transitions and outbox rows are kept: they are one row per alert, and an undelivered alert
//! must survive any retention (the transition's `cycle_id` is set to NULL instead). States and
//! memory are current data, not history, and are never pruned.

use std::time::Instant;

use canary_invariants::Millis;
use rusqlite::TransactionBehavior;
use serde::Serialize;

use super::error::SqlContext;
use super::{StateDb, StoreError};

/// Cycles per prune transaction. A cycle rarely has more than a few hundred violations, so a
/// batch stays well under the busy timeout of a concurrent writer.
pub const PRUNE_BATCH_CYCLES: u32 = 200;

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneStats {
    /// Cycle rows deleted.
    pub cycles: u64,
    /// Violation rows deleted.
    pub violations: u64,
    /// Transactions used.
    pub batches: u64,
}

impl StateDb {
    /// Deletes cycles that started before `older_than_ms`, and their violations.
    pub fn prune(&mut self, older_than_ms: Millis) -> Result<PruneStats, StoreError> {
        self.prune_in_batches(older_than_ms, PRUNE_BATCH_CYCLES)
    }

    /// [`StateDb::prune`] with an explicit batch size (cycles per transaction, at least 1).
    pub fn prune_in_batches(
        &mut self,
        older_than_ms: Millis,
        batch_cycles: u32,
    ) -> Result<PruneStats, StoreError> {
        let started = Instant::now();
        let batch = i64::from(batch_cycles.max(1));
        let mut stats = PruneStats::default();
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx("prune: begin")?;
            // Violations first and explicitly (the FK cascade would do it, but would not count
            // them). The same oldest-ids subquery selects the same cycles in both statements
            // because the transaction holds the write lock.
            let violations = tx
                .execute(
                    "DELETE FROM violations WHERE cycle_id IN (
                         SELECT id FROM cycles WHERE started_at < ?1 ORDER BY id LIMIT ?2)",
                    [older_than_ms, batch],
                )
                .ctx("prune: delete violations")?;
            let cycles = tx
                .execute(
                    "DELETE FROM cycles WHERE id IN (
                         SELECT id FROM cycles WHERE started_at < ?1 ORDER BY id LIMIT ?2)",
                    [older_than_ms, batch],
                )
                .ctx("prune: delete cycles")?;
            tx.commit().ctx("prune: commit")?;
            if cycles == 0 {
                break;
            }
            stats.batches += 1;
            stats.cycles += u64::try_from(cycles).unwrap_or(u64::MAX);
            stats.violations += u64::try_from(violations).unwrap_or(u64::MAX);
            if i64::try_from(cycles).unwrap_or(i64::MAX) < batch {
                break;
            }
        }
        tracing::debug!(
            older_than_ms,
            cycles = stats.cycles,
            violations = stats.violations,
            batches = stats.batches,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "state database pruned"
        );
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::tests::{fired, record, violation};
    use canary_invariants::{Memory, Severity};

    fn count(db: &StateDb, sql: &str) -> i64 {
        db.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn prunes_old_cycles_and_their_violations_only_keeping_transitions() {
        let mut db = StateDb::open_in_memory().unwrap();
        let m = Memory::default();
        for at in (1..=7).map(|i| i * 1000) {
            let vs = [
                violation("S-01", "a", Severity::Critical),
                violation("S-02", "b", Severity::Major),
            ];
            let ts = if at == 1000 {
                vec![fired("S-01", at)]
            } else {
                vec![]
            };
            record(&mut db, at, &vs, &[], &ts, &m, &m).unwrap();
        }
        // record() starts each cycle at `at - 10`: cutoff 4990 keeps the cycles at 5000..7000
        // (the cutoff itself is kept: strictly older goes).
        let stats = db.prune_in_batches(4990, 2).unwrap();
        assert_eq!(
            stats,
            PruneStats {
                cycles: 4,
                violations: 8,
                batches: 2
            }
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM cycles"), 3);
        assert_eq!(count(&db, "SELECT MIN(taken_at) FROM violations"), 5000);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM violations"), 6);
        // The alert of the pruned first cycle is still there, detached from its cycle.
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM transitions WHERE cycle_id IS NULL"
            ),
            1
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM alert_outbox"), 1);
        // Nothing left to prune: an empty pass.
        assert_eq!(db.prune(4990).unwrap(), PruneStats::default());
    }
}
