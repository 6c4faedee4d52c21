//! Everything the dataset decides up front (the roster, caps, which agents hold which slots,
//! how many rows of each status), deterministic in the spec; the bulk rows are derived from
//! their index while written. Pure: no store access, no clock (the instant is an input).

use super::values::{below, mix, uuid_like};
use super::{SeedReport, SeedSpec};

#[derive(Debug, Clone)]
/// One roster agent.
pub(super) struct AgentPlan {
    pub(super) name: String,
    /// `None` = NULL in the roster (platform default 3).
    pub(super) cap: Option<i64>,
    /// `None` = NULL in the roster (platform default 900 s).
    pub(super) timeout: Option<i64>,
    pub(super) deleted: bool,
    pub(super) is_system: bool,
    /// Slots this agent holds.
    pub(super) slots: i64,
}

impl AgentPlan {
    pub(super) fn effective_cap(&self) -> i64 {
        self.cap.unwrap_or(3)
    }
    pub(super) fn effective_timeout(&self) -> i64 {
        self.timeout.unwrap_or(900)
    }
}

#[derive(Debug, Clone)]
/// One running execution holding a slot.
pub(super) struct RunPlan {
    pub(super) agent: usize,
    pub(super) id: String,
    pub(super) started_ms: i64,
    /// The timeout this execution was dispatched with (≤ the agent's).
    pub(super) timeout: i64,
}

/// Everything decided up front (small: agents and running rows); the bulk rows are generated
/// on the fly from their index.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) now_ms: i64,
    pub(super) agents: Vec<AgentPlan>,
    pub(super) live: Vec<usize>,
    /// Agents whose slots are full (the only ones that may have queued rows: B-02).
    pub(super) full: Vec<usize>,
    pub(super) running: Vec<RunPlan>,
    pub(super) leased: usize,
    pub(super) queued: usize,
    pub(super) pending_retry: usize,
    pub(super) terminal: usize,
    pub(super) cascade_rows: usize,
}

impl Plan {
    pub(super) fn new(spec: &SeedSpec, now_ms: i64) -> Plan {
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

    pub(super) fn rows_total(&self) -> usize {
        self.running.len() + self.leased + self.queued + self.pending_retry + self.terminal
    }

    pub(super) fn report_skeleton(&self) -> SeedReport {
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
    pub(super) fn live_agent(&self, seed: u64) -> &AgentPlan {
        let i = self
            .live
            .get(below(seed, self.live.len() as u64) as usize)
            .copied()
            .unwrap_or(0);
        &self.agents[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
