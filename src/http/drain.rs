//! Middleware: reads and discards whatever a handler left of the request body before the answer
//! goes out, so a client that sent a body we refused (413 over the body limit, 401 before the
//! token check reads anything, 404, …) receives that answer instead of a connection reset.
//!
//! Why by hand: hyper (HTTP/1) answers a request whose body was dropped unread by trying one
//! read, then closing the connection (`poll_drain_or_close_read`; it has no option to drain
//! more, hyperium/hyper#3241). Closing a socket with unread bytes in its receive buffer makes the
//! kernel send RST, which can reach the client before it reads the answer: it sees a reset,
//! a broken pipe or `IncompleteMessage`, not the 413. Once the rest is read, hyper can answer and
//! even keep the connection.
//!
//! The handler gets the body through [`Returned`], which hands the unread rest back here when it
//! is dropped. The rest is read for at most [`DRAIN_CAP`] bytes and until the request's own
//! deadline (start + `http.request_timeout`); past either, we give up and hyper closes as
//! before. A request with `Expect: 100-continue` whose body was never touched is not drained:
//! the client has not sent it, and reading it would ask for it.
//!
//! It must not change any answer: the response is returned as the inner service built it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;

/// The most bytes read and discarded after a handler gave up on a body. Far above any body a
/// client of this API sends by mistake; a client sending more gets its connection closed.
const DRAIN_CAP: u64 = 4 * 1024 * 1024;

/// Where a dropped, unfinished body waits for the middleware.
type Slot = Arc<Mutex<Option<Body>>>;

/// Middleware: see the module docs. `timeout` is `http.request_timeout`.
pub async fn drain_unread_body(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let deadline = Instant::now() + timeout;
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let slot = Slot::default();
    let request = request.map(|body| {
        Body::new(Returned {
            inner: Some(body),
            slot: slot.clone(),
            drain_wanted: !expects_continue,
        })
    });
    let response = next.run(request).await;
    // The handler has returned, so its body is dropped and, if unfinished, in the slot.
    let rest = slot.lock().ok().and_then(|mut slot| slot.take());
    if let Some(rest) = rest {
        let drained = tokio::time::timeout_at(deadline, discard(rest, DRAIN_CAP)).await;
        if !matches!(drained, Ok(true)) {
            tracing::debug!(
                drain.cap_bytes = DRAIN_CAP,
                "unread request body not drained; the connection will be closed"
            );
        }
    }
    response
}

/// Reads `body` to its end, keeping nothing. False when it carries more than `cap` bytes or
/// fails (the client went away).
async fn discard(mut body: Body, cap: u64) -> bool {
    let mut read: u64 = 0;
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => return true,
            Some(Err(_)) => return false,
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, |data| data.len());
                read = read.saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
                if read > cap {
                    return false;
                }
            }
        }
    }
}

/// The request body as the handler sees it; on drop, an unfinished one goes back to the slot.
struct Returned {
    inner: Option<Body>,
    slot: Slot,
    /// Whether reading the rest is wanted: false until first polled under `Expect: 100-continue`.
    drain_wanted: bool,
}

impl HttpBody for Returned {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        this.drain_wanted = true;
        match this.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if self.drain_wanted
            && !body.is_end_stream()
            && let Ok(mut slot) = self.slot.lock()
        {
            *slot = Some(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn discard_reads_to_the_end_within_the_cap() {
        assert!(discard(Body::from(vec![0u8; 1000]), 1000).await);
        assert!(!discard(Body::from(vec![0u8; 1001]), 1000).await);
        assert!(discard(Body::empty(), 0).await);
    }

    #[tokio::test]
    async fn an_unfinished_body_goes_back_to_the_slot_when_dropped() {
        let slot = Slot::default();
        let returned = Returned {
            inner: Some(Body::from("rest")),
            slot: slot.clone(),
            drain_wanted: true,
        };
        drop(returned);
        let rest = slot.lock().unwrap().take().unwrap();
        assert_eq!(&axum::body::to_bytes(rest, 100).await.unwrap()[..], b"rest");
    }

    #[tokio::test]
    async fn an_untouched_body_under_expect_continue_is_not_kept() {
        let slot = Slot::default();
        drop(Returned {
            inner: Some(Body::from("never sent")),
            slot: slot.clone(),
            drain_wanted: false,
        });
        assert!(slot.lock().unwrap().is_none());
    }
}
