//! The admin handlers under `/api/canary/` (authentication is the router's job, not theirs).
//! Each one parses its input (see `params.rs`), makes one short state-DB read or one cycle, and
//! shapes the JSON of DESIGN §8. Store failures become [`ApiError::Internal`], logged once by the
//! error mapping.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use canary_invariants::InvariantState;
use serde::Serialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::params::{self, RawStatsParams, RawViolationParams};
use crate::clock::format_ms;
use crate::cycle::{CycleError, CycleRequest, CycleResult, Trigger};
use crate::registry::Registry;
use crate::store::{StoredViolation, ViolationStat};

/// `POST /api/canary/run-cycle`: one manual cycle now.
///
/// The cycle runs on its own task: if the client goes away or the request times out, the cycle
/// still finishes, records and releases its lease (dropping it half way would leave the lease
/// held until `state.lease_timeout`). Metrics are updated on that task for the same reason.
pub async fn run_cycle(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CycleResult>, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    let request = CycleRequest {
        trigger: Trigger::Manual,
        only: params::run_cycle_selection(&body)?,
    };
    let runner = state.runner.clone();
    let metrics = state.metrics.clone();
    let waker = state.alert_waker.clone();
    let heartbeat = state.heartbeat.clone();
    let task = tokio::spawn(async move {
        let result = runner.run(&request).await;
        if let Ok(result) = &result {
            metrics.observe_cycle(result);
            if let Some(heartbeat) = &heartbeat {
                heartbeat.ping(result);
            }
            if let Some(waker) = waker.filter(|_| result.has_transitions()) {
                waker.notify_one();
            }
        }
        result
    });
    match task.await {
        Ok(Ok(result)) => Ok(Json(result)),
        Ok(Err(CycleError::InProgress(_))) => Err(ApiError::CycleInProgress),
        Ok(Err(CycleError::UnknownInvariants(ids))) => Err(ApiError::UnknownInvariants(ids)),
        Ok(Err(error @ CycleError::Store(_))) => Err(ApiError::internal("run-cycle", &error)),
        Err(join) => Err(ApiError::internal("run-cycle task", &join)),
    }
}

/// `GET /api/canary/violations`: a filtered page, newest first, and the total matching.
pub async fn violations(
    State(state): State<AppState>,
    query: Result<Query<RawViolationParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(raw) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let query = raw.parse()?;
    let (limit, offset) = (query.limit, query.offset);
    let (rows, total) = state
        .runner
        .with_db(move |db| db.violations(&query))
        .await
        .map_err(|e| ApiError::internal("violations", &e))?;
    Ok(Json(json!({
        "violations": rows,
        "total": total,
        "limit": limit,
        "offset": offset,
    })))
}

/// `GET /api/canary/violations/{id}`.
pub async fn violation(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<StoredViolation>, ApiError> {
    let Path(id) = id
        .map_err(|_| ApiError::BadRequest("violation id: expected an integer row id".to_owned()))?;
    state
        .runner
        .with_db(move |db| db.violation(id))
        .await
        .map_err(|e| ApiError::internal("violation", &e))?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("violation {id} not found")))
}

/// One stats row with human-readable times beside the unix ones.
#[derive(Debug, Serialize)]
struct StatRow {
    #[serde(flatten)]
    stat: ViolationStat,
    first_seen: String,
    last_seen: String,
}

/// `GET /api/canary/violations/stats`: counts per invariant and severity, first/last seen.
pub async fn stats(
    State(state): State<AppState>,
    query: Result<Query<RawStatsParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(raw) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let since_ms = raw.parse()?;
    let stats = state
        .runner
        .with_db(move |db| db.violation_stats(since_ms))
        .await
        .map_err(|e| ApiError::internal("violation stats", &e))?;
    let rows: Vec<StatRow> = stats
        .into_iter()
        .map(|stat| StatRow {
            first_seen: format_ms(stat.first_seen_ms),
            last_seen: format_ms(stat.last_seen_ms),
            stat,
        })
        .collect();
    Ok(Json(json!({
        "since": since_ms.map(format_ms),
        "stats": rows,
    })))
}

/// One invariant's line in the status answer.
#[derive(Debug, Serialize)]
struct InvariantStatus<'a> {
    invariant_id: &'a str,
    name: &'a str,
    /// Operator-defined SQL invariant (from the configuration, not the catalog).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    custom: bool,
    enabled: bool,
    /// `green`/`red`/`unknown`, or `null` when never evaluated.
    state: Option<canary_invariants::Outcome>,
    since: Option<String>,
    consecutive: u32,
    firing: bool,
    severity: Option<canary_invariants::Severity>,
    last_fired_at: Option<String>,
    last_resolved_at: Option<String>,
    last_violation: Option<&'a StoredViolation>,
    /// What kept its latest transition out of Slack (`silence:<id>`, `window:<n>`), while that
    /// transition has not been sent; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    alert_silenced_by: Option<&'a str>,
}

/// `GET /api/canary/status`: per invariant its state, since when, and its last violation.
pub async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (states, last_violations, last_cycle, silenced) = state
        .runner
        .with_db(|db| {
            Ok((
                db.load_states()?,
                db.last_violation_per_invariant()?,
                db.last_cycle()?,
                db.pending_silenced()?,
            ))
        })
        .await
        .map_err(|e| ApiError::internal("status", &e))?;
    let config = state.runner.config();
    let registry = Registry::new(config);
    let invariants: Vec<InvariantStatus<'_>> = registry
        .all()
        .iter()
        .map(|d| {
            status_line(
                (d.id(), d.name(), d.is_custom()),
                registry.enabled(d),
                states.get(d.id()),
                &last_violations,
                silenced.get(d.id()).map(|p| p.silenced_by.as_str()),
            )
        })
        .collect();
    Ok(Json(json!({
        "instance": config.alerts.instance_name(),
        "last_cycle": last_cycle.map(|c| json!({
            "id": c.id,
            "taken_at": c.taken_at,
            "trigger": c.trigger,
            "duration_ms": c.duration_ms,
            "sources_unavailable": c.sources_unavailable,
        })),
        "invariants": invariants,
    })))
}

/// `(id, name, custom)` of one invariant.
type Described<'a> = (&'a str, &'a str, bool);

fn status_line<'a>(
    (id, name, custom): Described<'a>,
    enabled: bool,
    state: Option<&InvariantState>,
    last_violations: &'a BTreeMap<String, StoredViolation>,
    alert_silenced_by: Option<&'a str>,
) -> InvariantStatus<'a> {
    InvariantStatus {
        invariant_id: id,
        name,
        custom,
        enabled,
        state: state.map(|s| s.state),
        since: state.map(|s| format_ms(s.since_ms)),
        consecutive: state.map_or(0, |s| s.consecutive),
        firing: state.is_some_and(|s| s.firing),
        severity: state.and_then(|s| s.severity),
        last_fired_at: state.and_then(|s| s.last_fired_at_ms).map(format_ms),
        last_resolved_at: state.and_then(|s| s.last_resolved_at_ms).map(format_ms),
        last_violation: last_violations.get(id),
        alert_silenced_by,
    }
}

/// `GET /api/canary/invariants`: the catalog (the same entries as `canary invariants --format
/// json`: rules with this configuration's thresholds), then the configured custom invariants,
/// marked `"custom": true`.
pub async fn invariants(State(state): State<AppState>) -> Json<Value> {
    let config = state.runner.config();
    Json(json!({ "invariants": Registry::new(config).entries_json() }))
}

/// Any other path: a JSON 404 like the rest of the API.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}
