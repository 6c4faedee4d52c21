//! The alert outbox as the deliverer sees it (DESIGN §7): rows due for an attempt, and the three
//! ways an attempt ends (delivered, retry later, abandoned). Rows are written only by
//! `record_cycle`, inside the cycle's transaction, so an alert exists iff its transition does.
//!
//! Rows are never deleted here: delivered and abandoned rows stay queryable.

use canary_invariants::{Millis, Severity, TransitionKind};
use rusqlite::{Row, params};
use serde::Serialize;

use super::codec;
use super::error::{JsonContext, SqlContext};
use super::{StateDb, StoreError};

/// A pending outbox row with its transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxRow {
    /// Outbox row id.
    pub id: i64,
    /// The transition it announces.
    pub transition_id: i64,
    /// The transition's invariant.
    pub invariant_id: String,
    /// Fired or resolved.
    pub kind: TransitionKind,
    /// The incident's severity.
    pub severity: Severity,
    /// The message to send (built when the cycle was recorded).
    pub payload: serde_json::Value,
    /// When the row was written, unix ms (start of the `give_up_after` clock).
    pub created_at_ms: Millis,
    /// Attempts so far.
    pub attempts: u32,
    /// When it became due, unix ms.
    pub next_attempt_at_ms: Millis,
    /// Why the previous attempt failed.
    pub last_error: Option<String>,
}

/// Outbox counts, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxDepth {
    /// Neither delivered nor abandoned.
    pub pending: u64,
    /// Given up after `give_up_after`.
    pub abandoned: u64,
}

struct RawOutbox {
    id: i64,
    transition_id: i64,
    invariant_id: String,
    kind: String,
    severity: String,
    payload: String,
    created_at_ms: Millis,
    attempts: i64,
    next_attempt_at_ms: Millis,
    last_error: Option<String>,
}

impl RawOutbox {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawOutbox> {
        Ok(RawOutbox {
            id: r.get(0)?,
            transition_id: r.get(1)?,
            invariant_id: r.get(2)?,
            kind: r.get(3)?,
            severity: r.get(4)?,
            payload: r.get(5)?,
            created_at_ms: r.get(6)?,
            attempts: r.get(7)?,
            next_attempt_at_ms: r.get(8)?,
            last_error: r.get(9)?,
        })
    }

    fn decode(self, op: &'static str) -> Result<OutboxRow, StoreError> {
        Ok(OutboxRow {
            id: self.id,
            transition_id: self.transition_id,
            kind: codec::parse_kind(op, "transitions.kind", &self.kind)?,
            severity: codec::parse_severity(op, "transitions.severity", &self.severity)?,
            payload: serde_json::from_str(&self.payload).json_ctx(op)?,
            attempts: codec::to_u32(op, "alert_outbox.attempts", self.attempts)?,
            invariant_id: self.invariant_id,
            created_at_ms: self.created_at_ms,
            next_attempt_at_ms: self.next_attempt_at_ms,
            last_error: self.last_error,
        })
    }
}

