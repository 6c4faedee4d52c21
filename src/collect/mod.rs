//! The collector: reads the platform's SQLite and Redis (read-only) into one complete
//! [`Snapshot`], the only input of evaluation.
//!
//! - [`collect`]: the entry point of a cycle (the sequencer and the bench call only this): the
//!   built-in reads over the window the configured invariants need, then the custom SQL
//!   invariants. Nobody patches the snapshot afterwards.
//! - [`builtin`]: the built-in reads alone, over an explicit window (the collector tests).
//! - [`sql`]: roster, executions, cascade orphans and schedules in one read transaction; also the
//!   operator-defined SQL invariants' statements (`sql::custom`) and [`preflight`], the same
//!   statements prepared against the platform database at startup.
//! - [`redis`]: slot sets, slot metadata (and stray metadata hashes) and the drain heartbeat
//!   through a read-only wrapper.
//!
//! Each source is a folder with the same inner shape: the connection (`sql::sqlite`,
//! `redis::client`), what the store offers (`sql::schema`, `redis::keys`), the reads (one file
//! per statement or phase) and the parsing of values (`sql::value`, `redis::reply`). A new
//! source (Docker) or SQL dialect (PostgreSQL) is a sibling folder or file.
//! - [`docker`]: the running agent containers, their start times, the environment variables
//!   named in configuration and the agent process's zombies, through a read-only Engine API
//!   wrapper (optional: without `platform.docker` the source is *not configured*).
//! - [`queue_count`]: the platform's own queued count per agent over HTTP (optional: without
//!   `platform.queue_count` the source is *not configured*), compared with the SQL read's
//!   queued rows, each mismatch re-read once. Read after SQLite (it needs the roster and the
//!   queued rows).
//! - [`secrets`]: credential patterns in queued rows' metadata, found here so the text never
//!   enters the snapshot.
//! - [`timestamp`]: the one place timestamps are parsed.
//!
//! The Docker containers are read first of all (H-01: running containers contradict an empty
//! roster, so they must not be younger than the roster view). Then SQLite, on a blocking thread,
//! beside the Redis read (slot sets, then their metadata); the few SQL rows and agents the slot
//! sets contradict are read again after the slot sets (`sql::recheck`), so S-01, S-02 and L-03
//! never judge a SQL view older than the slot view (see [`builtin`]). A store that cannot be
//! read is listed in `sources_unavailable` instead of failing the cycle: the invariants that need
//! it become *unknown*, never green. This module does not log that: the cycle logs it once, where
//! it is handled.
//!
//! It must not judge anything (that is `canary-invariants`) nor write to either store.

pub mod docker;
pub mod queue_count;
pub mod redis;
pub mod secrets;
pub mod sql;
pub mod timestamp;

pub use sql::preflight::preflight;

use std::time::Instant;

use canary_invariants::{Anomaly, Snapshot, Source, SourceUnavailable};
use serde::Serialize;

use crate::config::Config;
use crate::config::custom::CustomSpec;
use crate::config::platform::PlatformConfig;

/// A snapshot plus what it cost to take.
#[derive(Debug, Clone, Serialize)]
pub struct Collected {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Cost counters.
    pub stats: CollectStats,
}

