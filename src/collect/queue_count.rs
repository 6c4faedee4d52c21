//! The queue-accessor source (`platform.queue_count`, B-01): the platform's own queued count per
//! agent, read over HTTP, beside the queued rows canary read from the database.
//!
//! Which agents: every live (not soft-deleted) roster agent with queued rows first, then the
//! others, at most `max_agents_per_cycle` per cycle; each class is walked by a cursor that
//! advances by what it asked, so with 10 000 agents and the default 200 every agent is asked
//! within 50 cycles while a cycle costs at most 200 requests (`concurrency` at a time, each
//! bounded by `timeout`). Agents with queued rows come first because that is where a drifting
//! count stalls work.
//!
//! **Re-read once on mismatch** (the reference's rule): an agent whose reported count differs
//! from the queued rows of the cycle's SQL read is read again: its queued ids (a fresh read-only
//! SQL connection, [`crate::collect::sql::queued`]), the endpoint, its queued ids again on that
//! connection (the requests run between the two reads, so the bracket is one round trip). That
//! second pair is what the snapshot keeps; a mismatch it repeats is bracketed once more (a
//! confirmation: a bracket can straddle the platform's own queue → claim writes) and that last
//! pair is kept. Both SQL reads agreeing, the endpoint's answer is
//! judged against them; the queue having moved in between and the answer lying between the two
//! counts, it is coherent; lying outside them, the agent is *unsettled* (not judged this cycle,
//! asked again by the next). A failed re-read leaves that agent unreadable.
//!
//! Failure is per agent: a timeout, an HTTP status other than 2xx, a body that is not JSON, a
//! pointer that names nothing, or a value that is not a non-negative integer makes only that
//! agent unreadable (B-01 *unknown* unless another agent fired). Every asked agent failing makes
//! the whole source unavailable (the blind-source alert applies). A token file that cannot be
//! read does too.
//!
//! The URL is a secret (it may embed credentials): it is never logged, never put in an error
//! (reasons are failure classes naming the agent at most), and `reqwest` errors, whose text
//! quotes the URL, are reduced to their class. The token is sent only as `Authorization: Bearer`.
//! Redirects are not followed (the configured URL is the endpoint; a redirect is a failure).
//!
//! It must not judge (B-01 does), log, write anything, or send anything but `GET`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use canary_invariants::{Phase, QueueCount, QueueCountState, SqlState};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::Semaphore;

use crate::config::Secret;
use crate::config::platform::{PlatformConfig, QueueCountConfig};

/// Bytes of a response body read at most (a count is a few bytes; a huge body is a failure).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything but RFC 3986's unreserved characters is percent-encoded in the agent name, so a
/// name cannot add a path segment, a query or a fragment to the URL.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Where the rotation stands between cycles (process-wide: one daemon watches one platform).
static CURSOR_QUEUED: AtomicUsize = AtomicUsize::new(0);
static CURSOR_REST: AtomicUsize = AtomicUsize::new(0);

/// Why the whole source could not be read (secret-free).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueCountError {
    /// The token file could not be read (names the file, never the content).
    #[error("queue_count token_file {path}: {reason}")]
    Token {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("queue_count HTTP client: {0}")]
    Client(String),
    /// Every agent asked failed.
    #[error("queue_count endpoint failed for all {asked} agents asked (first: {first})")]
    AllFailed {
        /// How many were asked.
        asked: usize,
        /// The first agent's failure, e.g. `agent-a: connection refused`.
        first: String,
    },
}

/// What one read found and cost.
#[derive(Debug)]
pub struct QueueCountRead {
    /// The per-agent counts, or why the source is unavailable.
    pub result: Result<QueueCountState, QueueCountError>,
    /// HTTP requests sent (first pass and re-reads).
    pub requests: u32,
}

/// The agent's URL: the template with `{agent}` replaced by the percent-encoded name.
pub fn agent_url(template: &str, agent: &str) -> String {
    template.replace(
        "{agent}",
        &utf8_percent_encode(agent, COMPONENT).to_string(),
    )
}