impl StateDb {
    /// Up to `limit` pending rows whose `next_attempt_at <= now_ms`, oldest due first.
    ///
    /// Per invariant, a row is held back while an older row of the same invariant is still
    /// pending: a resolved message must never overtake its fired message that is waiting out a
    /// retry backoff (DESIGN §7: the fired alert is delivered, *followed by* its resolved one).
    pub fn due_outbox(&self, now_ms: Millis, limit: u32) -> Result<Vec<OutboxRow>, StoreError> {
        const OP: &str = "due_outbox";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT o.id, o.transition_id, t.invariant_id, t.kind, t.severity, o.payload,
                        o.created_at, o.attempts, o.next_attempt_at, o.last_error
                 FROM alert_outbox o JOIN transitions t ON t.id = o.transition_id
                 WHERE o.delivered_at IS NULL AND o.abandoned_at IS NULL
                   AND o.next_attempt_at <= ?1
                   AND NOT EXISTS (
                       SELECT 1 FROM alert_outbox o2 JOIN transitions t2 ON t2.id = o2.transition_id
                       WHERE o2.delivered_at IS NULL AND o2.abandoned_at IS NULL
                         AND t2.invariant_id = t.invariant_id AND o2.id < o.id)
                 ORDER BY o.next_attempt_at, o.id
                 LIMIT ?2",
            )
            .ctx(OP)?;
        let raws = stmt
            .query_map(params![now_ms, limit], RawOutbox::from_row)
            .ctx(OP)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(OP)?;
        raws.into_iter().map(|r| r.decode(OP)).collect()
    }

    /// Marks a pending row delivered. Returns `false` if the row does not exist or is no longer
    /// pending (delivered or abandoned meanwhile).
    pub fn mark_delivered(&self, id: i64, at_ms: Millis) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE alert_outbox SET delivered_at = ?2
                 WHERE id = ?1 AND delivered_at IS NULL AND abandoned_at IS NULL",
                params![id, at_ms],
            )
            .ctx("mark_delivered")?;
        Ok(n > 0)
    }

    /// Records a failed attempt: `attempts` so far, when to try again, and why it failed (the
    /// caller strips URLs and secrets first). Returns `false` if the row is no longer pending.
    pub fn schedule_retry(
        &self,
        id: i64,
        attempts: u32,
        next_at_ms: Millis,
        last_error: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE alert_outbox SET attempts = ?2, next_attempt_at = ?3, last_error = ?4
                 WHERE id = ?1 AND delivered_at IS NULL AND abandoned_at IS NULL",
                params![id, attempts, next_at_ms, last_error],
            )
            .ctx("schedule_retry")?;
        Ok(n > 0)
    }

    /// Gives up on a pending row (permanent failure, or past `give_up_after`). It stays in the
    /// table, queryable. Returns `false` if the row is no longer pending.
    pub fn mark_abandoned(
        &self,
        id: i64,
        at_ms: Millis,
        last_error: &str,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "UPDATE alert_outbox SET abandoned_at = ?2, last_error = ?3
                 WHERE id = ?1 AND delivered_at IS NULL AND abandoned_at IS NULL",
                params![id, at_ms, last_error],
            )
            .ctx("mark_abandoned")?;
        Ok(n > 0)
    }

    /// Why the fired alert of the incident a resolved row `resolved_id` closes was abandoned:
    /// the `last_error` of the latest fired row of `invariant_id` written before it, when that
    /// row was abandoned; `None` when it was delivered (or is still pending, or there is none).
    /// A reminder counts as the fired alert: if it got through, Slack has seen the page.
    pub fn abandoned_fired_before(
        &self,
        resolved_id: i64,
        invariant_id: &str,
    ) -> Result<Option<String>, StoreError> {
        const OP: &str = "abandoned_fired_before";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT o.abandoned_at IS NOT NULL, o.last_error
                 FROM alert_outbox o JOIN transitions t ON t.id = o.transition_id
                 WHERE t.invariant_id = ?1 AND t.kind = 'fired' AND o.id < ?2
                 ORDER BY o.id DESC
                 LIMIT 1",
            )
            .ctx(OP)?;
        let mut rows = stmt
            .query_map(params![invariant_id, resolved_id], |r| {
                Ok((r.get::<_, bool>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .ctx(OP)?;
        match rows.next().transpose().ctx(OP)? {
            Some((true, last_error)) => Ok(Some(
                last_error.unwrap_or_else(|| "unknown reason".to_owned()),
            )),
            _ => Ok(None),
        }
    }

    /// How many rows are pending and how many were abandoned.
    pub fn outbox_depth(&self) -> Result<OutboxDepth, StoreError> {
        const OP: &str = "outbox_depth";
        let (pending, abandoned): (i64, i64) = self
            .conn
            .query_row(
                "SELECT
                     COUNT(*) FILTER (WHERE delivered_at IS NULL AND abandoned_at IS NULL),
                     COUNT(*) FILTER (WHERE abandoned_at IS NOT NULL)
                 FROM alert_outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ctx(OP)?;
        Ok(OutboxDepth {
            pending: codec::to_u64(OP, "COUNT(*)", pending)?,
            abandoned: codec::to_u64(OP, "COUNT(*)", abandoned)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::tests::{fired, record};
    use canary_invariants::{Memory, Transition};

    fn resolved(id: &str, at: Millis) -> Transition {
        Transition {
            kind: TransitionKind::Resolved,
            previous_at_ms: Some(at - 1),
            ..fired(id, at)
        }
    }

    #[test]
    fn lifecycle_delivered_retry_abandoned() {
        let mut db = StateDb::open_in_memory().unwrap();
        let m = Memory::default();
        // record() writes outbox rows with created_at = next_attempt_at = at + 10.
        record(
            &mut db,
            1000,
            &[],
            &[],
            &[fired("S-01", 1000), fired("E-02", 1000)],
            &m,
            &m,
        )
        .unwrap();
        assert!(db.due_outbox(1009, 10).unwrap().is_empty());
        let due = db.due_outbox(1010, 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].invariant_id, "S-01");
        assert_eq!(due[0].kind, TransitionKind::Fired);
        assert_eq!(due[0].payload["text"], "S-01");
        assert_eq!((due[0].attempts, due[0].created_at_ms), (0, 1010));
        assert_eq!(db.due_outbox(1010, 1).unwrap().len(), 1);
        assert_eq!(
            db.outbox_depth().unwrap(),
            OutboxDepth {
                pending: 2,
                abandoned: 0
            }
        );

        assert!(db.mark_delivered(due[0].id, 1011).unwrap());
        assert!(
            !db.mark_delivered(due[0].id, 1012).unwrap(),
            "already delivered"
        );
        assert!(db.schedule_retry(due[1].id, 1, 5000, "HTTP 503").unwrap());
        assert!(db.due_outbox(4999, 10).unwrap().is_empty());
        let again = db.due_outbox(5000, 10).unwrap();
        assert_eq!(
            (again[0].attempts, again[0].last_error.as_deref()),
            (1, Some("HTTP 503"))
        );
        assert!(db.mark_abandoned(again[0].id, 6000, "gave up").unwrap());
        assert!(!db.schedule_retry(again[0].id, 2, 7000, "late").unwrap());
        assert!(db.due_outbox(i64::MAX, 10).unwrap().is_empty());
        assert_eq!(
            db.outbox_depth().unwrap(),
            OutboxDepth {
                pending: 0,
                abandoned: 1
            }
        );
    }

    #[test]
    fn abandoned_fired_row_is_found_for_its_resolved_row() {
        let mut db = StateDb::open_in_memory().unwrap();
        let m = Memory::default();
        record(&mut db, 1000, &[], &[], &[fired("S-01", 1000)], &m, &m).unwrap();
        let first = db.due_outbox(1010, 10).unwrap().remove(0);
        db.mark_abandoned(first.id, 1011, "HTTP 404: no_service")
            .unwrap();
        record(&mut db, 2000, &[], &[], &[resolved("S-01", 2000)], &m, &m).unwrap();
        let resolved_row = db.due_outbox(2010, 10).unwrap().remove(0);
        assert_eq!(
            db.abandoned_fired_before(resolved_row.id, "S-01").unwrap(),
            Some("HTTP 404: no_service".to_owned())
        );
        assert_eq!(
            db.abandoned_fired_before(resolved_row.id, "E-02").unwrap(),
            None
        );
        assert_eq!(db.abandoned_fired_before(first.id, "S-01").unwrap(), None);
        db.mark_delivered(resolved_row.id, 2011).unwrap();
        // The next incident's fired alert is delivered: its resolved row carries no note.
        record(&mut db, 3000, &[], &[], &[fired("S-01", 3000)], &m, &m).unwrap();
        let second = db.due_outbox(3010, 10).unwrap().remove(0);
        db.mark_delivered(second.id, 3011).unwrap();
        record(&mut db, 4000, &[], &[], &[resolved("S-01", 4000)], &m, &m).unwrap();
        let resolved_row = db.due_outbox(4010, 10).unwrap().remove(0);
        assert_eq!(
            db.abandoned_fired_before(resolved_row.id, "S-01").unwrap(),
            None
        );
    }

    #[test]
    fn resolved_waits_for_its_fired_row() {
        let mut db = StateDb::open_in_memory().unwrap();
        let m = Memory::default();
        record(&mut db, 1000, &[], &[], &[fired("S-01", 1000)], &m, &m).unwrap();
        let fired_row = db.due_outbox(1010, 10).unwrap().remove(0);
        db.schedule_retry(fired_row.id, 1, 10_000, "timeout")
            .unwrap();
        record(
            &mut db,
            2000,
            &[],
            &[],
            &[resolved("S-01", 2000), fired("E-02", 2000)],
            &m,
            &m,
        )
        .unwrap();
        // The resolved row is due but held back behind the fired row in backoff; E-02 is not.
        let due = db.due_outbox(2010, 10).unwrap();
        assert_eq!(
            due.iter()
                .map(|r| r.invariant_id.as_str())
                .collect::<Vec<_>>(),
            ["E-02"]
        );
        let due = db.due_outbox(10_000, 10).unwrap();
        // Oldest due first: E-02 has been due since 2010, S-01's fired row since 10_000.
        assert_eq!(
            due.iter()
                .map(|r| (r.invariant_id.as_str(), r.kind))
                .collect::<Vec<_>>(),
            [
                ("E-02", TransitionKind::Fired),
                ("S-01", TransitionKind::Fired)
            ]
        );
        db.mark_delivered(due[1].id, 10_001).unwrap();
        let due = db.due_outbox(10_001, 10).unwrap();
        assert!(due.iter().any(|r| r.kind == TransitionKind::Resolved));
    }
}
