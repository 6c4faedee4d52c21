//! The `--seed-only` dataset writer: a large, *healthy* synthetic platform written fast, for the
//! cycle bench and for load tests (`canary fleet --seed-only`).
//!
//! Speed comes from doing the two stores at once and in bulk: SQLite is written on a blocking
//! thread in ONE transaction with prepared statements (WAL, `synchronous=OFF`: this is our own
//! throw-away database, durability buys nothing), while Redis is written from the async side in
//! pipelines of a few thousand commands. Everything is derived from a deterministic generator
//! (splitmix64 over the row index), so two seeds of the same spec differ only in their clock.
//!
//! "Healthy" means a canary cycle over the result has zero violations, *for a while*: slot TTLs,
//! running rows and recent completions are placed relative to the seeding instant, so the
//! dataset stays green for [`FRESH_FOR`] (the tightest constraint is E-01 on agents with the
//! default 900 s timeout; recent completions leave the E-02 window after 15 min). Datasets must
//! be written into empty stores: ids are fixed, so a second seed into the same database fails on
//! its primary keys, and stale Redis keys would not match the new rows.

use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rusqlite::{Connection, params};

use crate::config::platform::RedisKeys;
use crate::fleet::platform::{FleetError, SCHEMA, SLOT_TTL_BUFFER_SECONDS};

/// How long after seeding the dataset is guaranteed green (see the module docs).
pub const FRESH_FOR: Duration = Duration::from_secs(10 * 60);

/// Terminal rows completed this recently count as "recent" (inside E-02's 30 min window even
/// after [`FRESH_FOR`] has passed, so the collected workload does not shrink while cached).
const RECENT_SPAN_MS: i64 = 15 * 60 * 1000;

/// The share of terminal rows completed within [`RECENT_SPAN_MS`] (1 in this many). A platform
/// with 1 M rows over 30 days finishes ~700 rows per 30 min; 1 % is a deliberately busy hour.
const RECENT_ONE_IN: u64 = 100;

/// Older terminal rows are spread over this many days.
const HISTORY_DAYS: i64 = 30;

/// Redis commands per pipeline: large enough to amortise the round trip, small enough to keep
/// the client's and the server's buffers modest.
const REDIS_BATCH_COMMANDS: usize = 6_000;

/// Rows between progress-bar updates (updating per row would cost more than the insert).
const PROGRESS_EVERY: u64 = 4_096;

/// The agent-keyed cascade tables and their share (in parts) of `cascade_rows`.
const CASCADE_SHARES: [(CascadeTable, u64); 11] = [
    (CascadeTable::Schedules, 14),
    (CascadeTable::Sharing, 10),
    (CascadeTable::Skills, 14),
    (CascadeTable::Tags, 16),
    (CascadeTable::SharedFiles, 10),
    (CascadeTable::PublicLinks, 5),
    (CascadeTable::Reports, 10),
    (CascadeTable::ChatSessions, 12),
    (CascadeTable::OperatorQueue, 3),
    (CascadeTable::AccessRequests, 3),
    (CascadeTable::McpApiKeys, 3),
];

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

/// What [`seed`] wrote and how long it took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeedReport {
    /// Roster rows.
    pub agents: usize,
    /// Of which soft-deleted.
    pub deleted_agents: usize,
    /// Execution rows in total.
    pub rows: usize,
    /// `running` rows holding a slot (= slot-set members).
    pub running: usize,
    /// `running` rows claimed by a pull worker (leased, never in the slot set).
    pub leased: usize,
    /// `queued` rows (only on agents whose slots are full).
    pub queued: usize,
    /// `pending_retry` rows.
    pub pending_retry: usize,
    /// Terminal rows, and how many of them completed recently.
    pub terminal: usize,
    /// Terminal rows completed within the last 15 minutes.
    pub recent_terminal: usize,
    /// Slot-set members written to Redis.
    pub slots: usize,
    /// Redis commands sent.
    pub redis_commands: usize,
    /// Rows written to the cascade tables.
    pub cascade_rows: usize,
    /// Wall time of the SQLite half.
    pub sqlite_elapsed: Duration,
    /// Wall time of the Redis half.
    pub redis_elapsed: Duration,
    /// Total wall time.
    pub elapsed: Duration,
}

