//! Test builders (feature `testing`): hand-made snapshots for unit tests, property tests, benches
//! and the daemon's tests. Defaults describe a healthy platform at [`T0`]: agents with cap 3 and a
//! 900 s timeout, slots whose metadata hash has the TTL the platform would have set.

// Test-support code only: an out-of-range index here is a bug in a test, so indexing is fine.
#![allow(clippy::indexing_slicing)]

use crate::evaluate::{Selection, evaluate};
use crate::memory::Memory;
use crate::params::Params;
use crate::snapshot::{
    Agent, Anomaly, AnomalyKind, Backlog, BacklogJson, Container, DockerState, Execution, Field,
    KeyTtl, MetaKey, Millis, OrphanRows, Phase, Processes, QueueCount, QueueCountState, RedisState,
    Schedule, SlotMember, SlotMeta, SlotSet, Snapshot, Source, SourceUnavailable, SqlState,
};
use crate::violation::{Severity, Violation};

/// The builders' "now": 2026-01-14T10:00:00Z.
pub const T0: Millis = 1_768_384_800_000;

/// Default per-execution timeout of built slots.
pub const TIMEOUT_SECONDS: i64 = 900;

/// Builds a [`Snapshot`] step by step.
#[derive(Debug, Clone)]
pub struct SnapshotBuilder {
    snapshot: Snapshot,
    sql: SqlState,
    redis: RedisState,
    docker: DockerState,
    sql_up: bool,
    redis_up: bool,
    docker_up: bool,
    queue_counts: QueueCountState,
    queue_counts_up: bool,
}

impl Default for SnapshotBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotBuilder {
    /// An empty, healthy platform at [`T0`] with both sources available.
    pub fn new() -> Self {
        SnapshotBuilder {
            snapshot: Snapshot {
                taken_at_ms: T0,
                ..Snapshot::default()
            },
            sql: SqlState::default(),
            redis: RedisState::default(),
            docker: DockerState::default(),
            sql_up: true,
            redis_up: true,
            docker_up: true,
            queue_counts: QueueCountState::default(),
            queue_counts_up: true,
        }
    }

    /// Adds a running agent container `agent-{agent}` (id `c-{agent}`) started at `started_at`
    /// whose `ps` showed these zombie pids of the agent process.
    pub fn container(mut self, agent: &str, started_at: Millis, zombies: &[u32]) -> Self {
        self.docker.containers.push(Container {
            id: format!("c-{agent}"),
            name: format!("agent-{agent}"),
            agent: agent.to_owned(),
            started_at_ms: Some(started_at),
            env: std::collections::BTreeMap::new(),
            inspected: true,
            processes: Processes::Read {
                zombies: zombies.to_vec(),
            },
        });
        self
    }

    /// Adds a running agent container whose processes could not be read.
    pub fn unreadable_container(mut self, agent: &str, started_at: Millis) -> Self {
        self.docker.containers.push(Container {
            id: format!("c-{agent}"),
            name: format!("agent-{agent}"),
            agent: agent.to_owned(),
            started_at_ms: Some(started_at),
            env: std::collections::BTreeMap::new(),
            inspected: true,
            processes: Processes::Unreadable {
                reason: "ps output line 2 is not `stat pid comm`".to_owned(),
            },
        });
        self
    }

    /// Names `agent` a pull-mode pilot (`platform.pull.pilot_agents`).
    pub fn pilot(mut self, agent: &str) -> Self {
        self.snapshot.pilot_agents.push(agent.to_owned());
        self.snapshot.pilot_agents.sort();
        self
    }

    /// Sets an environment variable kept from the container of `agent` (added with
    /// [`SnapshotBuilder::container`] before).
    pub fn container_env(mut self, agent: &str, name: &str, value: &str) -> Self {
        if let Some(c) = self.docker.containers.iter_mut().find(|c| c.agent == agent) {
            c.env.insert(name.to_owned(), value.to_owned());
        }
        self
    }

    /// Records `agent:pull_poll:{agent}` as read: the last claim attempt (`None`: never written).
    pub fn pull_poll(mut self, agent: &str, at: Option<Millis>) -> Self {
        self.redis.pull_polls.insert(agent.to_owned(), at);
        self
    }

    /// Leaves a source out of the configuration (its invariants are not configured).
    pub fn not_configured(mut self, source: Source) -> Self {
        match source {
            Source::Docker => self.docker_up = false,
            Source::QueueCount => self.queue_counts_up = false,
            Source::Sqlite | Source::Redis => {}
        }
        self.snapshot.not_configured.push(source);
        self
    }

