//! What to simulate ([`FleetSpec`]) and the agents it becomes ([`plan`]), deterministic in the
//! seed. Pure: no store access, no clock.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Agents running schedules.
    pub agents: usize,
    /// Executions per minute across the fleet.
    pub rate_per_min: f64,
    /// Seed of every random choice (caps, timeouts, durations, orders, gaps, shapes).
    pub seed: u64,
    /// Agent name prefix (`fleet-07`); also names the soft-deleted agents and fault sites.
    pub prefix: String,
    /// Share of executions claimed by pull workers (leased, no slot).
    pub lease_share: f64,
    /// Share of claims that take the slot before the row goes `running`.
    pub redis_first_claim_share: f64,
    /// Share of finishes that release the slot before the row goes terminal.
    pub redis_first_finish_share: f64,
    /// Longest gap between the SQL and the Redis half of a claim or a finish.
    pub max_gap: Duration,
    /// How often the capacity sweep runs (sentinels, dispatch, heartbeat).
    pub sweep_every: Duration,
    /// Mean share of each agent's cap kept busy (above ~0.8 rows queue up often).
    pub utilization: f64,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            agents: 12,
            rate_per_min: 240.0,
            seed: 42,
            prefix: "fleet-".to_owned(),
            lease_share: 0.1,
            redis_first_claim_share: 0.5,
            redis_first_finish_share: 0.0,
            max_gap: Duration::from_millis(40),
            sweep_every: Duration::from_secs(1),
            utilization: 0.7,
        }
    }
}

/// One simulated agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentPlan {
    /// Roster name.
    pub name: String,
    /// `max_parallel_tasks`.
    pub cap: i64,
    /// `execution_timeout_seconds`.
    pub timeout_seconds: i64,
    /// Its schedule's id.
    pub schedule_id: String,
    /// Mean time between two fires of its schedule.
    pub period_ms: i64,
}

/// The agents of `spec`, deterministic in its seed: caps 1–5, timeouts 300–3600 s, and periods
/// that add up to `rate_per_min`.
pub fn plan(spec: &FleetSpec) -> Vec<AgentPlan> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let agents = spec.agents.max(1);
    let per_agent_per_min = spec.rate_per_min.max(0.1) / agents as f64;
    (0..agents)
        .map(|i| {
            let name = format!("{}{:02}", spec.prefix, i + 1);
            // Spread the load unevenly: some agents are twice as busy as others.
            let weight = rng.random_range(0.6..1.4);
            let period_ms = (60_000.0 / (per_agent_per_min * weight)).round() as i64;
            AgentPlan {
                schedule_id: format!("sched-{name}"),
                name,
                cap: rng.random_range(1..=5),
                timeout_seconds: [300, 600, 900, 1800, 3600][rng.random_range(0..5)],
                period_ms: period_ms.max(50),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_deterministic_and_add_up_to_the_rate() {
        let spec = FleetSpec {
            agents: 20,
            rate_per_min: 600.0,
            ..FleetSpec::default()
        };
        let a = plan(&spec);
        assert_eq!(a, plan(&spec));
        assert_eq!(a.len(), 20);
        let rate: f64 = a.iter().map(|p| 60_000.0 / p.period_ms as f64).sum();
        assert!((400.0..800.0).contains(&rate), "{rate}");
        assert!(a.iter().all(|p| (1..=5).contains(&p.cap)));
    }
}
