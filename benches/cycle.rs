//! End-to-end cycle bench: a whole `run_cycle` (lease, load state, collect SQLite + Redis,
//! evaluate, diff, record, release) over a seeded platform, the way the daemon runs it.
//!
//! Driven by `scripts/bench-cycle.sh`, which seeds each dataset once (S, M, L) into a cache dir,
//! starts a private `redis-server` and calls this binary twice per dataset, in separate processes:
//!
//! ```text
//! cycle seed <S|M|L> <db> <redis_url>
//! cycle run  <S|M|L> <db> <redis_url> <state.db> [cycles]
//! cycle redis <db> <redis_url> [collections]
//! ```
//!
//! `redis` runs only the Redis collection (`collect::redis::collect`, both phases back to back)
//! on an already seeded dataset: one warm-up then `collections` (default 20) measured ones, and
//! prints their median wall time, the process CPU time per collection (user + system of every
//! thread, from `/proc/self/stat`: the client's encoding, decoding and parsing, the driver task
//! included; redis-server is another process) and a fingerprint of what was read (counts and a
//! hash of the snapshot with TTLs reduced to their kind), so two builds can be compared on the
//! client cost of the same reads (issue 15 item 4; under `valgrind --tool=callgrind` it gives
//! instruction counts).
//!
//! `<redis_url>` may also be `cluster:host:port,host:port,…` for `run`: canary reads a Redis
//! Cluster through `platform.redis_cluster.nodes` (the script seeds a cluster with
//! `canary fleet --seed-only --redis-cluster`), `INFO commandstats` is summed over the nodes and
//! the last cycle's per-node report (`diagnostics.collect.redis_route`) is printed as
//! `redis_route_last`.
//!
//! `<db>` is the platform database: a SQLite file path, or a `postgres://` (`postgresql://`) URL.
//! A URL is seeded through `PlatformTarget::postgres` (the database must exist; the schema is
//! created) and read through `platform.database_url` instead of `platform.sqlite_path`. The URL
//! is never printed (it could carry a password).
//!
//! `run` does one warm-up cycle then `cycles` (default 5) measured ones against a fresh state
//! database, and prints one JSON object: median/min/max wall time, the collector's SQL statement
//! and Redis round-trip counts (the cycle's own diagnostics), the per-command call deltas of
//! Redis `INFO commandstats` around each cycle, and the process's peak RSS (`VmHWM`).
//!
//! Why a dedicated process rather than `canary check` under `/usr/bin/time`: the daemon runs many
//! cycles in one process with a warm state DB and E-02 memory, so a steady-state cycle is only
//! seen from the second cycle on, and the seeding never runs in this process so `VmHWM` is the
//! cycles' own peak. (The script also runs `canary check --no-persist` under `/usr/bin/time` once
//! as a cold, one-shot cross-check.)

// A bench binary's output is its whole purpose.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use canary::config::{self, Overrides};
use canary::cycle::{CycleRequest, Trigger, run_cycle};
use canary::fleet::platform_db::PlatformTarget;
use canary::fleet::seed::{SeedSpec, seed};
use canary::store::{SharedDb, StateDb};

fn main() -> anyhow::Result<()> {
    // `cargo bench` appends `--bench`; anything starting with `--` is ignored.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["seed", dataset, db, redis_url] => {
            runtime.block_on(seed_command(&spec(dataset)?, &platform(db), redis_url))
        }
        ["run", dataset, db, redis_url, state] => {
            runtime.block_on(run_command(dataset, &platform(db), redis_url, state, 5))
        }
        ["run", dataset, db, redis_url, state, cycles] => runtime.block_on(run_command(
            dataset,
            &platform(db),
            redis_url,
            state,
            cycles.parse().context("cycles")?,
        )),
        ["redis", db, redis_url] => runtime.block_on(redis_command(&platform(db), redis_url, 20)),
        ["redis", db, redis_url, n] => runtime.block_on(redis_command(
            &platform(db),
            redis_url,
            n.parse().context("collections")?,
        )),
        [] => {
            // Plain `cargo bench` runs every bench target: say how to use this one instead of
            // failing the whole run.
            eprintln!("cycle bench: run scripts/bench-cycle.sh [S|M|L|all]");
            Ok(())
        }
        _ => bail!(
            "usage: cycle seed <S|M|L> <db> <redis_url> | cycle run <S|M|L> <db> <redis_url> <state_db> [cycles] | cycle redis <db> <redis_url> [collections]"
        ),
    }
}

