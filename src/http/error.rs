//! [`ApiError`]: every error an admin API response can carry, and its one mapping to a status
//! code and a JSON body `{"error": "..."}`. Internal failures are logged here, once, at ERROR
//! with their detail, and answered with a bare "internal error": clients never see paths, SQL or
//! driver messages. Nothing here ever formats the admin token (it never reaches an error).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad query parameter, bad JSON body). The message is shown.
    #[error("{0}")]
    BadRequest(String),
    /// No or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// No admin token configured: admin routes fail closed.
    #[error("admin token not configured")]
    TokenNotConfigured,
    /// The thing asked for does not exist. The message is shown.
    #[error("{0}")]
    NotFound(String),
    /// A cycle is already running (here or in another process).
    #[error("cycle in progress")]
    CycleInProgress,
    /// Invariant ids not in the catalog.
    #[error("unknown invariant id(s): {}", .0.join(", "))]
    UnknownInvariants(Vec<String>),
    /// The body exceeds `http.body_limit_bytes`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request took longer than `http.request_timeout`.
    #[error("request timed out")]
    Timeout,
    /// Anything else: the detail is logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// Wraps an internal failure, keeping its chain for the log.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> ApiError {
        ApiError::Internal(format!("{context}: {error:#}"))
    }

    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::TokenNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::CycleInProgress => StatusCode::CONFLICT,
            ApiError::UnknownInvariants(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Internal(detail) => {
                // Handled here, so logged here (once); the client gets the bare message.
                tracing::error!(error = %detail, "admin API request failed");
                json!({ "error": self.to_string() })
            }
            ApiError::UnknownInvariants(ids) => {
                json!({ "error": self.to_string(), "unknown_ids": ids })
            }
            _ => json!({ "error": self.to_string() }),
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            // RFC 6750 §3: a 401 names the scheme the client should use.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"canary\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_is_not_sent() {
        let e = ApiError::internal("violations", &"disk I/O error at /var/lib/canary/state.db");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.to_string(), "internal error");
    }

    #[test]
    fn unauthorized_names_the_scheme() {
        let r = ApiError::Unauthorized.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"canary\""
        );
    }
}