/// Reads the platform's counts for this cycle's agents and compares them with `sql` (the
/// cycle's SQL read), re-reading every mismatch once.
pub async fn read(cfg: &PlatformConfig, qc: &QueueCountConfig, sql: &SqlState) -> QueueCountRead {
    let live = live_agents(sql);
    let queued = queued_by_agent(sql);
    let (asked, next_queued, next_rest) = select_agents(
        &live,
        &queued,
        qc.max_agents_per_cycle,
        CURSOR_QUEUED.load(Ordering::Relaxed),
        CURSOR_REST.load(Ordering::Relaxed),
    );
    CURSOR_QUEUED.store(next_queued, Ordering::Relaxed);
    CURSOR_REST.store(next_rest, Ordering::Relaxed);
    let live_count = u64::try_from(live.len()).unwrap_or(u64::MAX);
    let endpoint = match Endpoint::new(qc) {
        Ok(endpoint) => Arc::new(endpoint),
        Err(e) => {
            return QueueCountRead {
                result: Err(e),
                requests: 0,
            };
        }
    };
    let first = endpoint.fetch_all(&asked).await;
    let mut requests = u32::try_from(asked.len()).unwrap_or(u32::MAX);
    if !asked.is_empty() && first.values().all(Result::is_err) {
        let first_failure = asked
            .first()
            .and_then(|a| first.get(a).map(|r| (a, r)))
            .and_then(|(a, r)| r.as_ref().err().map(|e| format!("{a}: {e}")))
            .unwrap_or_default();
        return QueueCountRead {
            result: Err(QueueCountError::AllFailed {
                asked: asked.len(),
                first: first_failure,
            }),
            requests,
        };
    }
    let mut agents: BTreeMap<String, QueueCount> = BTreeMap::new();
    let mut mismatched: Vec<String> = Vec::new();
    for agent in &asked {
        let read = queued.get(agent).map_or(0, Vec::len) as u64;
        match first.get(agent) {
            Some(Ok(reported)) if *reported == read => {
                agents.insert(agent.clone(), coherent(*reported, false));
            }
            Some(Ok(_)) => mismatched.push(agent.clone()),
            Some(Err(reason)) => {
                agents.insert(
                    agent.clone(),
                    QueueCount::Unreadable {
                        reason: reason.clone(),
                    },
                );
            }
            None => {}
        }
    }
    if !mismatched.is_empty() {
        requests = requests.saturating_add(u32::try_from(mismatched.len()).unwrap_or(u32::MAX));
        let mut reread_counts = reread(cfg, &endpoint, &mismatched).await;
        // A mismatch the re-read repeats is confirmed by one more bracket before it counts: the
        // platform's own queue → claim writes are a millisecond apart, and a bracket that
        // straddles them sees a row that neither SQL read holds (measured: 1 in ~1 000 re-reads
        // on a busy PostgreSQL fleet under load). A real drift survives any number of looks.
        let confirm: Vec<String> = reread_counts
            .iter()
            .filter(
                |(_, c)| matches!(c, QueueCount::Read { reported, read, .. } if reported != read),
            )
            .map(|(a, _)| a.clone())
            .collect();
        if !confirm.is_empty() {
            requests = requests.saturating_add(u32::try_from(confirm.len()).unwrap_or(u32::MAX));
            reread_counts.extend(reread(cfg, &endpoint, &confirm).await);
        }
        agents.extend(reread_counts);
    }
    QueueCountRead {
        result: Ok(QueueCountState {
            agents,
            live_agents: live_count,
        }),
        requests,
    }
}

fn coherent(count: u64, reread: bool) -> QueueCount {
    QueueCount::Read {
        reported: count,
        read: count,
        ids: Vec::new(),
        reread,
    }
}

/// The second look at `agents`: their queued ids, the endpoint, their queued ids again, the
/// requests made between the two SQL reads on one connection (a blocking thread drives them on
/// this runtime), so the bracket is as tight as a round trip.
async fn reread(
    cfg: &PlatformConfig,
    endpoint: &Arc<Endpoint>,
    agents: &[String],
) -> BTreeMap<String, QueueCount> {
    let (cfg, list, endpoint) = (cfg.clone(), agents.to_vec(), Arc::clone(endpoint));
    let runtime = tokio::runtime::Handle::current();
    let bracketed = tokio::task::spawn_blocking(move || {
        super::sql::queued::bracket(&cfg, &list, || runtime.block_on(endpoint.fetch_all(&list)))
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|_| Err("internal error: re-read task failed".to_owned()));
    let mut out = BTreeMap::new();
    for agent in agents {
        let judged = match &bracketed {
            Err(e) => QueueCount::Unreadable {
                reason: format!("re-read of the queued rows failed: {e}"),
            },
            Ok((before, answers, after)) => match answers.get(agent) {
                None => continue,
                Some(Err(reason)) => QueueCount::Unreadable {
                    reason: format!("re-read: {reason}"),
                },
                Some(Ok(reported)) => judge_reread(
                    *reported,
                    before.get(agent).cloned().unwrap_or_default(),
                    after.get(agent).cloned().unwrap_or_default(),
                ),
            },
        };
        out.insert(agent.clone(), judged);
    }
    out
}

/// The re-read pair, judged against the SQL reads on either side of the endpoint's answer.
fn judge_reread(reported: u64, before: Vec<String>, after: Vec<String>) -> QueueCount {
    let (b, a) = (before.len() as u64, after.len() as u64);
    if before == after {
        if reported == a {
            return coherent(reported, true);
        }
        let mut ids = after;
        ids.truncate(QueueCount::MAX_IDS);
        return QueueCount::Read {
            reported,
            read: a,
            ids,
            reread: true,
        };
    }
    if (b.min(a)..=b.max(a)).contains(&reported) {
        // The queue moved while the endpoint answered, and the answer lies within the move.
        return coherent(reported, true);
    }
    QueueCount::Unsettled {
        reported,
        before: b,
        after: a,
    }
}

/// Live roster agents (not soft-deleted), sorted, each once.
fn live_agents(sql: &SqlState) -> Vec<String> {
    let mut live: Vec<String> = sql
        .agents
        .iter()
        .filter(|a| !a.deleted)
        .map(|a| a.name.clone())
        .collect();
    live.sort();
    live.dedup();
    live
}

/// Queued ids per agent, as the cycle's SQL read found them.
fn queued_by_agent(sql: &SqlState) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in sql.executions.iter().filter(|r| r.phase == Phase::Queued) {
        out.entry(row.agent_name.clone())
            .or_default()
            .push(row.id.clone());
    }
    out
}

