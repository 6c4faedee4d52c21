//! Read-only history queries behind `canary violations`, the admin API's violation and status
//! endpoints and `/readyz`: paged violations with filters and a total, one violation by id, per
//! invariant/severity stats, the last cycle and the last violation of each invariant.

use std::collections::BTreeMap;

use canary_invariants::{Millis, Outcome, Severity, SourceUnavailable, Tier, Violation};
use rusqlite::types::Value as SqlValue;
use rusqlite::{OptionalExtension, Row, params_from_iter};
use serde::Serialize;

use super::codec;
use super::error::{JsonContext, SqlContext};
use super::{StateDb, StoreError};

/// Largest page [`StateDb::violations`] returns, whatever the caller asks: one request must not
/// be able to pull the whole history into memory.
pub const MAX_PAGE: u32 = 10_000;

/// Filters and paging for [`StateDb::violations`]. Time bounds are half-open:
/// `since_ms <= taken_at < until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationQuery {
    /// Only this invariant.
    pub invariant_id: Option<String>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Snapshot time at or after.
    pub since_ms: Option<Millis>,
    /// Snapshot time strictly before.
    pub until_ms: Option<Millis>,
    /// Page size (clamped to [`MAX_PAGE`]).
    pub limit: u32,
    /// Rows to skip (newest first).
    pub offset: u64,
}

impl Default for ViolationQuery {
    /// No filters, the newest 100.
    fn default() -> Self {
        ViolationQuery {
            invariant_id: None,
            severity: None,
            since_ms: None,
            until_ms: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// A violation as stored: the [`Violation`] fields plus its row id, cycle and snapshot time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredViolation {
    /// Row id (what alerts cite).
    pub id: i64,
    /// The cycle that found it.
    pub cycle_id: i64,
    /// Catalog id.
    pub invariant_id: String,
    /// Tier.
    pub tier: Tier,
    /// Severity.
    pub severity: Severity,
    /// What is broken.
    pub subject: String,
    /// One human line.
    pub summary: String,
    /// JSON evidence.
    pub observed_state: serde_json::Value,
    /// Machine-readable reason code.
    pub signal: String,
    /// Snapshot time, unix ms.
    pub taken_at_ms: Millis,
    /// Snapshot time, RFC 3339 UTC (for humans and JSON consumers).
    pub taken_at: String,
}

impl StoredViolation {
    /// The violation without its storage fields.
    pub fn to_violation(&self) -> Violation {
        Violation {
            invariant_id: self.invariant_id.clone(),
            tier: self.tier,
            severity: self.severity,
            subject: self.subject.clone(),
            summary: self.summary.clone(),
            observed_state: self.observed_state.clone(),
            signal: self.signal.clone(),
        }
    }
}

/// Count and first/last sighting of one invariant at one severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViolationStat {
    /// Catalog id.
    pub invariant_id: String,
    /// Severity.
    pub severity: Severity,
    /// Violation rows in the window.
    pub count: u64,
    /// Earliest snapshot time in the window, unix ms.
    pub first_seen_ms: Millis,
    /// Latest snapshot time in the window, unix ms.
    pub last_seen_ms: Millis,
}

/// A cycle row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredCycle {
    /// Row id.
    pub id: i64,
    /// Wall clock start, unix ms.
    pub started_at_ms: Millis,
    /// Wall clock end, unix ms.
    pub finished_at_ms: Millis,
    /// Measured duration.
    pub duration_ms: f64,
    /// Snapshot time, unix ms.
    pub taken_at_ms: Millis,
    /// Snapshot time, RFC 3339 UTC.
    pub taken_at: String,
    /// What started it.
    pub trigger: String,
    /// Invariant ids evaluated.
    pub checks_run: Vec<String>,
    /// Per-invariant outcome.
    pub outcomes: BTreeMap<String, Outcome>,
    /// Sources that could not be read.
    pub sources_unavailable: Vec<SourceUnavailable>,
    /// Number of violation rows it wrote.
    pub violation_count: u64,
}

const VIOLATION_COLUMNS: &str = "id, cycle_id, invariant_id, tier, severity, subject, summary, \
                                 observed_state, signal, taken_at";

