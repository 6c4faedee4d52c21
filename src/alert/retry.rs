//! Retry classification (DESIGN §7), pure: what one POST's outcome means for its outbox row, and
//! how long to back off. The deliverer feeds it an HTTP status and body (or a transport failure)
//! and a random fraction; nothing here does I/O, reads a clock or draws randomness itself, so
//! every rule is unit-tested.
//!
//! Only 404 and 410 (Slack's `no_service`, an archived channel) and an unsendable request are
//! permanent. Any other 4xx, a 3xx (redirects are not followed) or an unexpected status is
//! retried with the usual backoff, at most [`REJECTED_ATTEMPTS`] attempts in all, then abandoned
//! ([`rejected_gives_up`]); a 400 whose body is `invalid_payload` is answered by sending the
//! count-only message once instead ([`Attempt::InvalidPayload`]).
//!
//! It must not know about the outbox or Slack's payloads: it only maps outcomes to decisions.

use std::time::Duration;

/// Wait after a 429 whose `Retry-After` is absent or not a number of seconds (Slack always sends
/// one; a proxy in between might not).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Upper bound on an honoured `Retry-After`: a garbage value like `999999999` must not park an
/// alert for years (the row would be abandoned by `give_up_after` long before).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Attempts a row gets, in all, when it keeps being rejected with a client error
/// ([`Attempt::Rejected`]): the attempt with this number that is rejected abandons it. Counted
/// over the row's attempts, so earlier 5xx/timeouts count too (a row that already waited out an
/// outage gives up sooner on a 4xx). With the default backoff (5 s doubling) the four retries
/// span about a minute: long enough for a flapping proxy, short enough not to hide a broken
/// webhook.
pub const REJECTED_ATTEMPTS: u32 = 5;

/// Slack's body text for a 400 whose JSON it could not accept.
pub const INVALID_PAYLOAD: &str = "invalid_payload";

/// What one delivery attempt means for its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx: Slack has it.
    Delivered,
    /// 429: rate limited; try again after this long (and post nothing else to that webhook
    /// meanwhile).
    RetryAfter(Duration),
    /// 5xx, timeout, connection failure: try again after an exponential backoff.
    Backoff,
    /// Any other 4xx, a 3xx (an unexpected redirect) or an unexpected status: try again after
    /// the backoff, at most [`REJECTED_ATTEMPTS`] attempts in all ([`rejected_gives_up`]).
    Rejected,
    /// 400 `invalid_payload`: Slack cannot take this message; send the count-only one instead,
    /// once, and abandon if that fails too.
    InvalidPayload,
    /// 404 `no_service`, 410 `channel_is_archived`, or an unsendable request: retrying cannot
    /// help.
    Permanent,
}

/// Why a request got no HTTP response at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// The per-POST timeout elapsed.
    Timeout,
    /// Connecting failed (refused, unreachable, DNS).
    Connect,
    /// The request could not even be built (e.g. a malformed webhook URL).
    Build,
    /// Anything else on the wire (connection reset mid-response, ...).
    Other,
}

impl TransportFailure {
    /// Short label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportFailure::Timeout => "timeout",
            TransportFailure::Connect => "connect",
            TransportFailure::Build => "build",
            TransportFailure::Other => "transport",
        }
    }
}

/// Classifies an HTTP response by status, its `Retry-After` header value, if any, and (the
/// start of) its body.
pub fn classify_status(status: u16, retry_after: Option<&str>, body: &str) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered,
        429 => Attempt::RetryAfter(parse_retry_after(retry_after)),
        500..=599 => Attempt::Backoff,
        // The webhook is gone (`no_service`) or its channel archived: permanent.
        404 | 410 => Attempt::Permanent,
        400 if body.trim() == INVALID_PAYLOAD => Attempt::InvalidPayload,
        // 1xx/3xx (redirects are not followed: a webhook that moved is a configuration problem,
        // but a proxy in between may be having a bad minute), every other 4xx, and nonsense.
        _ => Attempt::Rejected,
    }
}

/// Whether a row whose attempt number `attempts` (1-based, this one included) was
/// [`Attempt::Rejected`] is abandoned rather than retried.
pub fn rejected_gives_up(attempts: u32) -> bool {
    attempts >= REJECTED_ATTEMPTS
}

/// Classifies a request that got no response.
pub fn classify_transport(failure: TransportFailure) -> Attempt {
    match failure {
        TransportFailure::Build => Attempt::Permanent,
        TransportFailure::Timeout | TransportFailure::Connect | TransportFailure::Other => {
            Attempt::Backoff
        }
    }
}

/// `Retry-After` as delta-seconds, clamped to [`MAX_RETRY_AFTER`]; [`DEFAULT_RETRY_AFTER`] when
/// absent or not a non-negative integer (the HTTP-date form is not used by Slack).
pub fn parse_retry_after(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER))
        .unwrap_or(DEFAULT_RETRY_AFTER)
}

