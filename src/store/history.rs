//! Read-only history queries behind `canary violations`, the admin API's violation and status
//! endpoints and `/readyz`: paged violation episodes with filters and a total, one episode by id,
//! per invariant/severity stats (from the per-cycle counts), the last cycle and the last episode
//! of each invariant. It must not write: "last seen" and "cycles" of an open episode are derived
//! in the query, never stored per cycle.

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
/// an episode matches when it was seen at some point in `[since_ms, until_ms)`: first seen
/// before `until_ms`, last seen at or after `since_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationQuery {
    /// Only this invariant.
    pub invariant_id: Option<String>,
    /// Only this severity.
    pub severity: Option<Severity>,
    /// Only this tier (the episode's, as recorded with its evidence).
    pub tier: Option<Tier>,
    /// Last seen (for an open episode: its invariant's last red cycle) at or after this
    /// snapshot time.
    pub since_ms: Option<Millis>,
    /// First seen strictly before this snapshot time.
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
            tier: None,
            since_ms: None,
            until_ms: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// A violation episode as stored: one (invariant, subject) from the cycle that found it until
/// the cycle that no longer did, with its latest evidence (the [`Violation`] fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredViolation {
    /// Episode id (what alerts and cycle results cite; stable while the episode is open).
    pub id: i64,
    /// The cycle of the latest evidence.
    pub cycle_id: i64,
    /// Catalog id.
    pub invariant_id: String,
    /// Tier.
    pub tier: Tier,
    /// Severity (latest evidence).
    pub severity: Severity,
    /// What is broken.
    pub subject: String,
    /// One human line (latest evidence).
    pub summary: String,
    /// JSON evidence (latest).
    pub observed_state: serde_json::Value,
    /// Machine-readable reason code (latest evidence).
    pub signal: String,
    /// Snapshot time of the latest evidence, unix ms.
    pub taken_at_ms: Millis,
    /// Snapshot time of the latest evidence, RFC 3339 UTC.
    pub taken_at: String,
    /// The cycle that found it.
    pub first_cycle_id: i64,
    /// Snapshot time of the cycle that found it, unix ms.
    pub first_seen_ms: Millis,
    /// The same, RFC 3339 UTC.
    pub first_seen: String,
    /// The last cycle its invariant was red while the episode was open, unix ms (derived from
    /// the recorded cycles while open, frozen when it closes).
    pub last_seen_ms: Millis,
    /// The same, RFC 3339 UTC.
    pub last_seen: String,
    /// Red cycles of its invariant while the episode was open (retained cycles only while open).
    pub cycles: u64,
    /// `open` or `closed`.
    pub status: &'static str,
    /// Snapshot time of the cycle that no longer found it, unix ms (`None` while open).
    pub closed_at_ms: Option<Millis>,
    /// The same, RFC 3339 UTC.
    pub closed_at: Option<String>,
}

impl StoredViolation {
    /// The violation (latest evidence) without its storage fields.
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

/// Count and first/last red cycle of one invariant at one (worst) severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViolationStat {
    /// Catalog id.
    pub invariant_id: String,
    /// The invariant's worst severity in those cycles.
    pub severity: Severity,
    /// Violations found in the window, summed over its cycles (full counts, not the evidence
    /// kept).
    pub count: u64,
    /// Red cycles in the window.
    pub cycles: u64,
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
    /// Violations it found (the full count, whatever was kept as evidence).
    pub violation_count: u64,
}

/// An episode's last sighting: frozen when closed; while open, its invariant's last red cycle.
macro_rules! last_seen_expr {
    () => {
        "COALESCE(e.last_seen, (SELECT c.taken_at FROM cycle_invariants ci \
         JOIN cycles c ON c.id = ci.cycle_id \
         WHERE ci.invariant_id = e.invariant_id AND ci.cycle_id >= e.first_cycle_id \
         ORDER BY ci.cycle_id DESC LIMIT 1), e.evidence_at)"
    };
}

