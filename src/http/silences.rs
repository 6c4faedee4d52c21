//! `/api/canary/silences` (issue 14): list (`GET`, `?all=true` includes the ended ones), create
//! (`POST`, 201), expire early (`DELETE /{id}`). Authentication is the router's job. Each
//! change is logged here at INFO, where it is handled (the cycle logs a silence's natural end).
//!
//! It must not decide what a silence covers (`alert::silence`) nor touch transitions.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::params::parse_time;
use crate::alert::silence::Spec;
use crate::clock::now_ms;
use crate::config::is_silenceable_id;
use crate::store::{Expired, Silence};

/// `GET` parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    all: Option<String>,
}

/// The `POST` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    invariant_ids: Vec<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    /// `2h`, `30m`, ...
    #[serde(default)]
    duration: Option<String>,
    author: String,
    comment: String,
}

/// `GET /api/canary/silences`: the silences not over yet (`?all=true`: every one), by id.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = query.map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let all = match params.all.as_deref() {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "all: expected true or false, got {other:?}"
            )));
        }
    };
    let now = now_ms();
    let silences = state
        .runner
        .with_db(move |db| db.silences(now, all))
        .await
        .map_err(|e| ApiError::internal("silences", &e))?;
    Ok(Json(json!({ "silences": silences })))
}

/// `POST /api/canary/silences`: 201 and the stored silence; 400 naming every problem.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })?;
    let parsed: CreateBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "body: expected {{\"invariant_ids\": [\"S-01\"], \"subject\": \"fleet-*\", \
             \"duration\": \"2h\" or \"ends_at\": \"…\", \"starts_at\": \"…\" (optional), \
             \"author\": \"…\", \"comment\": \"…\"}}: {e}"
        ))
    })?;
    let duration = parsed
        .duration
        .as_deref()
        .map(|d| {
            humantime::parse_duration(d).map_err(|e| {
                ApiError::BadRequest(format!("duration: expected e.g. 2h or 30m, got {d:?}: {e}"))
            })
        })
        .transpose()?;
    let now = now_ms();
    let config = state.runner.config();
    let new = Spec {
        invariant_ids: parsed.invariant_ids,
        subject: parsed.subject,
        starts_at_ms: parsed
            .starts_at
            .as_deref()
            .map(|t| parse_time("starts_at", t))
            .transpose()?,
        ends_at_ms: parsed
            .ends_at
            .as_deref()
            .map(|t| parse_time("ends_at", t))
            .transpose()?,
        duration,
        author: parsed.author,
        comment: parsed.comment,
    }
    .build(now, |id| is_silenceable_id(config, id))
    .map_err(ApiError::BadRequest)?;
    let silence = state
        .runner
        .with_db(move |db| db.add_silence(&new, now))
        .await
        .map_err(|e| ApiError::internal("create silence", &e))?;
    log_created(&silence, "api");
    Ok((StatusCode::CREATED, Json(silence)))
}

/// `DELETE /api/canary/silences/{id}`: expires it now; 404 when absent. A silence already over
/// is answered as it is (200, nothing changed).
pub async fn expire(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Silence>, ApiError> {
    let Path(id) =
        id.map_err(|_| ApiError::BadRequest("silence id: expected an integer".to_owned()))?;
    let now = now_ms();
    let outcome = state
        .runner
        .with_db(move |db| db.expire_silence(id, now))
        .await
        .map_err(|e| ApiError::internal("expire silence", &e))?;
    match outcome {
        Expired::NotFound => Err(ApiError::NotFound(format!("silence {id} not found"))),
        Expired::AlreadyOver(s) => Ok(Json(s)),
        Expired::Expired(s) => {
            log_expired(&s, "api");
            Ok(Json(s))
        }
    }
}

/// `silence created` at INFO (the CLI and the API both call it).
pub fn log_created(s: &Silence, via: &str) {
    tracing::info!(
        silence.id = s.id,
        silence.invariants = %s.invariant_ids.join(","),
        silence.subject = s.subject.as_deref(),
        silence.author = %s.author,
        silence.comment = %s.comment,
        starts_at = %s.starts_at,
        ends_at = %s.ends_at,
        via,
        "silence created"
    );
}

/// `silence expired early` at INFO.
pub fn log_expired(s: &Silence, via: &str) {
    tracing::info!(
        silence.id = s.id,
        silence.invariants = %s.invariant_ids.join(","),
        silence.author = %s.author,
        expired_at = s.expired_at.as_deref(),
        ends_at = %s.ends_at,
        via,
        "silence expired early"
    );
}
