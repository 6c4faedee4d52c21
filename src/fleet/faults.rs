//! Fault recipes: one per invariant of the catalog, each breaking exactly one step of the
//! platform protocol (see [`crate::fleet::sim`]), each with a revert that returns the platform to
//! a state that stays healthy. Used by `canary fleet --faults`, `canary demo` and the end-to-end
//! detection suite.
//!
//! Every recipe works on its own *site*: a dedicated, otherwise idle agent (`{prefix}fault-…`)
//! provisioned beside the simulated fleet, so a fault never disturbs the simulator's bookkeeping
//! and the simulator never disturbs the fault (a leaked slot on a busy agent would also change
//! what the dispatcher does next). Timestamps are back-dated where a threshold would otherwise
//! take minutes or hours (a stuck row "started 7 minutes ago"); nothing waits for the clock.
//!
//! Reverts leave the site idle (its executions finished through the normal protocol), so a fleet
//! that keeps running after a revert does not age a leftover into another invariant.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::params;

use crate::fleet::platform::{FleetError, Platform, SLOT_TTL_BUFFER_SECONDS};
use crate::fleet::sim::{BUSY_TIMEOUT, Control, Shape, now_ms, stamp};

/// One fault recipe.
#[derive(Debug)]
pub struct Recipe {
    /// `--faults` name.
    pub name: &'static str,
    /// The invariant it turns red.
    pub invariant: &'static str,
    /// The protocol step it breaks.
    pub breaks: &'static str,
    /// What its revert does.
    pub revert: &'static str,
    /// Other invariants that can react, and when (`none` for most).
    pub cofiring: &'static str,
    /// Cycles after the injection by which the invariant must be red: 1, except H-01. Its
    /// first suspicious cycle only starts the suspicion, which is confirmed once it has lasted
    /// `confirm_after_seconds` (set to one interval): on the 2nd cycle, or on the 3rd when the
    /// 2nd runs a few ms short of a full interval after the 1st (timer jitter).
    pub cycles_to_detect: u32,
    /// The site agent's `max_parallel_tasks`.
    site_cap: i64,
    /// The site agent's `execution_timeout_seconds`.
    site_timeout: i64,
}

/// Per-execution timeout the sites dispatch with (below the sites' 900 s agent cap, on purpose).
const SITE_EXEC_TIMEOUT: i64 = 600;