/// What one collection cost. Statement and round-trip counts must not grow with the fleet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CollectStats {
    /// SQL statements executed (pragmas and the transaction bracket included).
    pub sql_statements: u32,
    /// Rows the platform's SQL statements returned (live rows and the window's, never the
    /// history: compare with the table sizes).
    pub sql_rows: u64,
    /// Redis round trips (each `SCAN` page and pipeline; the handshake excluded).
    pub redis_round_trips: u32,
    /// Wall time of the SQLite read (and of its recheck, when one ran), in milliseconds.
    pub sqlite_ms: f64,
    /// Wall time of the Redis read (slot sets, then metadata), in milliseconds. It overlaps the
    /// SQLite read, so the two times may add up to more than the collection.
    pub redis_ms: f64,
    /// Of `redis_ms`, the slot-set phase (SCAN and the `ZRANGE` pipeline), which runs beside the
    /// SQL read.
    pub redis_slot_sets_ms: f64,
    /// Running rows and agents read again after the slot read because the slot sets contradicted
    /// the SQL read (`sql::recheck`); 0 in a healthy cycle, which then runs no extra statement.
    pub sql_rechecked: u32,
    /// Docker Engine API requests (0 when not configured): 2 + per container 1 inspect + 3 for
    /// the `ps` exec; the one cost that grows with the fleet (the API has no batch calls).
    pub docker_calls: u32,
    /// Wall time of the Docker read (listing, inspects, execs), in milliseconds; 0 when not
    /// configured.
    pub docker_ms: f64,
    /// Requests to the platform's queue-count endpoint (0 when not configured): one per agent
    /// asked (at most `max_agents_per_cycle`) plus one per mismatch re-read.
    pub queue_count_requests: u32,
    /// Wall time of the queue-count read (requests and re-reads), in milliseconds.
    pub queue_count_ms: f64,
    /// How the Redis node was found this cycle (Sentinel, replica lag, fallback); absent for a
    /// plain `redis_url` primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_route: Option<redis::RedisRoute>,
}

/// The complete snapshot a cycle evaluates, taken at `taken_at_ms`: the built-in reads over
/// the [`Windows`] the configured invariants need, then the custom SQL invariants selected by
/// `only` (exactly those ids; every enabled one when `None`).
pub async fn collect(config: &Config, only: Option<&[String]>, taken_at_ms: i64) -> Collected {
    let mut collected = builtin(&config.platform, Windows::of(config), taken_at_ms).await;
    attach_custom(&config.platform, config.custom_specs(only), &mut collected).await;
    collected
}

/// How far the windowed reads reach: what the configured invariants can judge, never more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Terminal rows completed within this many milliseconds before the snapshot are read
    /// ([`recent_terminal_window_ms`]).
    pub recent_terminal_ms: i64,
    /// When set, the snapshot keeps only the schedules E-06 can judge: enabled, not
    /// soft-deleted, with a `next_run_at` at least this many milliseconds before the snapshot
    /// (E-06's `max_overdue_seconds`). Every row is still read and its anomalies reported.
    /// `None` keeps every row.
    pub schedule_overdue_ms: Option<i64>,
    /// S-01's grace: running rows younger than this are not judged, so they need no recheck
    /// after the slot read (`sql::recheck`). 0 rechecks every running row without a slot.
    pub s01_grace_ms: i64,
}

impl Windows {
    /// The windows `config`'s invariants need.
    pub fn of(config: &Config) -> Windows {
        Windows {
            recent_terminal_ms: recent_terminal_window_ms(config),
            schedule_overdue_ms: Some(
                config
                    .invariants
                    .e06
                    .max_overdue_seconds
                    .saturating_mul(1000),
            ),
            s01_grace_ms: canary_invariants::params::seconds_to_ms(
                config.invariants.s01.grace_seconds,
            ),
        }
    }
}

/// A bare recent-terminal window: every schedule is kept (the collector tests).
impl From<i64> for Windows {
    fn from(recent_terminal_ms: i64) -> Windows {
        Windows {
            recent_terminal_ms,
            schedule_overdue_ms: None,
            s01_grace_ms: 0,
        }
    }
}

/// How far back terminal rows are read: they serve E-02 (by completion) and E-03 (by start), so
/// the wider of their two windows.
pub fn recent_terminal_window_ms(config: &Config) -> i64 {
    config
        .invariants
        .e02
        .window_seconds
        .max(config.invariants.e03.window_seconds)
        .saturating_mul(1000)
}

