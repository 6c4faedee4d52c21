//! Retention (DESIGN §6): [`StateDb::prune`] deletes cycles older than a cutoff together with
//! their per-invariant counts, and the violation episodes CLOSED before the cutoff, in small
//! batches so a cycle's write transaction never waits long behind it. An open episode is current
//! data and is never pruned, however old its first sighting.
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

/// Cycles (and closed episodes) per prune transaction: a cycle has at most one count row per
/// invariant, so a batch stays well under the busy timeout of a concurrent writer.
pub const PRUNE_BATCH_CYCLES: u32 = 200;

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneStats {
    /// Cycle rows deleted.
    pub cycles: u64,
    /// Closed violation episodes deleted.
    pub violations: u64,
    /// Transactions used.
    pub batches: u64,
}

impl StateDb {
    /// Deletes cycles that started before `older_than_ms` with their counts, and the episodes
    /// closed before it.
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
            // Counts first and explicitly (the FK cascade would do it too). The same oldest-ids
            // subquery selects the same cycles in both statements because the transaction holds
            // the write lock.
            tx.execute(
                "DELETE FROM cycle_invariants WHERE cycle_id IN (
                     SELECT id FROM cycles WHERE started_at < ?1 ORDER BY id LIMIT ?2)",
                [older_than_ms, batch],
            )
            .ctx("prune: delete cycle counts")?;
            let violations = tx
                .execute(
                    "DELETE FROM violation_episodes WHERE id IN (
                         SELECT id FROM violation_episodes
                         WHERE closed_at IS NOT NULL AND closed_at < ?1 ORDER BY closed_at LIMIT ?2)",
                    [older_than_ms, batch],
                )
                .ctx("prune: delete closed episodes")?;
            let cycles = tx
                .execute(
                    "DELETE FROM cycles WHERE id IN (
                         SELECT id FROM cycles WHERE started_at < ?1 ORDER BY id LIMIT ?2)",
                    [older_than_ms, batch],
                )
                .ctx("prune: delete cycles")?;
            tx.commit().ctx("prune: commit")?;
            if cycles == 0 && violations == 0 {
                break;
            }
            stats.batches += 1;
            stats.cycles += u64::try_from(cycles).unwrap_or(u64::MAX);
            stats.violations += u64::try_from(violations).unwrap_or(u64::MAX);
            if i64::try_from(cycles.max(violations)).unwrap_or(i64::MAX) < batch {
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
    use crate::store::record::tests::{fired, record, state, violation};
    use canary_invariants::{Memory, Outcome, Severity};

    fn count(db: &StateDb, sql: &str) -> i64 {
        db.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn prunes_old_cycles_and_closed_episodes_only_keeping_open_ones_and_transitions() {
        let mut db = StateDb::open_in_memory().unwrap();
        let m = Memory::default();
        for i in 1..=7 {
            let at = i * 1000;
            // S-01 on `a` all along (one open episode); S-02 on a new subject every cycle (the
            // previous one closes each time).
            let vs = [
                violation("S-01", "a", Severity::Critical),
                violation("S-02", &format!("b{i}"), Severity::Major),
            ];
            let states = [
                state("S-01", Outcome::Red, true, 1000),
                state("S-02", Outcome::Red, true, 1000),
            ];
            let ts = if at == 1000 {
                vec![fired("S-01", at)]
            } else {
                vec![]
            };
            record(&mut db, at, &vs, &states, &ts, &m, &m).unwrap();
        }
        // record() starts each cycle at `at - 10`: cutoff 4990 keeps the cycles at 5000..7000
        // (the cutoff itself is kept: strictly older goes); b1..b3 closed before it.
        let stats = db.prune_in_batches(4990, 2).unwrap();
        assert_eq!(
            stats,
            PruneStats {
                cycles: 4,
                violations: 3,
                batches: 2
            }
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM cycles"), 3);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM cycle_invariants"), 6);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM violation_episodes"), 5);
        // The open episode outlives the cycle that found it.
        assert_eq!(
            count(
                &db,
                "SELECT first_seen FROM violation_episodes WHERE subject = 'a' AND closed_at IS NULL"
            ),
            1000
        );
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