    /// Moves "now".
    pub fn at(mut self, taken_at_ms: Millis) -> Self {
        self.snapshot.taken_at_ms = taken_at_ms;
        self
    }

    /// A live roster agent (cap 3, timeout 900 s).
    pub fn agent(self, name: &str) -> Self {
        self.agent_with(name, 3, TIMEOUT_SECONDS)
    }

    /// A live roster agent with a cap and timeout.
    pub fn agent_with(mut self, name: &str, cap: i64, timeout_seconds: i64) -> Self {
        self.sql.agents.push(Agent {
            name: name.to_owned(),
            is_system: false,
            max_parallel_tasks: cap,
            execution_timeout_seconds: timeout_seconds,
            deleted: false,
        });
        self
    }

    /// A soft-deleted (still known) roster agent.
    pub fn deleted_agent(mut self, name: &str) -> Self {
        self = self.agent(name);
        if let Some(agent) = self.sql.agents.last_mut() {
            agent.deleted = true;
        }
        self
    }

    /// Any execution row.
    pub fn execution(mut self, row: Execution) -> Self {
        self.sql.executions.push(row);
        self
    }

    /// A `running` row started at `started_at`, with a session id (as the platform records
    /// once the execution is dispatched).
    pub fn running(self, id: &str, agent: &str, started_at: Millis) -> Self {
        let mut r = row(id, agent, "running", Phase::Running, Some(started_at), None);
        r.has_session = true;
        self.execution(r)
    }

    /// A `running` row claimed by a pull worker (lease set, five minutes ahead).
    pub fn leased_running(self, id: &str, agent: &str, started_at: Millis) -> Self {
        let mut r = row(id, agent, "running", Phase::Running, Some(started_at), None);
        r.has_session = true;
        r.leased = true;
        r.lease_expires_at_ms = Some(started_at + 300_000);
        self.execution(r)
    }

    /// A `queued` row with valid, credential-free backlog metadata.
    pub fn queued(self, id: &str, agent: &str, queued_at: Millis) -> Self {
        let mut r = row(id, agent, "queued", Phase::Queued, None, None);
        r.queued_at_ms = Some(queued_at);
        r.queued_at_set = true;
        r.backlog = Some(Backlog {
            json: BacklogJson::Valid,
            secret_patterns: Vec::new(),
        });
        self.execution(r)
    }

    /// A terminal row with `status`, completed at `completed_at` (started a minute before).
    pub fn terminal(self, id: &str, agent: &str, status: &str, completed_at: Millis) -> Self {
        self.execution(row(
            id,
            agent,
            status,
            Phase::Terminal,
            Some(completed_at - 60_000),
            Some(completed_at),
        ))
    }

    /// A row with an arbitrary status word and phase.
    pub fn with_status(self, id: &str, agent: &str, status: &str, phase: Phase) -> Self {
        self.execution(row(id, agent, status, phase, Some(T0 - 60_000), None))
    }

    /// The last execution added, to tweak fields.
    pub fn last_execution(&mut self) -> &mut Execution {
        if self.sql.executions.is_empty() {
            self.sql
                .executions
                .push(row("x", "x", "running", Phase::Running, None, None));
        }
        let last = self.sql.executions.len() - 1;
        &mut self.sql.executions[last]
    }

    /// A slot acquired at `acquired_at` whose metadata has the TTL the platform sets
    /// (`timeout + 300` s at acquire), read at `taken_at`.
    pub fn slot(self, agent: &str, id: &str, acquired_at: Millis) -> Self {
        let now = self.snapshot.taken_at_ms;
        let initial_ms = (TIMEOUT_SECONDS + 300) * 1000;
        let ttl = KeyTtl::Remaining(initial_ms - (now - acquired_at));
        self.slot_with_meta(
            agent,
            id,
            Some(acquired_at),
            SlotMeta {
                ttl,
                timeout_seconds: Some(TIMEOUT_SECONDS),
                ttl_read_at_ms: now,
            },
        )
    }

    /// A slot with explicit metadata.
    pub fn slot_with_meta(
        mut self,
        agent: &str,
        id: &str,
        acquired_at: Option<Millis>,
        meta: SlotMeta,
    ) -> Self {
        self.members_of(agent).push(SlotMember {
            member: id.to_owned(),
            acquired_at_ms: acquired_at,
            sentinel: false,
            meta: Some(meta),
        });
        if meta.ttl != KeyTtl::Missing {
            self.redis.meta_keys.push(MetaKey {
                agent_name: agent.to_owned(),
                execution_id: id.to_owned(),
                orphan_ttl: None,
            });
        }
        self
    }