/// Every recipe, one per catalog invariant.
pub static RECIPES: &[Recipe] = &[
    Recipe {
        name: "s01-leak",
        invariant: "S-01",
        breaks: "finish: the row goes terminal but the slot is never released (no ZREM, no DEL)",
        revert: "the release step runs late: ZREM + DEL",
        cofiring: "none (the leaked slot keeps its metadata and TTL, and stays within the cap)",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "s02-overbook",
        invariant: "S-02",
        breaks: "claim: two dispatchers both saw the one free slot (check-then-set): 2 running \
                 executions with slots on a cap-1 agent",
        revert: "both executions finish normally (terminal row, ZREM + DEL)",
        cofiring: "none (each execution has its row, slot, metadata and session)",
        cycles_to_detect: 1,
        site_cap: 1,
        site_timeout: 900,
    },
    Recipe {
        name: "s03-short-ttl",
        invariant: "S-03",
        breaks: "claim: the metadata EXPIRE forgets the +300 s buffer (TTL = timeout)",
        revert: "the correct TTL is re-applied, then the execution finishes normally",
        cofiring: "none while held under the short TTL (600 s); past it the hash expires and \
                   the slot becomes S-04's (member without metadata), S-03 resolving",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "s04-orphan-meta",
        invariant: "S-04",
        breaks: "finish: ZREM runs but the metadata hash is never DELeted (hash without member)",
        revert: "DEL of the metadata hash",
        cofiring: "none (the collector re-reads a stray hash after 1 s before reporting it, \
                   so the detecting cycle takes that much longer)",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "s07-stuck-sentinel",
        invariant: "S-07",
        breaks: "drain sweep: crashed mid-claim, its drain- sentinel placed 30 s ago never removed",
        revert: "ZREM of the sentinel",
        cofiring: "none (sentinels are excluded from S-01, S-02, S-03 and B-02)",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "e01-stuck-running",
        invariant: "E-01",
        breaks: "timeout sweep: a running execution (its slot renewed by its worker) is never \
                 closed, 7 min after start on an agent with a 60 s timeout",
        revert: "the timeout sweep closes it (failed, completed_at) and releases the slot",
        cofiring: "none (the slot is renewed, so S-01 and S-03 hold)",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 60,
    },
    Recipe {
        name: "e02-reversal",
        invariant: "E-02",
        breaks: "a stale writer sets a finished execution (seen terminal by canary) back to \
                 pending_retry",
        revert: "the status is restored to success",
        cofiring: "none (pending_retry holds no slot and is not queued). Needs one cycle to have \
                   seen the row terminal: sites are provisioned before the first cycle",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "e03-no-completed-at",
        invariant: "E-03",
        breaks: "finish: the terminal write sets status and duration_ms but not completed_at",
        revert: "completed_at is written",
        cofiring: "none",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "e04-bad-metadata",
        invariant: "E-04",
        breaks: "enqueue: backlog_metadata is written truncated (not valid JSON)",
        revert: "valid metadata is written, then the row is cancelled",
        cofiring: "none (the row is younger than B-02's 60 s dispatch grace)",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "e05-no-session",
        invariant: "E-05",
        breaks: "claim: the row goes running (90 s ago) without a claude_session_id",
        revert: "the session id is written, then the execution finishes normally",
        cofiring: "none",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "e06-overdue-schedule",
        invariant: "E-06",
        breaks: "scheduler: an enabled schedule is skipped, next_run_at 2 h in the past",
        revert: "the scheduler fires it: last_run_at = now, next_run_at advanced",
        cofiring: "none",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "b02-queued-idle",
        invariant: "B-02",
        breaks: "drain sweep dies (heartbeat 2 min old, no more sweeps) while a row queued 5 min \
                 ago waits on an agent with free slots",
        revert: "the sweep resumes: heartbeat written, the row claimed and run to completion",
        cofiring: "while the heartbeat is stale, B-02 also judges every simulated agent (same \
                   invariant, more subjects possible)",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "b05-stale-queued",
        invariant: "B-05",
        breaks: "expiry sweep: a row queued 25 h ago is never failed",
        revert: "the expiry sweep fails it (failed, completed_at)",
        cofiring: "none (the drain heartbeat is fresh, so B-02 excuses the waiting row)",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "g03-clock-skew",
        invariant: "G-03",
        breaks: "finish: completed_at written by a host whose clock is 3 min behind (150 s \
                 before started_at)",
        revert: "completed_at rewritten from a correct clock",
        cofiring: "none",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "g04-leaked-secret",
        invariant: "G-04",
        breaks: "enqueue: backlog_metadata carries a GitHub token (a fake ghp_…)",
        revert: "the metadata is scrubbed and the row cancelled",
        cofiring: "none",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "h01-blind",
        invariant: "H-01",
        breaks: "a migration moves the roster (agent_ownership renamed) while slot keys exist",
        revert: "the roster table is moved back; the site's execution finishes",
        cofiring: "no alert, but the SQLite source is unavailable while injected, so every \
                   invariant reading SQLite is unknown (never fired, never resolved). An emptied \
                   roster was not chosen: every slot key and agent-keyed row would then be an \
                   L-03 orphan (L-03 would fire, critical)",
        cycles_to_detect: 3,
        site_cap: 2,
        site_timeout: 900,
    },
    Recipe {
        name: "l03-orphan",
        invariant: "L-03",
        breaks: "agent delete: the roster row is hard-deleted, its tags and sharing rows are not",
        revert: "the missing cascade step purges the rows; the site agent is re-created",
        cofiring: "none (the site holds no slot and no schedule)",
        cycles_to_detect: 1,
        site_cap: 2,
        site_timeout: 900,
    },
];

/// The recipe called `name`.
pub fn find(name: &str) -> Option<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name)
}

/// `all` or a comma-separated list of recipe names; unknown names are named in the error.
pub fn parse_list(list: &str) -> Result<Vec<&'static Recipe>, String> {
    if list.trim() == "all" {
        return Ok(RECIPES.iter().collect());
    }
    let mut out = Vec::new();
    let mut unknown = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match find(name) {
            Some(r) if !out.iter().any(|o: &&Recipe| o.name == r.name) => out.push(r),
            Some(_) => {}
            None => unknown.push(name.to_owned()),
        }
    }
    if unknown.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "unknown fault(s): {} (known: {})",
            unknown.join(", "),
            RECIPES
                .iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// A recipe's site agent.
