//! The schedules: every row of the schedules table, in one statement (E-06's input). Read only
//! when the table and the columns E-06 needs exist (see `schema::SchedulesSchema`).
//!
//! It must not read any other table.

use canary_invariants::{Anomaly, AnomalyKind, Schedule};
use rusqlite::types::Value;

use super::error::SqliteError;
use super::query::q;
use super::schema::SchedulesSchema;
use super::sqlite::Reader;
use super::value::{anomaly, parse_ts_value, truthy, value_text};
use crate::config::platform::PlatformConfig;

/// Every schedule row, in one statement. `schema` is the proof that the table and its required
/// columns exist.
pub(super) fn read_schedules(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &SchedulesSchema,
    anomalies: &mut Vec<Anomaly>,
) -> Result<Vec<Schedule>, SqliteError> {
    let sc = &cfg.tables.schedules;
    let deleted = if schema.deleted_at {
        format!("{} IS NOT NULL", q(&sc.deleted_at))
    } else {
        "0".to_owned()
    };
    let sql = format!(
        "SELECT {}, {}, {}, {}, {} FROM {}",
        q(&sc.id),
        q(&sc.agent_name),
        q(&sc.enabled),
        q(&sc.next_run_at),
        deleted,
        q(&sc.table),
    );
    let rows = r.rows(&sql, &[], "reading schedules", |row| {
        Ok((
            row.get::<_, Value>(0)?,
            row.get::<_, Value>(1)?,
            row.get::<_, Value>(2)?,
            row.get::<_, Value>(3)?,
            row.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, agent, enabled, next_run_at, deleted) in rows {
        let Some(id) = value_text(&id) else {
            anomalies.push(anomaly(
                AnomalyKind::NullId,
                format!("{}.{}", sc.table, sc.id),
                "schedule with NULL id skipped",
            ));
            continue;
        };
        let subject = |column: &str| format!("{}.{}.{}", sc.table, id, column);
        let agent_name = value_text(&agent).unwrap_or_else(|| {
            anomalies.push(anomaly(
                AnomalyKind::NullAgent,
                subject(&sc.agent_name),
                "NULL agent name",
            ));
            String::new()
        });
        let next_run_at_ms = parse_ts_value(&next_run_at, || subject(&sc.next_run_at), anomalies);
        out.push(Schedule {
            id,
            agent_name,
            enabled: truthy(&enabled),
            deleted: deleted != 0,
            next_run_at_ms,
        });
    }
    out.sort_by(|x, y| x.id.cmp(&y.id));
    Ok(out)
}