impl std::fmt::Display for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(
            f,
            "seeded in {:.2} s (SQLite {:.2} s, Redis {:.2} s, concurrently)",
            secs,
            self.sqlite_elapsed.as_secs_f64(),
            self.redis_elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  agents:        {} ({} soft-deleted)",
            self.agents, self.deleted_agents
        )?;
        writeln!(
            f,
            "  executions:    {} ({:.0} rows/s): {} running, {} leased, {} queued, {} pending_retry, \
             {} terminal ({} completed in the last 15 min)",
            self.rows,
            self.rows as f64 / secs,
            self.running,
            self.leased,
            self.queued,
            self.pending_retry,
            self.terminal,
            self.recent_terminal
        )?;
        writeln!(
            f,
            "  slots:         {} ({} Redis commands)",
            self.slots, self.redis_commands
        )?;
        write!(f, "  cascade rows:  {}", self.cascade_rows)?;
        Ok(())
    }
}

/// Writes a healthy dataset of `spec`'s size into `sqlite_path` (schema created if absent) and
/// `redis_url`. Both stores should be empty (see the module docs).
pub async fn seed(
    sqlite_path: &Path,
    redis_url: &str,
    spec: &SeedSpec,
    show_progress: bool,
) -> Result<SeedReport, FleetError> {
    let started = Instant::now();
    let now_ms = chrono::Utc::now().timestamp_millis();
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
    let mut redis = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;

    let sql_plan = plan.clone();
    let sql_bar = bar.clone();
    let path = sqlite_path.to_owned();
    let sql_task = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        write_sqlite(&path, &sql_plan, &sql_bar).map(|r| (r, t.elapsed()))
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
    report.redis_commands = redis_result?;
    let (sql_counts, sqlite_elapsed) = sql_result?;
    report.sqlite_elapsed = sqlite_elapsed;
    report.cascade_rows = sql_counts.cascade_rows;
    report.recent_terminal = sql_counts.recent_terminal;
    report.elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(report)
}

/// splitmix64: a fast, good-enough deterministic mixer, so row `i` is the same in every seed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A value in `0..n` (0 when `n` is 0) from a mixed seed.
fn below(seed: u64, n: u64) -> u64 {
    if n == 0 { 0 } else { seed % n }
}

/// A UUID-shaped id, like the platform's (the id's length matters to index and scan costs).
fn uuid_like(stream: u64, i: u64) -> String {
    // `mix` is a bijection: ids are distinct within a stream, and across streams unless two
    // streams' offsets land within a few million of each other (odds ~2^-40).
    let a = mix(mix(stream).wrapping_add(i));
    let b = mix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// The four timestamp shapes of DESIGN §4, chosen per row so every parser path is exercised.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// `2026-01-14T10:00:00.123456Z` (the platform's usual).
    IsoZ,
    /// `2026-01-14T12:00:00.123+02:00`.
    IsoOffset,
    /// `2026-01-14T10:00:00.123456` (no zone: UTC).
    IsoNaive,
    /// `2026-01-14 10:00:00` (SQLite's `datetime('now')`).
    Sqlite,
}

impl Shape {
    fn of(seed: u64) -> Shape {
        match seed % 10 {
            0..=5 => Shape::IsoZ,
            6 => Shape::IsoOffset,
            7 => Shape::IsoNaive,
            _ => Shape::Sqlite,
        }
    }

    /// Writes `ms` in this shape into `out` (reused, so a row costs no new allocation).
    fn write(self, ms: i64, out: &mut String) {
        use std::fmt::Write;
        out.clear();
        let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
            return;
        };
        // `write!` into a String cannot fail.
        let _ = match self {
            Shape::IsoZ => write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
            Shape::IsoOffset => {
                let offset = chrono::FixedOffset::east_opt(2 * 3600);
                match offset {
                    Some(o) => write!(
                        out,
                        "{}",
                        t.with_timezone(&o).format("%Y-%m-%dT%H:%M:%S%.3f%:z")
                    ),
                    None => write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
                }
            }
            Shape::IsoNaive => write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6f")),
            Shape::Sqlite => write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S")),
        };
    }
}

#[derive(Debug, Clone)]
struct AgentPlan {
    name: String,
    /// `None` = NULL in the roster (platform default 3).
    cap: Option<i64>,
    /// `None` = NULL in the roster (platform default 900 s).
    timeout: Option<i64>,
    deleted: bool,
    is_system: bool,
    /// Slots this agent holds.
    slots: i64,
}