pub fn site_of(prefix: &str, recipe: &Recipe) -> String {
    let short = recipe.name.split('-').next().unwrap_or(recipe.name);
    format!("{prefix}fault-{short}")
}

/// The roster table the H-01 recipe moves away (and back).
const ROSTER: &str = "agent_ownership";
const ROSTER_MOVED: &str = "agent_ownership_moved";

/// Injects and reverts recipes on a platform's stores, remembering what each injection wrote.
pub struct Injector {
    platform: Platform,
    prefix: String,
    control: Option<Arc<Control>>,
    active: BTreeMap<&'static str, Vec<String>>,
    seq: u64,
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injector")
            .field("prefix", &self.prefix)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Injector {
    /// Connects to the stores. `control` is the running simulator's (B-02 stops its sweep).
    pub async fn connect(
        sqlite_path: &Path,
        redis_url: &str,
        prefix: &str,
        control: Option<Arc<Control>>,
    ) -> Result<Injector, FleetError> {
        let platform = Platform::connect(sqlite_path, redis_url).await?;
        platform.db().busy_timeout(BUSY_TIMEOUT)?;
        Ok(Injector {
            platform,
            prefix: prefix.to_owned(),
            control,
            active: BTreeMap::new(),
            seq: 0,
        })
    }

    /// The site agent of `recipe`.
    pub fn site(&self, recipe: &Recipe) -> String {
        site_of(&self.prefix, recipe)
    }

    /// Whether `recipe` is injected now.
    pub fn is_active(&self, recipe: &Recipe) -> bool {
        self.active.contains_key(recipe.name)
    }

    /// Creates every site, healthy and idle (idempotent). Must run before the first cycle: the
    /// E-02 recipe reverses a row that a cycle has to have seen terminal.
    pub fn provision(&self, recipes: &[&'static Recipe]) -> Result<(), FleetError> {
        let now = now_ms();
        for r in recipes {
            self.add_site(r)?;
            let site = self.site(r);
            match r.name {
                "e02-reversal" => {
                    self.platform.db().execute(
                        "INSERT OR REPLACE INTO schedule_executions (id, schedule_id, agent_name, \
                         status, queued_at, started_at, completed_at, duration_ms, \
                         claude_session_id, backlog_metadata) VALUES (?1, NULL, ?2, 'success', \
                         ?3, ?3, ?4, 60000, 'session-e02', '{}')",
                        params![
                            format!("{site}-done"),
                            site,
                            stamp(now - 60_000, Shape::IsoZ),
                            stamp(now, Shape::SqliteDatetime)
                        ],
                    )?;
                }
                "e06-overdue-schedule" => {
                    self.platform.db().execute(
                        "INSERT OR REPLACE INTO agent_schedules (id, agent_name, name, enabled, \
                         next_run_at) VALUES (?1, ?2, 'hourly report', 1, ?3)",
                        params![
                            format!("sched-{site}"),
                            site,
                            stamp(now + 3_600_000, Shape::IsoZ)
                        ],
                    )?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn add_site(&self, r: &Recipe) -> Result<(), FleetError> {
        let site = self.site(r);
        let fresh = self.platform.db().execute(
            "INSERT OR IGNORE INTO agent_ownership (agent_name, is_system, max_parallel_tasks, \
             execution_timeout_seconds) VALUES (?1, 0, ?2, ?3)",
            params![site, r.site_cap, r.site_timeout],
        )? == 1;
        if fresh && r.name == "l03-orphan" {
            for tag in ["fault-site", "to-be-deleted"] {
                self.platform.db().execute(
                    "INSERT INTO agent_tags (agent_name, tag) VALUES (?1, ?2)",
                    params![site, tag],
                )?;
            }
            self.platform.db().execute(
                "INSERT INTO agent_sharing (agent_name, shared_with_email) VALUES (?1, ?2)",
                params![site, "ops@example.com"],
            )?;
        }
        Ok(())
    }

    fn next_id(&mut self, site: &str) -> String {
        self.seq += 1;
        format!("{site}-{:x}-{}", now_ms(), self.seq)
    }

    /// Injects `recipe`; returns one line saying what was broken. Injecting an active recipe
    /// is an error (its revert would lose track of the first injection).
    ///
    /// An injection is a few writes to both stores (a back-dated running row, then its slot):
    /// run it between two cycles. A cycle landing half-way can see a half-written fault (that
    /// row without its slot yet, an S-01 finding), unlike the platform's own writes, whose
    /// fresh timestamps S-01's grace covers.
    pub async fn inject(&mut self, recipe: &'static Recipe) -> Result<String, FleetError> {
        if self.is_active(recipe) {
            return Err(FleetError::Setup(format!(
                "{} is already injected",
                recipe.name
            )));
        }
        let site = self.site(recipe);
        let now = now_ms();
        let mut ids = Vec::new();
        let what = match recipe.name {
            "s01-leak" => {
                let id = self.next_id(&site);
                // Finished 30 s ago: past S-01's grace, which excuses a release that is still
                // a few ms behind its terminal commit.
                self.start(&site, &id, now - 90_000, true, SITE_EXEC_TIMEOUT, None)
                    .await?;
                self.terminal(&id, "success", Some(now - 30_000), Shape::SqliteDatetime)?;
                ids.push(id.clone());
                format!("{site}: execution {id} finished 30 s ago, its slot never released")
            }
            "s02-overbook" => {
                for _ in 0..2 {
                    let id = self.next_id(&site);
                    self.start(&site, &id, now - 10_000, true, SITE_EXEC_TIMEOUT, None)
                        .await?;
                    ids.push(id);
                }
                format!("{site} (cap 1): two dispatchers both took the free slot")
            }
            "s03-short-ttl" => {
                let id = self.next_id(&site);
                self.start(
                    &site,
                    &id,
                    now - 5_000,
                    true,
                    SITE_EXEC_TIMEOUT,
                    Some(SITE_EXEC_TIMEOUT),
                )
                .await?;
                ids.push(id.clone());
                format!("{site}: slot {id} expires in {SITE_EXEC_TIMEOUT} s, not timeout + 300")
            }
            "s04-orphan-meta" => {
                let id = self.next_id(&site);
                self.start(&site, &id, now - 30_000, true, SITE_EXEC_TIMEOUT, None)
                    .await?;
                self.terminal(&id, "success", Some(now), Shape::IsoZ)?;
                let slots = self.platform.slots_key(&site);
                redis::cmd("ZREM")
                    .arg(&slots)
                    .arg(&id)
                    .query_async::<()>(self.platform.redis())
                    .await?;
                ids.push(id.clone());
                format!("{site}: execution {id} released without DEL of its metadata hash")
            }
            "s07-stuck-sentinel" => {
                let member = format!("drain-{:x}", now);
                self.platform
                    .add_sentinel(&site, &member, now - 30_000)
                    .await?;
                ids.push(member.clone());
                format!("{site}: drain sentinel {member} left behind 30 s ago")
            }
            "e01-stuck-running" => {
                let id = self.next_id(&site);
                let started = now - (recipe.site_timeout + SLOT_TTL_BUFFER_SECONDS + 60) * 1000;
                self.row_running(&site, &id, started, true)?;
                // The worker renews its slot (re-score, re-EXPIRE): only the row is stuck.
                self.acquire(&site, &id, now, recipe.site_timeout, None)
                    .await?;
                ids.push(id.clone());
                format!(
                    "{site}: execution {id} running for {} s (timeout {} s), never closed",
                    (now - started) / 1000,
                    recipe.site_timeout
                )
            }
            "e02-reversal" => {
                let id = format!("{site}-done");
                let changed = self.platform.db().execute(
                    "UPDATE schedule_executions SET status = 'pending_retry' WHERE id = ?1 \
                     AND status = 'success'",
                    params![id],
                )?;
                if changed != 1 {
                    return Err(FleetError::Setup(format!(
                        "{id} is not a finished row (provision the fault sites first)"
                    )));
                }
                ids.push(id.clone());
                format!("{site}: finished execution {id} overwritten to pending_retry")
            }
            "e03-no-completed-at" => {
                let id = self.next_id(&site);
                self.start(&site, &id, now - 20_000, true, SITE_EXEC_TIMEOUT, None)
                    .await?;
                self.platform.db().execute(
                    "UPDATE schedule_executions SET status = 'success', duration_ms = 20000 \
                     WHERE id = ?1",
                    params![id],
                )?;
                self.release(&site, &id).await?;
                ids.push(id.clone());
                format!("{site}: execution {id} finished (success) without completed_at")
            }
            "e04-bad-metadata" => {
                let id = self.next_id(&site);
                self.row_queued(&site, &id, now, r#"{"schedule_id": "sched-x", "attempt": "#)?;
                ids.push(id.clone());
                format!("{site}: queued row {id} with truncated backlog_metadata")
            }
            "e05-no-session" => {
                let id = self.next_id(&site);
                self.start(&site, &id, now - 90_000, false, SITE_EXEC_TIMEOUT, None)
                    .await?;
                ids.push(id.clone());
                format!("{site}: execution {id} running for 90 s without a session")
            }
            "e06-overdue-schedule" => {
                let id = format!("sched-{site}");
                self.platform.db().execute(
                    "INSERT OR REPLACE INTO agent_schedules (id, agent_name, name, enabled, \
                     next_run_at) VALUES (?1, ?2, 'hourly report', 1, ?3)",
                    params![id, site, stamp(now - 7_200_000, Shape::SqliteDatetime)],
                )?;
                ids.push(id.clone());
                format!("{site}: schedule {id} skipped, next_run_at 2 h ago")
            }
            "b02-queued-idle" => {
                if let Some(control) = &self.control {
                    control.sweep_stopped.store(true, Ordering::Relaxed);
                    // A sweep already under way may still write its heartbeat: let it end.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let tick = format!("{:.3}", (now - 120_000) as f64 / 1000.0);
                let key = crate::config::platform::RedisKeys::default().drain_tick;
                redis::cmd("SET")
                    .arg(&key)
                    .arg(tick)
                    .query_async::<()>(self.platform.redis())
                    .await?;
                let id = self.next_id(&site);
                self.row_queued(&site, &id, now - 300_000, &ok_metadata(&site))?;
                ids.push(id.clone());
                format!("{site}: drain sweep dead for 2 min, row {id} queued 5 min with free slots")
            }
            "b05-stale-queued" => {
                let id = self.next_id(&site);
                self.row_queued_shaped(
                    &site,
                    &id,
                    now - 25 * 3_600_000,
                    Shape::SqliteDatetime,
                    &ok_metadata(&site),
                )?;
                ids.push(id.clone());
                format!("{site}: row {id} queued 25 h ago, never expired")
            }
            "g03-clock-skew" => {
                let id = self.next_id(&site);
                self.start(&site, &id, now - 30_000, true, SITE_EXEC_TIMEOUT, None)
                    .await?;
                self.platform.db().execute(
                    "UPDATE schedule_executions SET status = 'success', completed_at = ?2, \
                     duration_ms = 30000 WHERE id = ?1",
                    params![id, stamp(now - 180_000, Shape::SqliteDatetime)],
                )?;
                self.release(&site, &id).await?;
                ids.push(id.clone());
                format!("{site}: execution {id} completed_at written 3 min slow")
            }
            "g04-leaked-secret" => {
                let id = self.next_id(&site);
                let metadata = serde_json::json!({
                    "schedule_id": format!("sched-{site}"),
                    "env": { "GITHUB_TOKEN": fake_github_token() },
                })
                .to_string();
                self.row_queued(&site, &id, now, &metadata)?;
                ids.push(id.clone());
                format!("{site}: queued row {id} carries a GitHub token in backlog_metadata")
            }
            "h01-blind" => {
                let id = self.next_id(&site);
                self.start(&site, &id, now - 10_000, true, SITE_EXEC_TIMEOUT, None)
                    .await?;
                ids.push(id);
                self.platform
                    .db()
                    .execute_batch(&format!("ALTER TABLE {ROSTER} RENAME TO {ROSTER_MOVED}"))?;
                format!("roster table moved to {ROSTER_MOVED} while slot keys exist")
            }
            "l03-orphan" => {
                self.platform.delete_roster_row(&site)?;
                format!("{site} deleted from the roster, its tags and sharing rows left behind")
            }
            other => return Err(FleetError::Setup(format!("no injection for {other}"))),
        };
        tracing::info!(
            fault = recipe.name,
            invariant = recipe.invariant,
            "fault injected"
        );
        self.active.insert(recipe.name, ids);
        Ok(what)
    }

    /// Reverts an injected `recipe`; returns one line saying what was repaired.
    pub async fn revert(&mut self, recipe: &'static Recipe) -> Result<String, FleetError> {
        let Some(ids) = self.active.remove(recipe.name) else {
            return Err(FleetError::Setup(format!(
                "{} is not injected",
                recipe.name
            )));
        };
        let site = self.site(recipe);
        let now = now_ms();
        let what = match recipe.name {
            "s01-leak" => {
                for id in &ids {
                    self.release(&site, id).await?;
                }
                format!("{site}: leaked slot released")
            }
            "s02-overbook" | "e01-stuck-running" => {
                for id in &ids {
                    self.finish(&site, id, "failed").await?;
                }
                format!("{site}: executions closed, slots released")
            }
            "s03-short-ttl" => {
                for id in &ids {
                    self.platform
                        .expire_meta(&site, id, SITE_EXEC_TIMEOUT + SLOT_TTL_BUFFER_SECONDS)
                        .await?;
                    self.finish(&site, id, "success").await?;
                }
                format!("{site}: TTL re-applied, execution finished")
            }
            "s04-orphan-meta" => {
                for id in &ids {
                    let meta = self.platform.meta_key(&site, id);
                    redis::cmd("DEL")
                        .arg(meta)
                        .query_async::<()>(self.platform.redis())
                        .await?;
                }
                format!("{site}: orphan metadata hash deleted")
            }
            "s07-stuck-sentinel" => {
                let slots = self.platform.slots_key(&site);
                for member in &ids {
                    redis::cmd("ZREM")
                        .arg(&slots)
                        .arg(member)
                        .query_async::<()>(self.platform.redis())
                        .await?;
                }
                format!("{site}: stale sentinel removed")
            }
            "e02-reversal" => {
                for id in &ids {
                    self.platform.set_status(id, "success")?;
                }
                format!("{site}: status restored to success")
            }
            "e03-no-completed-at" => {
                for id in &ids {
                    self.platform
                        .set_completed_at(id, &stamp(now, Shape::IsoZ))?;
                }
                format!("{site}: completed_at written")
            }
            "e04-bad-metadata" | "g04-leaked-secret" => {
                for id in &ids {
                    self.platform.db().execute(
                        "UPDATE schedule_executions SET backlog_metadata = ?2, \
                         status = 'cancelled', completed_at = ?3 WHERE id = ?1",
                        params![id, ok_metadata(&site), stamp(now, Shape::IsoZ)],
                    )?;
                }
                format!("{site}: metadata repaired, row cancelled")
            }
            "e05-no-session" => {
                for id in &ids {
                    self.platform.db().execute(
                        "UPDATE schedule_executions SET claude_session_id = ?2 WHERE id = ?1",
                        params![id, format!("session-{id}")],
                    )?;
                    self.finish(&site, id, "success").await?;
                }
                format!("{site}: session written, execution finished")
            }
            "e06-overdue-schedule" => {
                for id in &ids {
                    self.platform.db().execute(
                        "UPDATE agent_schedules SET last_run_at = ?2, next_run_at = ?3 \
                         WHERE id = ?1",
                        params![
                            id,
                            stamp(now, Shape::IsoZ),
                            stamp(now + 3_600_000, Shape::IsoOffset(120))
                        ],
                    )?;
                }
                format!("{site}: schedule fired, next_run_at advanced")
            }
            "b02-queued-idle" => {
                let tick = format!("{:.3}", now as f64 / 1000.0);
                let key = crate::config::platform::RedisKeys::default().drain_tick;
                redis::cmd("SET")
                    .arg(&key)
                    .arg(tick)
                    .query_async::<()>(self.platform.redis())
                    .await?;
                if let Some(control) = &self.control {
                    control.sweep_stopped.store(false, Ordering::Relaxed);
                }
                for id in &ids {
                    self.claim(&site, id).await?;
                    self.finish(&site, id, "success").await?;
                }
                format!("{site}: drain sweep back, waiting row dispatched and run")
            }
            "b05-stale-queued" => {
                for id in &ids {
                    self.platform.db().execute(
                        "UPDATE schedule_executions SET status = 'failed', completed_at = ?2, \
                         error = 'expired in queue' WHERE id = ?1",
                        params![id, stamp(now, Shape::IsoZ)],
                    )?;
                }
                format!("{site}: stale queued row expired (failed)")
            }
            "g03-clock-skew" => {
                for id in &ids {
                    self.platform
                        .set_completed_at(id, &stamp(now, Shape::IsoZ))?;
                }
                format!("{site}: completed_at rewritten from a correct clock")
            }
            "h01-blind" => {
                self.platform
                    .db()
                    .execute_batch(&format!("ALTER TABLE {ROSTER_MOVED} RENAME TO {ROSTER}"))?;
                for id in &ids {
                    self.finish(&site, id, "success").await?;
                }
                "roster table moved back".to_owned()
            }
            "l03-orphan" => {
                for table in ["agent_tags", "agent_sharing"] {
                    self.platform.db().execute(
                        &format!("DELETE FROM {table} WHERE agent_name = ?1"),
                        params![site],
                    )?;
                }
                self.add_site(recipe)?;
                format!("{site}: orphan rows purged, agent re-created")
            }
            other => return Err(FleetError::Setup(format!("no revert for {other}"))),
        };
        tracing::info!(
            fault = recipe.name,
            invariant = recipe.invariant,
            "fault reverted"
        );
        Ok(what)
    }

    /// Reverts everything still injected (stopping a fleet run); returns what was reverted.
    pub async fn revert_all(&mut self) -> Result<Vec<&'static str>, FleetError> {
        let names: Vec<&'static str> = self.active.keys().copied().collect();
        for name in &names {
            if let Some(recipe) = find(name) {
                self.revert(recipe).await?;
            }
        }
        Ok(names)
    }

    /// A running row, then its slot (the healthy claim, or with `ttl` overriding timeout + 300).
    async fn start(
        &mut self,
        site: &str,
        id: &str,
        started: i64,
        with_session: bool,
        timeout: i64,
        ttl: Option<i64>,
    ) -> Result<(), FleetError> {
        self.row_running(site, id, started, with_session)?;
        self.acquire(site, id, started, timeout, ttl).await
    }

    fn row_running(
        &self,
        site: &str,
        id: &str,
        started: i64,
        with_session: bool,
    ) -> Result<(), FleetError> {
        let session = with_session.then(|| format!("session-{id}"));
        self.platform.db().execute(
            "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, queued_at, \
             started_at, claude_session_id, triggered_by, backlog_metadata) \
             VALUES (?1, NULL, ?2, 'running', ?3, ?4, ?5, 'fault', ?6)",
            params![
                id,
                site,
                stamp(started - 1_000, Shape::IsoOffset(120)),
                stamp(started, Shape::IsoZ),
                session,
                ok_metadata(site)
            ],
        )?;
        Ok(())
    }

    fn row_queued(
        &self,
        site: &str,
        id: &str,
        queued: i64,
        metadata: &str,
    ) -> Result<(), FleetError> {
        self.row_queued_shaped(site, id, queued, Shape::IsoZ, metadata)
    }

    fn row_queued_shaped(
        &self,
        site: &str,
        id: &str,
        queued: i64,
        shape: Shape,
        metadata: &str,
    ) -> Result<(), FleetError> {
        self.platform.db().execute(
            "INSERT INTO schedule_executions (id, schedule_id, agent_name, status, queued_at, \
             triggered_by, backlog_metadata) VALUES (?1, NULL, ?2, 'queued', ?3, 'fault', ?4)",
            params![id, site, stamp(queued, shape), metadata],
        )?;
        Ok(())
    }

    /// A queued row claimed: running now, with a session, then its slot.
    async fn claim(&mut self, site: &str, id: &str) -> Result<(), FleetError> {
        let now = now_ms();
        self.platform.db().execute(
            "UPDATE schedule_executions SET status = 'running', started_at = ?2, \
             claude_session_id = ?3 WHERE id = ?1",
            params![id, stamp(now, Shape::IsoZ), format!("session-{id}")],
        )?;
        self.acquire(site, id, now, SITE_EXEC_TIMEOUT, None).await
    }

    async fn acquire(
        &mut self,
        site: &str,
        id: &str,
        score_ms: i64,
        timeout: i64,
        ttl: Option<i64>,
    ) -> Result<(), FleetError> {
        let slots = self.platform.slots_key(site);
        let meta = self.platform.meta_key(site, id);
        redis::pipe()
            .atomic()
            .zadd(&slots, id, score_ms as f64 / 1000.0)
            .ignore()
            .hset(&meta, "timeout_seconds", timeout)
            .ignore()
            .expire(&meta, ttl.unwrap_or(timeout + SLOT_TTL_BUFFER_SECONDS))
            .ignore()
            .query_async::<()>(self.platform.redis())
            .await?;
        Ok(())
    }

    async fn release(&mut self, site: &str, id: &str) -> Result<(), FleetError> {
        self.platform.release_slot(site, id).await
    }

    fn terminal(
        &self,
        id: &str,
        status: &str,
        completed: Option<i64>,
        shape: Shape,
    ) -> Result<(), FleetError> {
        let now = now_ms();
        self.platform.db().execute(
            "UPDATE schedule_executions SET status = ?2, completed_at = ?3, \
             duration_ms = CAST((julianday(?4) - julianday(started_at)) * 86400000 AS INTEGER) \
             WHERE id = ?1",
            params![
                id,
                status,
                completed.map(|ms| stamp(ms, shape)),
                stamp(now, Shape::IsoNaive)
            ],
        )?;
        Ok(())
    }

    /// The healthy finish: terminal row (completed now), then ZREM + DEL.
    async fn finish(&mut self, site: &str, id: &str, status: &str) -> Result<(), FleetError> {
        self.terminal(id, status, Some(now_ms()), Shape::IsoZ)?;
        self.release(site, id).await
    }
}

/// Valid backlog metadata without secrets.
fn ok_metadata(site: &str) -> String {
    serde_json::json!({ "schedule_id": format!("sched-{site}"), "trigger": "fault-site" })
        .to_string()
}

/// A token with GitHub's personal-token shape, obviously fake, assembled at run time so the
/// source never contains one for secret scanners to flag.
fn fake_github_token() -> String {
    format!("{}_{}", "ghp", "CANARYFAKE00000000000000000000000000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_have_distinct_names_and_sites() {
        let mut names: Vec<&str> = RECIPES.iter().map(|r| r.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RECIPES.len());
        let mut sites: Vec<String> = RECIPES.iter().map(|r| site_of("x-", r)).collect();
        sites.sort();
        sites.dedup();
        assert_eq!(sites.len(), RECIPES.len());
    }

    #[test]
    fn every_recipe_has_an_injection_and_a_revert() {
        // The match arms are keyed by name: a recipe added to the table without both would
        // only fail at run time, so the names are checked against the arms' list here.
        let known = [
            "s01-leak",
            "s02-overbook",
            "s03-short-ttl",
            "s04-orphan-meta",
            "s07-stuck-sentinel",
            "e01-stuck-running",
            "e02-reversal",
            "e03-no-completed-at",
            "e04-bad-metadata",
            "e05-no-session",
            "e06-overdue-schedule",
            "b02-queued-idle",
            "b05-stale-queued",
            "g03-clock-skew",
            "g04-leaked-secret",
            "h01-blind",
            "l03-orphan",
        ];
        assert_eq!(RECIPES.len(), known.len());
        assert!(RECIPES.iter().all(|r| known.contains(&r.name)));
    }

    #[test]
    fn lists_parse_and_unknown_names_are_named() {
        assert_eq!(parse_list("all").map(|v| v.len()), Ok(RECIPES.len()));
        let two = parse_list("s01-leak, l03-orphan,s01-leak").unwrap_or_default();
        assert_eq!(
            two.iter().map(|r| r.name).collect::<Vec<_>>(),
            ["s01-leak", "l03-orphan"]
        );
        let err = parse_list("s01-leak,nope").err().unwrap_or_default();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn the_fake_token_has_the_github_shape() {
        let t = fake_github_token();
        assert!(t.starts_with("ghp_") && t.len() == 40, "{t}");
    }
}
