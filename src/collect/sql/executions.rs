//! The executions: every non-terminal row and the terminal rows of the recent window, in one
//! statement whose shape depends on the schema (a skip-scan through a status index when there is
//! one, one scan otherwise; both read the same rows). While reading, the non-terminal rows can be
//! tallied per agent to answer the executions cascade entry without its SQL arm
//! (`ExecutionsTally`, used by `cascade`).
//! Each status word is classified into a phase here ([`classify_phase`]), with the configured
//! lists.
//!
//! It must not read any other table.

use std::collections::{BTreeMap, BTreeSet};

use super::error::SqlError;
use super::query::{col_or_null, placeholders, q};
use super::reader::{Dialect, Reader, TimeColumn, text_floor};
use super::schema::ExecutionsSchema;
use super::value::{Cell, CellRef, anomaly, backlog_facts, parse_ts_value, truthy, value_text};
use crate::config::platform::{CascadeEntry, PlatformConfig, Statuses};
use canary_invariants::{Agent, Anomaly, AnomalyKind, Execution, OrphanRows, Phase};

/// The recent-terminal arm on SQLite as three disjoint conditions, each a range of an index on
/// `completed` (`c`), together selecting exactly the rows of the single arm (the text prefilter
/// `c >= floor OR c < '1970-01-01' OR c IS NULL`, then the window):
/// - `c >= floor` (date-time text of the last 14 hours, and any text sorting above digits),
///   then the window (`julianday`, or a value it cannot parse, kept for Rust to report);
/// - `c < '1970-01-01'` and not the first (numbers, text sorting below dates), the same test;
/// - `c IS NULL`, windowed by `started` when that column exists (what E-03 looks for).
fn recent_ranges_sqlite(
    c: &str,
    started: &str,
    has_started: bool,
    at_least: &str,
    at_params: &[Cell],
    cutoff_ms: i64,
) -> Vec<(String, Vec<Cell>)> {
    let floor = || Cell::Text(text_floor(cutoff_ms));
    let with_window = |range: String, mut p: Vec<Cell>| {
        p.extend(at_params.iter().cloned());
        (format!("{range} AND ({at_least})"), p)
    };
    let mut out = vec![
        with_window(format!("{c} >= ?"), vec![floor()]),
        with_window(
            format!("{c} < '1970-01-01' AND NOT ({c} >= ?)"),
            vec![floor()],
        ),
    ];
    if has_started {
        let (started_at_least, started_params) =
            Dialect::Sqlite.time_at_least(started, TimeColumn::Text, cutoff_ms);
        out.push((
            format!("{c} IS NULL AND ({started_at_least})"),
            started_params,
        ));
    }
    out
}

/// Classifies a status word with the configured lists; a word in none of them is
/// [`Phase::Other`] (non-terminal, so E-02 still watches it). Matching is exact, as in the SQL
/// prefilter, so both sides agree on what is terminal.
pub fn classify_phase(status: &str, statuses: &Statuses) -> Phase {
    let is = |list: &[String]| list.iter().any(|w| w == status);
    if is(&statuses.terminal) {
        Phase::Terminal
    } else if is(&statuses.running) {
        Phase::Running
    } else if is(&statuses.queued) {
        Phase::Queued
    } else if is(&statuses.pending_retry) {
        Phase::PendingRetry
    } else {
        Phase::Other
    }
}

