//! Token authentication: a bearer token for the admin routes (`/api/canary/*`), and for the
//! status page (`GET /`) HTTP Basic with the token as the password (browsers cannot send a
//! bearer header; the user name is ignored), unless `http.status_page.public` opens it.
//!
//! Fails closed: with no token configured every admin route, and the page unless it is public,
//! answers 503. The comparison takes
//! time that depends only on the configured token's length, never on where a guess first differs
//! or on the guess's length, so the token cannot be recovered byte by byte from response times.
//! The token is never logged or echoed: a rejection says only that the token was missing or
//! wrong.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
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

/// Middleware of the status page: public when configured so; otherwise HTTP Basic with the admin
/// token as the password (or the API's bearer header, for scripts). Refusals are plain text: a
/// browser shows them as they are, and a 401 asks it for credentials.
pub async fn require_page_access(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let public = state.runner.config().http.status_page.public;
    match page_access(public, state.admin_token.as_ref(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(denied) => denied.into_response(),
    }
}

/// Why the status page was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageDenied {
    /// Not public and no token configured: 503 (fail closed, like the API).
    NotConfigured,
    /// No or wrong credentials: 401 with a Basic challenge.
    Unauthorized,
}

impl IntoResponse for PageDenied {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            PageDenied::NotConfigured => (
                StatusCode::SERVICE_UNAVAILABLE,
                "admin token not configured: the status page needs http.admin_token(_file), \
                 or http.status_page.public: true\n",
            ),
            PageDenied::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "log in with any user name and the admin token as the password\n",
            ),
        };
        let mut response = (status, text).into_response();
        if self == PageDenied::Unauthorized {
            // RFC 7617: the browser's login prompt.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"canary\""),
            );
        }
        response
    }
}

/// The page's decision, apart from the middleware plumbing.
pub fn page_access(
    public: bool,
    expected: Option<&Secret>,
    headers: &HeaderMap,
) -> Result<(), PageDenied> {
    if public {
        return Ok(());
    }
    let expected = expected.ok_or(PageDenied::NotConfigured)?;
    let expected = expected.expose().as_bytes();
    let matches = match basic_password(headers) {
        Some(password) => tokens_match(expected, &password),
        None => bearer(headers).is_some_and(|token| tokens_match(expected, token)),
    };
    if matches {
        Ok(())
    } else {
        Err(PageDenied::Unauthorized)
    }
}

/// The password of an `Authorization: Basic base64(user:password)` header (scheme
/// case-insensitive); the user name is ignored. `None` when absent or malformed.
fn basic_password(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim_ascii()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    decoded.get(colon + 1..).map(<[u8]>::to_vec)
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

    fn basic(user_password: &str) -> HeaderMap {
        headers(&format!("Basic {}", STANDARD.encode(user_password)))
    }

    #[test]
    fn page_decisions() {
        let token = Secret::new("s3cret");
        let t = Some(&token);
        assert_eq!(page_access(true, None, &HeaderMap::new()), Ok(()));
        assert_eq!(
            page_access(false, None, &basic("x:s3cret")),
            Err(PageDenied::NotConfigured)
        );
        assert_eq!(
            page_access(false, t, &HeaderMap::new()),
            Err(PageDenied::Unauthorized)
        );
        // Any user name, the token as the password; a password with a colon stays whole.
        assert_eq!(page_access(false, t, &basic("admin:s3cret")), Ok(()));
        assert_eq!(page_access(false, t, &basic(":s3cret")), Ok(()));
        assert_eq!(
            page_access(
                false,
                t,
                &headers(&format!("basic {}", STANDARD.encode("u:s3cret")))
            ),
            Ok(())
        );
        let token_with_colon = Secret::new("a:b");
        assert_eq!(
            page_access(false, Some(&token_with_colon), &basic("u:a:b")),
            Ok(())
        );
        for refused in [
            basic("s3cret:wrong"),
            basic("s3cret"),
            basic("u:s3cre"),
            basic("u:s3cret!"),
            headers("Basic !!not-base64!!"),
            headers("Basic "),
            headers("Bearer wrong"),
        ] {
            assert_eq!(
                page_access(false, t, &refused),
                Err(PageDenied::Unauthorized),
                "{refused:?}"
            );
        }
        // The API's bearer header works too (scripts).
        assert_eq!(page_access(false, t, &headers("Bearer s3cret")), Ok(()));
    }

    #[test]
    fn page_refusals_challenge_for_basic() {
        let r = PageDenied::Unauthorized.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "Basic realm=\"canary\""
        );
        let r = PageDenied::NotConfigured.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
