//! The stores before and after a run: opening the platform database (creating the schema on
//! request), provisioning the roster, schedules and agent-keyed rows of a plan, and recovering
//! what a crashed earlier run left open. It must not run the protocol itself (that is the
//! engine's).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;

use super::shapes::{Shape, stamp};
use super::spec::{AgentPlan, FleetSpec};
use crate::config::platform::RedisKeys;
use crate::fleet::platform::FleetError;
pub use crate::fleet::platform_db::BUSY_TIMEOUT;
use crate::fleet::platform_db::{PlatformDb, PlatformTarget, params};

/// Opens the platform database for writing (a SQLite file with a busy timeout, or a PostgreSQL
/// database). With `init`, creates the schema when absent (and a SQLite file, in WAL mode, as a
/// busy platform runs it); without it, the database must exist and hold the roster table.
pub fn open_db(target: impl Into<PlatformTarget>, init: bool) -> Result<PlatformDb, FleetError> {
    PlatformDb::open(&target.into(), init)
}

/// Writes the roster for `plans` (idempotent: a rerun updates caps), their schedules, a few
/// agent-keyed rows, and two soft-deleted agents whose rows legitimately remain.
pub fn provision(
    db: &mut PlatformDb,
    spec: &FleetSpec,
    plans: &[AgentPlan],
    now: i64,
) -> Result<(), FleetError> {
    let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x5eed);
    let tx = db.begin()?;
    for p in plans {
        let fresh = tx.execute(
            "INSERT INTO agent_ownership (agent_name, is_system, max_parallel_tasks, \
             execution_timeout_seconds, created_at) VALUES (?1, ?5, ?2, ?3, ?4) \
             ON CONFLICT DO NOTHING",
            params![
                p.name,
                p.cap,
                p.timeout_seconds,
                stamp(now, Shape::SqliteDatetime),
                false
            ],
        )? == 1;
        tx.execute(
            "UPDATE agent_ownership SET max_parallel_tasks = ?2, execution_timeout_seconds = ?3, \
             deleted_at = NULL WHERE agent_name = ?1",
            params![p.name, p.cap, p.timeout_seconds],
        )?;
        let first_run = now + rng.random_range(0..p.period_ms.max(1));
        tx.execute(
            "INSERT INTO agent_schedules (id, agent_name, name, cron_expression, \
             message, enabled, timezone, next_run_at) VALUES (?1, ?2, 'synthetic load', \
             '* * * * *', 'run the synthetic task', ?4, 'UTC', ?3) \
             ON CONFLICT (id) DO UPDATE SET agent_name = excluded.agent_name, \
             name = excluded.name, cron_expression = excluded.cron_expression, \
             message = excluded.message, enabled = excluded.enabled, \
             timezone = excluded.timezone, next_run_at = excluded.next_run_at",
            params![
                p.schedule_id,
                p.name,
                stamp(first_run, Shape::random(&mut rng)),
                true
            ],
        )?;
        if fresh {
            tx.execute(
                "INSERT INTO agent_tags (agent_name, tag) VALUES (?1, 'fleet')",
                params![p.name],
            )?;
            tx.execute(
                "INSERT INTO agent_skills (agent_name, skill_name) VALUES (?1, 'synthetic')",
                params![p.name],
            )?;
            tx.execute(
                "INSERT INTO chat_sessions (agent_name, status) VALUES (?1, 'active')",
                params![p.name],
            )?;
        }
    }
    for i in 1..=2 {
        let name = format!("{}retired-{i}", spec.prefix);
        let deleted_at = now - 86_400_000 * i;
        let fresh = tx.execute(
            "INSERT INTO agent_ownership (agent_name, is_system, max_parallel_tasks, \
             execution_timeout_seconds, deleted_at) VALUES (?1, ?3, NULL, NULL, ?2) \
             ON CONFLICT DO NOTHING",
            params![name, stamp(deleted_at, Shape::random(&mut rng)), false],
        )? == 1;
        if fresh {
            tx.execute(
                "INSERT INTO agent_tags (agent_name, tag) VALUES (?1, 'retired')",
                params![name],
            )?;
            tx.execute(
                "INSERT INTO agent_schedules (id, agent_name, name, enabled, next_run_at, \
                 deleted_at) VALUES (?1, ?2, 'old schedule', ?4, ?3, ?3)",
                params![
                    format!("sched-{name}"),
                    name,
                    stamp(deleted_at, Shape::SqliteDatetime),
                    false
                ],
            )?;
            tx.execute(
                "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, queued_at, \
                 started_at, completed_at, duration_ms, claude_session_id, backlog_metadata) \
                 VALUES (?1, ?2, ?3, 'success', ?4, ?4, ?5, 60000, 'session-retired', '{}')",
                params![
                    format!("ex-{name}-last"),
                    format!("sched-{name}"),
                    name,
                    stamp(deleted_at - 120_000, Shape::IsoZ),
                    stamp(deleted_at - 60_000, Shape::SqliteDatetime)
                ],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Closes what a crashed earlier run of these agents left behind (non-terminal rows cancelled,
/// slot keys and metadata removed), so a rerun starts from a consistent platform.
pub async fn recover(
    db: &PlatformDb,
    redis: &mut crate::fleet::platform::RedisConn,
    keys: &RedisKeys,
    plans: &[AgentPlan],
    now: i64,
) -> Result<u64, FleetError> {
    let mut closed = 0u64;
    for p in plans {
        closed += db.execute(
            "UPDATE schedule_executions SET status = 'cancelled', completed_at = ?2 \
             WHERE agent_name = ?1 AND status IN ('queued', 'running', 'pending_retry')",
            params![p.name, stamp(now, Shape::IsoZ)],
        )?;
        let slots = keys.slots.replace("{agent}", &p.name);
        let pattern = keys
            .slot_meta
            .replace("{agent}", &p.name)
            .replace("{execution_id}", "*");
        // SCAN (on every primary of a cluster), not KEYS: this may run against a real
        // platform's Redis.
        let metas = redis.scan_keys(&pattern).await?;
        let _: () = redis.del(slots).await?;
        redis.del_keys(&metas).await?;
    }
    Ok(closed)
}