impl AgentPlan {
    fn effective_cap(&self) -> i64 {
        self.cap.unwrap_or(3)
    }
    fn effective_timeout(&self) -> i64 {
        self.timeout.unwrap_or(900)
    }
}

#[derive(Debug, Clone)]
struct RunPlan {
    agent: usize,
    id: String,
    started_ms: i64,
    /// The timeout this execution was dispatched with (≤ the agent's).
    timeout: i64,
}

/// Everything decided up front (small: agents and running rows); the bulk rows are generated
/// on the fly from their index.
#[derive(Debug, Clone)]
struct Plan {
    now_ms: i64,
    agents: Vec<AgentPlan>,
    live: Vec<usize>,
    /// Agents whose slots are full (the only ones that may have queued rows: B-02).
    full: Vec<usize>,
    running: Vec<RunPlan>,
    leased: usize,
    queued: usize,
    pending_retry: usize,
    terminal: usize,
    cascade_rows: usize,
}

impl Plan {
    fn new(spec: &SeedSpec, now_ms: i64) -> Plan {
        let n = spec.agents;
        let width = n.saturating_sub(1).to_string().len().max(5);
        // About 1 % soft-deleted, never all of them.
        let deleted = |i: usize| n > 1 && i % 97 == 5;
        let live_count = (0..n).filter(|&i| !deleted(i)).count().max(1);
        // Caps vary around what the slot count needs, so capacity always suffices and the
        // agents with the smallest caps end up full.
        let need = spec.slots.div_ceil(live_count) as i64;
        let mut agents: Vec<AgentPlan> = (0..n)
            .map(|i| {
                let h = mix(i as u64);
                let cap = if need <= 3 && i % 17 == 0 {
                    None
                } else {
                    Some((need - 1 + (h % 5) as i64).max(1))
                };
                let timeout = match (h >> 8) % 6 {
                    0 => None,
                    1 => Some(900),
                    2 => Some(1_800),
                    3 => Some(2_700),
                    4 => Some(3_600),
                    _ => Some(7_200),
                };
                AgentPlan {
                    name: format!("agent-{i:0width$}"),
                    cap,
                    timeout,
                    deleted: deleted(i),
                    is_system: i % 50 == 1,
                    slots: 0,
                }
            })
            .collect();
        let live: Vec<usize> = (0..n).filter(|&i| !agents[i].deleted).collect();

        // Round-robin passes: one slot per live agent per pass while it has room.
        let mut left = spec.slots;
        let mut order: Vec<usize> = Vec::new();
        while left > 0 {
            let mut placed = false;
            for &i in &live {
                if left == 0 {
                    break;
                }
                let a = &mut agents[i];
                if a.slots < a.effective_cap() {
                    a.slots += 1;
                    order.push(i);
                    left -= 1;
                    placed = true;
                }
            }
            if !placed {
                break; // capacity exhausted: the report says how many slots were written
            }
        }
        order.sort_unstable();
        let running: Vec<RunPlan> = order
            .iter()
            .enumerate()
            .map(|(k, &agent)| {
                let h = mix(0x5107 ^ k as u64);
                let a = &agents[agent];
                // Some executions are dispatched with a lower timeout than the agent's: S-03
                // must judge them by their own.
                let timeout = if h.is_multiple_of(5) {
                    (a.effective_timeout() / 2).max(60)
                } else {
                    a.effective_timeout()
                };
                RunPlan {
                    agent,
                    id: uuid_like(0x5107, k as u64),
                    // Started 5..125 s ago: past S-01's 3 s grace, far from E-01's limit.
                    started_ms: now_ms - 5_000 - below(h >> 8, 120_000) as i64,
                    timeout,
                }
            })
            .collect();
        let full: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| agents[i].slots >= agents[i].effective_cap())
            .collect();