fn spec(dataset: &str) -> anyhow::Result<SeedSpec> {
    SeedSpec::named(dataset).with_context(|| format!("unknown dataset {dataset:?} (S, M or L)"))
}

/// The `<db>` argument: a PostgreSQL URL, or else a SQLite file path.
fn platform(db: &str) -> PlatformTarget {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        PlatformTarget::postgres(db)
    } else {
        PlatformTarget::Sqlite(PathBuf::from(db))
    }
}

async fn seed_command(
    spec: &SeedSpec,
    target: &PlatformTarget,
    redis_url: &str,
) -> anyhow::Result<()> {
    let show_progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = seed(target, redis_url, spec, show_progress).await?;
    // A server database's size is the script's to measure (`pg_database_size`); only a file's
    // size is known here.
    let db_bytes = match target {
        PlatformTarget::Sqlite(db) => serde_json::json!(db_file_bytes(db)),
        PlatformTarget::Postgres(_) => serde_json::Value::Null,
    };
    eprintln!("{report}");
    println!(
        "{}",
        serde_json::json!({
            "seconds": report.elapsed.as_secs_f64(),
            "sqlite_seconds": report.sqlite_elapsed.as_secs_f64(),
            "redis_seconds": report.redis_elapsed.as_secs_f64(),
            "agents": report.agents,
            "rows": report.rows,
            "slots": report.slots,
            "cascade_rows": report.cascade_rows,
            "db_bytes": db_bytes,
        })
    );
    Ok(())
}

fn db_file_bytes(db: &Path) -> u64 {
    std::fs::metadata(db).map(|m| m.len()).unwrap_or(0)
}

/// One measured cycle.
#[derive(Debug)]
struct Sample {
    wall_ms: f64,
    stage_ms: f64,
    sqlite_ms: f64,
    redis_ms: f64,
    redis_slot_sets_ms: f64,
    sql_statements: u32,
    /// Rows and agents re-read after the slot read (0 on the healthy fixtures).
    sql_rechecked: u32,
    redis_round_trips: u32,
    violations: usize,
    non_green: Vec<String>,
    commandstats: BTreeMap<String, u64>,
    /// How Redis was reached (per node round trips on a cluster).
    route: Option<serde_json::Value>,
}