/// Every non-terminal row and the recently completed terminal ones; with `tally`, also the
/// count of non-terminal rows per agent name for the executions cascade entry.
pub(super) fn read_executions(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &ExecutionsSchema,
    cutoff_ms: i64,
    tally: bool,
    anomalies: &mut Vec<Anomaly>,
) -> Result<(Vec<Execution>, Option<ExecutionsTally>), SqlError> {
    let e = &cfg.tables.executions;
    let terminal = &cfg.statuses.terminal;
    let dialect = r.dialect();
    // Placeholders of the select list come first, then those of the filter.
    let (select, select_params) = select_list(cfg, schema);
    let mut params = select_params.clone();
    let st = q(&e.status);
    let terms = placeholders(terminal.len());
    let words = || terminal.iter().map(|w| Cell::Text(w.clone()));

    // Terminal rows completed recently. The database parses the ISO and `datetime()` shapes
    // itself, so the window needs no string comparison; values it cannot parse (epoch numbers,
    // garbage) are fetched too, so Rust parses or reports them.
    let mut recent_arm: Option<(String, Vec<Cell>)> = None;
    // The same rows as `recent_arm`, as disjoint ranges (SQLite, text prefilter).
    let mut recent_ranges: Option<Vec<(String, Vec<Cell>)>> = None;
    if schema.completed_at {
        let c = q(&e.completed_at);
        // Cheap prefilter first: without an index on `completed_at` every terminal row is read,
        // and `julianday()` on each of them was most of the query (0.7 s at 1 M rows). Text
        // that sorts as a date-time before `text_floor` (14 hours before the cutoff, which
        // covers any zone offset the parser reads) cannot be in the window, so it is skipped by
        // a plain comparison. This drops only such date-prefixed text (`2020-01-01 garbage`) from
        // the unparseable-value report; every other shape (numbers, NULL, text sorting below
        // '1970' or above the floor) still reaches `julianday()`. Written as three ranges so
        // that a platform with an index on `completed_at` gets index lookups instead of the scan
        // (88 ms instead of ~400 ms at 1 M rows, benches/RESULTS.md).
        // (`Dialect::text_prefilter`: `None` for a native date-time column, compared directly.)
        let (at_least, at_params) = dialect.time_at_least(&c, schema.completed_at_kind, cutoff_ms);
        if dialect == Dialect::Sqlite {
            recent_ranges = Some(recent_ranges_sqlite(
                &c,
                &q(&e.started_at),
                schema.started_at,
                &at_least,
                &at_params,
                cutoff_ms,
            ));
        }
        let (mut arm, mut arm_params) = match dialect.text_prefilter(
            &c,
            schema.completed_at_kind,
            schema.completed_range_collation,
        ) {
            Some(prefilter) => {
                let mut p = vec![Cell::Text(text_floor(cutoff_ms))];
                p.extend(at_params);
                (format!("{prefilter} AND ({at_least}"), p)
            }
            None => (format!("({at_least}"), at_params),
        };
        if schema.started_at {
            // Terminal rows that never got a `completed_at` (what E-03 looks for) are windowed
            // by their start instead.
            let (started, started_params) =
                dialect.time_at_least(&q(&e.started_at), schema.started_at_kind, cutoff_ms);
            arm.push_str(&format!(" OR ({c} IS NULL AND ({started}))"));
            arm_params.extend(started_params);
        }
        arm.push(')');
        recent_arm = Some((arm, arm_params));
    }

    let sql = if terminal.is_empty() {
        format!("{select} WHERE 1 = 1")
    } else if schema.status_indexed {
        // With an index on status, the few non-terminal rows are fetched through it: a
        // recursive skip-scan lists the distinct statuses (one index probe each; a platform has
        // a handful of status words), and the rows of the non-terminal ones are looked up. Only
        // the recent-terminal arm scans the table. At 1 M rows: ~10 ms instead of a scan.
        let non_terminal = match dialect {
            Dialect::Sqlite => {
                format!("{select} WHERE {st} IN (SELECT v FROM st WHERE v NOT IN ({terms}))")
            }
            // PostgreSQL cannot know the CTE yields a handful of statuses (it guesses ~100), so
            // it hash-joined them against a scan of the whole table (~300 ms at 1 M rows). A
            // LATERAL subquery per status, kept from being flattened into a plain join by
            // `OFFSET 0`, is one index lookup per non-terminal status, as on SQLite (~30 ms).
            // Same rows, same parameter order (the select list's, then the terminal words).
            Dialect::Postgres => format!(
                "SELECT x.* FROM st CROSS JOIN LATERAL ({select} WHERE {st} = st.v OFFSET 0) AS x \
                 WHERE st.v NOT IN ({terms})"
            ),
        };
        // `IS ?` bound to NULL rather than `IS NULL`: on a NOT NULL column SQLite folds the
        // latter to false but still plans (and shows) a table scan; the former is an index probe.
        let is_null = match dialect {
            Dialect::Sqlite => "IS ?",
            Dialect::Postgres => "IS NULL",
        };
        let mut sql = format!(
            "WITH RECURSIVE st(v) AS (SELECT (SELECT min({st}) FROM {t}) UNION ALL \
             SELECT (SELECT min({st}) FROM {t} WHERE {st} > st.v) FROM st WHERE st.v IS NOT NULL) \
             {non_terminal} UNION ALL {select} WHERE {st} {is_null}",
            t = q(&e.table),
        );
        params.extend(words());
        params.extend(select_params.iter().cloned());
        if dialect == Dialect::Sqlite {
            params.push(Cell::Null);
        }
        if let (Some(ranges), true) = (
            recent_ranges.filter(|_| schema.completed_indexed),
            dialect == Dialect::Sqlite,
        ) {
            // The platform indexes terminal rows by `completed_at`: one index range per value
            // shape instead of a scan of the history (see `recent_ranges`). The status words
            // are inlined as literals so SQLite can prove a partial index's `WHERE status IN
            // (...)` holds, and wrapped in `likely()` so it prefers that range to the status
            // index (which would read every terminal row).
            let literals = terminal
                .iter()
                .map(|w| format!("'{}'", w.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            for (range, range_params) in ranges {
                sql.push_str(&format!(
                    " UNION ALL {select} WHERE likely({st} IN ({literals})) AND {range}"
                ));
                params.extend(select_params.iter().cloned());
                params.extend(range_params);
            }
        } else if let Some((arm, arm_params)) = recent_arm {
            // `+` keeps SQLite from reading the terminal rows through the status index (one
            // random table read per row); the scan is cheaper. (PostgreSQL has no unary `+` on
            // text and costs the choice itself.)
            let plus = if dialect == Dialect::Sqlite { "+" } else { "" };
            sql.push_str(&format!(
                " UNION ALL {select} WHERE {plus}{st} IN ({terms}) AND {arm}"
            ));
            params.extend(select_params.iter().cloned());
            params.extend(words());
            params.extend(arm_params);
        }
        sql
    } else {
        // No usable index: one scan answers both arms.
        let mut filter = format!("{st} IS NULL OR {st} NOT IN ({terms})");
        params.extend(words());
        if let Some((arm, arm_params)) = recent_arm {
            filter.push_str(&format!(" OR ({arm})"));
            params.extend(arm_params);
        }
        format!("{select} WHERE {filter}")
    };
    let mut out = Vec::new();
    let mut tally = tally.then(|| ExecutionsTally {
        all_text: true,
        per_agent: BTreeMap::new(),
    });
    r.each_row(&sql, &params, "reading executions", |cells: Cells<'_>| {
        if let Some(tally) = tally.as_mut() {
            // Before any row is skipped: the SQL arm counts rows whatever their id.
            let [_, agent, status, ..] = cells;
            tally.add(agent, status, terminal);
        }
        out.extend(execution(cfg, schema, cells, anomalies));
    })?;
    sort_by_id(&mut out);
    Ok((out, tally))
}

/// One row of [`select_list`]: id, agent, status, started, completed, queued, lease, session
/// flag, queued rows' metadata.
type Cells<'a> = [CellRef<'a>; 9];

