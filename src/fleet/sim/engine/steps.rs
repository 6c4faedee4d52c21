//! The protocol steps the engine schedules, as the platform runs them: a schedule fire (a
//! queued or skipped row), dispatch (claims while slots are free; pull rows to a pull worker),
//! a finish (either half first), and the capacity sweep (sentinels, dispatch, heartbeat). Each
//! step does its first half now and schedules the rest; it must not wait for the clock.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::fleet::platform_db::params;
use rand::Rng;
use redis::AsyncCommands;

use super::writes::metadata;
use super::{Event, Sim, Waiting, ms};
use crate::clock::now_ms;
use crate::fleet::platform::FleetError;
use crate::fleet::sim::shapes::{Shape, stamp};
use crate::fleet::sim::stats::bump;

/// A schedule that fires while this many rows already wait inserts a `skipped` row instead.
const MAX_QUEUE: usize = 6;

impl Sim {
    pub(super) fn fire(&mut self, agent: usize) -> Result<(), FleetError> {
        bump(&self.stats.fires);
        let now = now_ms();
        let Some(a) = self.agents.get(agent) else {
            return Ok(());
        };
        let (name, schedule_id, period) = (
            a.plan.name.clone(),
            a.plan.schedule_id.clone(),
            a.plan.period_ms,
        );
        let queue_len = a.queue.len();
        self.executions += 1;
        // Unique across runs on the same database (a rerun with the same seed makes the same
        // choices, so the ids carry the run's start instead of a random number).
        let id = format!("ex-{}-{:06}", self.run, self.executions);
        let next = now + (period as f64 * self.rng.random_range(0.7..1.3)).round() as i64;
        let tx = self.db.begin()?;
        if queue_len >= MAX_QUEUE {
            tx.execute(
                "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, queued_at, \
                 completed_at, duration_ms, triggered_by, backlog_metadata) \
                 VALUES (?1, ?2, ?3, 'skipped', ?4, ?4, 0, 'schedule', ?5)",
                params![
                    id,
                    schedule_id,
                    name,
                    stamp(now, Shape::random(&mut self.rng)),
                    metadata(&schedule_id, 1)
                ],
            )?;
        } else {
            tx.execute(
                "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, queued_at, \
                 triggered_by, message, backlog_metadata) \
                 VALUES (?1, ?2, ?3, 'queued', ?4, 'schedule', 'run the synthetic task', ?5)",
                params![
                    id,
                    schedule_id,
                    name,
                    stamp(now, Shape::random(&mut self.rng)),
                    metadata(&schedule_id, 1)
                ],
            )?;
        }
        tx.execute(
            "UPDATE agent_schedules SET last_run_at = ?2, next_run_at = ?3 WHERE id = ?1",
            params![
                schedule_id,
                stamp(now, Shape::random(&mut self.rng)),
                stamp(next, Shape::random(&mut self.rng))
            ],
        )?;
        tx.commit()?;
        if queue_len >= MAX_QUEUE {
            bump(&self.stats.skipped);
        } else {
            bump(&self.stats.queued);
            let pull = self.rng.random_bool(self.spec.lease_share.clamp(0.0, 1.0));
            if let Some(a) = self.agents.get_mut(agent) {
                a.queue.push_back(Waiting { id, pull });
                let depth = a.queue.len() as u64;
                self.stats.max_queue.fetch_max(depth, Ordering::Relaxed);
            }
        }
        self.at(ms(next - now), Event::Fire(agent));
        Ok(())
    }

    /// Claims waiting rows while the agent has free slots; pull rows go to a pull worker.
    pub(super) async fn dispatch(&mut self, agent: usize) {
        if self.stopping {
            return;
        }
        loop {
            let Some(a) = self.agents.get_mut(agent) else {
                return;
            };
            let Some(front) = a.queue.front() else { return };
            if !front.pull && a.held >= a.plan.cap {
                return;
            }
            let Some(w) = a.queue.pop_front() else { return };
            if w.pull {
                let delay = self.rng.random_range(20..300);
                self.at(ms(delay), Event::PullClaim { agent, id: w.id });
                continue;
            }
            a.held += 1;
            let cap_timeout = a.plan.timeout_seconds;
            // Per-execution timeouts are often lower than the agent's (S-03 must use the slot's).
            let timeout = if self.rng.random_bool(0.5) {
                cap_timeout
            } else {
                self.rng.random_range(60..=cap_timeout.max(60))
            };
            let redis_first = self
                .rng
                .random_bool(self.spec.redis_first_claim_share.clamp(0.0, 1.0));
            let r = if redis_first {
                bump(&self.stats.redis_first_claims);
                self.acquire(agent, &w.id, timeout).await
            } else {
                self.sql_running(&w.id, None)
            };
            self.check("claim, first half", r);
            bump(&self.stats.started);
            let gap = self.gap();
            self.at(
                gap,
                Event::ClaimRest {
                    agent,
                    id: w.id,
                    redis_first,
                    timeout,
                },
            );
        }
    }

    pub(super) async fn finish(&mut self, agent: usize, id: String, leased: bool) {
        let roll = self.rng.random_range(0..100);
        let status = match roll {
            0..80 => "success",
            80..95 => "failed",
            _ => "cancelled",
        };
        if leased {
            let r = self.sql_terminal(&id, status);
            self.check("reap leased row", r);
            bump(&self.stats.reaped);
            return;
        }
        let redis_first = self
            .rng
            .random_bool(self.spec.redis_first_finish_share.clamp(0.0, 1.0));
        let r = if redis_first {
            bump(&self.stats.redis_first_finishes);
            self.release(agent, &id).await
        } else {
            self.sql_terminal(&id, status)
        };
        self.check("finish, first half", r);
        let gap = if self.stopping {
            Duration::ZERO
        } else {
            self.gap()
        };
        self.at(
            gap,
            Event::FinishRest {
                agent,
                id,
                redis_first,
                status,
            },
        );
    }

    /// The capacity sweep: a short-lived sentinel on agents with waiting rows (and now and then
    /// on an idle one), dispatch, then the heartbeat. A stopped sweep (fault) does nothing.
    pub(in crate::fleet::sim) async fn sweep(&mut self) {
        if self.control.sweep_stopped.load(Ordering::Relaxed) {
            return;
        }
        for agent in 0..self.agents.len() {
            let waiting = self.agents.get(agent).is_some_and(|a| !a.queue.is_empty());
            if !waiting && !self.rng.random_bool(0.05) {
                continue;
            }
            let member = format!("drain-{:08x}", self.rng.random::<u32>());
            let key = self.slots_key(agent);
            let score = now_ms() as f64 / 1000.0;
            let r: Result<(), FleetError> = self
                .redis
                .zadd::<_, _, _, ()>(key, &member, score)
                .await
                .map_err(Into::into);
            self.check("place drain sentinel", r);
            bump(&self.stats.sentinels);
            self.dispatch(agent).await;
            let life = self.rng.random_range(2..200);
            self.at(ms(life), Event::SentinelEnd { agent, member });
        }
        let tick = format!("{:.3}", now_ms() as f64 / 1000.0);
        let r: Result<(), FleetError> = self
            .redis
            .set::<_, _, ()>(&self.keys.drain_tick, tick)
            .await
            .map_err(Into::into);
        self.check("drain heartbeat", r);
        bump(&self.stats.heartbeats);
    }
}
