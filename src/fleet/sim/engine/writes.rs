//! The single store writes the protocol steps are made of: the SQL half of a claim or a finish,
//! the Redis half (one `MULTI`, shared with the test platform through
//! [`crate::fleet::platform`]), the keys, and the backlog metadata a queued row carries.

use crate::fleet::platform_db::params;
use rand::Rng;

use super::Sim;
use crate::clock::now_ms;
use crate::fleet::platform::{self, FleetError};
use crate::fleet::sim::shapes::{Shape, stamp};

impl Sim {
    /// `agent:slots:{agent}` of the engine's agent `agent`.
    pub(super) fn slots_key(&self, agent: usize) -> String {
        let name = self.agents.get(agent).map_or("", |a| a.plan.name.as_str());
        self.keys.slots.replace("{agent}", name)
    }

    /// `agent:slot:{agent}:{execution_id}`.
    pub(super) fn meta_key(&self, agent: usize, id: &str) -> String {
        let name = self.agents.get(agent).map_or("", |a| a.plan.name.as_str());
        self.keys
            .slot_meta
            .replace("{agent}", name)
            .replace("{execution_id}", id)
    }

    /// The SQL half of a claim: `running`, `started_at`, a session (and a lease for pull rows).
    pub(super) fn sql_running(
        &mut self,
        id: &str,
        lease_until: Option<i64>,
    ) -> Result<(), FleetError> {
        let now = now_ms();
        let session = format!("session-{:016x}", self.rng.random::<u64>());
        let lease = lease_until.map(|at| stamp(at, Shape::random(&mut self.rng)));
        self.db.execute(
            "UPDATE schedule_executions SET status = 'running', started_at = ?2, \
             claude_session_id = ?3, lease_expires_at = ?4 WHERE id = ?1",
            params![id, stamp(now, Shape::random(&mut self.rng)), session, lease],
        )?;
        self.started_at.insert(id.to_owned(), now);
        Ok(())
    }

    /// The SQL half of a finish: terminal status, `completed_at`, `duration_ms`.
    pub(super) fn sql_terminal(&mut self, id: &str, status: &str) -> Result<(), FleetError> {
        let now = now_ms();
        let duration = self
            .started_at
            .remove(id)
            .map_or(0, |s| now.saturating_sub(s));
        self.db.execute(
            "UPDATE schedule_executions SET status = ?2, completed_at = ?3, duration_ms = ?4 \
             WHERE id = ?1",
            params![
                id,
                status,
                stamp(now, Shape::random(&mut self.rng)),
                duration
            ],
        )?;
        Ok(())
    }

    /// A queued row cancelled (on stop).
    pub(super) fn sql_terminal_queued(&mut self, id: &str) -> Result<(), FleetError> {
        self.db.execute(
            "UPDATE schedule_executions SET status = 'cancelled', completed_at = ?2 \
             WHERE id = ?1 AND status = 'queued'",
            params![id, stamp(now_ms(), Shape::IsoZ)],
        )?;
        Ok(())
    }

    /// The Redis half of a claim (see [`platform::acquire`]).
    pub(super) async fn acquire(
        &mut self,
        agent: usize,
        id: &str,
        timeout: i64,
    ) -> Result<(), FleetError> {
        let slots = self.slots_key(agent);
        let meta = self.meta_key(agent, id);
        platform::acquire(&mut self.redis, &slots, &meta, id, timeout, now_ms()).await
    }

    /// The Redis half of a finish (see [`platform::release`]).
    pub(super) async fn release(&mut self, agent: usize, id: &str) -> Result<(), FleetError> {
        let slots = self.slots_key(agent);
        let meta = self.meta_key(agent, id);
        platform::release(&mut self.redis, &slots, &meta, id).await
    }
}

/// The backlog metadata the platform stores with a queued row (valid JSON, no secrets).
pub(super) fn metadata(schedule_id: &str, attempt: u32) -> String {
    serde_json::json!({
        "schedule_id": schedule_id,
        "trigger": "schedule",
        "attempt": attempt,
        "message": "run the synthetic task",
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_json_without_secret_prefixes() {
        let m = metadata("sched-fleet-01", 1);
        assert!(serde_json::from_str::<serde_json::Value>(&m).is_ok());
        for prefix in ["sk-", "ghp_", "xoxb-", "AKIA", "AIza"] {
            assert!(!m.contains(prefix), "{m}");
        }
    }
}