/// Reads both stores' built-in data into a snapshot taken at `taken_at_ms` (no custom SQL).
///
/// Terminal rows completed within the recent-terminal window before `taken_at_ms` are read
/// (with a few minutes of slack); all non-terminal rows are read; schedules as [`Windows`] says.
pub async fn builtin(
    cfg: &PlatformConfig,
    windows: impl Into<Windows>,
    taken_at_ms: i64,
) -> Collected {
    let windows = windows.into();
    let cutoffs = sql::Cutoffs {
        recent_terminal_ms: taken_at_ms.saturating_sub(windows.recent_terminal_ms),
        schedules_due_by_ms: windows
            .schedule_overdue_ms
            .map(|overdue| taken_at_ms.saturating_sub(overdue)),
    };
    // Containers before everything else: a container seen running is never older evidence
    // than the roster read after it (H-01's critical arm).
    let docker_started = Instant::now();
    let docker_outcome = match &cfg.docker {
        Some(docker_cfg) => Some(docker::read_counted(docker_cfg, &cfg.pull.pilot_agents).await),
        None => None,
    };
    let docker_ms = elapsed_ms(docker_started);
    // SQLite on a blocking thread beside the whole Redis read (slot sets, then their
    // metadata). Its view may then be older than the slot sets' by up to a collection, which
    // only three findings can tell (S-01's running row whose slot was just released, L-03's slot
    // set of an agent created meanwhile, S-02's slot set over a cap raised meanwhile): those
    // rows and agents are read again below, after the slot sets, so no check judges a SQL view
    // older than the slot view (see `sql::recheck`). The slot-set phase (~70 ms at L) no longer
    // precedes SQLite (benches/RESULTS.md).
    let sql_cfg = cfg.clone();
    let sql_task = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let outcome = sql::collect(&sql_cfg, cutoffs);
        (outcome, elapsed_ms(started))
    });
    let redis_started = Instant::now();
    let slots = redis::read_slots(cfg).await;
    let redis_slot_sets_ms = elapsed_ms(redis_started);
    let mut redis_ms = redis_slot_sets_ms;
    let meta_started = Instant::now();
    let redis_outcome = match slots {
        Ok(slots) => slots.read_metadata(cfg).await,
        Err(failed) => failed,
    };
    redis_ms += elapsed_ms(meta_started);
    let sql_joined = sql_task.await;

    let mut pilot_agents = cfg.pull.pilot_agents.clone();
    pilot_agents.sort();
    pilot_agents.dedup();
    let mut snapshot = Snapshot {
        taken_at_ms,
        pilot_agents,
        ..Snapshot::default()
    };
    let mut stats = CollectStats {
        redis_round_trips: redis_outcome.round_trips,
        redis_ms,
        redis_slot_sets_ms,
        redis_route: redis_outcome.route.clone(),
        docker_ms,
        docker_calls: docker_outcome.as_ref().map_or(0, |read| read.calls),
        ..CollectStats::default()
    };
    match docker_outcome.map(|read| read.result) {
        Some(Ok(state)) => snapshot.docker = Some(state),
        Some(Err(e)) => unavailable(&mut snapshot, Source::Docker, e.to_string()),
        None => snapshot.not_configured.push(Source::Docker),
    }
    let mut anomalies: Vec<Anomaly> = Vec::new();

    match sql_joined {
        Ok((outcome, ms)) => {
            stats.sql_statements = outcome.statements;
            stats.sql_rows = outcome.rows;
            stats.sqlite_ms = ms;
            match outcome.result {
                Ok((mut state, found)) => {
                    anomalies.extend(found);
                    let rechecked = match &redis_outcome.result {
                        Ok((redis, _)) => {
                            let suspects = sql::recheck::Suspects::of(
                                &state,
                                redis,
                                taken_at_ms,
                                windows.s01_grace_ms,
                            );
                            recheck(cfg, suspects, &mut state, &mut stats).await
                        }
                        // Without the slot sets nothing contradicts the SQL view.
                        Err(_) => Ok(Vec::new()),
                    };
                    match rechecked {
                        Ok(found) => {
                            snapshot.sql = Some(state);
                            anomalies.extend(found);
                        }
                        Err(e) => unavailable(&mut snapshot, Source::Sqlite, e),
                    }
                }
                Err(e) => unavailable(&mut snapshot, Source::Sqlite, e.to_string()),
            }
        }
        // Only a panic inside the blocking task gets here; report it rather than propagate it.
        Err(_) => unavailable(
            &mut snapshot,
            Source::Sqlite,
            "internal error: reader task failed".to_owned(),
        ),
    }
    match (&cfg.queue_count, &snapshot.sql) {
        (Some(qc), Some(sql)) => {
            let started = Instant::now();
            let read = queue_count::read(cfg, qc, sql).await;
            stats.queue_count_requests = read.requests;
            stats.queue_count_ms = elapsed_ms(started);
            match read.result {
                Ok(state) => snapshot.queue_counts = Some(state),
                Err(e) => unavailable(&mut snapshot, Source::QueueCount, e.to_string()),
            }
        }
        // Without the SQL read there is nothing to compare with: B-01 is unknown through it.
        (Some(_), None) => {}
        (None, _) => snapshot.not_configured.push(Source::QueueCount),
    }
    match redis_outcome.result {
        Ok((state, found)) => {
            snapshot.redis = Some(state);
            anomalies.extend(found);
        }
        Err(e) => unavailable(&mut snapshot, Source::Redis, e.to_string()),
    }

    anomalies.sort();
    anomalies.dedup();
    snapshot.anomalies = anomalies;
    snapshot.sources_unavailable.sort_by_key(|s| s.source);
    Collected { snapshot, stats }
}

