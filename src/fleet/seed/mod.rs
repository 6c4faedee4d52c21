//! The `--seed-only` dataset writer: a large, *healthy* synthetic platform written fast, for the
//! cycle bench and for load tests (`canary fleet --seed-only`).
//!
//! Speed comes from doing the two stores at once and in bulk: the SQL database is written on a
//! blocking thread in ONE transaction (SQLite: prepared statements, WAL, `synchronous=OFF`: this
//! is our own throw-away database, durability buys nothing; PostgreSQL: multi-row `INSERT`s),
//! while Redis is written from the async side in
//! pipelines of a few thousand commands. Everything is derived from a deterministic generator
//! (splitmix64 over the row index), so two seeds of the same spec differ only in their clock.
//!
//! "Healthy" means a canary cycle over the result has zero violations, *for a while*: slot TTLs,
//! running rows and recent completions are placed relative to the seeding instant, so the
//! dataset stays green for [`FRESH_FOR`] (the tightest constraint is E-01 on agents with the
//! default 900 s timeout; recent completions leave the E-02 window after 15 min). Datasets must
//! be written into empty stores: ids are fixed, so a second seed into the same database fails on
//! its primary keys.
//!
//! Layout: `plan` (everything decided up front, deterministic), `values` (the generator: ids,
//! picks, timestamp shapes), `sqlite` (the roster and execution rows, one transaction, on either
//! engine), `cascade` (the agent-keyed tables), `slots` (the Redis slot sets, pipelined) and `report`
//! (what was written). This file runs the two stores' writers at once.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::fleet::platform::FleetError;
use crate::fleet::platform_db::PlatformTarget;

mod cascade;
mod plan;
mod report;
mod slots;
mod sqlite;
mod values;

use plan::Plan;
pub use report::SeedReport;
use slots::write_redis;
use sqlite::write_sql;

/// How long after seeding the dataset is guaranteed green (see the module docs).
pub const FRESH_FOR: Duration = Duration::from_secs(10 * 60);

/// How big a dataset to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedSpec {
    /// Agents in the roster (about 1 % soft-deleted).
    pub agents: usize,
    /// Rows in `schedule_executions` (at least `slots` + the few non-terminal extras).
    pub rows: usize,
    /// Slot-set members, one per `running` row (capped by the live agents' capacity).
    pub slots: usize,
    /// Rows spread across the agent-keyed cascade tables.
    pub cascade_rows: usize,
}

impl SeedSpec {
    /// The bench's named sizes: S, M and L (case-insensitive).
    pub fn named(name: &str) -> Option<SeedSpec> {
        let scale = match name.to_ascii_uppercase().as_str() {
            "S" => 1,
            "M" => 10,
            "L" => 100,
            _ => return None,
        };
        Some(SeedSpec {
            agents: 100 * scale,
            rows: 10_000 * scale,
            slots: 300 * scale,
            cascade_rows: 5_000 * scale,
        })
    }
}

/// Writes a healthy dataset of `spec`'s size into the platform database `target` (a SQLite path
/// or a [`PlatformTarget`]; schema created if absent) and `redis` (a URL, or a cluster: one
/// pipeline per owning node). Both stores should be empty (see the module docs).
pub async fn seed(
    target: impl Into<PlatformTarget>,
    redis: impl Into<crate::fleet::platform::RedisTarget>,
    spec: &SeedSpec,
    show_progress: bool,
) -> Result<SeedReport, FleetError> {
    let started = Instant::now();
    let now_ms = crate::clock::now_ms();
    let plan = Plan::new(spec, now_ms);
    let mut report = plan.report_skeleton();

    let total_units =
        (plan.agents.len() + plan.rows_total() + plan.running.len() + spec.cascade_rows) as u64;
    let bar = if show_progress {
        let bar = ProgressBar::new(total_units);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {human_pos}/{human_len} ({per_sec}) {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_message("seeding");
        bar
    } else {
        ProgressBar::hidden()
    };

    // Redis is opened first so a wrong URL fails before minutes of SQLite work.
    let mut redis = crate::fleet::platform::connect_redis(redis).await?;

    let sql_plan = plan.clone();
    let sql_bar = bar.clone();
    let target = target.into();
    report.database = match target {
        PlatformTarget::Sqlite(_) => "SQLite",
        PlatformTarget::Postgres(_) => "PostgreSQL",
    };
    let sql_task = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        write_sql(&target, &sql_plan, &sql_bar).map(|r| (r, t.elapsed()))
    });

    let redis_started = Instant::now();
    let redis_result = write_redis(&mut redis, &plan, &bar).await;
    report.redis_elapsed = redis_started.elapsed();

    // Wait for SQLite even when Redis failed, so the database is closed before returning.
    let sql_result = match sql_task.await {
        Ok(r) => r,
        Err(join) => match join.try_into_panic() {
            // A panic in our own writer is a bug: re-raise it rather than dress it as I/O.
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(join) => Err(FleetError::Sql(rusqlite::Error::ToSqlConversionFailure(
                Box::new(join),
            ))),
        },
    };
    (report.redis_commands, report.redis_round_trips) = redis_result?;
    let (sql_counts, sqlite_elapsed) = sql_result?;
    report.sqlite_elapsed = sqlite_elapsed;
    report.cascade_rows = sql_counts.cascade_rows;
    report.recent_terminal = sql_counts.recent_terminal;
    report.elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_sizes() {
        let l = SeedSpec::named("l");
        assert_eq!(
            l,
            Some(SeedSpec {
                agents: 10_000,
                rows: 1_000_000,
                slots: 30_000,
                cascade_rows: 500_000
            })
        );
        assert_eq!(SeedSpec::named("XL"), None);
    }
}
