//! Read-only summaries behind the status page (`GET /`): the recent cycles folded into fixed time
//! buckets (the 24 h timeline), the latest transitions with the delivery state of their outbox
//! rows, and the last cycle's violation count per invariant.
//!
//! Every answer is bounded whatever the history holds: the timeline is aggregated in SQL (one
//! row per bucket, not per cycle), the transitions are a `LIMIT`ed page. It must not write.

use std::collections::BTreeMap;

use canary_invariants::{Millis, Severity, TransitionKind};
use rusqlite::params;
use serde::Serialize;

use super::codec;
use super::error::SqlContext;
use super::{StateDb, StoreError};

/// The cycles that started in one time bucket, with the verdicts of DESIGN §2 counted the way
/// [`crate::cycle::CycleResult::verdict`] decides them: red when any invariant was red, else
/// unknown when a source was unavailable or an invariant unknown, else green.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CycleBucket {
    /// Bucket index from the window's start (`0..buckets`).
    pub index: u32,
    /// Cycles started in it.
    pub cycles: u64,
    /// Of which red.
    pub red: u64,
    /// Of which unknown (not red).
    pub unknown: u64,
    /// The most violations one of its cycles found (full counts).
    pub max_violations: u64,
}

/// How a transition's Slack message fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Delivery {
    /// Posted (unix ms).
    Delivered {
        /// When Slack accepted it.
        at_ms: Millis,
    },
    /// Still in the outbox, due again at `next_attempt_at_ms`.
    Pending {
        /// Attempts so far.
        attempts: u32,
        /// Next attempt, unix ms.
        next_attempt_at_ms: Millis,
        /// Why the previous attempt failed (secret-free: the deliverer strips URLs).
        last_error: Option<String>,
    },
    /// Given up (unix ms), kept in the outbox.
    Abandoned {
        /// When it was given up.
        at_ms: Millis,
        /// Why.
        last_error: Option<String>,
    },
    /// No outbox row: no webhook was configured when it was recorded (a silent sink).
    NotQueued,
}

/// One recorded transition and its delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentTransition {
    /// Transition row id.
    pub id: i64,
    /// Invariant id, or `source:<name>` for a blind source.
    pub invariant_id: String,
    /// Fired or resolved.
    pub kind: TransitionKind,
    /// The incident's severity.
    pub severity: Severity,
    /// When it happened (snapshot time), unix ms.
    pub at_ms: Millis,
    /// Its Slack message.
    pub delivery: Delivery,
}

/// Row of [`StateDb::recent_transitions`] as read, decoded outside the rusqlite closure.
type RawTransition = (
    i64,
    String,
    String,
    String,
    Millis,
    Option<i64>,
    Option<i64>,
    Option<Millis>,
    Option<Millis>,
    Option<Millis>,
    Option<String>,
);

impl StateDb {
    /// The cycles started in `[start_ms, start_ms + buckets × bucket_ms)`, folded into
    /// `buckets` buckets of `bucket_ms` each; empty buckets are left out. Ordered by bucket.
    pub fn cycle_buckets(
        &self,
        start_ms: Millis,
        bucket_ms: Millis,
        buckets: u32,
    ) -> Result<Vec<CycleBucket>, StoreError> {
        const OP: &str = "cycle_buckets";
        if bucket_ms <= 0 || buckets == 0 {
            return Err(StoreError::Invalid {
                op: OP,
                reason: format!("{buckets} buckets of {bucket_ms} ms"),
            });
        }
        let end_ms = start_ms.saturating_add(bucket_ms.saturating_mul(i64::from(buckets)));
        // `started_at` is indexed (retention uses it), so the window is a range scan.
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT (started_at - ?1) / ?2 AS bucket, COUNT(*), SUM(red), SUM(NOT red AND unknown),
                        MAX(violation_count)
                 FROM (SELECT started_at, violation_count,
                              EXISTS (SELECT 1 FROM json_each(outcomes) WHERE value = 'red') AS red,
                              (sources_unavailable <> '[]'
                               OR EXISTS (SELECT 1 FROM json_each(outcomes)
                                          WHERE value = 'unknown')) AS unknown
                       FROM cycles WHERE started_at >= ?1 AND started_at < ?3)
                 GROUP BY bucket ORDER BY bucket",
            )
            .ctx(OP)?;
        let raws = stmt
            .query_map(params![start_ms, bucket_ms, end_ms], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .ctx(OP)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(OP)?;
        raws.into_iter()
            .map(|(index, cycles, red, unknown, max)| {
                Ok(CycleBucket {
                    index: codec::to_u32(OP, "bucket", index)?,
                    cycles: codec::to_u64(OP, "COUNT(*)", cycles)?,
                    red: codec::to_u64(OP, "red", red)?,
                    unknown: codec::to_u64(OP, "unknown", unknown)?,
                    max_violations: codec::to_u64(OP, "cycles.violation_count", max)?,
                })
            })
            .collect()
    }