    /// A slot metadata hash found by SCAN without a member (an orphan, re-read with `ttl`).
    pub fn orphan_meta(mut self, agent: &str, id: &str, ttl: KeyTtl) -> Self {
        self.redis.meta_keys.push(MetaKey {
            agent_name: agent.to_owned(),
            execution_id: id.to_owned(),
            orphan_ttl: Some(ttl),
        });
        self
    }

    /// A slot metadata hash found by SCAN (its member, if any, added separately).
    pub fn meta_key(mut self, agent: &str, id: &str) -> Self {
        self.redis.meta_keys.push(MetaKey {
            agent_name: agent.to_owned(),
            execution_id: id.to_owned(),
            orphan_ttl: None,
        });
        self
    }

    /// A slot member without its metadata hash (`PTTL` -2 and no key found by SCAN).
    pub fn slot_without_meta(mut self, agent: &str, id: &str, acquired_at: Option<Millis>) -> Self {
        let now = self.snapshot.taken_at_ms;
        self.members_of(agent).push(SlotMember {
            member: id.to_owned(),
            acquired_at_ms: acquired_at,
            sentinel: false,
            meta: Some(SlotMeta {
                ttl: KeyTtl::Missing,
                timeout_seconds: None,
                ttl_read_at_ms: now,
            }),
        });
        self
    }

    /// An `agent_schedules` row (enabled, not deleted) due at `next_run_at`.
    pub fn schedule(mut self, id: &str, agent: &str, next_run_at: Option<Millis>) -> Self {
        self.sql.schedules.push(Schedule {
            id: id.to_owned(),
            agent_name: agent.to_owned(),
            enabled: true,
            deleted: false,
            next_run_at_ms: next_run_at,
        });
        self
    }

    /// The last schedule added, to tweak fields.
    pub fn last_schedule(&mut self) -> &mut Schedule {
        if self.sql.schedules.is_empty() {
            self.sql.schedules.push(Schedule {
                id: "x".to_owned(),
                agent_name: "x".to_owned(),
                enabled: true,
                deleted: false,
                next_run_at_ms: None,
            });
        }
        let last = self.sql.schedules.len() - 1;
        &mut self.sql.schedules[last]
    }

    /// A drain sentinel placed at `at`.
    pub fn sentinel(mut self, agent: &str, member: &str, at: Millis) -> Self {
        self.members_of(agent).push(SlotMember {
            member: member.to_owned(),
            acquired_at_ms: Some(at),
            sentinel: true,
            meta: None,
        });
        self
    }

    /// Orphaned rows found by the cascade anti-join.
    pub fn orphan(mut self, table: &str, agent: &str, rows: u64, severity: Severity) -> Self {
        self.sql.orphans.push(OrphanRows {
            table: table.to_owned(),
            agent_name: agent.to_owned(),
            rows,
            severity,
        });
        self
    }

    /// Marks an optional column as absent from the schema.
    pub fn missing_field(mut self, field: Field) -> Self {
        self.sql.missing_fields.insert(field);
        self
    }

    /// Makes a source unavailable.
    pub fn unavailable(mut self, source: Source) -> Self {
        match source {
            Source::Sqlite => self.sql_up = false,
            Source::Redis => self.redis_up = false,
            Source::Docker => self.docker_up = false,
            Source::QueueCount => self.queue_counts_up = false,
        }
        self.snapshot.sources_unavailable.push(SourceUnavailable {
            source,
            error: "connection refused".to_owned(),
        });
        self
    }

    /// Adds an anomaly note.
    pub fn anomaly(mut self, source: Source, kind: AnomalyKind, subject: &str, note: &str) -> Self {
        self.snapshot.anomalies.push(Anomaly {
            source,
            kind,
            subject: subject.to_owned(),
            note: note.to_owned(),
        });
        self
    }

    /// The snapshot.
    pub fn build(self) -> Snapshot {
        let mut snapshot = self.snapshot;
        snapshot.sql = self.sql_up.then_some(self.sql);
        snapshot.redis = self.redis_up.then_some(self.redis);
        snapshot.docker = self.docker_up.then_some(self.docker);
        snapshot.queue_counts = self.queue_counts_up.then_some(self.queue_counts);
        snapshot
    }