/// Column values as read, decoded outside the rusqlite closure so decode failures carry context.
struct RawViolation {
    id: i64,
    cycle_id: i64,
    invariant_id: String,
    tier: String,
    severity: String,
    subject: String,
    summary: String,
    observed_state: String,
    signal: String,
    taken_at_ms: Millis,
}

impl RawViolation {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawViolation> {
        Ok(RawViolation {
            id: r.get(0)?,
            cycle_id: r.get(1)?,
            invariant_id: r.get(2)?,
            tier: r.get(3)?,
            severity: r.get(4)?,
            subject: r.get(5)?,
            summary: r.get(6)?,
            observed_state: r.get(7)?,
            signal: r.get(8)?,
            taken_at_ms: r.get(9)?,
        })
    }

    fn decode(self, op: &'static str) -> Result<StoredViolation, StoreError> {
        Ok(StoredViolation {
            id: self.id,
            cycle_id: self.cycle_id,
            tier: codec::parse_tier(op, "violations.tier", &self.tier)?,
            severity: codec::parse_severity(op, "violations.severity", &self.severity)?,
            observed_state: serde_json::from_str(&self.observed_state).json_ctx(op)?,
            invariant_id: self.invariant_id,
            subject: self.subject,
            summary: self.summary,
            signal: self.signal,
            taken_at_ms: self.taken_at_ms,
            taken_at: codec::rfc3339(self.taken_at_ms),
        })
    }
}

impl StateDb {
    /// One page of violations matching `q`, newest first, and how many match in total.
    pub fn violations(
        &self,
        q: &ViolationQuery,
    ) -> Result<(Vec<StoredViolation>, u64), StoreError> {
        const OP: &str = "violations";
        // Only the filters actually set become SQL terms, so the planner can use
        // (invariant_id, taken_at) or (taken_at); `?n IS NULL OR ...` would defeat both.
        let mut terms: Vec<&str> = Vec::new();
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(id) = &q.invariant_id {
            terms.push("invariant_id = ?");
            args.push(SqlValue::Text(id.clone()));
        }
        if let Some(sev) = q.severity {
            terms.push("severity = ?");
            args.push(SqlValue::Text(sev.as_str().to_owned()));
        }
        if let Some(since) = q.since_ms {
            terms.push("taken_at >= ?");
            args.push(SqlValue::Integer(since));
        }
        if let Some(until) = q.until_ms {
            terms.push("taken_at < ?");
            args.push(SqlValue::Integer(until));
        }
        let filter = if terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", terms.join(" AND "))
        };

        let total: i64 = self
            .conn
            .prepare_cached(&format!("SELECT COUNT(*) FROM violations{filter}"))
            .ctx(OP)?
            .query_row(params_from_iter(args.iter()), |r| r.get(0))
            .ctx(OP)?;

