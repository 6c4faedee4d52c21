//! B-01's re-read: the queued ids of a few agents, read now on a fresh read-only connection
//! (SQLite or PostgreSQL, whichever the platform runs on), independently of the cycle's main
//! read. The queue-accessor collector (`collect::queue_count`) calls it around its second
//! request to the platform's endpoint for every agent whose first pair disagreed.
//!
//! One statement per chunk of agents (`agent_name IN (…) AND status IN (<queued words>)`, the
//! platform's partial index on queued rows serves it), every value bound as a parameter.
//!
//! It must not read anything else, nor write: the connection is read-only and `query_only`
//! (SQLite) or in a read-only transaction (PostgreSQL).

use std::collections::BTreeMap;

use super::error::SqlError;
use super::query::{placeholders, q};
use super::reader::{Conn, Reader};
use super::value::{Cell, value_text};
use super::{check_identifiers, open_read_only, postgres};
use crate::config::platform::{PlatformConfig, PlatformDatabase};

/// Agents per statement (keeps every statement's parameter list short on both engines).
const CHUNK: usize = 500;

/// Queued ids per agent (sorted; an agent without queued rows maps to an empty list).
pub type QueuedIds = BTreeMap<String, Vec<String>>;

/// Per agent of `agents`, its queued ids. `Err` when the database cannot be read.
pub fn queued_ids(cfg: &PlatformConfig, agents: &[String]) -> Result<QueuedIds, SqlError> {
    bracket(cfg, agents, || ()).map(|(ids, (), _)| ids)
}

/// The agents' queued ids, then `between()`, then their queued ids again, on one connection
/// (two read transactions, so the second sees what was committed meanwhile): the tightest
/// bracket around `between` (B-01's second request to the endpoint).
pub fn bracket<T>(
    cfg: &PlatformConfig,
    agents: &[String],
    between: impl FnOnce() -> T,
) -> Result<(QueuedIds, T, QueuedIds), SqlError> {
    check_identifiers(cfg)?;
    let run = |conn: &mut dyn FnMut() -> Result<QueuedIds, SqlError>| {
        let before = conn()?;
        let value = between();
        let after = conn()?;
        Ok((before, value, after))
    };
    match cfg.database()? {
        PlatformDatabase::Sqlite(path) => {
            let conn = open_read_only(&path, cfg.sqlite_busy_timeout)?;
            run(&mut || once(Conn::Sqlite(&conn), cfg, agents))
        }
        PlatformDatabase::Postgres(url) => {
            let mut client = postgres::connect(cfg, &url)?;
            run(&mut || once(Conn::Postgres(&mut client), cfg, agents))
        }
    }
}

/// One read of the agents' queued ids in its own read transaction.
fn once(conn: Conn<'_>, cfg: &PlatformConfig, agents: &[String]) -> Result<QueuedIds, SqlError> {
    let mut out: QueuedIds = agents.iter().map(|a| (a.clone(), Vec::new())).collect();
    if agents.is_empty() {
        return Ok(out);
    }
    Reader::new(conn).in_read_transaction(|r| read(r, cfg, agents, &mut out))?;
    for ids in out.values_mut() {
        ids.sort();
    }
    Ok(out)
}

fn read(
    r: &mut Reader<'_>,
    cfg: &PlatformConfig,
    agents: &[String],
    out: &mut BTreeMap<String, Vec<String>>,
) -> Result<(), SqlError> {
    let e = &cfg.tables.executions;
    let words = &cfg.statuses.queued;
    for chunk in agents.chunks(CHUNK) {
        let sql = format!(
            "SELECT {agent}, {id} FROM {table} WHERE {agent} IN ({names}) AND {status} IN ({words})",
            agent = q(&e.agent_name),
            id = q(&e.id),
            table = q(&e.table),
            status = q(&e.status),
            names = placeholders(chunk.len()),
            words = placeholders(words.len()),
        );
        let params: Vec<Cell> = chunk
            .iter()
            .chain(words.iter())
            .map(|v| Cell::Text(v.clone()))
            .collect();
        for row in r.rows(&sql, &params, "re-reading queued rows")? {
            let mut cells = row.into_iter();
            let (Some(agent), Some(id)) = (cells.next(), cells.next()) else {
                continue;
            };
            // A NULL id is G-05's finding (the main read reports it); it is not a queued id.
            if let (Some(agent), Some(id)) = (value_text(agent.as_ref()), value_text(id.as_ref()))
                && let Some(ids) = out.get_mut(&agent)
            {
                ids.push(id);
            }
        }
    }
    Ok(())
}