/// This cycle's agents (sorted): the live agents with queued rows first, then the others, at
/// most `budget`, each class from its cursor, wrapping. Returns the agents and both cursors
/// advanced by what their class gave.
pub fn select_agents(
    live: &[String],
    queued: &BTreeMap<String, Vec<String>>,
    budget: usize,
    cursor_queued: usize,
    cursor_rest: usize,
) -> (Vec<String>, usize, usize) {
    let (with, rest): (Vec<&String>, Vec<&String>) =
        live.iter().partition(|a| queued.contains_key(a.as_str()));
    let take = |list: &[&String], n: usize, cursor: usize| -> (Vec<String>, usize) {
        if list.is_empty() || n == 0 {
            return (Vec::new(), cursor);
        }
        if n >= list.len() {
            return (list.iter().map(|a| (*a).clone()).collect(), 0);
        }
        let start = cursor % list.len();
        let picked = list
            .iter()
            .cycle()
            .skip(start)
            .take(n)
            .map(|a| (*a).clone())
            .collect();
        (picked, (start + n) % list.len())
    };
    let (mut asked, next_queued) = take(&with, budget, cursor_queued);
    let (others, next_rest) = take(&rest, budget.saturating_sub(asked.len()), cursor_rest);
    asked.extend(others);
    asked.sort();
    (asked, next_queued, next_rest)
}

/// The configured endpoint: its client, URL template, pointer and token.
struct Endpoint {
    client: reqwest::Client,
    template: Secret,
    pointer: String,
    token: Option<Secret>,
    concurrency: usize,
    timeout: Duration,
}

