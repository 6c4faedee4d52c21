//! The schedules: every row of the schedules table, in one statement (E-06's input). Read only
//! when the table and the columns E-06 needs exist (see `schema::SchedulesSchema`).
//!
//! Every row is read and checked (a NULL id or agent, an unparseable `next_run_at`: G-05's
//! anomalies), but with a due-by instant only the rows E-06 can judge are kept: enabled, not
//! soft-deleted, due at or before it. At L that is none of 70 000 rows on a healthy platform,
//! instead of 140 000 strings copied, sorted and dropped every cycle (benches/RESULTS.md).
//!
//! It must not read any other table.

use super::error::SqlError;
use super::query::q;
use super::reader::Reader;
use super::schema::SchedulesSchema;
use super::value::{anomaly, parse_ts_value, truthy, value_text};
use crate::config::platform::PlatformConfig;
use canary_invariants::{Anomaly, AnomalyKind, Schedule};

/// Every schedule row, in one statement; kept all, or (with `due_by_ms`) only those enabled,
/// not soft-deleted and due at or before that instant. `schema` is the proof that the table
/// and its required columns exist.
pub(super) fn read_schedules(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    schema: &SchedulesSchema,
    due_by_ms: Option<i64>,
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
    let mut out = Vec::new();
    r.each_row(
        &sql,
        &[],
        "reading schedules",
        |[id, agent, enabled, next_run_at, deleted]| {
            if id.is_null() {
                anomalies.push(anomaly(
                    AnomalyKind::NullId,
                    format!("{}.{}", sc.table, sc.id),
                    "schedule with NULL id skipped",
                ));
                return;
            }
            // The anomalies' subjects name the row; the text is made only for one.
            let subject = |column: &str| {
                let id = value_text(id).unwrap_or_default();
                format!("{}.{}.{}", sc.table, id, column)
            };
            if agent.is_null() {
                anomalies.push(anomaly(
                    AnomalyKind::NullAgent,
                    subject(&sc.agent_name),
                    "NULL agent name",
                ));
            }
            let next_run_at_ms =
                parse_ts_value(next_run_at, || subject(&sc.next_run_at), anomalies);
            let (enabled, deleted) = (truthy(enabled), truthy(deleted));
            let judged = due_by_ms.is_none_or(|due_by| {
                enabled && !deleted && next_run_at_ms.is_some_and(|next| next <= due_by)
            });
            if judged {
                out.push(Schedule {
                    id: value_text(id).unwrap_or_default(),
                    agent_name: value_text(agent).unwrap_or_default(),
                    enabled,
                    deleted,
                    next_run_at_ms,
                });
            }
        },
    )?;
    out.sort_by(|x, y| x.id.cmp(&y.id));
    Ok(out)
}
