//! The fleet simulator: a synthetic platform that runs agents the way the reference platform
//! does, step by step, with its real race windows, so canary can be watched catching faults in a
//! busy fleet (and staying quiet while the fleet is healthy).
//!
//! The protocol of one execution, as simulated:
//!
//! 1. A schedule fires (`agent_schedules.next_run_at` reached): a `queued` row is inserted with
//!    `queued_at` and valid-JSON `backlog_metadata`, and `next_run_at` is advanced. A schedule that
//!    fires while its agent's queue is long inserts a `skipped` row instead.
//! 2. Claim, when the agent has a free slot (slots held < `max_parallel_tasks`; queued rows wait
//!    otherwise): the row goes `running` (`started_at`, a `claude_session_id`) and, a few ms apart
//!    and in either order, the slot is taken in one `MULTI`: `ZADD agent:slots:{a}` (score = unix
//!    seconds), `HSET agent:slot:{a}:{id} timeout_seconds`, `EXPIRE timeout + 300`. Per-execution
//!    timeouts are often lower than the agent's cap.
//! 3. Finish: the row goes terminal (`completed_at`, `duration_ms`) and, a few ms apart, the slot
//!    is released in one `MULTI` (`ZREM` + `DEL`); the next queued row is dispatched.
//!
//! Around it: pull workers claim some rows with a lease (`lease_expires_at`, `running`, never in
//! the slot set) that a reaper finishes; a capacity sweep places short-lived `drain-…` sentinels
//! (< 10 s), dispatches waiting rows and writes the drain heartbeat `canary:drain_tick_at`; soft-
//! deleted agents keep their rows. Timestamps are written in every shape of DESIGN §4.
//!
//! The two halves of a claim or a finish are separate events, so canary's collection interleaves
//! with them exactly as it would with the real platform; the gap stays far below S-01's 3 s grace.
//!
//! The simulator runs on its own thread with its own single-threaded runtime: its blocking SQLite
//! writes never stall the watcher it is being watched by. It only writes to the stores it was
//! explicitly given.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::platform::RedisKeys;
use crate::fleet::platform::{self, FleetError, SCHEMA};

/// How long a writer waits for SQLite's write lock (the watcher's reads and the fault injector
/// share the file).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A schedule that fires while this many rows already wait inserts a `skipped` row instead.
const MAX_QUEUE: usize = 6;
/// Pull-claimed leases outlive the work by this much (the reaper's margin).
const LEASE_MARGIN_MS: i64 = 30_000;

/// The shapes timestamps come in (DESIGN §4). The collector must parse every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `2026-01-14T10:00:00.123456Z`
    IsoZ,
    /// `2026-01-14T12:00:00.123456+02:00` (the offset in minutes east of UTC).
    IsoOffset(i32),
    /// `2026-01-14T10:00:00.123456` (no zone: UTC).
    IsoNaive,
    /// `2026-01-14 10:00:00` (SQLite's `datetime('now')`, UTC, whole seconds).
    SqliteDatetime,
}

impl Shape {
    /// One of the shapes, at random.
    pub fn random(rng: &mut impl Rng) -> Shape {
        match rng.random_range(0..5) {
            0 | 1 => Shape::IsoZ,
            2 => Shape::IsoOffset([120, -300, 330, 0][rng.random_range(0..4)]),
            3 => Shape::IsoNaive,
            _ => Shape::SqliteDatetime,
        }
    }
}

