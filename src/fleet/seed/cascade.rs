//! The agent-keyed cascade tables (L-03's scan list): `cascade_rows` rows spread by share, all
//! pointing at roster agents, schedules first. Written inside the SQLite writer's transaction;
//! it must not open its own.

use crate::fleet::platform_db::params;
use indicatif::ProgressBar;

use super::plan::Plan;
use super::sqlite::{MESSAGES, PROGRESS_EVERY, SqlCounts};
use super::values::{Shape, below, mix, uuid_like};
use crate::fleet::platform::FleetError;
use crate::fleet::platform_db::PlatformDb;

/// The agent-keyed cascade tables and their share (in parts) of `cascade_rows`.
const CASCADE_SHARES: [(CascadeTable, u64); 11] = [
    (CascadeTable::Schedules, 14),
    (CascadeTable::Sharing, 10),
    (CascadeTable::Skills, 14),
    (CascadeTable::Tags, 16),
    (CascadeTable::SharedFiles, 10),
    (CascadeTable::PublicLinks, 5),
    (CascadeTable::Reports, 10),
    (CascadeTable::ChatSessions, 12),
    (CascadeTable::OperatorQueue, 3),
    (CascadeTable::AccessRequests, 3),
    (CascadeTable::McpApiKeys, 3),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// One agent-keyed table.
enum CascadeTable {
    Schedules,
    Sharing,
    Skills,
    Tags,
    SharedFiles,
    PublicLinks,
    Reports,
    ChatSessions,
    OperatorQueue,
    AccessRequests,
    McpApiKeys,
}

impl CascadeTable {
    /// Its insert statement.
    fn insert_sql(self) -> &'static str {
        match self {
            CascadeTable::Schedules => {
                "INSERT INTO agent_schedules (id, agent_name, name, cron_expression, message, \
                 enabled, timezone, last_run_at, next_run_at, deleted_at) \
                 VALUES (?1, ?2, 'nightly', '0 3 * * *', ?3, ?4, 'UTC', ?5, ?6, ?7)"
            }
            CascadeTable::Sharing => {
                "INSERT INTO agent_sharing (agent_name, shared_with_email, shared_by_id) \
                 VALUES (?1, ?2, ?3)"
            }
            CascadeTable::Skills => {
                "INSERT INTO agent_skills (agent_name, skill_name) VALUES (?1, ?2)"
            }
            CascadeTable::Tags => "INSERT INTO agent_tags (agent_name, tag) VALUES (?1, ?2)",
            CascadeTable::SharedFiles => {
                "INSERT INTO agent_shared_files (agent_name, file_path) VALUES (?1, ?2)"
            }
            CascadeTable::PublicLinks => {
                "INSERT INTO agent_public_links (agent_name, token, enabled) VALUES (?1, ?2, ?3)"
            }
            CascadeTable::Reports => {
                "INSERT INTO agent_reports (agent_name, title, body) VALUES (?1, ?2, ?3)"
            }
            CascadeTable::ChatSessions => {
                "INSERT INTO chat_sessions (agent_name, user_id, status) VALUES (?1, ?2, ?3)"
            }
            CascadeTable::OperatorQueue => {
                "INSERT INTO operator_queue (agent_name, kind, status, payload) \
                 VALUES (?1, 'approval', ?2, '{}')"
            }
            CascadeTable::AccessRequests => {
                "INSERT INTO access_requests (agent_name, requester_email, status) \
                 VALUES (?1, ?2, ?3)"
            }
            CascadeTable::McpApiKeys => {
                "INSERT INTO mcp_api_keys (agent_name, user_id, name, key_hash, scope) \
                 VALUES (?1, ?2, 'ci', ?3, ?4)"
            }
        }
    }
}

