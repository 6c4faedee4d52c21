//! The simulated platform's queued-count endpoint (what B-01 compares with the rows):
//! `GET /api/agents/{agent}/queue` → `{"agent": …, "queued": n}`, counting the agent's `queued`
//! rows in the platform database the way the platform's own accessor does (`COUNT(*)` with the
//! status word), on a connection of its own.
//!
//! A fault recipe makes it drift through [`Control::stale_queue_counts`]: an agent listed there is
//! answered from that "cache" instead of the rows, as a platform whose cache missed an
//! invalidation would.
//!
//! It runs on its own thread with its own single-threaded runtime (like the simulator), on a
//! free port of 127.0.0.1, and stops when dropped. It only reads the database.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Control;
use crate::fleet::platform::FleetError;
use crate::fleet::platform_db::{PlatformDb, PlatformTarget, params};

/// The running endpoint. Dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct QueueAccessor {
    addr: SocketAddr,
    cancel: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    db: Mutex<PlatformDb>,
    control: Arc<Control>,
}

impl QueueAccessor {
    /// Starts the endpoint over the platform database `target` (which must exist), answering
    /// drifted agents from `control`.
    pub fn start(
        target: &PlatformTarget,
        control: Arc<Control>,
    ) -> Result<QueueAccessor, FleetError> {
        let db = PlatformDb::open(target, false)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| FleetError::Setup(format!("queue accessor socket: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| FleetError::Setup(format!("queue accessor socket: {e}")))?;
        let shared = Arc::new(Shared {
            db: Mutex::new(db),
            control,
        });
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("queue-accessor".to_owned())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = axum::Router::new()
                        .route("/api/agents/{agent}/queue", get(queue))
                        .with_state(shared);
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(stop.cancelled_owned())
                        .await;
                });
            })
            .map_err(|e| FleetError::Setup(format!("spawning the queue accessor: {e}")))?;
        Ok(QueueAccessor {
            addr,
            cancel,
            thread: Some(thread),
        })
    }

    /// The URL template canary's `platform.queue_count.url` takes (`{agent}` in place).
    pub fn url_template(&self) -> String {
        format!("http://{}/api/agents/{{agent}}/queue", self.addr)
    }
}

impl Drop for QueueAccessor {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn queue(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
) -> Result<Json<Value>, StatusCode> {
    let stale = shared
        .control
        .stale_queue_counts
        .lock()
        .ok()
        .and_then(|m| m.get(&agent).copied());
    if let Some(count) = stale {
        return Ok(Json(json!({"agent": agent, "queued": count})));
    }
    let name = agent.clone();
    let counted = tokio::task::spawn_blocking(move || -> Option<u64> {
        let db = shared.db.lock().ok()?;
        let text = db
            .query_text(
                "SELECT CAST(COUNT(*) AS TEXT) FROM schedule_executions \
                 WHERE agent_name = ?1 AND status = 'queued'",
                params![name],
            )
            .ok()??;
        text.parse().ok()
    })
    .await
    .ok()
    .flatten();
    match counted {
        Some(count) => Ok(Json(json!({"agent": agent, "queued": count}))),
        None => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}
