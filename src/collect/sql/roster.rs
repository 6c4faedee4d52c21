//! The roster: every agent row (soft-deleted ones included, flagged), in one statement. Absent
//! optional columns read as `NULL` (platform defaults apply); a NULL name is skipped with an
//! anomaly.
//!
//! It must not read any other table.

use super::error::SqlError;
use super::query::{col_or_null, placeholders, q};
use super::reader::Reader;
use super::schema::AgentsSchema;
use super::value::{Cell, CellRef, anomaly, as_integer, truthy, value_text};
use crate::config::platform::PlatformConfig;
use canary_invariants::{Agent, Anomaly, AnomalyKind};

/// What the roster statement read.
pub(super) struct Roster {
    /// The agents, sorted by name.
    pub(super) agents: Vec<Agent>,
    /// Every non-NULL name was stored as text (see `executions::ExecutionsTally`).
    pub(super) all_text: bool,
    /// The concurrency ceiling: `None` without a settings table (or without agents).
    pub(super) ceiling: Option<i64>,
}

/// The roster and, from the settings table when `settings` says it exists, the concurrency
/// ceiling, in the same statement (a scalar subquery per row: no statement of its own). With
/// `only`, just the agents of those names (S-01's recheck, `sql::recheck`; the caller keeps the
/// list short).
pub(super) fn read_roster(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &AgentsSchema,
    settings: bool,
    only: Option<&[String]>,
    anomalies: &mut Vec<Anomaly>,
) -> Result<Roster, SqlError> {
    let a = &cfg.tables.agents;
    let deleted = if schema.deleted_at {
        format!("{} IS NOT NULL", q(&a.deleted_at))
    } else {
        "0".to_owned()
    };
    let st = &cfg.tables.settings;
    let (ceiling_sql, mut params) = if settings {
        (
            format!(
                "(SELECT s.{} FROM {} AS s WHERE s.{} = ?)",
                q(&st.value),
                q(&st.table),
                q(&st.key)
            ),
            vec![Cell::Text(st.ceiling_key.clone())],
        )
    } else {
        ("NULL".to_owned(), Vec::new())
    };
    let mut sql = format!(
        "SELECT {}, {}, {}, {}, {}, {ceiling_sql} FROM {}",
        q(&a.name),
        col_or_null(schema.is_system, &a.is_system),
        col_or_null(schema.max_parallel_tasks, &a.max_parallel_tasks),
        col_or_null(
            schema.execution_timeout_seconds,
            &a.execution_timeout_seconds
        ),
        deleted,
        q(&a.table),
    );
    if let Some(names) = only {
        sql.push_str(&format!(
            " WHERE {} IN ({})",
            q(&a.name),
            placeholders(names.len())
        ));
        params.extend(names.iter().map(|n| Cell::Text(n.clone())));
    }
    let defaults = &cfg.agent_defaults;
    let mut agents = Vec::new();
    let mut all_text = true;
    // The ceiling is the same scalar on every row; the first row's is read.
    let mut ceiling = None;
    let mut first = true;
    r.each_row(
        &sql,
        &params,
        "reading the roster",
        |[name, is_system, cap, timeout, deleted, value]| {
            all_text &= matches!(name, CellRef::Text(_) | CellRef::Null);
            if std::mem::take(&mut first) && settings {
                ceiling = Some(match as_integer(value) {
                    Ok(Some(ceiling)) => ceiling,
                    Ok(None) => st.ceiling_default,
                    Err(()) => {
                        anomalies.push(anomaly(
                            AnomalyKind::NotInteger,
                            format!("{}.{}", st.table, st.ceiling_key),
                            format!(
                                "not an integer; platform default {} assumed",
                                st.ceiling_default
                            ),
                        ));
                        st.ceiling_default
                    }
                });
            }
            let Some(name) = value_text(name) else {
                anomalies.push(anomaly(
                    AnomalyKind::NullAgent,
                    format!("{}.{}", a.table, a.name),
                    "agent row with NULL name skipped",
                ));
                return;
            };
            let mut int_or_default =
                |v: CellRef<'_>, column: &str, default: i64| match as_integer(v) {
                    Ok(Some(i)) => i,
                    Ok(None) => default,
                    Err(()) => {
                        anomalies.push(anomaly(
                            AnomalyKind::NotInteger,
                            format!("{}.{}.{}", a.table, name, column),
                            format!("not an integer; platform default {default} assumed"),
                        ));
                        default
                    }
                };
            let max_parallel_tasks =
                int_or_default(cap, &a.max_parallel_tasks, defaults.max_parallel_tasks);
            let execution_timeout_seconds = int_or_default(
                timeout,
                &a.execution_timeout_seconds,
                defaults.execution_timeout_seconds,
            );
            agents.push(Agent {
                name,
                is_system: truthy(is_system),
                max_parallel_tasks,
                execution_timeout_seconds,
                deleted: truthy(deleted),
            });
        },
    )?;
    agents.sort_by(|x, y| x.name.cmp(&y.name));
    Ok(Roster {
        agents,
        all_text,
        ceiling,
    })
}
