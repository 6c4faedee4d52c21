//! `canary demo`: the whole story in one command, on a machine with nothing but `redis-server`.
//!
//! In a temp directory it creates a platform database from the fixture schema, starts a private
//! `redis-server`, seeds a small healthy fleet, and runs three real cycles through the same
//! sequencer as `canary check`: healthy (all green), with one fault per core invariant (each red,
//! one fired transition each), and after reverting the faults (all green, one resolved each).
//! It exits 0 only when every fault was detected, nothing else fired, and everything resolved.

use std::fmt::Write as _;

use anyhow::Context;
use canary_invariants::Outcome;

use crate::cli::ExitCode;
use crate::cli::output;
use crate::config::Config;
use crate::fleet::platform::{self, Platform, SLOT_TTL_BUFFER_SECONDS};
use crate::fleet::redis_server::RedisServer;
use crate::schedule::cycle::{self, CycleRequest, CycleResult, Trigger, now_ms};
use crate::store::StateDb;

/// Per-execution timeout used by the demo (lower than the agents' 900 s cap on purpose: S-03 must
/// judge a slot by its own timeout).
const TIMEOUT_SECONDS: i64 = 600;

/// One fault: which invariant it breaks and how.
struct Fault {
    invariant: &'static str,
    what: &'static str,
}

const FAULTS: [Fault; 4] = [
    Fault {
        invariant: "S-01",
        what: "agent-01 finished an execution but never released its slot",
    },
    Fault {
        invariant: "E-02",
        what: "a stale writer flipped a finished execution to pending_retry",
    },
    Fault {
        invariant: "L-03",
        what: "agent-zz deleted from the roster, its tags left behind",
    },
    Fault {
        invariant: "S-03",
        what: "agent-02's running slot re-expired to 60 s",
    },
];

/// Runs the demo.
pub async fn run(agents: usize, keep: bool) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new().prefix("canary-demo-").tempdir()?;
    let redis = RedisServer::start().context("starting a private redis-server for the demo")?;
    let platform_db = dir.path().join("platform.db");
    platform::create_db(&platform_db)?;

    let mut config = Config::default();
    config.platform.sqlite_path = platform_db.clone();
    config.platform.redis_url = redis.url();
    config.state.path = dir.path().join("state.db");

    let mut fleet = Platform::connect(&platform_db, &redis.url()).await?;
    let now = now_ms();
    seed(&mut fleet, agents.max(3), now).await?;
    let mut db = StateDb::open(&config.state.path)?;
    let mut log = String::new();

    let healthy = cycle_once(&config, &mut db).await?;
    describe(&mut log, "1. healthy fleet", &healthy);

    inject(&mut fleet, now).await?;
    let faulty = cycle_once(&config, &mut db).await?;
    describe(&mut log, "2. one fault per core invariant", &faulty);

    revert(&mut fleet).await?;
    let repaired = cycle_once(&config, &mut db).await?;
    describe(&mut log, "3. faults reverted", &repaired);

    let mut ok = healthy.verdict() == Outcome::Green && repaired.verdict() == Outcome::Green;
    let _ = writeln!(
        log,
        "\n{:<6} {:<62} {:<9} {:<8} resolved",
        "id", "fault", "detected", "fired"
    );
    for fault in &FAULTS {
        let detected = faulty.outcomes.get(fault.invariant) == Some(&Outcome::Red);
        let fired = count(&faulty, fault.invariant, "fired");
        let resolved = count(&repaired, fault.invariant, "resolved");
        ok &= detected && fired == 1 && resolved == 1;
        let _ = writeln!(
            log,
            "{:<6} {:<62} {:<9} {:<8} {}",
            fault.invariant,
            fault.what,
            if detected { "yes" } else { "NO" },
            fired,
            resolved
        );
    }
    let false_alarms = faulty.transitions.len() - FAULTS.len().min(faulty.transitions.len());
    ok &= false_alarms == 0;
    let _ = writeln!(
        log,
        "\n{}: every fault detected within one cycle, {} false alarm(s).",
        if ok { "PASS" } else { "FAIL" },
        false_alarms
    );
    if keep {
        let kept = dir.keep();
        let _ = writeln!(log, "kept {}", kept.display());
    }
    output::print(&log);
    Ok(if ok { ExitCode::Green } else { ExitCode::Red })
}

async fn cycle_once(config: &Config, db: &mut StateDb) -> anyhow::Result<CycleResult> {
    let request = CycleRequest {
        trigger: Trigger::Manual,
        only: None,
    };
    Ok(cycle::run_cycle(config, db, &request).await?)
}

fn count(result: &CycleResult, id: &str, kind: &str) -> usize {
    result
        .transitions
        .iter()
        .filter(|t| t.invariant_id == id && t.kind == kind)
        .count()
}

fn describe(log: &mut String, title: &str, result: &CycleResult) {
    let _ = writeln!(log, "── cycle {title} ──");
    log.push_str(&output::cycle_text(result));
}

/// A healthy fleet: `agents` live agents with two running executions each, recent finished
/// executions, a drain sentinel, a soft-deleted agent with retained rows, and an idle agent
/// (`agent-zz`) that the L-03 fault deletes.
async fn seed(fleet: &mut Platform, agents: usize, now: i64) -> anyhow::Result<()> {
    for a in 1..=agents {
        let agent = format!("agent-{a:02}");
        fleet.add_agent(&agent, 3, 900)?;
        fleet.add_tag(&agent, "demo")?;
        for e in 0..2 {
            let started = now - 120_000 - 1_000 * e;
            fleet
                .start(
                    &agent,
                    &format!("{agent}-run-{e}"),
                    TIMEOUT_SECONDS,
                    started,
                )
                .await?;
        }
        fleet.add_finished(&agent, &format!("{agent}-done-0"), "success", now - 300_000)?;
    }
    fleet.add_sentinel("agent-01", "drain-demo", now).await?;
    fleet.add_agent("agent-retired", 3, 900)?;
    fleet.add_tag("agent-retired", "legacy")?;
    fleet.soft_delete_agent("agent-retired", now - 86_400_000)?;
    fleet.add_agent("agent-zz", 3, 900)?;
    fleet.add_tag("agent-zz", "to-be-deleted")?;
    Ok(())
}

async fn inject(fleet: &mut Platform, now: i64) -> anyhow::Result<()> {
    fleet.finish_row("agent-01-run-0", "success", now)?;
    fleet.set_status("agent-02-done-0", "pending_retry")?;
    fleet.delete_roster_row("agent-zz")?;
    fleet.expire_meta("agent-02", "agent-02-run-0", 60).await?;
    Ok(())
}

async fn revert(fleet: &mut Platform) -> anyhow::Result<()> {
    fleet.release_slot("agent-01", "agent-01-run-0").await?;
    fleet.set_status("agent-02-done-0", "success")?;
    fleet.add_agent("agent-zz", 3, 900)?;
    fleet
        .expire_meta(
            "agent-02",
            "agent-02-run-0",
            TIMEOUT_SECONDS + SLOT_TTL_BUFFER_SECONDS,
        )
        .await?;
    Ok(())
}