/// `ms` (unix milliseconds) written in `shape`.
pub fn stamp(ms: i64, shape: Shape) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        return String::new();
    };
    match shape {
        Shape::IsoZ => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Shape::IsoOffset(minutes) => match chrono::FixedOffset::east_opt(minutes * 60) {
            Some(offset) => t
                .with_timezone(&offset)
                .format("%Y-%m-%dT%H:%M:%S%.6f%:z")
                .to_string(),
            None => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        },
        Shape::IsoNaive => t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        Shape::SqliteDatetime => t.format("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

/// Wall clock, unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

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

/// Opens the platform database for writing, with a busy timeout. With `init`, creates the file
/// and the schema when absent (WAL for a file created here, as a busy platform runs it); without
/// it, the file must exist and hold the roster table.
pub fn open_db(path: &Path, init: bool) -> Result<Connection, FleetError> {
    let existed = path.exists();
    if !existed && !init {
        return Err(FleetError::Setup(format!(
            "{} does not exist (pass --init to create a platform database there)",
            path.display()
        )));
    }
    let db = Connection::open(path)?;
    db.busy_timeout(BUSY_TIMEOUT)?;
    if init {
        if !existed {
            // WAL lets canary's read transaction run beside the fleet's writes, as on a real
            // platform; only for a file this process created (an operator's file keeps its mode).
            db.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        }
        db.execute_batch(SCHEMA)?;
    } else {
        let has_roster: Option<String> = db
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'agent_ownership'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if has_roster.is_none() {
            return Err(FleetError::Setup(format!(
                "{} has no agent_ownership table (pass --init to create the schema)",
                path.display()
            )));
        }
    }
    Ok(db)
}

/// Writes the roster for `plans` (idempotent: a rerun updates caps), their schedules, a few
/// agent-keyed rows, and two soft-deleted agents whose rows legitimately remain.
pub fn provision(
    db: &mut Connection,
    spec: &FleetSpec,
    plans: &[AgentPlan],
    now: i64,
) -> Result<(), FleetError> {
    let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x5eed);
    let tx = db.transaction()?;
    for p in plans {
        let fresh = tx.execute(
            "INSERT OR IGNORE INTO agent_ownership (agent_name, is_system, max_parallel_tasks, \
             execution_timeout_seconds, created_at) VALUES (?1, 0, ?2, ?3, ?4)",
            params![
                p.name,
                p.cap,
                p.timeout_seconds,
                stamp(now, Shape::SqliteDatetime)
            ],
        )? == 1;
        tx.execute(
            "UPDATE agent_ownership SET max_parallel_tasks = ?2, execution_timeout_seconds = ?3, \
             deleted_at = NULL WHERE agent_name = ?1",
            params![p.name, p.cap, p.timeout_seconds],
        )?;
        let first_run = now + rng.random_range(0..p.period_ms.max(1));
        tx.execute(
            "INSERT OR REPLACE INTO agent_schedules (id, agent_name, name, cron_expression, \
             message, enabled, timezone, next_run_at) VALUES (?1, ?2, 'synthetic load', \
             '* * * * *', 'run the synthetic task', 1, 'UTC', ?3)",
            params![
                p.schedule_id,
                p.name,
                stamp(first_run, Shape::random(&mut rng))
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
            "INSERT OR IGNORE INTO agent_ownership (agent_name, is_system, max_parallel_tasks, \
             execution_timeout_seconds, deleted_at) VALUES (?1, 0, NULL, NULL, ?2)",
            params![name, stamp(deleted_at, Shape::random(&mut rng))],
        )? == 1;
        if fresh {
            tx.execute(
                "INSERT INTO agent_tags (agent_name, tag) VALUES (?1, 'retired')",
                params![name],
            )?;
            tx.execute(
                "INSERT INTO agent_schedules (id, agent_name, name, enabled, next_run_at, \
                 deleted_at) VALUES (?1, ?2, 'old schedule', 0, ?3, ?3)",
                params![
                    format!("sched-{name}"),
                    name,
                    stamp(deleted_at, Shape::SqliteDatetime)
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
    db: &Connection,
    redis: &mut redis::aio::MultiplexedConnection,
    keys: &RedisKeys,
    plans: &[AgentPlan],
    now: i64,
) -> Result<usize, FleetError> {
    let mut closed = 0;
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
        // SCAN, not KEYS: this may run against a real platform's Redis.
        let mut metas: Vec<String> = Vec::new();
        {
            let mut iter = redis.scan_match::<_, String>(pattern).await?;
            while let Some(key) = iter.next_item().await {
                metas.push(key?);
            }
        }
        let _: () = redis.del(slots).await?;
        if !metas.is_empty() {
            let _: () = redis.del(metas).await?;
        }
    }
    Ok(closed)
}

/// Counters of what the simulator did (shared with the caller while it runs).
#[derive(Debug, Default)]
pub struct FleetStats {
    fires: AtomicU64,
    queued: AtomicU64,
    skipped: AtomicU64,
    started: AtomicU64,
    finished: AtomicU64,
    leased: AtomicU64,
    reaped: AtomicU64,
    sentinels: AtomicU64,
    heartbeats: AtomicU64,
    redis_first_claims: AtomicU64,
    redis_first_finishes: AtomicU64,
    max_queue: AtomicU64,
    errors: AtomicU64,
}

/// A copy of [`FleetStats`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetStatsSnapshot {
    /// Schedule fires.
    pub fires: u64,
    /// `queued` rows inserted.
    pub queued: u64,
    /// `skipped` rows inserted (queue full).
    pub skipped: u64,
    /// Slot executions started (claimed).
    pub started: u64,
    /// Slot executions finished (both halves done).
    pub finished: u64,
    /// Pull-claimed (leased) executions started.
    pub leased: u64,
    /// Leased executions finished by the reaper.
    pub reaped: u64,
    /// Drain sentinels placed.
    pub sentinels: u64,
    /// Drain heartbeats written.
    pub heartbeats: u64,
    /// Claims that took the slot before the row went running.
    pub redis_first_claims: u64,
    /// Finishes that released the slot before the row went terminal.
    pub redis_first_finishes: u64,
    /// Longest queue seen on one agent.
    pub max_queue: u64,
    /// Store writes that failed (each logged).
    pub errors: u64,
}

impl FleetStats {
    /// The counters now.
    pub fn snapshot(&self) -> FleetStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FleetStatsSnapshot {
            fires: g(&self.fires),
            queued: g(&self.queued),
            skipped: g(&self.skipped),
            started: g(&self.started),
            finished: g(&self.finished),
            leased: g(&self.leased),
            reaped: g(&self.reaped),
            sentinels: g(&self.sentinels),
            heartbeats: g(&self.heartbeats),
            redis_first_claims: g(&self.redis_first_claims),
            redis_first_finishes: g(&self.redis_first_finishes),
            max_queue: g(&self.max_queue),
            errors: g(&self.errors),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

impl std::fmt::Display for FleetStatsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fires, {} queued, {} skipped, {} started / {} finished with a slot \
             ({} slot-first claims, {} slot-first releases), {} leased / {} reaped, \
             {} drain sentinels, {} heartbeats, longest queue {}, {} write errors",
            self.fires,
            self.queued,
            self.skipped,
            self.started,
            self.finished,
            self.redis_first_claims,
            self.redis_first_finishes,
            self.leased,
            self.reaped,
            self.sentinels,
            self.heartbeats,
            self.max_queue,
            self.errors
        )
    }
}

/// Knobs a fault recipe turns on the running simulator.
#[derive(Debug, Default)]
pub struct Control {
    /// The capacity sweep is "dead": no sentinels, no dispatch from the sweep, no heartbeat.
    pub sweep_stopped: AtomicBool,
}

/// A running simulator. Stop it with [`Fleet::stop`] (it then finishes or cancels everything in
/// flight, so the stores are left consistent).
#[derive(Debug)]
pub struct Fleet {
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<Result<(), FleetError>>>,
    stats: Arc<FleetStats>,
    control: Arc<Control>,
    plans: Vec<AgentPlan>,
}

impl Fleet {
    /// Starts the simulator on its own thread against `sqlite_path` (already provisioned with
    /// `plans`) and `redis_url`. Returns once both stores are connected.
    pub async fn start(
        sqlite_path: &Path,
        redis_url: &str,
        spec: &FleetSpec,
        plans: Vec<AgentPlan>,
    ) -> Result<Fleet, FleetError> {
        let cancel = CancellationToken::new();
        let stats = Arc::new(FleetStats::default());
        let control = Arc::new(Control::default());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let args = SimArgs {
            sqlite_path: sqlite_path.to_path_buf(),
            redis_url: redis_url.to_owned(),
            spec: spec.clone(),
            plans: plans.clone(),
            stats: Arc::clone(&stats),
            control: Arc::clone(&control),
            cancel: cancel.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("fleet-sim".to_owned())
            .spawn(move || run_thread(args, ready_tx))
            .map_err(|e| FleetError::Setup(format!("spawning the simulator thread: {e}")))?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Fleet {
                cancel,
                thread: Some(thread),
                stats,
                control,
                plans,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(FleetError::Setup(
                    "the simulator thread ended during start-up".to_owned(),
                )),
            },
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> FleetStatsSnapshot {
        self.stats.snapshot()
    }

    /// The knobs fault recipes turn.
    pub fn control(&self) -> Arc<Control> {
        Arc::clone(&self.control)
    }

    /// The simulated agents.
    pub fn plans(&self) -> &[AgentPlan] {
        &self.plans
    }

    /// Stops firing, finishes every started execution, cancels queued rows, removes sentinels,
    /// and waits for the thread. Returns the final counters.
    pub async fn stop(mut self) -> Result<FleetStatsSnapshot, FleetError> {
        self.cancel.cancel();
        let stats = Arc::clone(&self.stats);
        if let Some(thread) = self.thread.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| FleetError::Setup(format!("joining the simulator: {e}")))?;
            match joined {
                Ok(result) => result?,
                Err(_) => return Err(FleetError::Setup("the simulator panicked".to_owned())),
            }
        }
        Ok(stats.snapshot())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Not joined here (that would block an async caller); the thread drains and exits.
        self.cancel.cancel();
    }
}

struct SimArgs {
    sqlite_path: PathBuf,
    redis_url: String,
    spec: FleetSpec,
    plans: Vec<AgentPlan>,
    stats: Arc<FleetStats>,
    control: Arc<Control>,
    cancel: CancellationToken,
}

fn run_thread(
    args: SimArgs,
    ready: tokio::sync::oneshot::Sender<Result<(), FleetError>>,
) -> Result<(), FleetError> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let error = FleetError::Setup(format!("simulator runtime: {e}"));
            let _ = ready.send(Err(FleetError::Setup(error.to_string())));
            return Err(error);
        }
    };
    runtime.block_on(async move {
        let sim = match Sim::connect(args).await {
            Ok(mut sim) => {
                // The platform's sweep has run before anyone looks: a watcher's first cycle must
                // see a fresh heartbeat, not "no heartbeat ever written".
                sim.sweep().await;
                let _ = ready.send(Ok(()));
                sim
            }
            Err(e) => {
                let _ = ready.send(Err(FleetError::Setup(e.to_string())));
                return Err(e);
            }
        };
        sim.run().await
    })
}

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

