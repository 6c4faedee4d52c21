//! Query-string and body parsing for the admin routes, pure: raw strings in, typed queries or a
//! [`ApiError::BadRequest`] naming the parameter and the accepted forms out. Every parameter is
//! taken as a string first so a bad value gets our message, not a deserializer's.

use canary_invariants::{Millis, Severity, Tier};
use serde::Deserialize;

use super::error::ApiError;
use crate::store::{MAX_PAGE, ViolationQuery};

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 100;

/// `GET /api/canary/violations` parameters as sent. Unknown parameters are refused, so a typo
/// (`invariant=`) is a 400 rather than a silently unfiltered answer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawViolationParams {
    invariant_id: Option<String>,
    severity: Option<String>,
    tier: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

/// `GET /api/canary/violations/stats` parameters as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatsParams {
    since: Option<String>,
}

/// `POST /api/canary/run-cycle` body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunCycleBody {
    invariant_ids: Option<Vec<String>>,
}

impl RawViolationParams {
    /// The store query, or a 400 naming the bad parameter.
    pub fn parse(self) -> Result<ViolationQuery, ApiError> {
        let severity = match non_empty(self.severity) {
            None => None,
            Some(s) => Some(Severity::parse(&s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "severity: expected one of minor, major, critical, got {s:?}"
                ))
            })?),
        };
        let tier = match non_empty(self.tier) {
            None => None,
            Some(t) => Some(Tier::parse(&t).ok_or_else(|| {
                ApiError::BadRequest(format!("tier: expected A or B, got {t:?}"))
            })?),
        };
        let since_ms = non_empty(self.since)
            .map(|s| parse_time("since", &s))
            .transpose()?;
        let until_ms = non_empty(self.until)
            .map(|s| parse_time("until", &s))
            .transpose()?;
        if let (Some(since), Some(until)) = (since_ms, until_ms)
            && since > until
        {
            return Err(ApiError::BadRequest(
                "since must not be after until".to_owned(),
            ));
        }
        let limit = match non_empty(self.limit) {
            None => DEFAULT_LIMIT,
            Some(s) => s
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "limit: expected an integer from 1 to {MAX_PAGE}, got {s:?}"
                    ))
                })?,
        };
        let offset = match non_empty(self.offset) {
            None => 0,
            Some(s) => s.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "offset: expected a non-negative integer, got {s:?}"
                ))
            })?,
        };
        Ok(ViolationQuery {
            invariant_id: non_empty(self.invariant_id),
            severity,
            tier,
            since_ms,
            until_ms,
            limit,
            offset,
        })
    }
}

impl RawStatsParams {
    /// The lower time bound, if any.
    pub fn parse(self) -> Result<Option<Millis>, ApiError> {
        non_empty(self.since)
            .map(|s| parse_time("since", &s))
            .transpose()
    }
}

/// The invariant selection of a run-cycle body: `None` for an empty body or no `invariant_ids`
/// (every enabled invariant).
pub fn run_cycle_selection(body: &[u8]) -> Result<Option<Vec<String>>, ApiError> {
    if body.trim_ascii().is_empty() {
        return Ok(None);
    }
    let parsed: RunCycleBody = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "body: expected {{\"invariant_ids\": [\"S-01\", ...]}} or nothing: {e}"
        ))
    })?;
    match parsed.invariant_ids {
        // An empty list would run nothing and record an empty cycle; say so instead.
        Some(ids) if ids.is_empty() => Err(ApiError::BadRequest(
            "invariant_ids: empty list; omit it to run every enabled invariant".to_owned(),
        )),
        other => Ok(other),
    }
}

/// A time bound: unix milliseconds (digits, optionally signed) or RFC 3339.
pub fn parse_time(name: &str, value: &str) -> Result<Millis, ApiError> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<i64>().map_err(|_| bad_time(name, value));
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|_| bad_time(name, value))
}

fn bad_time(name: &str, value: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "{name}: expected RFC 3339 (e.g. 2026-11-22T10:00:00Z) or unix milliseconds, got {value:?}"
    ))
}

/// An absent and an empty parameter (`?since=`) mean the same: no filter.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> Result<ViolationQuery, ApiError> {
        let qs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let raw: RawViolationParams = serde_json::from_value(serde_json::Value::Object(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
                .collect(),
        ))
        .map_err(|e| ApiError::BadRequest(format!("{}: {e}", qs.join("&"))))?;
        raw.parse()
    }

    fn message(r: Result<ViolationQuery, ApiError>) -> String {
        match r {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_full_query() {
        let q = raw(&[]).unwrap();
        assert_eq!(q, ViolationQuery::default());
        let q = raw(&[
            ("invariant_id", "S-01"),
            ("severity", "critical"),
            ("tier", "A"),
            ("since", "2026-11-22T10:00:00Z"),
            ("until", "1796000000000"),
            ("limit", "5"),
            ("offset", "10"),
        ])
        .unwrap();
        assert_eq!(q.invariant_id.as_deref(), Some("S-01"));
        assert_eq!(q.severity, Some(Severity::Critical));
        assert_eq!(q.tier, Some(Tier::A));
        assert_eq!(q.since_ms, Some(1_795_341_600_000));
        assert_eq!(q.until_ms, Some(1_796_000_000_000));
        assert_eq!((q.limit, q.offset), (5, 10));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        assert!(message(raw(&[("severity", "huge")])).starts_with("severity:"));
        assert!(message(raw(&[("tier", "C")])).starts_with("tier:"));
        assert!(message(raw(&[("since", "yesterday")])).starts_with("since:"));
        assert!(message(raw(&[("until", "12:00")])).starts_with("until:"));
        assert!(message(raw(&[("limit", "0")])).starts_with("limit:"));
        assert!(message(raw(&[("limit", "10001")])).starts_with("limit:"));
        assert!(message(raw(&[("offset", "-1")])).starts_with("offset:"));
        assert!(message(raw(&[("since", "2000"), ("until", "1000")])).contains("after"));
        assert!(message(raw(&[("sevrity", "major")])).contains("unknown field"));
    }

    #[test]
    fn time_forms() {
        assert_eq!(parse_time("since", "0").unwrap(), 0);
        assert_eq!(parse_time("since", "-5").unwrap(), -5);
        assert_eq!(
            parse_time("since", "1970-01-01T00:00:01.500+00:00").unwrap(),
            1500
        );
        assert!(parse_time("since", "-").is_err());
        assert!(parse_time("since", "99999999999999999999").is_err());
    }

    #[test]
    fn run_cycle_bodies() {
        assert_eq!(run_cycle_selection(b"").unwrap(), None);
        assert_eq!(run_cycle_selection(b" \n").unwrap(), None);
        assert_eq!(run_cycle_selection(b"{}").unwrap(), None);
        assert_eq!(
            run_cycle_selection(br#"{"invariant_ids":["S-01"]}"#).unwrap(),
            Some(vec!["S-01".to_owned()])
        );
        assert!(run_cycle_selection(br#"{"invariant_ids":[]}"#).is_err());
        assert!(run_cycle_selection(b"not json").is_err());
        assert!(run_cycle_selection(br#"{"ids":["S-01"]}"#).is_err());
    }
}