/// The select list every executions statement shares (so [`execution`] parses any of them) and
/// its parameters, which come before those of the statement's filter.
fn select_list(cfg: &PlatformConfig, schema: &ExecutionsSchema) -> (String, Vec<Cell>) {
    let e = &cfg.tables.executions;
    let mut params: Vec<Cell> = Vec::new();
    let session = if schema.session_id {
        let c = q(&e.session_id);
        format!("({c} IS NOT NULL AND CAST({c} AS TEXT) <> '')")
    } else {
        "0".to_owned()
    };
    // Only queued rows' metadata is fetched: the others are never judged on it.
    let queued = &cfg.statuses.queued;
    let backlog = if schema.backlog_metadata && !queued.is_empty() {
        params.extend(queued.iter().map(|w| Cell::Text(w.clone())));
        format!(
            "CASE WHEN {} IN ({}) THEN {} END",
            q(&e.status),
            placeholders(queued.len()),
            q(&e.backlog_metadata)
        )
    } else {
        "NULL".to_owned()
    };
    let select = format!(
        "SELECT {}, {}, {}, {}, {}, {}, {}, {}, {} FROM {}",
        q(&e.id),
        q(&e.agent_name),
        q(&e.status),
        col_or_null(schema.started_at, &e.started_at),
        col_or_null(schema.completed_at, &e.completed_at),
        col_or_null(schema.queued_at, &e.queued_at),
        col_or_null(schema.lease_expires_at, &e.lease_expires_at),
        session,
        backlog,
        q(&e.table),
    );
    (select, params)
}

