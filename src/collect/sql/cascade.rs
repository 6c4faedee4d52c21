//! Delete-cascade orphans: rows of the configured cascade tables whose agent is not in the
//! roster, counted per (table, agent) in ONE statement (a `UNION ALL` of anti-joins). The
//! executions table's entry may instead be answered from the rows the executions query already
//! read (`executions_cascade_entry`, `executions::ExecutionsTally`) when that is provably the
//! same answer.
//!
//! It must not read the roster or executions rows itself (it joins against the roster table).

use std::collections::BTreeSet;

use super::error::SqlError;
use super::query::{placeholders, q};
use super::reader::Reader;
use super::schema::{CascadeTable, Schema};
use super::value::{Cell, anomaly, as_integer, value_text};
use crate::config::platform::{CascadeEntry, ConditionOp, PlatformConfig};
use canary_invariants::{Anomaly, AnomalyKind, OrphanRows};

/// The index of the cascade entry that selects exactly the executions query's non-terminal rows
/// (the executions table, its agent column, and a filter keeping the rows whose status is none
/// of the configured terminal words), when the roster and executions tables are plain tables.
/// Names compare case-insensitively, as SQLite's identifiers do.
pub(super) fn executions_cascade_entry(cfg: &PlatformConfig, schema: &Schema) -> Option<usize> {
    let e = &cfg.tables.executions;
    let terminal: BTreeSet<&str> = cfg.statuses.terminal.iter().map(String::as_str).collect();
    if terminal.is_empty() || !schema.executions.plain || !schema.agents.plain {
        return None;
    }
    let mut matching = cfg.cascade.iter().enumerate().filter(|(_, c)| {
        c.table.eq_ignore_ascii_case(&e.table)
            && c.column.eq_ignore_ascii_case(&e.agent_name)
            && c.conditions.is_empty()
            && c.filter.as_ref().is_some_and(|f| {
                f.column.eq_ignore_ascii_case(&e.status)
                    && f.is_in.is_empty()
                    && f.not_in.iter().map(String::as_str).collect::<BTreeSet<_>>() == terminal
            })
    });
    let (index, _) = matching.next()?;
    // Two such entries would each be reported; keep the plain SQL path for that odd config.
    matching.next().is_none().then_some(index)
}