    /// Records what the platform's queue accessor said for `agent` (B-01).
    pub fn queue_count(mut self, agent: &str, count: QueueCount) -> Self {
        self.queue_counts.agents.insert(agent.to_owned(), count);
        self.queue_counts.live_agents = self.queue_counts.agents.len() as u64;
        self
    }

    fn members_of(&mut self, agent: &str) -> &mut Vec<SlotMember> {
        let pos = match self
            .redis
            .slot_sets
            .iter()
            .position(|s| s.agent_name == agent)
        {
            Some(pos) => pos,
            None => {
                self.redis.slot_sets.push(SlotSet {
                    agent_name: agent.to_owned(),
                    members: Vec::new(),
                });
                self.redis.slot_sets.len() - 1
            }
        };
        &mut self.redis.slot_sets[pos].members
    }
}

fn row(
    id: &str,
    agent: &str,
    status: &str,
    phase: Phase,
    started_at: Option<Millis>,
    completed_at: Option<Millis>,
) -> Execution {
    Execution {
        id: id.to_owned(),
        agent_name: agent.to_owned(),
        status: status.to_owned(),
        phase,
        started_at_ms: started_at,
        completed_at_ms: completed_at,
        queued_at_ms: None,
        leased: false,
        lease_expires_at_ms: None,
        completed_at_set: completed_at.is_some(),
        queued_at_set: false,
        has_session: false,
        backlog: None,
    }
}

/// Violations of one invariant on `snapshot` with default params and empty memory.
pub fn run(id: &str, snapshot: &Snapshot) -> Vec<Violation> {
    run_with(id, snapshot, &Memory::default(), &Params::default())
}

/// Violations of one invariant with explicit memory and params.
pub fn run_with(id: &str, snapshot: &Snapshot, memory: &Memory, params: &Params) -> Vec<Violation> {
    let only = [id.to_owned()];
    evaluate(snapshot, memory, params, Selection::Only(&only)).violations
}

/// [`healthy_fleet`] with the default parameters and the *warm* memory a previous cycle over
/// the same fleet leaves behind (the daemon's steady state): what the evaluation bench and the
/// callgrind example measure.
pub fn warm_fleet(agents: usize, terminal_per_agent: usize) -> (Snapshot, Memory, Params) {
    let snapshot = healthy_fleet(agents, terminal_per_agent);
    let params = Params::default();
    let memory = evaluate(
        &snapshot,
        &Memory::default(),
        &params,
        Selection::AllEnabled,
    )
    .memory;
    (snapshot, memory, params)
}

/// A healthy fleet of `agents` agents, each with two running executions holding slots (one of
/// them dispatched with a lower timeout), a drain sentinel on every tenth agent, and
/// `terminal_per_agent` recently finished rows. Used by benches and property tests.
pub fn healthy_fleet(agents: usize, terminal_per_agent: usize) -> Snapshot {
    let mut b = SnapshotBuilder::new();
    for a in 0..agents {
        let name = format!("agent-{a:05}");
        b = b.agent(&name);
        for e in 0..2 {
            let id = format!("{name}-run-{e}");
            let started = T0 - 60_000 * (e as i64 + 1);
            b = b.running(&id, &name, started).slot(&name, &id, started);
        }
        if a % 10 == 0 {
            b = b.sentinel(&name, "drain-0001", T0 - 1_000);
        }
        for t in 0..terminal_per_agent {
            b = b.terminal(
                &format!("{name}-done-{t}"),
                &name,
                "success",
                T0 - 1_000 * t as i64,
            );
        }
    }
    let mut snapshot = b.build();
    // In the order the daemon's collector delivers them.
    if let Some(sql) = snapshot.sql.as_mut() {
        sql.executions.sort_by(|a, b| a.id.cmp(&b.id));
    }
    snapshot
}

/// One example violation of catalog invariant `id` (its catalog tier, the given severity), for
/// [`Invariant::examples`](crate::catalog::Invariant::examples).
pub fn example(
    id: &str,
    severity: Severity,
    subject: &str,
    signal: &str,
    summary: &str,
    observed_state: serde_json::Value,
) -> Violation {
    let tier = crate::catalog::find(id).map_or(crate::violation::Tier::A, |inv| inv.meta().tier);
    Violation {
        invariant_id: id.to_owned(),
        tier,
        severity,
        subject: subject.to_owned(),
        summary: summary.to_owned(),
        observed_state,
        signal: signal.to_owned(),
    }
}