/// The episode columns, with "last seen" and "cycles" derived for open episodes: the red cycles
/// of its invariant since it opened (`cycle_invariants` holds one row per red invariant and
/// cycle), so an open episode is never rewritten just because another cycle passed.
const VIOLATION_COLUMNS: &str = concat!(
    "e.id, e.evidence_cycle_id, e.invariant_id, e.tier, e.severity, \
     e.subject, e.summary, e.observed_state, e.signal, e.evidence_at, e.first_cycle_id, \
     e.first_seen, ",
    last_seen_expr!(),
    ", COALESCE(e.cycles, MAX(1, (SELECT COUNT(*) FROM cycle_invariants ci \
         WHERE ci.invariant_id = e.invariant_id AND ci.cycle_id >= e.first_cycle_id))), \
     e.closed_at"
);

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
    first_cycle_id: i64,
    first_seen_ms: Millis,
    last_seen_ms: Millis,
    cycles: i64,
    closed_at_ms: Option<Millis>,
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
            first_cycle_id: r.get(10)?,
            first_seen_ms: r.get(11)?,
            last_seen_ms: r.get(12)?,
            cycles: r.get(13)?,
            closed_at_ms: r.get(14)?,
        })
    }

    fn decode(self, op: &'static str) -> Result<StoredViolation, StoreError> {
        Ok(StoredViolation {
            id: self.id,
            cycle_id: self.cycle_id,
            tier: codec::parse_tier(op, "violation_episodes.tier", &self.tier)?,
            severity: codec::parse_severity(op, "violation_episodes.severity", &self.severity)?,
            observed_state: serde_json::from_str(&self.observed_state).json_ctx(op)?,
            invariant_id: self.invariant_id,
            subject: self.subject,
            summary: self.summary,
            signal: self.signal,
            taken_at_ms: self.taken_at_ms,
            taken_at: codec::rfc3339(self.taken_at_ms),
            first_cycle_id: self.first_cycle_id,
            first_seen_ms: self.first_seen_ms,
            first_seen: codec::rfc3339(self.first_seen_ms),
            last_seen_ms: self.last_seen_ms,
            last_seen: codec::rfc3339(self.last_seen_ms),
            cycles: codec::to_u64(op, "violation_episodes.cycles", self.cycles)?,
            status: if self.closed_at_ms.is_some() {
                "closed"
            } else {
                "open"
            },
            closed_at_ms: self.closed_at_ms,
            closed_at: self.closed_at_ms.map(codec::rfc3339),
        })
    }
}

impl StateDb {
    /// One page of violation episodes matching `q`, newest first (by first sighting), and how
    /// many match in total. An episode matches a time window when it was seen in it: first seen
    /// before `until`, last seen at or after `since`.
    pub fn violations(
        &self,
        q: &ViolationQuery,
    ) -> Result<(Vec<StoredViolation>, u64), StoreError> {
        const OP: &str = "violations";
        // Only the filters actually set become SQL terms, so the planner can use
        // (invariant_id, first_seen) or (first_seen); `?n IS NULL OR ...` would defeat both.
        let mut terms: Vec<&str> = Vec::new();
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(id) = &q.invariant_id {
            terms.push("e.invariant_id = ?");
            args.push(SqlValue::Text(id.clone()));
        }
        if let Some(sev) = q.severity {
            terms.push("e.severity = ?");
            args.push(SqlValue::Text(sev.as_str().to_owned()));
        }
        if let Some(tier) = q.tier {
            terms.push("e.tier = ?");
            args.push(SqlValue::Text(tier.as_str().to_owned()));
        }
        if let Some(since) = q.since_ms {
            terms.push(concat!(last_seen_expr!(), " >= ?"));
            args.push(SqlValue::Integer(since));
        }
        if let Some(until) = q.until_ms {
            terms.push("e.first_seen < ?");
            args.push(SqlValue::Integer(until));
        }
        let filter = if terms.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", terms.join(" AND "))
        };