/// Which cascade entries can be scanned (see [`CascadeTable`]); the others are listed as skipped,
/// with an anomaly when the table is present but lacks a column.
fn scannable<'a>(
    cfg: &'a PlatformConfig,
    schema: &Schema,
    anomalies: &mut Vec<Anomaly>,
) -> (Vec<(usize, &'a CascadeEntry)>, Vec<String>) {
    let mut usable = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for ((i, entry), table) in cfg.cascade.iter().enumerate().zip(&schema.cascade) {
        match table {
            CascadeTable::Usable => {
                usable.push((i, entry));
                continue;
            }
            CascadeTable::MissingTable => {}
            CascadeTable::MissingColumn(absent) => {
                // A present table without its agent (or filter) column cannot be judged; say so
                // rather than failing the whole source on one odd table.
                anomalies.push(anomaly(
                    AnomalyKind::CascadeColumnMissing,
                    format!("{}.{}", entry.table, absent),
                    "cascade column missing; table skipped",
                ));
            }
        }
        if !skipped.contains(&entry.table) {
            skipped.push(entry.table.clone());
        }
    }
    (usable, skipped)
}

/// All cascade tables in ONE statement: a `UNION ALL` of anti-joins against the roster.
/// `answered`: the index of a cascade entry already answered from the executions rows, left out
/// of the statement.
pub(super) fn read_orphans(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &Schema,
    answered: Option<usize>,
    anomalies: &mut Vec<Anomaly>,
) -> Result<(Vec<OrphanRows>, Vec<String>), SqlError> {
    let (mut usable, skipped) = scannable(cfg, schema, anomalies);
    usable.retain(|(i, _)| Some(*i) != answered);
    if usable.is_empty() {
        return Ok((Vec::new(), skipped));
    }
    let agents = q(&cfg.tables.agents.table);
    let name = format!("r.{}", q(&cfg.tables.agents.name));
    let matches_roster = r.dialect().names_equal(&name, "d.v");
    let mut params: Vec<Cell> = Vec::new();
    let mut parts = Vec::with_capacity(usable.len());
    for (i, entry) in &usable {
        let col = format!("t.{}", q(&entry.column));
        // The anti-join runs over the table's DISTINCT agent names (a covering scan of its agent
        // index), and only the rows of agents missing from the roster are then filtered and
        // counted. Joining every row instead made SQLite walk `schedule_executions` in agent-index
        // order to serve the GROUP BY, one random table read per row: 3.7 s of a 4 s cycle at
        // 1 M rows, against ~65 ms for this shape (benches/RESULTS.md).
        let mut sql = format!(
            "SELECT {i}, {col}, COUNT(*) FROM {table} AS t WHERE {col} IN (\
             SELECT d.v FROM (SELECT DISTINCT {c} AS v FROM {table} WHERE {c} IS NOT NULL) AS d \
             LEFT JOIN {agents} AS r ON {matches_roster} WHERE {name} IS NULL)",
            table = q(&entry.table),
            c = q(&entry.column),
        );
        if let Some(f) = &entry.filter {
            let fcol = format!("t.{}", q(&f.column));
            if !f.is_in.is_empty() {
                sql.push_str(&format!(" AND {fcol} IN ({})", placeholders(f.is_in.len())));
                params.extend(f.is_in.iter().map(|v| Cell::Text(v.clone())));
            }
            if !f.not_in.is_empty() {
                // NULL is in no list, so a NULL status is a live row, not an excluded one.
                sql.push_str(&format!(
                    " AND ({fcol} IS NULL OR {fcol} NOT IN ({}))",
                    placeholders(f.not_in.len())
                ));
                params.extend(f.not_in.iter().map(|v| Cell::Text(v.clone())));
            }
        }
        for condition in &entry.conditions {
            let ccol = format!("t.{}", q(&condition.column));
            let values = condition.values.iter().map(|v| Cell::Text(v.clone()));
            // NULL is in no list and equal to nothing: `!=` and `not_in` keep NULL rows, as
            // `filter.not_in` does.
            let clause = match condition.op {
                ConditionOp::Eq => format!("{ccol} = ?"),
                ConditionOp::Ne => format!("({ccol} IS NULL OR {ccol} <> ?)"),
                ConditionOp::In => format!("{ccol} IN ({})", placeholders(condition.values.len())),
                ConditionOp::NotIn => format!(
                    "({ccol} IS NULL OR {ccol} NOT IN ({}))",
                    placeholders(condition.values.len())
                ),
                ConditionOp::IsNull => format!("{ccol} IS NULL"),
                ConditionOp::IsNotNull => format!("{ccol} IS NOT NULL"),
            };
            sql.push_str(&format!(" AND {clause}"));
            params.extend(values);
        }
        sql.push_str(&format!(" GROUP BY {col}"));
        parts.push(sql);
    }
    let sql = parts.join(" UNION ALL ");
    let mut orphans = Vec::new();
    r.each_row(
        &sql,
        &params,
        "scanning delete cascades",
        |[index, agent, count]| {
            let index = as_integer(index).ok().flatten();
            let count = as_integer(count).ok().flatten().unwrap_or(0);
            let entry = index
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| cfg.cascade.get(i));
            let (Some(entry), Some(agent_name)) = (entry, value_text(agent)) else {
                return;
            };
            orphans.push(OrphanRows {
                table: entry.table.clone(),
                agent_name,
                rows: u64::try_from(count).unwrap_or(0),
                severity: entry.severity,
            });
        },
    )?;
    orphans.sort();
    Ok((orphans, skipped))
}