struct AgentState {
    plan: AgentPlan,
    /// Slots reserved (claims in flight + running + finishes in flight): never above the cap.
    held: i64,
    queue: VecDeque<Waiting>,
}

struct Sim {
    db: Connection,
    redis: redis::aio::MultiplexedConnection,
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
    async fn connect(args: SimArgs) -> Result<Sim, FleetError> {
        let db = open_db(&args.sqlite_path, false)?;
        let redis = redis::Client::open(args.redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await?;
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

    async fn run(mut self) -> Result<(), FleetError> {
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
                self.check("cancel queued row", done.map(|_| ()).map_err(Into::into));
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

    fn slots_key(&self, agent: usize) -> String {
        let name = self.agents.get(agent).map_or("", |a| a.plan.name.as_str());
        self.keys.slots.replace("{agent}", name)
    }

    fn meta_key(&self, agent: usize, id: &str) -> String {
        let name = self.agents.get(agent).map_or("", |a| a.plan.name.as_str());
        self.keys
            .slot_meta
            .replace("{agent}", name)
            .replace("{execution_id}", id)
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

    fn fire(&mut self, agent: usize) -> Result<(), FleetError> {
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
        let tx = self.db.transaction()?;
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
    async fn dispatch(&mut self, agent: usize) {
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

    async fn finish(&mut self, agent: usize, id: String, leased: bool) {
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
    async fn sweep(&mut self) {
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

    /// The SQL half of a claim: `running`, `started_at`, a session (and a lease for pull rows).
    fn sql_running(&mut self, id: &str, lease_until: Option<i64>) -> Result<(), FleetError> {
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
    fn sql_terminal(&mut self, id: &str, status: &str) -> Result<(), FleetError> {
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

    fn sql_terminal_queued(&mut self, id: &str) -> Result<(), FleetError> {
        self.db.execute(
            "UPDATE schedule_executions SET status = 'cancelled', completed_at = ?2 \
             WHERE id = ?1 AND status = 'queued'",
            params![id, stamp(now_ms(), Shape::IsoZ)],
        )?;
        Ok(())
    }

    /// The Redis half of a claim (see [`platform::acquire`]).
    async fn acquire(&mut self, agent: usize, id: &str, timeout: i64) -> Result<(), FleetError> {
        let slots = self.slots_key(agent);
        let meta = self.meta_key(agent, id);
        platform::acquire(&mut self.redis, &slots, &meta, id, timeout, now_ms()).await
    }

    /// The Redis half of a finish (see [`platform::release`]).
    async fn release(&mut self, agent: usize, id: &str) -> Result<(), FleetError> {
        let slots = self.slots_key(agent);
        let meta = self.meta_key(agent, id);
        platform::release(&mut self.redis, &slots, &meta, id).await
    }
}

/// The backlog metadata the platform stores with a queued row (valid JSON, no secrets).
fn metadata(schedule_id: &str, attempt: u32) -> String {
    serde_json::json!({
        "schedule_id": schedule_id,
        "trigger": "schedule",
        "attempt": attempt,
        "message": "run the synthetic task",
    })
    .to_string()
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::timestamp::parse_timestamp_ms;

    #[test]
    fn every_shape_parses_back_to_the_same_instant() {
        let ms = 1_768_384_800_123;
        for shape in [
            Shape::IsoZ,
            Shape::IsoOffset(120),
            Shape::IsoOffset(-300),
            Shape::IsoOffset(330),
            Shape::IsoNaive,
        ] {
            assert_eq!(parse_timestamp_ms(&stamp(ms, shape)), Some(ms), "{shape:?}");
        }
        assert_eq!(
            parse_timestamp_ms(&stamp(ms, Shape::SqliteDatetime)),
            Some(ms - 123)
        );
    }

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

    #[test]
    fn metadata_is_json_without_secret_prefixes() {
        let m = metadata("sched-fleet-01", 1);
        assert!(serde_json::from_str::<serde_json::Value>(&m).is_ok());
        for prefix in ["sk-", "ghp_", "xoxb-", "AKIA", "AIza"] {
            assert!(!m.contains(prefix), "{m}");
        }
    }
}