/// One row of [`select_list`] as an execution; `None` (with an anomaly) for a NULL id.
fn execution(
    cfg: &PlatformConfig,
    schema: &ExecutionsSchema,
    [
        id,
        agent,
        status,
        started,
        completed,
        queued,
        lease,
        session,
        metadata,
    ]: Cells<'_>,
    anomalies: &mut Vec<Anomaly>,
) -> Option<Execution> {
    let e = &cfg.tables.executions;
    let Some(id) = value_text(id) else {
        anomalies.push(anomaly(
            AnomalyKind::NullId,
            format!("{}.{}", e.table, e.id),
            "row with NULL id skipped",
        ));
        return None;
    };
    let subject = |column: &str| format!("{}.{}.{}", e.table, id, column);
    let agent_name = value_text(agent).unwrap_or_else(|| {
        anomalies.push(anomaly(
            AnomalyKind::NullAgent,
            subject(&e.agent_name),
            "NULL agent name",
        ));
        String::new()
    });
    let status = value_text(status).unwrap_or_else(|| {
        anomalies.push(anomaly(
            AnomalyKind::NullStatus,
            subject(&e.status),
            "NULL status",
        ));
        String::new()
    });
    let mut ts = |v: CellRef<'_>, column: &str| parse_ts_value(v, || subject(column), anomalies);
    let started_at_ms = ts(started, &e.started_at);
    let completed_at_ms = ts(completed, &e.completed_at);
    let queued_at_ms = ts(queued, &e.queued_at);
    let lease_expires_at_ms = ts(lease, &e.lease_expires_at);
    let phase = classify_phase(&status, &cfg.statuses);
    let backlog = (schema.backlog_metadata && phase == Phase::Queued)
        .then(|| backlog_facts(metadata, &cfg.backlog_metadata_skip));
    Some(Execution {
        phase,
        id,
        agent_name,
        status,
        started_at_ms,
        completed_at_ms,
        queued_at_ms,
        leased: !lease.is_null(),
        lease_expires_at_ms,
        completed_at_set: !completed.is_null(),
        queued_at_set: !queued.is_null(),
        has_session: truthy(session),
        backlog,
    })
}