/// Re-reads `suspects` (when there are any) after the slot read and puts the fresh view in
/// `state`; returns the anomalies seen in it, or why the SQL source is unavailable: without the
/// recheck, S-01, S-02 and L-03 could judge a view older than the slot sets, so the SQL read
/// counts as failed rather than report what may be a finish race (see `sql::recheck`).
async fn recheck(
    cfg: &PlatformConfig,
    suspects: sql::recheck::Suspects,
    state: &mut canary_invariants::SqlState,
    stats: &mut CollectStats,
) -> Result<Vec<Anomaly>, String> {
    if suspects.is_empty() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let sql_cfg = cfg.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let (result, statements) = sql::recheck::recheck(&sql_cfg, &suspects);
        (result, statements, suspects)
    })
    .await;
    stats.sqlite_ms += elapsed_ms(started);
    let (result, statements, suspects) =
        joined.map_err(|_| "internal error: recheck task failed".to_owned())?;
    stats.sql_statements += statements;
    stats.sql_rechecked = u32::try_from(suspects.len()).unwrap_or(u32::MAX);
    let rechecked = result.map_err(|e| {
        format!(
            "re-reading {} running row(s) and {} agent(s) after the slot read: {e}",
            suspects.ids.len(),
            suspects.agents.len()
        )
    })?;
    Ok(sql::recheck::apply(state, &suspects, rechecked))
}

/// Runs `specs` after the built-in collection and adds their results to `collected`: results to
/// `snapshot.custom`, truncations to the anomalies, statements and time to the stats. When the
/// built-in SQLite read failed this cycle, nothing is run and every result says so (unknown).
async fn attach_custom(
    platform: &PlatformConfig,
    specs: Vec<CustomSpec>,
    collected: &mut Collected,
) {
    if specs.is_empty() {
        return;
    }
    let snapshot = &mut collected.snapshot;
    if snapshot.sql.is_none() {
        snapshot.custom = sql::custom::unavailable(&specs, "source sqlite unavailable");
        return;
    }
    let cfg = platform.clone();
    let started = Instant::now();
    // Kept so a failed task still yields one (unknown) result per spec, never a silent gap.
    let fallback = specs.clone();
    let joined = tokio::task::spawn_blocking(move || sql::custom::run_blocking(&cfg, &specs)).await;
    match joined {
        Ok(outcome) => {
            snapshot.custom = outcome.results;
            snapshot.anomalies.extend(outcome.anomalies);
            snapshot.anomalies.sort();
            snapshot.anomalies.dedup();
            collected.stats.sql_statements += outcome.statements;
            collected.stats.sqlite_ms += started.elapsed().as_secs_f64() * 1000.0;
        }
        // Only a panic inside the blocking task gets here; handled (and so logged) here.
        Err(_) => {
            let reason = "internal error: custom reader task failed";
            tracing::warn!(reason, "custom invariants not evaluated");
            snapshot.custom = sql::custom::unavailable(&fallback, reason);
        }
    }
}

/// Records an unreadable source. Not logged here: the cycle logs each unavailable source once.
fn unavailable(snapshot: &mut Snapshot, source: Source, error: String) {
    snapshot
        .sources_unavailable
        .push(SourceUnavailable { source, error });
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}