        // No agent, no row to hang anything on.
        let budget = if n == 0 {
            0
        } else {
            spec.rows.saturating_sub(running.len())
        };
        let leased = (running.len() / 100).min(budget);
        let pending_retry = (running.len() / 100).min(budget - leased);
        let queued = if full.is_empty() {
            0
        } else {
            (spec.rows / 200)
                .min(full.len() * 2)
                .min(budget - leased - pending_retry)
        };
        let terminal = budget - leased - pending_retry - queued;
        Plan {
            now_ms,
            agents,
            live,
            full,
            running,
            leased,
            queued,
            pending_retry,
            terminal,
            cascade_rows: if n == 0 { 0 } else { spec.cascade_rows },
        }
    }

    fn rows_total(&self) -> usize {
        self.running.len() + self.leased + self.queued + self.pending_retry + self.terminal
    }

    fn report_skeleton(&self) -> SeedReport {
        SeedReport {
            agents: self.agents.len(),
            deleted_agents: self.agents.iter().filter(|a| a.deleted).count(),
            rows: self.rows_total(),
            running: self.running.len(),
            leased: self.leased,
            queued: self.queued,
            pending_retry: self.pending_retry,
            terminal: self.terminal,
            slots: self.running.len(),
            ..SeedReport::default()
        }
    }

    /// A live agent picked by `seed` (any agent when none is live).
    fn live_agent(&self, seed: u64) -> &AgentPlan {
        let i = self
            .live
            .get(below(seed, self.live.len() as u64) as usize)
            .copied()
            .unwrap_or(0);
        &self.agents[i]
    }
}

#[derive(Debug, Default)]
struct SqlCounts {
    cascade_rows: usize,
    recent_terminal: usize,
}

/// Reusable text buffers for one execution row.
#[derive(Debug, Default)]
struct RowBuf {
    queued: String,
    started: String,
    completed: String,
    lease: String,
    session: String,
    schedule: String,
}

fn write_sqlite(path: &Path, plan: &Plan, bar: &ProgressBar) -> Result<SqlCounts, FleetError> {
    let mut db = Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY; \
         PRAGMA cache_size = -262144;",
    )?;
    db.execute_batch(SCHEMA)?;
    let tx = db.transaction()?;
    let mut counts = SqlCounts::default();
    insert_agents(&tx, plan, bar)?;
    insert_executions(&tx, plan, bar, &mut counts)?;
    insert_cascade(&tx, plan, bar, &mut counts)?;
    tx.commit()?;
    // Fold the WAL back so readers open a compact file (canary opens it read-only).
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(counts)
}

