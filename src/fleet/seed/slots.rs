//! The Redis half of the dataset: one slot-set member, metadata hash and TTL per running row,
//! as the platform's acquire writes them, sent in pipelines of a few thousand commands. No
//! SQLite.

use indicatif::ProgressBar;

use super::plan::Plan;
use crate::config::platform::RedisKeys;
use crate::fleet::platform::{FleetError, SLOT_TTL_BUFFER_SECONDS};

/// Redis commands per pipeline: large enough to amortise the round trip, small enough to keep
/// the client's and the server's buffers modest.
const REDIS_BATCH_COMMANDS: usize = 6_000;

/// Slot sets, metadata hashes and their TTLs, pipelined; returns the commands sent.
pub(super) async fn write_redis(
    redis: &mut crate::fleet::platform::RedisConn,
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