impl Endpoint {
    fn new(qc: &QueueCountConfig) -> Result<Endpoint, QueueCountError> {
        let token = match &qc.token_file {
            Some(path) => Some(Secret::from_file(path).map_err(|e| QueueCountError::Token {
                path: path.display().to_string(),
                reason: e.kind().to_string(),
            })?),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(qc.timeout)
            .connect_timeout(qc.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| QueueCountError::Client(class(&e, qc.timeout)))?;
        Ok(Endpoint {
            client,
            template: qc.url.clone(),
            pointer: qc.json_pointer.clone(),
            token,
            concurrency: qc.concurrency.max(1),
            timeout: qc.timeout,
        })
    }

    /// Every agent's reported count, `concurrency` requests at a time.
    async fn fetch_all(&self, agents: &[String]) -> BTreeMap<String, Result<u64, String>> {
        let limit = Arc::new(Semaphore::new(self.concurrency));
        let reads = agents.iter().map(|agent| {
            let limit = Arc::clone(&limit);
            async move {
                // The semaphore is never closed; read regardless.
                let _permit = limit.acquire().await.ok();
                (agent.clone(), self.fetch(agent).await)
            }
        });
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    /// One agent's reported count, or its failure class.
    async fn fetch(&self, agent: &str) -> Result<u64, String> {
        let url = agent_url(self.template.expose(), agent);
        let mut request = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let mut response = request.send().await.map_err(|e| class(&e, self.timeout))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| class(&e, self.timeout))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(format!("response larger than {MAX_BODY_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        count_at(&body, &self.pointer)
    }
}

/// The count at `pointer` in a JSON `body`, or the failure class.
pub fn count_at(body: &[u8], pointer: &str) -> Result<u64, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "response is not JSON".to_owned())?;
    let at = value
        .pointer(pointer)
        .ok_or_else(|| format!("JSON pointer {pointer:?} not found"))?;
    at.as_u64()
        .ok_or_else(|| format!("value at {pointer:?} is not a non-negative integer"))
}

/// A `reqwest` error reduced to its class (its own text quotes the URL, a secret).
fn class(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timeout after {}", humantime::format_duration(timeout));
    }
    // The innermost I/O error's kind ("connection refused") names no host, path or credential.
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        source = inner.source();
    }
    if e.is_connect() {
        "connection failed".to_owned()
    } else if e.is_body() || e.is_decode() {
        "response body unreadable".to_owned()
    } else {
        "request failed".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_agent_is_percent_encoded_into_one_path_segment() {
        let t = "http://backend:8000/api/agents/{agent}/queue";
        assert_eq!(
            agent_url(t, "agent-a_1.x~"),
            "http://backend:8000/api/agents/agent-a_1.x~/queue"
        );
        assert_eq!(
            agent_url(t, "../x?y=1#z é"),
            "http://backend:8000/api/agents/..%2Fx%3Fy%3D1%23z%20%C3%A9/queue"
        );
    }

    #[test]
    fn counts_are_non_negative_integers_at_the_pointer() {
        assert_eq!(count_at(br#"{"queued": 3}"#, "/queued"), Ok(3));
        assert_eq!(count_at(br#"{"a": {"b": [0, 7]}}"#, "/a/b/1"), Ok(7));
        assert_eq!(count_at(b"7", ""), Ok(7));
        assert_eq!(
            count_at(b"<html>", "/queued"),
            Err("response is not JSON".to_owned())
        );
        assert!(
            count_at(br#"{"other": 1}"#, "/queued")
                .unwrap_err()
                .contains("not found")
        );
        for bad in [
            r#"{"queued": -1}"#,
            r#"{"queued": 1.5}"#,
            r#"{"queued": "3"}"#,
        ] {
            assert!(
                count_at(bad.as_bytes(), "/queued")
                    .unwrap_err()
                    .contains("non-negative integer"),
                "{bad}"
            );
        }
    }

    #[test]
    fn agents_with_queued_rows_come_first_and_the_rest_rotate() {
        let live = names(&["a", "b", "c", "d", "e"]);
        let queued: BTreeMap<String, Vec<String>> = [("d".to_owned(), vec!["1".to_owned()])].into();
        // Everything fits: all, cursors reset.
        let (asked, _, _) = select_agents(&live, &queued, 10, 0, 0);
        assert_eq!(asked, live);
        // Budget 3: d, then two of the four others per cycle; all covered in two cycles.
        let (first, cq, cr) = select_agents(&live, &queued, 3, 0, 0);
        assert_eq!(first, names(&["a", "b", "d"]));
        let (second, _, cr2) = select_agents(&live, &queued, 3, cq, cr);
        assert_eq!(second, names(&["c", "d", "e"]));
        let (third, _, _) = select_agents(&live, &queued, 3, cq, cr2);
        assert_eq!(third, names(&["a", "b", "d"]));
        // More queued agents than the budget: they rotate among themselves.
        let all_queued: BTreeMap<String, Vec<String>> =
            live.iter().map(|a| (a.clone(), vec![])).collect();
        let (one, cq, _) = select_agents(&live, &all_queued, 2, 0, 0);
        let (two, cq, _) = select_agents(&live, &all_queued, 2, cq, 0);
        let (three, _, _) = select_agents(&live, &all_queued, 2, cq, 0);
        assert_eq!(
            (one, two, three),
            (names(&["a", "b"]), names(&["c", "d"]), names(&["a", "e"]))
        );
        // Bounded at 10 000 agents.
        let many: Vec<String> = (0..10_000).map(|i| format!("agent-{i:05}")).collect();
        let (asked, _, _) = select_agents(&many, &BTreeMap::new(), 200, 0, 0);
        assert_eq!(asked.len(), 200);
    }

    #[test]
    fn the_reread_judges_against_the_reads_around_the_answer() {
        let ids = |n: usize| (0..n).map(|i| format!("x{i}")).collect::<Vec<_>>();
        // Stable queue: equal → coherent, different → a mismatch with the ids.
        assert_eq!(judge_reread(2, ids(2), ids(2)), coherent(2, true));
        match judge_reread(0, ids(2), ids(2)) {
            QueueCount::Read {
                reported: 0,
                read: 2,
                ids: got,
                reread: true,
            } => assert_eq!(got, ids(2)),
            other => panic!("{other:?}"),
        }
        // The queue moved: an answer within the move is coherent, outside it unsettled.
        assert_eq!(judge_reread(2, ids(1), ids(3)), coherent(2, true));
        assert_eq!(
            judge_reread(5, ids(1), ids(3)),
            QueueCount::Unsettled {
                reported: 5,
                before: 1,
                after: 3
            }
        );
        // Evidence is capped.
        match judge_reread(0, ids(50), ids(50)) {
            QueueCount::Read { ids: got, read, .. } => {
                assert_eq!((got.len(), read), (QueueCount::MAX_IDS, 50));
            }
            other => panic!("{other:?}"),
        }
    }
}
