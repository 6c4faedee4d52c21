//! The engine: an event queue of protocol steps (a schedule fire, the two halves of a claim
//! or a finish, a pull claim, a sweep, a sentinel's end), run in time order on the simulator's
//! thread; on stop, everything in flight completes and what still waits is cancelled. The steps
//! themselves are in [`steps`], the single store writes they are made of in [`writes`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::fleet::platform_db::{PlatformDb, params};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::setup::open_db;
use super::shapes::{Shape, stamp};
use super::spec::{AgentPlan, FleetSpec};
use super::stats::{FleetStats, bump};
use super::thread::{Control, SimArgs};
use crate::clock::now_ms;
use crate::config::platform::RedisKeys;
use crate::fleet::platform::FleetError;

mod steps;
mod writes;

/// Pull-claimed leases outlive the work by this much (the reaper's margin).
const LEASE_MARGIN_MS: i64 = 30_000;

/// A queued row waiting for its claim.
#[derive(Debug, Clone)]
struct Waiting {
    id: String,
    pull: bool,
}

/// A claim or finish half-done: which half comes second.
#[derive(Debug, Clone)]
enum Event {
    Fire(usize),
    ClaimRest {
        agent: usize,
        id: String,
        redis_first: bool,
        timeout: i64,
    },
    Finish {
        agent: usize,
        id: String,
        leased: bool,
    },
    FinishRest {
        agent: usize,
        id: String,
        redis_first: bool,
        status: &'static str,
    },
    PullClaim {
        agent: usize,
        id: String,
    },
    Sweep,
    SentinelEnd {
        agent: usize,
        member: String,
    },
}

/// One agent as the engine tracks it.
struct AgentState {
    plan: AgentPlan,
    /// Slots reserved (claims in flight + running + finishes in flight): never above the cap.
    held: i64,
    queue: VecDeque<Waiting>,
}

/// The running simulation: the stores, the agents' state and the event queue.
pub(super) struct Sim {
    db: PlatformDb,
    redis: crate::fleet::platform::RedisConn,
    keys: RedisKeys,
    rng: StdRng,
    spec: FleetSpec,
    agents: Vec<AgentState>,
    events: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: BTreeMap<u64, Event>,
    seq: u64,
    /// Started executions: id → start instant (unix ms), to compute `duration_ms`.
    started_at: BTreeMap<String, i64>,
    stats: Arc<FleetStats>,
    control: Arc<Control>,
    cancel: CancellationToken,
    stopping: bool,
    /// This run's start (unix ms, hex): the prefix of its execution ids.
    run: String,
    /// Execution rows inserted so far.
    executions: u64,
}

impl Sim {
    pub(super) async fn connect(args: SimArgs) -> Result<Sim, FleetError> {
        let db = open_db(&args.target, false)?;
        let redis = crate::fleet::platform::connect_redis(&args.redis).await?;
        let agents = args
            .plans
            .into_iter()
            .map(|plan| AgentState {
                plan,
                held: 0,
                queue: VecDeque::new(),
            })
            .collect();
        Ok(Sim {
            db,
            redis,
            keys: RedisKeys::default(),
            rng: StdRng::seed_from_u64(args.spec.seed ^ 0xf1ee7),
            spec: args.spec,
            agents,
            events: BinaryHeap::new(),
            pending: BTreeMap::new(),
            seq: 0,
            started_at: BTreeMap::new(),
            stats: args.stats,
            control: args.control,
            cancel: args.cancel,
            stopping: false,
            run: format!("{:x}", now_ms()),
            executions: 0,
        })
    }

    fn at(&mut self, after: Duration, event: Event) {
        self.seq += 1;
        self.events
            .push(Reverse((Instant::now() + after, self.seq)));
        self.pending.insert(self.seq, event);
    }