/// The rows whose id is one of `ids`, whatever their status or age, parsed as the main read
/// parses its rows (S-01's recheck, `sql::recheck`). One statement per `chunk` ids, every id
/// bound as a parameter; rows sorted by id.
pub(super) fn read_by_id(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &ExecutionsSchema,
    ids: &[String],
    chunk: usize,
    anomalies: &mut Vec<Anomaly>,
) -> Result<Vec<Execution>, SqlError> {
    let (select, select_params) = select_list(cfg, schema);
    let mut out = Vec::new();
    let sqlite = r.dialect() == Dialect::Sqlite;
    for ids in ids.chunks(chunk.max(1)) {
        let mut keys: Vec<Cell> = Vec::with_capacity(ids.len());
        for id in ids {
            keys.push(Cell::Text(id.clone()));
            // An id the main read got from an integer cell: SQLite compares an untyped column's
            // integer with text as unequal, so the integer is asked for too. (PostgreSQL reads
            // the bound text as the column's type; an integer beside it would not compare.)
            if sqlite
                && let Ok(n) = id.parse::<i64>()
                && n.to_string() == *id
            {
                keys.push(Cell::Integer(n));
            }
        }
        let sql = format!(
            "{select} WHERE {} IN ({})",
            q(&cfg.tables.executions.id),
            placeholders(keys.len())
        );
        let mut params = select_params.clone();
        params.extend(keys);
        r.each_row(&sql, &params, "re-reading executions by id", |cells| {
            out.extend(execution(cfg, schema, cells, anomalies));
        })?;
    }
    sort_by_id(&mut out);
    Ok(out)
}

/// Sorts rows by id, stably (rows with equal ids keep their order), like `sort_by` on the ids,
/// but moving each row about once instead of about log₂ n times, and without a second buffer of
/// rows: an `Execution` is ~180 bytes, and a merge sort of the 44 000 rows read at L moved
/// ~100 MB through an 8 MB scratch buffer (~4 % of the cycle's CPU, on the SQL thread). The ids
/// are sorted as `(&str, position)` pairs, then the rows are permuted in place, cycle by cycle.
fn sort_by_id(rows: &mut [Execution]) {
    // `order[i]` = where the row that belongs at `i` is now.
    let mut order: Vec<usize> = {
        let mut keyed: Vec<(&str, usize)> = rows
            .iter()
            .enumerate()
            .map(|(at, row)| (row.id.as_str(), at))
            .collect();
        keyed.sort_unstable(); // (id, position) pairs are distinct: stable by construction
        keyed.into_iter().map(|(_, at)| at).collect()
    };
    for start in 0..order.len() {
        let mut at = start;
        // Follow the cycle through `start`, marking each place done (`order[at] == at`).
        while let Some(slot) = order.get_mut(at) {
            let from = std::mem::replace(slot, at);
            if from == start || from == at {
                break;
            }
            rows.swap(at, from);
            at = from;
        }
    }
}

/// Non-terminal execution rows per agent name, counted while reading them, to answer the
/// executions cascade entry without its SQL arm.
///
/// That arm walked the whole agent index of the executions table (1 M entries at L, ~70–90 ms)
/// only to find rows the executions query has already returned. The answers agree when every
/// compared value is text (`all_text`, with the roster's names also text): SQL `=` between text
/// values of plain tables (no view, no declared collation, see `schema::TableInfo::not_plain`) is
/// byte equality, as in Rust. A number or blob anywhere falls back to the SQL arm.
#[derive(Debug)]
pub(super) struct ExecutionsTally {
    /// Every agent name and status seen was text or NULL.
    pub(super) all_text: bool,
    /// Non-terminal rows per (non-NULL) agent name. Ordered on purpose: a `HashMap` here (one
    /// hash per row instead of a dozen string comparisons) saved ~1 % of the L cycle's CPU but
    /// raised its peak RSS by ~20 MB, reproducibly (glibc's heap after the table's growth;
    /// benches/RESULTS.md).
    per_agent: BTreeMap<String, u64>,
}

