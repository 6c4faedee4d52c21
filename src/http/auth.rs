//! Bearer-token authentication for the admin routes (`/api/canary/*`).
//!
//! Fails closed: with no token configured every admin route answers 503. The comparison takes
//! time that depends only on the configured token's length, never on where a guess first differs
//! or on the guess's length, so the token cannot be recovered byte by byte from response times.
//! The token is never logged or echoed: a rejection says only that the token was missing or
//! wrong.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::{Choice, ConstantTimeEq};

use super::AppState;
use super::error::ApiError;
use crate::config::Secret;

/// Middleware: lets the request through only with the right `Authorization: Bearer` token.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check(state.admin_token.as_ref(), request.headers())?;
    Ok(next.run(request).await)
}

/// The decision, apart from the middleware plumbing.
pub fn check(expected: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    let expected = expected.ok_or(ApiError::TokenNotConfigured)?;
    let presented = bearer(headers).ok_or(ApiError::Unauthorized)?;
    if tokens_match(expected.expose().as_bytes(), presented) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The credentials of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Constant-time equality whose running time depends only on `expected.len()`.
///
/// `subtle`'s slice comparison returns early on a length mismatch, which would tell an attacker
/// the token's length; instead every byte of `expected` is compared against the presented byte
/// at the same position (or 0 past its end), and the lengths are compared in constant time too.
fn tokens_match(expected: &[u8], presented: &[u8]) -> bool {
    let same_len = (expected.len() as u64).ct_eq(&(presented.len() as u64));
    let mut presented_bytes = presented.iter().copied();
    let mut same_bytes = Choice::from(1);
    for &e in expected {
        let p = presented_bytes.next().unwrap_or(0);
        same_bytes &= e.ct_eq(&p);
    }
    bool::from(same_len & same_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        assert!(!tokens_match(b"s3cret", b"s3cre"));
        assert!(!tokens_match(b"s3cret", b"s3cret!"));
        assert!(!tokens_match(b"s3cret", b"s3creT"));
        assert!(!tokens_match(b"s3cret", b""));
        // A presented token that is the expected one padded with NULs must not match.
        assert!(!tokens_match(b"ab", b"ab\0"));
    }

    #[test]
    fn decisions() {
        let token = Secret::new("s3cret");
        assert!(matches!(
            check(None, &headers("Bearer s3cret")),
            Err(ApiError::TokenNotConfigured)
        ));
        assert!(matches!(
            check(Some(&token), &HeaderMap::new()),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            check(Some(&token), &headers("Basic s3cret")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            check(Some(&token), &headers("Bearer ")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            check(Some(&token), &headers("Bearer wrong")),
            Err(ApiError::Unauthorized)
        ));
        assert!(check(Some(&token), &headers("Bearer s3cret")).is_ok());
        assert!(check(Some(&token), &headers("bearer  s3cret ")).is_ok());
    }
}