    pub(super) async fn run(mut self) -> Result<(), FleetError> {
        let first_fires: Vec<(usize, i64)> = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| (i, a.plan.period_ms))
            .collect();
        for (i, period) in first_fires {
            let delay = self.rng.random_range(0..period.max(1));
            self.at(ms(delay), Event::Fire(i));
        }
        self.at(self.spec.sweep_every, Event::Sweep);
        loop {
            let next = self.events.peek().map(|Reverse((at, _))| *at);
            let Some(next) = next else { break };
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                () = tokio::time::sleep_until(next) => {}
            }
            let now = Instant::now();
            while let Some(event) = self.pop_due(now) {
                self.handle(event).await;
            }
        }
        self.drain().await;
        Ok(())
    }

    fn pop_due(&mut self, now: Instant) -> Option<Event> {
        let Reverse((at, seq)) = *self.events.peek()?;
        if at > now {
            return None;
        }
        self.events.pop();
        self.pending.remove(&seq)
    }

    /// Stop: no more fires or sweeps; everything in flight completes now, in order; what still
    /// waits is cancelled.
    async fn drain(&mut self) {
        self.stopping = true;
        while let Some(Reverse((_, seq))) = self.events.pop() {
            if let Some(event) = self.pending.remove(&seq) {
                self.handle(event).await;
            }
        }
        let now = now_ms();
        for i in 0..self.agents.len() {
            let waiting: Vec<Waiting> = self
                .agents
                .get_mut(i)
                .map(|a| a.queue.drain(..).collect())
                .unwrap_or_default();
            for w in waiting {
                let done = self.db.execute(
                    "UPDATE schedule_executions SET status = 'cancelled', completed_at = ?2 \
                     WHERE id = ?1 AND status = 'queued'",
                    params![w.id, stamp(now, Shape::IsoZ)],
                );
                self.check("cancel queued row", done.map(|_| ()));
            }
        }
    }

    fn check(&self, step: &str, result: Result<(), FleetError>) {
        if let Err(error) = result {
            bump(&self.stats.errors);
            tracing::warn!(step, error = %error, "fleet write failed");
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Fire(agent) => {
                if !self.stopping {
                    let r = self.fire(agent);
                    self.check("schedule fire", r);
                    self.dispatch(agent).await;
                }
            }
            Event::ClaimRest {
                agent,
                id,
                redis_first,
                timeout,
            } => {
                let r = if redis_first {
                    self.sql_running(&id, None)
                } else {
                    self.acquire(agent, &id, timeout).await
                };
                self.check("claim, second half", r);
                let duration = self.duration_ms(agent);
                let after = if self.stopping { 0 } else { duration };
                self.at(
                    ms(after),
                    Event::Finish {
                        agent,
                        id,
                        leased: false,
                    },
                );
            }
            Event::Finish { agent, id, leased } => self.finish(agent, id, leased).await,
            Event::FinishRest {
                agent,
                id,
                redis_first,
                status,
            } => {
                let r = if redis_first {
                    self.sql_terminal(&id, status)
                } else {
                    self.release(agent, &id).await
                };
                self.check("finish, second half", r);
                if let Some(a) = self.agents.get_mut(agent) {
                    a.held -= 1;
                }
                bump(&self.stats.finished);
                self.dispatch(agent).await;
            }
            Event::PullClaim { agent, id } => {
                if self.stopping {
                    let r = self.sql_terminal_queued(&id);
                    self.check("cancel pull row", r);
                } else {
                    let duration = self.duration_ms(agent);
                    let lease_until = now_ms() + duration + LEASE_MARGIN_MS;
                    let r = self.sql_running(&id, Some(lease_until));
                    self.check("pull claim", r);
                    bump(&self.stats.leased);
                    self.at(
                        ms(duration),
                        Event::Finish {
                            agent,
                            id,
                            leased: true,
                        },
                    );
                }
            }
            Event::Sweep => {
                if !self.stopping {
                    self.sweep().await;
                    self.at(self.spec.sweep_every, Event::Sweep);
                }
            }
            Event::SentinelEnd { agent, member } => {
                let key = self.slots_key(agent);
                let r: Result<(), FleetError> = self
                    .redis
                    .zrem::<_, _, ()>(key, member)
                    .await
                    .map_err(Into::into);
                self.check("remove drain sentinel", r);
            }
        }
    }

    fn gap(&mut self) -> Duration {
        let max = u64::try_from(self.spec.max_gap.as_millis()).unwrap_or(u64::MAX);
        // Mostly a few ms (one commit), sometimes tens of ms (a slow commit or a GC pause).
        let ms = match self.rng.random_range(0..100) {
            0..80 => self.rng.random_range(0..=5),
            _ => self.rng.random_range(0..=max.max(1)),
        };
        Duration::from_millis(ms.min(max))
    }

    fn duration_ms(&mut self, agent: usize) -> i64 {
        let (cap, period) = self
            .agents
            .get(agent)
            .map_or((1, 1000), |a| (a.plan.cap, a.plan.period_ms));
        let mean = (self.spec.utilization * cap as f64 * period as f64).max(100.0);
        self.rng.random_range(0.2 * mean..1.8 * mean).round() as i64
    }
}

/// `n` milliseconds (0 when negative).
fn ms(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap_or(0))
}