    /// The newest `limit` transitions (invariants and blind sources), newest first, each with
    /// the delivery state of its outbox row.
    pub fn recent_transitions(&self, limit: u32) -> Result<Vec<RecentTransition>, StoreError> {
        const OP: &str = "recent_transitions";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT t.id, t.invariant_id, t.kind, t.severity, t.at, o.id, o.attempts,
                        o.next_attempt_at, o.delivered_at, o.abandoned_at, o.last_error
                 FROM transitions t LEFT JOIN alert_outbox o ON o.transition_id = t.id
                 ORDER BY t.id DESC LIMIT ?1",
            )
            .ctx(OP)?;
        let raws: Vec<RawTransition> = stmt
            .query_map([limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })
            .ctx(OP)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(OP)?;
        raws.into_iter()
            .map(
                |(
                    id,
                    invariant_id,
                    kind,
                    severity,
                    at_ms,
                    outbox,
                    attempts,
                    next,
                    done,
                    gone,
                    err,
                )| {
                    let delivery = match (outbox, done, gone) {
                        (None, _, _) => Delivery::NotQueued,
                        (Some(_), Some(at_ms), _) => Delivery::Delivered { at_ms },
                        (Some(_), None, Some(at_ms)) => Delivery::Abandoned {
                            at_ms,
                            last_error: err,
                        },
                        (Some(_), None, None) => Delivery::Pending {
                            attempts: codec::to_u32(
                                OP,
                                "alert_outbox.attempts",
                                attempts.unwrap_or(0),
                            )?,
                            next_attempt_at_ms: next.unwrap_or(at_ms),
                            last_error: err,
                        },
                    };
                    Ok(RecentTransition {
                        id,
                        kind: codec::parse_kind(OP, "transitions.kind", &kind)?,
                        severity: codec::parse_severity(OP, "transitions.severity", &severity)?,
                        invariant_id,
                        at_ms,
                        delivery,
                    })
                },
            )
            .collect()
    }

    /// The full violation count of each red invariant in cycle `cycle_id` (green and unknown
    /// invariants have no row).
    pub fn cycle_violation_counts(
        &self,
        cycle_id: i64,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        const OP: &str = "cycle_violation_counts";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT invariant_id, violations FROM cycle_invariants WHERE cycle_id = ?1",
            )
            .ctx(OP)?;
        let raws = stmt
            .query_map([cycle_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .ctx(OP)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(OP)?;
        raws.into_iter()
            .map(|(id, n)| Ok((id, codec::to_u64(OP, "cycle_invariants.violations", n)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::tests::{fired, record, state, violation};
    use canary_invariants::{Memory, Outcome};

    /// Three cycles (each with Redis unavailable, as the shared test recorder writes them):
    /// t=1000 S-01 red with a fired transition, t=2000 S-01 green, t=12000 S-01 red.
    fn seeded() -> StateDb {
        let mut db = StateDb::open_in_memory().unwrap();
        let m = Memory::default();
        let red = |at| [state("S-01", Outcome::Red, true, at)];
        let two = [
            violation("S-01", "a", Severity::Critical),
            violation("S-01", "b", Severity::Critical),
        ];
        record(
            &mut db,
            1000,
            &two,
            &red(1000),
            &[fired("S-01", 1000)],
            &m,
            &m,
        )
        .unwrap();
        let green = [state("S-01", Outcome::Green, false, 2000)];
        record(&mut db, 2000, &[], &green, &[], &m, &m).unwrap();
        record(&mut db, 12_000, &two[..1], &red(12_000), &[], &m, &m).unwrap();
        db
    }

    #[test]
    fn buckets_fold_cycles_by_verdict() {
        let db = seeded();
        let b = db.cycle_buckets(0, 10_000, 3).unwrap();
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!(
            (b[0].index, b[0].cycles, b[0].red, b[0].unknown),
            (0, 2, 1, 1)
        );
        assert_eq!(b[0].max_violations, 2);
        assert_eq!((b[1].index, b[1].cycles, b[1].red), (1, 1, 1));
        assert_eq!(b[1].max_violations, 1);
        // Outside the window: nothing; a degenerate window is refused, not divided by zero.
        assert!(db.cycle_buckets(20_000, 10_000, 3).unwrap().is_empty());
        assert!(db.cycle_buckets(0, 0, 3).is_err());

        let counts = db.cycle_violation_counts(1).unwrap();
        assert_eq!(counts.get("S-01"), Some(&2));
        assert!(db.cycle_violation_counts(2).unwrap().is_empty());
    }

    #[test]
    fn transitions_carry_their_delivery_state() {
        let empty = StateDb::open_in_memory().unwrap();
        assert!(empty.recent_transitions(10).unwrap().is_empty());

        let db = seeded();
        let t = db.recent_transitions(10).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].invariant_id.as_str(), t[0].kind),
            ("S-01", TransitionKind::Fired)
        );
        assert!(
            matches!(t[0].delivery, Delivery::Pending { attempts: 0, .. }),
            "{t:?}"
        );
        let outbox = db.due_outbox(i64::MAX, 10).unwrap();
        db.schedule_retry(outbox[0].id, 1, 5000, "HTTP 500")
            .unwrap();
        let t = db.recent_transitions(10).unwrap();
        assert_eq!(
            t[0].delivery,
            Delivery::Pending {
                attempts: 1,
                next_attempt_at_ms: 5000,
                last_error: Some("HTTP 500".to_owned())
            }
        );
        db.mark_abandoned(outbox[0].id, 6000, "HTTP 404").unwrap();
        let t = db.recent_transitions(10).unwrap();
        assert_eq!(
            t[0].delivery,
            Delivery::Abandoned {
                at_ms: 6000,
                last_error: Some("HTTP 404".to_owned())
            }
        );
        assert!(db.recent_transitions(0).unwrap().is_empty());
    }
}