        let mut page_args = args;
        page_args.push(SqlValue::Integer(i64::from(q.limit.min(MAX_PAGE))));
        page_args.push(SqlValue::Integer(codec::sat_i64(q.offset)));
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {VIOLATION_COLUMNS} FROM violations{filter}
                 ORDER BY taken_at DESC, id DESC LIMIT ? OFFSET ?"
            ))
            .ctx(OP)?;
        let raws = stmt
            .query_map(params_from_iter(page_args.iter()), RawViolation::from_row)
            .ctx(OP)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(OP)?;
        let page = raws
            .into_iter()
            .map(|r| r.decode(OP))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((page, codec::to_u64(OP, "COUNT(*)", total)?))
    }

    /// One violation by row id.
    pub fn violation(&self, id: i64) -> Result<Option<StoredViolation>, StoreError> {
        const OP: &str = "violation";
        self.conn
            .prepare_cached(&format!(
                "SELECT {VIOLATION_COLUMNS} FROM violations WHERE id = ?1"
            ))
            .ctx(OP)?
            .query_row([id], RawViolation::from_row)
            .optional()
            .ctx(OP)?
            .map(|r| r.decode(OP))
            .transpose()
    }

    /// Violation counts per invariant and severity with first/last snapshot time, for snapshot
    /// times at or after `since_ms` (all history when `None`), ordered by invariant then severity.
    pub fn violation_stats(
        &self,
        since_ms: Option<Millis>,
    ) -> Result<Vec<ViolationStat>, StoreError> {
        const OP: &str = "violation_stats";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT invariant_id, severity, COUNT(*), MIN(taken_at), MAX(taken_at)
                 FROM violations WHERE taken_at >= ?1
                 GROUP BY invariant_id, severity ORDER BY invariant_id, severity",
            )
            .ctx(OP)?;
        let raws = stmt
            .query_map([since_ms.unwrap_or(i64::MIN)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .ctx(OP)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(OP)?;
        raws.into_iter()
            .map(|(invariant_id, severity, count, first, last)| {
                Ok(ViolationStat {
                    severity: codec::parse_severity(OP, "violations.severity", &severity)?,
                    count: codec::to_u64(OP, "COUNT(*)", count)?,
                    invariant_id,
                    first_seen_ms: first,
                    last_seen_ms: last,
                })
            })
            .collect()
    }

    /// The most recently recorded cycle.
    pub fn last_cycle(&self) -> Result<Option<StoredCycle>, StoreError> {
        const OP: &str = "last_cycle";
        type Raw = (i64, i64, i64, f64, i64, String, String, String, String, i64);
        let raw: Option<Raw> = self
            .conn
            .prepare_cached(
                r#"SELECT id, started_at, finished_at, duration_ms, taken_at, "trigger",
                          checks_run, outcomes, sources_unavailable, violation_count
                   FROM cycles ORDER BY id DESC LIMIT 1"#,
            )
            .ctx(OP)?
            .query_row([], |r| {
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
                ))
            })
            .optional()
            .ctx(OP)?;
        let Some((id, started, finished, duration_ms, taken, trigger, checks, outcomes, su, n)) =
            raw
        else {
            return Ok(None);
        };
        Ok(Some(StoredCycle {
            id,
            started_at_ms: started,
            finished_at_ms: finished,
            duration_ms,
            taken_at_ms: taken,
            taken_at: codec::rfc3339(taken),
            trigger,
            checks_run: serde_json::from_str(&checks).json_ctx(OP)?,
            outcomes: serde_json::from_str(&outcomes).json_ctx(OP)?,
            sources_unavailable: serde_json::from_str(&su).json_ctx(OP)?,
            violation_count: codec::to_u64(OP, "cycles.violation_count", n)?,
        }))
    }

    /// The most recently recorded violation of each invariant that has any (for the status
    /// endpoint's "last violation"), by invariant id.
    pub fn last_violation_per_invariant(
        &self,
    ) -> Result<BTreeMap<String, StoredViolation>, StoreError> {
        const OP: &str = "last_violation_per_invariant";
        // MAX(id) = last recorded: ids grow with every insert, while taken_at follows a wall
        // clock that may step back. The grouped scan is covered by (invariant_id, taken_at).
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {VIOLATION_COLUMNS} FROM violations
                 WHERE id IN (SELECT MAX(id) FROM violations GROUP BY invariant_id)"
            ))
            .ctx(OP)?;
        let raws = stmt
            .query_map([], RawViolation::from_row)
            .ctx(OP)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(OP)?;
        raws.into_iter()
            .map(|r| r.decode(OP).map(|v| (v.invariant_id.clone(), v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::tests::{record, state, violation};
    use canary_invariants::Memory;

    fn seeded() -> StateDb {
        let mut db = StateDb::open_in_memory().unwrap();
        let m = Memory::default();
        // Cycle at t=1000: S-01 critical ×2, E-02 major. Cycle at t=2000: S-01 critical, S-07 minor.
        record(
            &mut db,
            1000,
            &[
                violation("S-01", "a", Severity::Critical),
                violation("S-01", "b", Severity::Critical),
                violation("E-02", "x", Severity::Major),
            ],
            &[state("S-01", Outcome::Red, true, 1000)],
            &[],
            &m,
            &m,
        )
        .unwrap();
        record(
            &mut db,
            2000,
            &[
                violation("S-01", "a", Severity::Critical),
                violation("S-07", "d", Severity::Minor),
            ],
            &[],
            &[],
            &m,
            &m,
        )
        .unwrap();
        db
    }

    fn subjects(page: &[StoredViolation]) -> Vec<(&str, Millis)> {
        page.iter()
            .map(|v| (v.subject.as_str(), v.taken_at_ms))
            .collect()
    }

    #[test]
    fn filters_paging_and_total() {
        let db = seeded();
        let (all, total) = db.violations(&ViolationQuery::default()).unwrap();
        assert_eq!(total, 5);
        // Newest first; within a cycle, the later insert first.
        assert_eq!(
            subjects(&all),
            [
                ("d", 2000),
                ("a", 2000),
                ("x", 1000),
                ("b", 1000),
                ("a", 1000)
            ]
        );

        let q = ViolationQuery {
            invariant_id: Some("S-01".into()),
            ..Default::default()
        };
        let (page, total) = db.violations(&q).unwrap();
        assert_eq!((page.len(), total), (3, 3));

        let q = ViolationQuery {
            severity: Some(Severity::Major),
            ..Default::default()
        };
        assert_eq!(subjects(&db.violations(&q).unwrap().0), [("x", 1000)]);

        let q = ViolationQuery {
            since_ms: Some(2000),
            ..Default::default()
        };
        assert_eq!(db.violations(&q).unwrap().1, 2);
        let q = ViolationQuery {
            until_ms: Some(2000),
            ..Default::default()
        };
        assert_eq!(db.violations(&q).unwrap().1, 3);

        let q = ViolationQuery {
            limit: 2,
            offset: 2,
            ..Default::default()
        };
        let (page, total) = db.violations(&q).unwrap();
        assert_eq!(total, 5);
        assert_eq!(subjects(&page), [("x", 1000), ("b", 1000)]);
        let q = ViolationQuery {
            limit: 2,
            offset: u64::MAX,
            ..Default::default()
        };
        assert_eq!(db.violations(&q).unwrap(), (vec![], 5));
    }

    #[test]
    fn by_id_and_serialisation() {
        let db = seeded();
        let (all, _) = db.violations(&ViolationQuery::default()).unwrap();
        let one = db.violation(all[0].id).unwrap().unwrap();
        assert_eq!(one, all[0]);
        assert_eq!(one.to_violation(), violation("S-07", "d", Severity::Minor));
        assert!(db.violation(9_999).unwrap().is_none());
        let json = serde_json::to_value(&one).unwrap();
        assert_eq!(json["severity"], "minor");
        assert_eq!(json["tier"], "A");
        assert_eq!(json["observed_state"]["subject"], "d");
        assert_eq!(json["taken_at"], "1970-01-01T00:00:02.000Z");
    }

    #[test]
    fn stats_and_last_per_invariant() {
        let db = seeded();
        let stats = db.violation_stats(None).unwrap();
        let s01 = stats.iter().find(|s| s.invariant_id == "S-01").unwrap();
        assert_eq!(
            (s01.count, s01.first_seen_ms, s01.last_seen_ms),
            (3, 1000, 2000)
        );
        assert_eq!(stats.len(), 3);
        let recent = db.violation_stats(Some(1500)).unwrap();
        assert_eq!(recent.len(), 2);
        assert!(
            recent
                .iter()
                .all(|s| s.first_seen_ms == 2000 && s.count == 1)
        );

        let last = db.last_violation_per_invariant().unwrap();
        assert_eq!(
            last.keys().map(String::as_str).collect::<Vec<_>>(),
            ["E-02", "S-01", "S-07"]
        );
        assert_eq!(last["S-01"].taken_at_ms, 2000);
        assert_eq!(last["E-02"].taken_at_ms, 1000);
    }

    #[test]
    fn last_cycle_round_trips() {
        let empty = StateDb::open_in_memory().unwrap();
        assert!(empty.last_cycle().unwrap().is_none());
        let db = seeded();
        let c = db.last_cycle().unwrap().unwrap();
        assert_eq!(c.taken_at_ms, 2000);
        assert_eq!((c.started_at_ms, c.finished_at_ms), (1990, 2010));
        assert_eq!(c.violation_count, 2);
        assert_eq!(c.trigger, "test");
        assert!(c.checks_run.is_empty());
        assert_eq!(c.sources_unavailable.len(), 1);

        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["sources_unavailable"][0]["source"], "redis");
    }
}