        let total: i64 = self
            .conn
            .prepare_cached(&format!(
                "SELECT COUNT(*) FROM violation_episodes e{filter}"
            ))
            .ctx(OP)?
            .query_row(params_from_iter(args.iter()), |r| r.get(0))
            .ctx(OP)?;

        let mut page_args = args;
        page_args.push(SqlValue::Integer(i64::from(q.limit.min(MAX_PAGE))));
        page_args.push(SqlValue::Integer(codec::sat_i64(q.offset)));
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {VIOLATION_COLUMNS} FROM violation_episodes e{filter}
                 ORDER BY e.first_seen DESC, e.id DESC LIMIT ? OFFSET ?"
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

    /// One violation episode by id.
    pub fn violation(&self, id: i64) -> Result<Option<StoredViolation>, StoreError> {
        const OP: &str = "violation";
        self.conn
            .prepare_cached(&format!(
                "SELECT {VIOLATION_COLUMNS} FROM violation_episodes e WHERE e.id = ?1"
            ))
            .ctx(OP)?
            .query_row([id], RawViolation::from_row)
            .optional()
            .ctx(OP)?
            .map(|r| r.decode(OP))
            .transpose()
    }

    /// Violation counts per invariant and worst severity with the first/last red cycle's
    /// snapshot time, over cycles whose snapshot is at or after `since_ms` (all retained history
    /// when `None`), ordered by invariant then severity. Counts are the cycles' full counts.
    pub fn violation_stats(
        &self,
        since_ms: Option<Millis>,
    ) -> Result<Vec<ViolationStat>, StoreError> {
        const OP: &str = "violation_stats";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ci.invariant_id, ci.severity, SUM(ci.violations), MIN(c.taken_at),
                        MAX(c.taken_at), COUNT(*)
                 FROM cycle_invariants ci JOIN cycles c ON c.id = ci.cycle_id
                 WHERE c.taken_at >= ?1
                 GROUP BY ci.invariant_id, ci.severity ORDER BY ci.invariant_id, ci.severity",
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
                    r.get::<_, i64>(5)?,
                ))
            })
            .ctx(OP)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(OP)?;
        raws.into_iter()
            .map(|(invariant_id, severity, count, first, last, cycles)| {
                Ok(ViolationStat {
                    severity: codec::parse_severity(OP, "cycle_invariants.severity", &severity)?,
                    count: codec::to_u64(OP, "SUM(violations)", count)?,
                    cycles: codec::to_u64(OP, "COUNT(*)", cycles)?,
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

    /// The most recently opened violation episode of each invariant that has any (for the
    /// status endpoint's "last violation"), by invariant id.
    pub fn last_violation_per_invariant(
        &self,
    ) -> Result<BTreeMap<String, StoredViolation>, StoreError> {
        const OP: &str = "last_violation_per_invariant";
        // MAX(id) = last opened: ids grow with every insert, while snapshot times follow a wall
        // clock that may step back. The grouped scan is covered by (invariant_id, first_seen).
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {VIOLATION_COLUMNS} FROM violation_episodes e
                 WHERE e.id IN (SELECT MAX(id) FROM violation_episodes GROUP BY invariant_id)"
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
        // Cycle at t=1000: S-01 critical ×2 (a, b), E-02 major (x).
        // Cycle at t=2000: S-01 still on a (b gone), E-02 green (x gone), S-07 minor (d) new.
        record(
            &mut db,
            1000,
            &[
                violation("S-01", "a", Severity::Critical),
                violation("S-01", "b", Severity::Critical),
                Violation {
                    tier: Tier::B,
                    ..violation("E-02", "x", Severity::Major)
                },
            ],
            &[
                state("S-01", Outcome::Red, true, 1000),
                state("E-02", Outcome::Red, true, 1000),
            ],
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
            &[
                state("S-01", Outcome::Red, true, 1000),
                state("E-02", Outcome::Green, false, 2000),
                state("S-07", Outcome::Red, true, 2000),
            ],
            &[],
            &m,
            &m,
        )
        .unwrap();
        db
    }

    fn subjects(page: &[StoredViolation]) -> Vec<(&str, Millis)> {
        page.iter()
            .map(|v| (v.subject.as_str(), v.first_seen_ms))
            .collect()
    }

    #[test]
    fn filters_paging_and_total() {
        let db = seeded();
        let (all, total) = db.violations(&ViolationQuery::default()).unwrap();
        assert_eq!(total, 4, "one row per episode, not per cycle");
        // Newest first sighting first; within a cycle, the later insert first.
        assert_eq!(
            subjects(&all),
            [("d", 2000), ("x", 1000), ("b", 1000), ("a", 1000)]
        );

        let q = ViolationQuery {
            invariant_id: Some("S-01".into()),
            ..Default::default()
        };
        let (page, total) = db.violations(&q).unwrap();
        assert_eq!((page.len(), total), (2, 2));

        let q = ViolationQuery {
            severity: Some(Severity::Major),
            ..Default::default()
        };
        assert_eq!(subjects(&db.violations(&q).unwrap().0), [("x", 1000)]);

        let q = ViolationQuery {
            tier: Some(Tier::B),
            ..Default::default()
        };
        assert_eq!(subjects(&db.violations(&q).unwrap().0), [("x", 1000)]);
        let q = ViolationQuery {
            tier: Some(Tier::A),
            ..Default::default()
        };
        assert_eq!(
            subjects(&db.violations(&q).unwrap().0),
            [("d", 2000), ("b", 1000), ("a", 1000)]
        );

        // Open at or after 2000: the two still open (b and x were last seen at 1000).
        let q = ViolationQuery {
            since_ms: Some(2000),
            ..Default::default()
        };
        assert_eq!(
            subjects(&db.violations(&q).unwrap().0),
            [("d", 2000), ("a", 1000)]
        );
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
        assert_eq!(total, 4);
        assert_eq!(subjects(&page), [("b", 1000), ("a", 1000)]);
        let q = ViolationQuery {
            limit: 2,
            offset: u64::MAX,
            ..Default::default()
        };
        assert_eq!(db.violations(&q).unwrap(), (vec![], 4));
    }

    #[test]
    fn episodes_span_cycles_and_close() {
        let db = seeded();
        let (all, _) = db.violations(&ViolationQuery::default()).unwrap();
        let by = |s: &str| all.iter().find(|v| v.subject == s).unwrap();
        let a = by("a");
        assert_eq!((a.status, a.cycles, a.last_seen_ms), ("open", 2, 2000));
        assert_eq!((a.first_seen_ms, a.closed_at_ms), (1000, None));
        let b = by("b");
        assert_eq!((b.status, b.cycles, b.last_seen_ms), ("closed", 1, 1000));
        assert_eq!(b.closed_at_ms, Some(2000));
        let x = by("x");
        assert_eq!((x.status, x.closed_at_ms), ("closed", Some(2000)));
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json["status"], "open");
        assert_eq!(json["closed_at"], serde_json::Value::Null);
        assert_eq!(json["first_seen"], "1970-01-01T00:00:01.000Z");
        assert_eq!(json["last_seen"], "1970-01-01T00:00:02.000Z");
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
            (s01.count, s01.cycles, s01.first_seen_ms, s01.last_seen_ms),
            (3, 2, 1000, 2000)
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
        assert_eq!(
            last["S-01"].subject, "b",
            "the most recently opened episode"
        );
        assert_eq!(last["E-02"].first_seen_ms, 1000);
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
        assert_eq!(c.checks_run, ["E-02", "S-01", "S-07"]);
        assert_eq!(c.sources_unavailable.len(), 1);

        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["sources_unavailable"][0]["source"], "redis");
    }
}
