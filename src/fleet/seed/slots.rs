//! The Redis half of the dataset: one slot-set member, metadata hash and TTL per running row,
//! as the platform's acquire writes them, sent in pipelines of a few thousand commands (on a
//! cluster, one pipeline per owning node: `redis_conn::Batcher`). No SQL.

use indicatif::ProgressBar;

use super::plan::Plan;
use crate::config::platform::RedisKeys;
use crate::fleet::platform::{FleetError, SLOT_TTL_BUFFER_SECONDS};
use crate::fleet::redis_conn::Batcher;

/// Redis commands per pipeline (per node on a cluster): large enough to amortise the round
/// trip, small enough to keep the client's and the server's buffers modest.
const REDIS_BATCH_COMMANDS: usize = 6_000;

/// Slot sets, metadata hashes and their TTLs, pipelined; returns the commands and the
/// pipelines sent.
pub(super) async fn write_redis(
    redis: &mut crate::fleet::platform::RedisConn,
    plan: &Plan,
    bar: &ProgressBar,
) -> Result<(usize, usize), FleetError> {
    let keys = RedisKeys::default();
    let mut batch = Batcher::new(redis, REDIS_BATCH_COMMANDS).await?;
    for (n, r) in plan.running.iter().enumerate() {
        let agent = &plan.agents[r.agent].name;
        let slots = keys.slots.replace("{agent}", agent);
        let meta = keys
            .slot_meta
            .replace("{agent}", agent)
            .replace("{execution_id}", &r.id);
        // The platform's acquire: ZADD at the start instant, metadata with `timeout + 300` s
        // (two keys, two slots on a cluster: queued on their own nodes' pipelines).
        batch
            .add(&slots, 1, |p| {
                p.zadd(&slots, &r.id, r.started_ms as f64 / 1000.0).ignore();
            })
            .await?;
        batch
            .add(&meta, 2, |p| {
                p.hset(&meta, &keys.timeout_field, r.timeout)
                    .ignore()
                    .expire(&meta, r.timeout + SLOT_TTL_BUFFER_SECONDS)
                    .ignore();
            })
            .await?;
        if n % 1000 == 999 {
            bar.inc(1000);
        }
    }
    bar.inc((plan.running.len() % 1000) as u64);
    batch.finish().await
}