/// Exponential backoff with equal jitter: attempt `n` (1-based) waits between half and all of
/// `min(initial · 2^(n-1), max)`. Equal rather than full jitter so a retry never fires
/// immediately after a failure, while concurrent deliverers still spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First ceiling.
    pub initial: Duration,
    /// Largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The un-jittered delay after `attempts` failures (`attempts` ≥ 1; 0 is treated as 1).
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(32);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max.max(self.initial))
    }

    /// The jittered delay after `attempts` failures; `fraction` is a uniform random number in
    /// `[0, 1]` (out-of-range values are clamped).
    pub fn delay(&self, attempts: u32, fraction: f64) -> Duration {
        let ceiling = self.ceiling(attempts);
        let half = ceiling / 2;
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        half + (ceiling - half).mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_statuses_are_delivered() {
        for s in [200, 201, 204, 299] {
            assert_eq!(classify_status(s, None, "ok"), Attempt::Delivered, "{s}");
        }
    }

    #[test]
    fn rate_limit_honours_retry_after() {
        assert_eq!(
            classify_status(429, Some("2"), ""),
            Attempt::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            classify_status(429, Some(" 30 "), ""),
            Attempt::RetryAfter(Duration::from_secs(30))
        );
        assert_eq!(
            classify_status(429, Some("0"), ""),
            Attempt::RetryAfter(Duration::ZERO)
        );
    }

    #[test]
    fn rate_limit_defaults_on_absent_or_garbage_and_clamps() {
        for v in [
            None,
            Some(""),
            Some("soon"),
            Some("-3"),
            Some("1.5"),
            Some("Wed, 21 Oct 2015 07:28:00 GMT"),
        ] {
            assert_eq!(
                classify_status(429, v, ""),
                Attempt::RetryAfter(DEFAULT_RETRY_AFTER),
                "{v:?}"
            );
        }
        assert_eq!(
            classify_status(429, Some("99999999999"), ""),
            Attempt::RetryAfter(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn server_errors_back_off() {
        for s in [500, 502, 503, 504, 599] {
            assert_eq!(classify_status(s, None, ""), Attempt::Backoff, "{s}");
        }
    }

    #[test]
    fn gone_webhooks_are_permanent() {
        for (s, body) in [(404, "no_service"), (410, "channel_is_archived"), (404, "")] {
            assert_eq!(
                classify_status(s, Some("1"), body),
                Attempt::Permanent,
                "{s}"
            );
        }
    }

    #[test]
    fn other_client_errors_and_redirects_are_retried_a_bounded_number_of_times() {
        for s in [400, 401, 403, 408, 413, 100, 301, 302, 307, 308, 600, 0] {
            assert_eq!(
                classify_status(s, Some("1"), "nope"),
                Attempt::Rejected,
                "{s}"
            );
        }
        // A 400 with another body (e.g. `invalid_token`) is not the payload's fault.
        assert_eq!(
            classify_status(400, None, "invalid_token"),
            Attempt::Rejected
        );
        assert!(!rejected_gives_up(1));
        assert!(!rejected_gives_up(REJECTED_ATTEMPTS - 1));
        assert!(rejected_gives_up(REJECTED_ATTEMPTS));
        assert!(rejected_gives_up(u32::MAX));
    }

    #[test]
    fn invalid_payload_falls_back() {
        for body in ["invalid_payload", " invalid_payload\n"] {
            assert_eq!(
                classify_status(400, None, body),
                Attempt::InvalidPayload,
                "{body:?}"
            );
        }
        // Only a 400 says so: the same word in a 500 or a 404 means what the status means.
        assert_eq!(
            classify_status(500, None, "invalid_payload"),
            Attempt::Backoff
        );
        assert_eq!(
            classify_status(404, None, "invalid_payload"),
            Attempt::Permanent
        );
    }

    #[test]
    fn transport_failures() {
        assert_eq!(
            classify_transport(TransportFailure::Timeout),
            Attempt::Backoff
        );
        assert_eq!(
            classify_transport(TransportFailure::Connect),
            Attempt::Backoff
        );
        assert_eq!(
            classify_transport(TransportFailure::Other),
            Attempt::Backoff
        );
        assert_eq!(
            classify_transport(TransportFailure::Build),
            Attempt::Permanent
        );
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let ceilings: Vec<u128> = (0..=8).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn backoff_jitter_bounds() {
        let b = Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(600),
        };
        for n in 1..40 {
            let c = b.ceiling(n);
            assert_eq!(b.delay(n, 0.0), c / 2);
            assert_eq!(b.delay(n, 1.0), c);
            let mid = b.delay(n, 0.37);
            assert!(
                mid >= c / 2 && mid <= c,
                "{n}: {mid:?} not in [{:?}, {c:?}]",
                c / 2
            );
        }
        // Garbage fractions are clamped, never panic.
        assert_eq!(b.delay(1, f64::NAN), Duration::from_millis(2500));
        assert_eq!(b.delay(1, -4.0), Duration::from_millis(2500));
        assert_eq!(b.delay(1, 9.0), Duration::from_secs(5));
    }

    #[test]
    fn backoff_max_below_initial_uses_initial() {
        let b = Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
    }
}
