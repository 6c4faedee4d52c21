//! The SQL half of the dataset: the schema, then the roster and every execution row in ONE
//! transaction, the cascade rows included ([`super::cascade`]). On SQLite: prepared statements
//! (WAL, `synchronous=OFF`: a throw-away database); on PostgreSQL: multi-row `INSERT`s of a
//! thousand rows each, then `ANALYZE` so the watcher's first statements are planned on real
//! statistics. Runs on a blocking thread; no Redis.

use indicatif::ProgressBar;

use super::cascade::insert_cascade;
use super::plan::{AgentPlan, Plan};
use super::values::{Shape, below, mix, uuid_like};
use crate::fleet::platform::FleetError;
use crate::fleet::platform_db::{Dialect, PlatformDb, PlatformTarget, params};

/// Terminal rows completed this recently count as "recent" (inside E-02's 30 min window even
/// after [`super::FRESH_FOR`] has passed, so the collected workload does not shrink while cached).
const RECENT_SPAN_MS: i64 = 15 * 60 * 1000;

/// The share of terminal rows completed within [`RECENT_SPAN_MS`] (1 in this many). A platform
/// with 1 M rows over 30 days finishes ~700 rows per 30 min; 1 % is a deliberately busy hour.
const RECENT_ONE_IN: u64 = 100;

/// Older terminal rows are spread over this many days.
const HISTORY_DAYS: i64 = 30;

/// Rows between progress-bar updates (updating per row would cost more than the insert).
pub(super) const PROGRESS_EVERY: u64 = 4_096;

#[derive(Debug, Default)]
pub(super) struct SqlCounts {
    pub(super) cascade_rows: usize,
    pub(super) recent_terminal: usize,
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

/// The whole SQL half: schema, then roster, executions and cascade rows in ONE transaction.
pub(super) fn write_sql(
    target: &PlatformTarget,
    plan: &Plan,
    bar: &ProgressBar,
) -> Result<SqlCounts, FleetError> {
    let db = PlatformDb::open(target, true)?;
    if let Some(sqlite) = db.sqlite() {
        sqlite.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY; \
             PRAGMA cache_size = -262144;",
        )?;
    }
    let tx = db.begin()?;
    let mut counts = SqlCounts::default();
    insert_agents(&tx, plan, bar)?;
    insert_executions(&tx, plan, bar, &mut counts)?;
    insert_cascade(&tx, plan, bar, &mut counts)?;
    tx.commit()?;
    match db.dialect() {
        // Fold the WAL back so readers open a compact file (canary opens it read-only).
        Dialect::Sqlite => db.batch("PRAGMA wal_checkpoint(TRUNCATE);")?,
        // Fresh tables have no statistics until autovacuum gets round to them.
        Dialect::Postgres => db.batch("ANALYZE")?,
    }
    Ok(counts)
}

/// The roster.
fn insert_agents(tx: &PlatformDb, plan: &Plan, bar: &ProgressBar) -> Result<(), FleetError> {
    let mut stmt = tx.inserter(
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
        stmt.row(params![
            a.name,
            (h % 500) as i64,
            i64::from(a.is_system),
            a.cap,
            a.timeout,
            created,
            a.deleted.then_some(deleted_at.as_str()),
        ])?;
    }
    stmt.finish()?;
    bar.inc(plan.agents.len() as u64);
    Ok(())
}

/// The prompts execution rows (and schedules) carry.
pub(super) const MESSAGES: [&str; 4] = [
    "Summarise yesterday's support tickets and post the digest",
    "Check the nightly build and open an issue for each new failure",
    "Refresh the pricing sheet from the supplier feed",
    "Triage new pull requests and label them",
];

/// Every execution row: running, leased, pending_retry, queued and terminal.
fn insert_executions(
    tx: &PlatformDb,
    plan: &Plan,
    bar: &ProgressBar,
    counts: &mut SqlCounts,
) -> Result<(), FleetError> {
    let mut stmt = tx.inserter(
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
        stmt.row(params![
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
        stmt.row(params![
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
        stmt.row(params![
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
        stmt.row(params![
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
        stmt.row(params![
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
    stmt.finish()?;
    bar.inc(since_tick);
    Ok(())
}