impl ExecutionsTally {
    fn add(&mut self, agent: CellRef<'_>, status: CellRef<'_>, terminal: &[String]) {
        let non_terminal = match status {
            CellRef::Null => true,
            CellRef::Text(s) => !terminal.iter().any(|t| t == s),
            _ => {
                self.all_text = false;
                return;
            }
        };
        match agent {
            // The SQL arm never matches a NULL agent name either.
            CellRef::Null => {}
            CellRef::Text(a) if non_terminal => match self.per_agent.get_mut(a) {
                Some(n) => *n += 1,
                None => {
                    self.per_agent.insert(a.to_owned(), 1);
                }
            },
            CellRef::Text(_) => {}
            _ => self.all_text = false,
        }
    }

    /// The entry's orphans: counted agents absent from the roster (soft-deleted agents are in it).
    pub(super) fn orphans(self, roster: &[Agent], entry: &CascadeEntry) -> Vec<OrphanRows> {
        let known: BTreeSet<&str> = roster.iter().map(|a| a.name.as_str()).collect();
        self.per_agent
            .into_iter()
            .filter(|(agent, _)| !known.contains(agent.as_str()))
            .map(|(agent_name, rows)| OrphanRows {
                table: entry.table.clone(),
                agent_name,
                rows,
                severity: entry.severity,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sort_by_id_stably() {
        // The agent name marks each row's input position.
        let rows = |ids: &[String]| -> Vec<Execution> {
            let mut b = canary_invariants::testing::SnapshotBuilder::new();
            for (at, id) in ids.iter().enumerate() {
                b = b.running(id, &at.to_string(), 0);
            }
            b.build().sql.map(|sql| sql.executions).unwrap_or_default()
        };
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let mut few = rows(&ids(&["b", "a", "b", "", "a"]));
        sort_by_id(&mut few);
        let said: Vec<(&str, &str)> = few
            .iter()
            .map(|r| (r.id.as_str(), r.agent_name.as_str()))
            .collect();
        assert_eq!(
            said,
            [("", "3"), ("a", "1"), ("a", "4"), ("b", "0"), ("b", "2")]
        );
        let mut none: [Execution; 0] = [];
        sort_by_id(&mut none);
        // Long cycles and many equal ids: the same order as the library's stable sort.
        let mut state = 7u64;
        let many_ids: Vec<String> = (0..2_000)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                ((state >> 33) % 300).to_string()
            })
            .collect();
        let mut many = rows(&many_ids);
        assert_eq!(many.len(), 2_000);
        assert!(
            !many.is_sorted_by(|a, b| a.id <= b.id),
            "the input is shuffled"
        );
        let mut expected = many.clone();
        expected.sort_by(|x, y| x.id.cmp(&y.id));
        sort_by_id(&mut many);
        assert_eq!(many, expected);
    }

    #[test]
    fn phases_follow_the_configured_words() {
        let s = Statuses::default();
        assert_eq!(classify_phase("queued", &s), Phase::Queued);
        assert_eq!(classify_phase("running", &s), Phase::Running);
        assert_eq!(classify_phase("pending_retry", &s), Phase::PendingRetry);
        for t in ["success", "failed", "cancelled", "skipped"] {
            assert_eq!(classify_phase(t, &s), Phase::Terminal, "{t}");
        }
        // Not terminal on the reference platform: treating them so would blind E-02.
        assert_eq!(classify_phase("completed", &s), Phase::Other);
        assert_eq!(classify_phase("timeout", &s), Phase::Other);
        assert_eq!(classify_phase("Running", &s), Phase::Other);
        assert_eq!(classify_phase("", &s), Phase::Other);
    }

    #[test]
    fn custom_words() {
        let s = Statuses {
            queued: vec!["waiting".into()],
            running: vec!["busy".into()],
            pending_retry: vec![],
            terminal: vec!["done".into()],
        };
        assert_eq!(classify_phase("busy", &s), Phase::Running);
        assert_eq!(classify_phase("done", &s), Phase::Terminal);
        assert_eq!(classify_phase("running", &s), Phase::Other);
    }
}