async fn run_command(
    dataset: &str,
    target: &PlatformTarget,
    redis_url: &str,
    state: &str,
    cycles: usize,
) -> anyhow::Result<()> {
    let state = PathBuf::from(state);
    let database = match target {
        PlatformTarget::Sqlite(db) => ("platform.sqlite_path", db.display().to_string()),
        PlatformTarget::Postgres(url) => ("platform.database_url", url.expose().to_owned()),
    };
    // `cluster:a,b,c`: the seeds of a Redis Cluster; `redis_url` then only gives the scheme.
    let seeds: Vec<String> = redis_url
        .strip_prefix("cluster:")
        .map(|list| list.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let node_urls: Vec<String> = if seeds.is_empty() {
        vec![redis_url.to_owned()]
    } else {
        seeds.iter().map(|s| format!("redis://{s}/0")).collect()
    };
    let mut overrides = Overrides::new()
        .with(database.0, database.1)
        .with("platform.redis_url", node_urls[0].clone())
        .with("state.path", state.display().to_string());
    if !seeds.is_empty() {
        overrides.set(
            "platform.redis_cluster",
            format!("{{nodes: [{}]}}", seeds.join(", ")),
        );
    }
    let config = config::load_validated(None, &overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
    // As the CLI does after validating: custom statements against the platform database.
    let problems = canary::collect::preflight(&config);
    if !problems.is_empty() {
        bail!("custom invariant SQL: {problems:?}");
    }
    let state_db = StateDb::open(&state).context("opening the state database")?;
    // The cycle's own connection, used from async code through the blocking pool as the daemon
    // does; `state_db` stays a plain connection for the step-by-step breakdown below.
    let cycle_db = SharedDb::new(StateDb::open(&state).context("opening the state database")?);
    let mut stats_conns = Vec::new();
    for url in &node_urls {
        stats_conns.push(
            redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await?,
        );
    }
    let request = CycleRequest {
        trigger: Trigger::Manual,
        only: None,
    };
    let rss_before_kb = proc_status_kb("VmHWM");

    let mut samples = Vec::with_capacity(cycles + 1);
    for _ in 0..=cycles {
        let before = commandstats_all(&mut stats_conns).await?;
        let started = Instant::now();
        let result = run_cycle(&config, &cycle_db, &request).await?;
        let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
        let after = commandstats_all(&mut stats_conns).await?;
        let c = &result.diagnostics.collect;
        samples.push(Sample {
            wall_ms,
            stage_ms: result.duration_ms,
            sqlite_ms: c.sqlite_ms,
            redis_ms: c.redis_ms,
            redis_slot_sets_ms: c.redis_slot_sets_ms,
            sql_statements: c.sql_statements,
            sql_rechecked: c.sql_rechecked,
            redis_round_trips: c.redis_round_trips,
            violations: result.violations.len(),
            non_green: result
                .outcomes
                .iter()
                .filter(|(_, o)| **o != canary_invariants::Outcome::Green)
                .map(|(id, o)| format!("{id}={o:?}"))
                .chain(
                    result
                        .sources_unavailable
                        .iter()
                        .map(|s| format!("{}: {}", s.source.as_str(), s.error)),
                )
                .collect(),
            commandstats: delta(&before, &after),
            route: c
                .redis_route
                .as_ref()
                .and_then(|r| serde_json::to_value(r).ok()),
        });
    }
    let peak_rss_kb = proc_status_kb("VmHWM");

    // Breakdown of one more cycle's steps, run one by one (the cycle itself does not time them).
    let t = Instant::now();
    let previous_memory = state_db.load_memory()?;
    let _states = state_db.load_states()?;
    let load_ms = ms_since(t);
    let now_ms = canary::clock::now_ms();
    let t = Instant::now();
    let collected = canary::collect::collect(&config, None, now_ms).await;
    let collect_ms = ms_since(t);
    let t = Instant::now();
    let eval = canary_invariants::evaluate(
        &collected.snapshot,
        &previous_memory,
        &config.invariants,
        canary_invariants::Selection::AllEnabled,
    );
    let evaluate_ms = ms_since(t);
    let sizes = collected.snapshot.sql.as_ref().map(|s| {
        serde_json::json!({
            "agents": s.agents.len(),
            "executions_read": s.executions.len(),
            // Only the schedules E-06 can judge are kept (all are read: see `sql_rows`).
            "schedules_judgeable": s.schedules.len(),
            "sql_rows": collected.stats.sql_rows,
            "slot_sets": collected.snapshot.redis.as_ref().map(|r| r.slot_sets.len()),
            "memory_entries": eval.memory.seen_terminal.len(),
        })
    });

    let measured = samples.get(1..).unwrap_or(&[]);
    let mut walls: Vec<f64> = measured.iter().map(|s| s.wall_ms).collect();
    walls.sort_by(f64::total_cmp);
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let med_of = |f: fn(&Sample) -> f64| {
        let mut v: Vec<f64> = measured.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        median(&v)
    };
    let distinct = |f: fn(&Sample) -> u32| {
        let mut v: Vec<u32> = samples.iter().map(f).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let last = measured.last().or(samples.last());
    let summary = serde_json::json!({
        "dataset": dataset.to_ascii_uppercase(),
        "cycles": measured.len(),
        "wall_ms_median": median(&walls),
        "wall_ms_min": walls.first(),
        "wall_ms_max": walls.last(),
        "wall_ms_warmup": samples.first().map(|s| s.wall_ms),
        "collect_evaluate_ms_median": med_of(|s| s.stage_ms),
        "sqlite_ms_median": med_of(|s| s.sqlite_ms),
        "redis_ms_median": med_of(|s| s.redis_ms),
        "redis_slot_sets_ms_median": med_of(|s| s.redis_slot_sets_ms),
        "sql_statements": distinct(|s| s.sql_statements),
        "sql_rechecked": distinct(|s| s.sql_rechecked),
        "redis_round_trips": distinct(|s| s.redis_round_trips),
        "violations": samples.iter().map(|s| s.violations).collect::<Vec<_>>(),
        "non_green": last.map(|s| s.non_green.clone()),
        "commandstats_delta_per_cycle": last.map(|s| s.commandstats.clone()),
        "redis_nodes": node_urls.len(),
        "redis_route_last": last.and_then(|s| s.route.clone()),
        "breakdown_ms": {
            "load_state_and_memory": load_ms,
            "collect": collect_ms,
            "collect_sqlite": collected.stats.sqlite_ms,
            "collect_redis": collected.stats.redis_ms,
            "collect_redis_slot_sets": collected.stats.redis_slot_sets_ms,
            "evaluate": evaluate_ms,
        },
        "snapshot": sizes,
        "peak_rss_kb": peak_rss_kb,
        "peak_rss_kb_before_cycles": rss_before_kb,
    });
    println!("{summary}");
    Ok(())
}

/// `cycle redis`: the Redis collection alone, `n` times after one warm-up (see the module doc).
async fn redis_command(target: &PlatformTarget, redis_url: &str, n: usize) -> anyhow::Result<()> {
    let database = match target {
        PlatformTarget::Sqlite(db) => ("platform.sqlite_path", db.display().to_string()),
        PlatformTarget::Postgres(url) => ("platform.database_url", url.expose().to_owned()),
    };
    let overrides = Overrides::new()
        .with(database.0, database.1)
        .with("platform.redis_url", redis_url.to_owned());
    let config = config::load_validated(None, &overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut walls = Vec::with_capacity(n);
    let mut cpus = Vec::with_capacity(n);
    let mut fingerprints = BTreeMap::new();
    let mut round_trips = Vec::new();
    for i in 0..=n {
        let cpu = process_cpu_ms();
        let started = Instant::now();
        let outcome = canary::collect::redis::collect(&config.platform).await;
        let wall_ms = ms_since(started);
        let cpu_ms = process_cpu_ms() - cpu;
        let (state, anomalies) = outcome
            .result
            .map_err(|e| anyhow::anyhow!("redis collection failed: {e}"))?;
        *fingerprints
            .entry(redis_fingerprint(&state, &anomalies))
            .or_insert(0u32) += 1;
        round_trips.push(outcome.round_trips);
        drop(state);
        if i > 0 {
            walls.push(wall_ms);
            cpus.push(cpu_ms);
        }
    }
    walls.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    round_trips.sort_unstable();
    round_trips.dedup();
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
    let summary = serde_json::json!({
        "collections": n,
        "wall_ms_median": median(&walls),
        "wall_ms_min": walls.first(),
        "cpu_ms_median": median(&cpus),
        "cpu_ms_mean": cpus.iter().sum::<f64>() / cpus.len().max(1) as f64,
        "round_trips": round_trips,
        "fingerprints": fingerprints,
    });
    println!("{summary}");
    Ok(())
}

/// Counts and a hash of a Redis read, TTLs reduced to their kind and the read instant left out
/// (both move with the clock), so that two reads of the same data match.
fn redis_fingerprint(
    state: &canary_invariants::RedisState,
    anomalies: &[canary_invariants::Anomaly],
) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut members = 0usize;
    for set in &state.slot_sets {
        set.agent_name.hash(&mut h);
        for m in &set.members {
            members += 1;
            (&m.member, m.acquired_at_ms, m.sentinel).hash(&mut h);
            if let Some(meta) = &m.meta {
                let ttl = match meta.ttl {
                    canary_invariants::KeyTtl::Missing => 0u8,
                    canary_invariants::KeyTtl::NoExpiry => 1,
                    canary_invariants::KeyTtl::Remaining(_) => 2,
                };
                (ttl, meta.timeout_seconds).hash(&mut h);
            }
        }
    }
    for k in &state.meta_keys {
        (&k.agent_name, &k.execution_id, k.orphan_ttl.is_some()).hash(&mut h);
    }
    (state.drain_tick_at_ms, &state.pull_polls).hash(&mut h);
    for a in anomalies {
        format!("{a:?}").hash(&mut h);
    }
    format!(
        "sets={} members={members} meta_keys={} anomalies={} hash={:016x}",
        state.slot_sets.len(),
        state.meta_keys.len(),
        anomalies.len(),
        h.finish()
    )
}

/// CPU time of the whole process so far (user + system, every thread), in ms; 0 when
/// `/proc/self/stat` cannot be read.
fn process_cpu_ms() -> f64 {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces), from field 3 on.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    ticks as f64 * 10.0
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// `INFO commandstats` summed over every node (one node, or a cluster's primaries).
async fn commandstats_all(
    conns: &mut [redis::aio::MultiplexedConnection],
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut sum = BTreeMap::new();
    for conn in conns {
        for (cmd, calls) in commandstats(conn).await? {
            *sum.entry(cmd).or_insert(0) += calls;
        }
    }
    Ok(sum)
}

/// `INFO commandstats` as command → calls.
async fn commandstats(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect())
}

/// Calls made between two `commandstats` readings, minus this bench's own `INFO`.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .filter_map(|(name, calls)| {
            let d = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
            (d > 0).then(|| (name.clone(), d))
        })
        .collect()
}

/// A `kB` line of `/proc/self/status` (`VmHWM` = peak resident set), 0 when unreadable.
fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)?
                    .trim_start_matches(':')
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}