fn insert_agents(
    tx: &rusqlite::Transaction<'_>,
    plan: &Plan,
    bar: &ProgressBar,
) -> Result<(), FleetError> {
    let mut stmt = tx.prepare(
        "INSERT INTO agent_ownership (agent_name, owner_id, is_system, max_parallel_tasks, \
         execution_timeout_seconds, created_at, deleted_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut created = String::new();
    let mut deleted_at = String::new();
    for (i, a) in plan.agents.iter().enumerate() {
        let h = mix(0xA6E7 ^ i as u64);
        let created_ms = plan.now_ms - HISTORY_DAYS * 86_400_000 - below(h, 86_400_000) as i64;
        Shape::Sqlite.write(created_ms, &mut created);
        Shape::of(h >> 4).write(
            plan.now_ms - below(h >> 12, 86_400_000) as i64,
            &mut deleted_at,
        );
        stmt.execute(params![
            a.name,
            (h % 500) as i64,
            i64::from(a.is_system),
            a.cap,
            a.timeout,
            created,
            a.deleted.then_some(deleted_at.as_str()),
        ])?;
    }
    bar.inc(plan.agents.len() as u64);
    Ok(())
}

const MESSAGES: [&str; 4] = [
    "Summarise yesterday's support tickets and post the digest",
    "Check the nightly build and open an issue for each new failure",
    "Refresh the pricing sheet from the supplier feed",
    "Triage new pull requests and label them",
];

fn insert_executions(
    tx: &rusqlite::Transaction<'_>,
    plan: &Plan,
    bar: &ProgressBar,
    counts: &mut SqlCounts,
) -> Result<(), FleetError> {
    let mut stmt = tx.prepare(
        "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, queued_at, \
         started_at, completed_at, duration_ms, message, response, error, triggered_by, \
         claude_session_id, lease_expires_at, backlog_metadata) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?;
    let mut b = RowBuf::default();
    let now = plan.now_ms;
    let mut since_tick = 0u64;
    let tick = |since: &mut u64| {
        *since += 1;
        if *since >= PROGRESS_EVERY {
            bar.inc(*since);
            *since = 0;
        }
    };
    let schedule_of = |agent: &AgentPlan, h: u64, out: &mut String| {
        out.clear();
        out.push_str("sched-");
        out.push_str(&agent.name);
        out.push('-');
        out.push(char::from(b'0' + (h % 2) as u8));
    };

    // Running rows holding a slot: session set (E-05), no lease, ISO start matching the score.
    for (k, r) in plan.running.iter().enumerate() {
        let a = &plan.agents[r.agent];
        let h = mix(0x5107 ^ k as u64);
        Shape::of(h >> 20).write(r.started_ms, &mut b.started);
        Shape::of(h >> 20).write(r.started_ms - below(h >> 24, 3_000) as i64, &mut b.queued);
        b.session = uuid_like(0x5E55, k as u64);
        schedule_of(a, h, &mut b.schedule);
        stmt.execute(params![
            r.id,
            b.schedule,
            a.name,
            "running",
            b.queued,
            b.started,
            None::<&str>,
            None::<i64>,
            MESSAGES[(h % 4) as usize],
            None::<&str>,
            None::<&str>,
            "schedule",
            b.session,
            None::<&str>,
            None::<&str>,
        ])?;
        tick(&mut since_tick);
    }

    // Leased running rows: claimed by a pull worker, never in the slot set.
    for k in 0..plan.leased {
        let h = mix(0x1EA5 ^ k as u64);
        let a = plan.live_agent(h);
        let started = now - 5_000 - below(h >> 8, 60_000) as i64;
        Shape::IsoZ.write(started, &mut b.started);
        Shape::IsoZ.write(started - 1_000, &mut b.queued);
        Shape::IsoZ.write(now + 30 * 60_000, &mut b.lease);
        b.session = uuid_like(0x1E55, k as u64);
        schedule_of(a, h, &mut b.schedule);
        stmt.execute(params![
            uuid_like(0x1EA5, k as u64),
            b.schedule,
            a.name,
            "running",
            b.queued,
            b.started,
            None::<&str>,
            None::<i64>,
            MESSAGES[(h % 4) as usize],
            None::<&str>,
            None::<&str>,
            "pull",
            b.session,
            b.lease,
            None::<&str>,
        ])?;
        tick(&mut since_tick);
    }

    // Queued rows, only on agents whose slots are full (B-02), with valid, secret-free
    // backlog metadata (E-04, G-04), queued within the last minute (B-05).
    for k in 0..plan.queued {
        let h = mix(0x0E0E ^ k as u64);
        let agent = plan
            .full
            .get(k % plan.full.len().max(1))
            .copied()
            .unwrap_or(0);
        let a = &plan.agents[agent];
        Shape::of(h >> 8).write(now - below(h >> 16, 60_000) as i64, &mut b.queued);
        schedule_of(a, h, &mut b.schedule);
        let metadata = format!(
            r#"{{"reason":"at_capacity","attempt":{},"requested_by":"schedule","priority":"normal"}}"#,
            1 + h % 3
        );
        stmt.execute(params![
            uuid_like(0x0E0E, k as u64),
            b.schedule,
            a.name,
            "queued",
            b.queued,
            None::<&str>,
            None::<&str>,
            None::<i64>,
            MESSAGES[(h % 4) as usize],
            None::<&str>,
            None::<&str>,
            "schedule",
            None::<&str>,
            None::<&str>,
            metadata,
        ])?;
        tick(&mut since_tick);
    }

    // pending_retry rows: failed once, waiting for their retry.
    for k in 0..plan.pending_retry {
        let h = mix(0xBE77 ^ k as u64);
        let a = plan.live_agent(h);
        let queued = now - 60_000 - below(h >> 8, 600_000) as i64;
        Shape::IsoZ.write(queued, &mut b.queued);
        schedule_of(a, h, &mut b.schedule);
        stmt.execute(params![
            uuid_like(0xBE77, k as u64),
            b.schedule,
            a.name,
            "pending_retry",
            b.queued,
            None::<&str>,
            None::<&str>,
            None::<i64>,
            MESSAGES[(h % 4) as usize],
            None::<&str>,
            "upstream 503, retrying",
            "schedule",
            None::<&str>,
            None::<&str>,
            None::<&str>,
        ])?;
        tick(&mut since_tick);
    }

    // Terminal rows: most of them days old, 1 % completed within the last 15 minutes.
    for k in 0..plan.terminal {
        let h = mix(0x7E57 ^ k as u64);
        // Any agent, soft-deleted ones included: their history legitimately remains.
        let a = &plan.agents[below(h, plan.agents.len() as u64) as usize];
        let recent = below(h >> 3, RECENT_ONE_IN) == 0;
        let completed = if recent {
            counts.recent_terminal += 1;
            now - below(h >> 10, RECENT_SPAN_MS as u64) as i64
        } else {
            now - 3_600_000 - below(h >> 10, (HISTORY_DAYS * 86_400_000) as u64) as i64
        };
        let duration = 1_000 + below(h >> 40, 600_000) as i64;
        let status = match h % 100 {
            0..=79 => "success",
            80..=91 => "failed",
            92..=96 => "cancelled",
            _ => "skipped",
        };
        let shape = Shape::of(h >> 50);
        // A skipped run never started.
        let started = (status != "skipped").then_some(completed - duration);
        Shape::of(h >> 54).write(completed, &mut b.completed);
        match started {
            Some(s) => {
                shape.write(s, &mut b.started);
                shape.write(s - below(h >> 20, 5_000) as i64, &mut b.queued);
            }
            None => {
                b.started.clear();
                shape.write(completed, &mut b.queued);
            }
        }
        let session = started.is_some().then(|| uuid_like(0x7E55, k as u64));
        schedule_of(a, h, &mut b.schedule);
        stmt.execute(params![
            uuid_like(0x7E57, k as u64),
            b.schedule,
            a.name,
            status,
            b.queued,
            started.map(|_| b.started.as_str()),
            b.completed,
            started.map(|_| duration),
            MESSAGES[(h % 4) as usize],
            (status == "success").then_some("Done. 3 items updated, digest posted to #ops."),
            (status == "failed").then_some("tool call failed: upstream returned 502"),
            if h.is_multiple_of(7) {
                "manual"
            } else {
                "schedule"
            },
            session,
            None::<&str>,
            None::<&str>,
        ])?;
        tick(&mut since_tick);
    }
    bar.inc(since_tick);
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CascadeTable {
    Schedules,
    Sharing,
    Skills,
    Tags,
    SharedFiles,
    PublicLinks,
    Reports,
    ChatSessions,
    OperatorQueue,
    AccessRequests,
    McpApiKeys,
}

impl CascadeTable {
    fn insert_sql(self) -> &'static str {
        match self {
            CascadeTable::Schedules => {
                "INSERT INTO agent_schedules (id, agent_name, name, cron_expression, message, \
                 enabled, timezone, last_run_at, next_run_at, deleted_at) \
                 VALUES (?1, ?2, 'nightly', '0 3 * * *', ?3, ?4, 'UTC', ?5, ?6, ?7)"
            }
            CascadeTable::Sharing => {
                "INSERT INTO agent_sharing (agent_name, shared_with_email, shared_by_id) \
                 VALUES (?1, ?2, ?3)"
            }
            CascadeTable::Skills => {
                "INSERT INTO agent_skills (agent_name, skill_name) VALUES (?1, ?2)"
            }
            CascadeTable::Tags => "INSERT INTO agent_tags (agent_name, tag) VALUES (?1, ?2)",
            CascadeTable::SharedFiles => {
                "INSERT INTO agent_shared_files (agent_name, file_path) VALUES (?1, ?2)"
            }
            CascadeTable::PublicLinks => {
                "INSERT INTO agent_public_links (agent_name, token, enabled) VALUES (?1, ?2, ?3)"
            }
            CascadeTable::Reports => {
                "INSERT INTO agent_reports (agent_name, title, body) VALUES (?1, ?2, ?3)"
            }
            CascadeTable::ChatSessions => {
                "INSERT INTO chat_sessions (agent_name, user_id, status) VALUES (?1, ?2, ?3)"
            }
            CascadeTable::OperatorQueue => {
                "INSERT INTO operator_queue (agent_name, kind, status, payload) \
                 VALUES (?1, 'approval', ?2, '{}')"
            }
            CascadeTable::AccessRequests => {
                "INSERT INTO access_requests (agent_name, requester_email, status) \
                 VALUES (?1, ?2, ?3)"
            }
            CascadeTable::McpApiKeys => {
                "INSERT INTO mcp_api_keys (agent_name, user_id, name, key_hash, scope) \
                 VALUES (?1, ?2, 'ci', ?3, ?4)"
            }
        }
    }
}

/// `cascade_rows` rows over the agent-keyed tables, all pointing at roster agents (L-03 green).
/// Every agent gets schedules first (two ids per agent, matching `schedule_executions`), with a
/// future `next_run_at` (E-06 green).
fn insert_cascade(
    tx: &rusqlite::Transaction<'_>,
    plan: &Plan,
    bar: &ProgressBar,
    counts: &mut SqlCounts,
) -> Result<(), FleetError> {
    let parts: u64 = CASCADE_SHARES.iter().map(|(_, p)| p).sum();
    let total = plan.cascade_rows as u64;
    let mut assigned = 0u64;
    let mut a_buf = String::new();
    let mut b_buf = String::new();
    for (index, (table, share)) in CASCADE_SHARES.iter().enumerate() {
        // The last table takes the rounding remainder so the total is exact.
        let rows = if index + 1 == CASCADE_SHARES.len() {
            total - assigned
        } else {
            total * share / parts
        };
        assigned += rows;
        let mut stmt = tx.prepare(table.insert_sql())?;
        for k in 0..rows {
            let h = mix((index as u64) << 40 ^ k);
            // Schedules go round-robin (every agent gets one before any gets a second); the
            // other tables pick agents at random.
            let agent = if *table == CascadeTable::Schedules {
                &plan.agents[(k % plan.agents.len().max(1) as u64) as usize]
            } else {
                &plan.agents[below(h, plan.agents.len() as u64) as usize]
            };
            match table {
                CascadeTable::Schedules => {
                    let per_agent = k / plan.agents.len().max(1) as u64;
                    let id = if per_agent < 2 {
                        format!("sched-{}-{per_agent}", agent.name)
                    } else {
                        uuid_like(0x5C4E, k)
                    };
                    Shape::of(h >> 8)
                        .write(plan.now_ms - below(h >> 16, 86_400_000) as i64, &mut a_buf);
                    Shape::of(h >> 8).write(
                        plan.now_ms + 60_000 + below(h >> 24, 86_400_000) as i64,
                        &mut b_buf,
                    );
                    stmt.execute(params![
                        id,
                        agent.name,
                        MESSAGES[(h % 4) as usize],
                        i64::from(!h.is_multiple_of(10)),
                        a_buf,
                        b_buf,
                        None::<&str>,
                    ])?;
                }
                CascadeTable::Sharing => {
                    stmt.execute(params![
                        agent.name,
                        format!("user{}@example.com", h % 5_000),
                        (h % 500) as i64
                    ])?;
                }
                CascadeTable::Skills => {
                    let skills = ["web-search", "sql", "email", "calendar", "code-review"];
                    stmt.execute(params![agent.name, skills[(h % 5) as usize]])?;
                }
                CascadeTable::Tags => {
                    let tags = ["prod", "staging", "ops", "finance", "support", "beta"];
                    stmt.execute(params![agent.name, tags[(h % 6) as usize]])?;
                }
                CascadeTable::SharedFiles => {
                    stmt.execute(params![
                        agent.name,
                        format!("/shared/{}/doc-{k}.md", agent.name)
                    ])?;
                }
                CascadeTable::PublicLinks => {
                    stmt.execute(params![
                        agent.name,
                        uuid_like(0x11CC, k),
                        i64::from(!h.is_multiple_of(4))
                    ])?;
                }
                CascadeTable::Reports => {
                    stmt.execute(params![
                        agent.name,
                        "Weekly summary",
                        "All tasks completed."
                    ])?;
                }
                CascadeTable::ChatSessions => {
                    let status = if h.is_multiple_of(4) {
                        "active"
                    } else {
                        "ended"
                    };
                    stmt.execute(params![agent.name, (h % 500) as i64, status])?;
                }
                CascadeTable::OperatorQueue => {
                    let status = if h.is_multiple_of(3) {
                        "pending"
                    } else {
                        "resolved"
                    };
                    stmt.execute(params![agent.name, status])?;
                }
                CascadeTable::AccessRequests => {
                    let status = if h.is_multiple_of(3) {
                        "pending"
                    } else {
                        "approved"
                    };
                    stmt.execute(params![
                        agent.name,
                        format!("user{}@example.com", h % 5_000),
                        status
                    ])?;
                }
                CascadeTable::McpApiKeys => {
                    // User-scoped keys carry no agent, like the platform's.
                    let agent_scoped = h.is_multiple_of(2);
                    stmt.execute(params![
                        agent_scoped.then_some(agent.name.as_str()),
                        (h % 500) as i64,
                        format!("{:016x}", mix(h)),
                        if agent_scoped { "agent" } else { "user" },
                    ])?;
                }
            }
            if (k + 1) % PROGRESS_EVERY == 0 {
                bar.inc(PROGRESS_EVERY);
            }
        }
        bar.inc(rows % PROGRESS_EVERY);
        counts.cascade_rows += rows as usize;
    }
    Ok(())
}

/// Slot sets, metadata hashes and their TTLs, pipelined; returns the commands sent.
async fn write_redis(
    redis: &mut redis::aio::MultiplexedConnection,
    plan: &Plan,
    bar: &ProgressBar,
) -> Result<usize, FleetError> {
    let keys = RedisKeys::default();
    let mut pipe = redis::pipe();
    let mut queued = 0usize;
    let mut sent = 0usize;
    let mut members_in_pipe = 0u64;
    for r in &plan.running {
        let agent = &plan.agents[r.agent].name;
        let slots = keys.slots.replace("{agent}", agent);
        let meta = keys
            .slot_meta
            .replace("{agent}", agent)
            .replace("{execution_id}", &r.id);
        // The platform's acquire: ZADD at the start instant, metadata with `timeout + 300` s.
        pipe.zadd(&slots, &r.id, r.started_ms as f64 / 1000.0)
            .ignore()
            .hset(&meta, &keys.timeout_field, r.timeout)
            .ignore()
            .expire(&meta, r.timeout + SLOT_TTL_BUFFER_SECONDS)
            .ignore();
        queued += 3;
        members_in_pipe += 1;
        if queued >= REDIS_BATCH_COMMANDS {
            pipe.query_async::<()>(redis).await?;
            sent += queued;
            bar.inc(members_in_pipe);
            pipe = redis::pipe();
            queued = 0;
            members_in_pipe = 0;
        }
    }
    if queued > 0 {
        pipe.query_async::<()>(redis).await?;
        sent += queued;
        bar.inc(members_in_pipe);
    }
    Ok(sent)
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

    #[test]
    fn plan_respects_caps_and_counts() {
        for spec in [
            SeedSpec::named("S"),
            SeedSpec::named("M"),
            Some(SeedSpec {
                agents: 3,
                rows: 5,
                slots: 10,
                cascade_rows: 0,
            }),
        ]
        .into_iter()
        .flatten()
        {
            let plan = Plan::new(&spec, 1_768_384_800_000);
            for a in &plan.agents {
                assert!(a.slots <= a.effective_cap(), "{} over cap", a.name);
                assert!(!a.deleted || a.slots == 0, "{} deleted with slots", a.name);
            }
            let held: i64 = plan.agents.iter().map(|a| a.slots).sum();
            assert_eq!(held as usize, plan.running.len());
            assert_eq!(
                plan.rows_total(),
                spec.rows.max(plan.running.len()),
                "{spec:?}"
            );
            if spec.agents >= 100 {
                assert_eq!(plan.running.len(), spec.slots);
                assert!(plan.queued > 0, "B-02 arm exercised");
                for &i in &plan.full {
                    assert_eq!(plan.agents[i].slots, plan.agents[i].effective_cap());
                }
            }
        }
    }

    #[test]
    fn shapes_parse_back_to_the_same_instant() {
        let ms = 1_768_384_800_123;
        for shape in [
            Shape::IsoZ,
            Shape::IsoOffset,
            Shape::IsoNaive,
            Shape::Sqlite,
        ] {
            let mut s = String::new();
            shape.write(ms, &mut s);
            let parsed = crate::collect::timestamp::parse_timestamp_ms(&s);
            let expected = if matches!(shape, Shape::Sqlite) {
                ms - 123
            } else {
                ms
            };
            assert_eq!(parsed, Some(expected), "{s}");
        }
    }

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let a = uuid_like(1, 1);
        assert_eq!(a.len(), 36);
        assert_ne!(a, uuid_like(1, 2));
        assert_ne!(a, uuid_like(2, 1));
    }
}