/// `cascade_rows` rows over the agent-keyed tables, all pointing at roster agents (L-03 green).
/// Every agent gets schedules first (two ids per agent, matching `schedule_executions`), with a
/// future `next_run_at` (E-06 green).
pub(super) fn insert_cascade(
    tx: &PlatformDb,
    plan: &Plan,
    bar: &ProgressBar,
    counts: &mut SqlCounts,
) -> Result<(), FleetError> {
    let parts: u64 = CASCADE_SHARES.iter().map(|(_, p)| p).sum();
    let total = plan.cascade_rows as u64;
    let mut assigned = 0u64;
    let mut a_buf = String::new();
    let mut b_buf = String::new();
    for (index, (table, share)) in CASCADE_SHARES.iter().enumerate() {
        // The last table takes the rounding remainder so the total is exact.
        let rows = if index + 1 == CASCADE_SHARES.len() {
            total - assigned
        } else {
            total * share / parts
        };
        assigned += rows;
        let mut stmt = tx.inserter(table.insert_sql())?;
        for k in 0..rows {
            let h = mix((index as u64) << 40 ^ k);
            // Schedules go round-robin (every agent gets one before any gets a second); the
            // other tables pick agents at random.
            let agent = if *table == CascadeTable::Schedules {
                &plan.agents[(k % plan.agents.len().max(1) as u64) as usize]
            } else {
                &plan.agents[below(h, plan.agents.len() as u64) as usize]
            };
            match table {
                CascadeTable::Schedules => {
                    let per_agent = k / plan.agents.len().max(1) as u64;
                    let id = if per_agent < 2 {
                        format!("sched-{}-{per_agent}", agent.name)
                    } else {
                        uuid_like(0x5C4E, k)
                    };
                    Shape::of(h >> 8)
                        .write(plan.now_ms - below(h >> 16, 86_400_000) as i64, &mut a_buf);
                    Shape::of(h >> 8).write(
                        plan.now_ms + 60_000 + below(h >> 24, 86_400_000) as i64,
                        &mut b_buf,
                    );
                    stmt.row(params![
                        id,
                        agent.name,
                        MESSAGES[(h % 4) as usize],
                        i64::from(!h.is_multiple_of(10)),
                        a_buf,
                        b_buf,
                        None::<&str>,
                    ])?;
                }
                CascadeTable::Sharing => {
                    stmt.row(params![
                        agent.name,
                        format!("user{}@example.com", h % 5_000),
                        (h % 500) as i64
                    ])?;
                }
                CascadeTable::Skills => {
                    let skills = ["web-search", "sql", "email", "calendar", "code-review"];
                    stmt.row(params![agent.name, skills[(h % 5) as usize]])?;
                }
                CascadeTable::Tags => {
                    let tags = ["prod", "staging", "ops", "finance", "support", "beta"];
                    stmt.row(params![agent.name, tags[(h % 6) as usize]])?;
                }
                CascadeTable::SharedFiles => {
                    stmt.row(params![
                        agent.name,
                        format!("/shared/{}/doc-{k}.md", agent.name)
                    ])?;
                }
                CascadeTable::PublicLinks => {
                    stmt.row(params![
                        agent.name,
                        uuid_like(0x11CC, k),
                        i64::from(!h.is_multiple_of(4))
                    ])?;
                }
                CascadeTable::Reports => {
                    stmt.row(params![
                        agent.name,
                        "Weekly summary",
                        "All tasks completed."
                    ])?;
                }
                CascadeTable::ChatSessions => {
                    let status = if h.is_multiple_of(4) {
                        "active"
                    } else {
                        "ended"
                    };
                    stmt.row(params![agent.name, (h % 500) as i64, status])?;
                }
                CascadeTable::OperatorQueue => {
                    let status = if h.is_multiple_of(3) {
                        "pending"
                    } else {
                        "resolved"
                    };
                    stmt.row(params![agent.name, status])?;
                }
                CascadeTable::AccessRequests => {
                    let status = if h.is_multiple_of(3) {
                        "pending"
                    } else {
                        "approved"
                    };
                    stmt.row(params![
                        agent.name,
                        format!("user{}@example.com", h % 5_000),
                        status
                    ])?;
                }
                CascadeTable::McpApiKeys => {
                    // User-scoped keys carry no agent, like the platform's.
                    let agent_scoped = h.is_multiple_of(2);
                    stmt.row(params![
                        agent_scoped.then_some(agent.name.as_str()),
                        (h % 500) as i64,
                        format!("{:016x}", mix(h)),
                        if agent_scoped { "agent" } else { "user" },
                    ])?;
                }
            }
            if (k + 1) % PROGRESS_EVERY == 0 {
                bar.inc(PROGRESS_EVERY);
            }
        }
        stmt.finish()?;
        bar.inc(rows % PROGRESS_EVERY);
        counts.cascade_rows += rows as usize;
    }
    Ok(())
}
