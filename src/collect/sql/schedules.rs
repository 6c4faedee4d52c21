//! The schedules: every row of the schedules table, in one statement (E-06's input). Read only
//! when the table and the columns E-06 needs exist (see `schema::SchedulesSchema`).
//!
//! It must not read any other table.

use super::error::SqlError;
use super::query::q;
use super::reader::Reader;
use super::schema::SchedulesSchema;
use super::value::{anomaly, cells, parse_ts_value, truthy, value_text};
use crate::config::platform::PlatformConfig;
use canary_invariants::{Anomaly, AnomalyKind, Schedule};

/// Every schedule row, in one statement. `schema` is the proof that the table and its required
/// columns exist.
pub(super) fn read_schedules(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &SchedulesSchema,
    anomalies: &mut Vec<Anomaly>,
) -> Result<Vec<Schedule>, SqlError> {
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
    let rows = r.rows(&sql, &[], "reading schedules")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let [id, agent, enabled, next_run_at, deleted] = cells(row);
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
            deleted: truthy(&deleted),
            next_run_at_ms,
        });
    }
    out.sort_by(|x, y| x.id.cmp(&y.id));
    Ok(out)
}
