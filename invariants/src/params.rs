//! What every invariant's parameters share, and the tools each invariant file uses to declare,
//! validate and describe its own.
//!
//! The parameters themselves live beside their check: each invariant file declares its struct
//! with `invariant_params!`, which adds the common `enabled` and
//! `severity` keys (written once, here) and the defaults. The catalog list
//! ([`crate::checks`]) assembles them into [`Params`], keyed by catalog id in configuration
//! (`invariants: { S-01: { grace_seconds: 3 } }`). Every struct rejects unknown keys, so a typo in
//! the config file is an error, not a silently ignored knob.
//!
//! Nothing here reads configuration files or the environment: values arrive deserialized, and
//! validation returns problems with key paths for the daemon to report.

use std::fmt;

use crate::violation::Severity;

pub use crate::checks::Params;

/// The part every invariant's parameters share.
pub trait CommonParams {
    /// Whether the invariant runs.
    fn enabled(&self) -> bool;
    /// The configured severity override, if any.
    fn severity(&self) -> Option<Severity>;
}

/// One problem with an invariant's parameters: the key (relative to the invariant's own
/// section, e.g. `grace_seconds`) and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamProblem {
    /// The invariant's id (`S-01`).
    pub invariant_id: &'static str,
    /// The key inside the invariant's section.
    pub key: &'static str,
    /// What is wrong (the value is echoed: thresholds are never secret).
    pub message: String,
}

impl ParamProblem {
    /// The dotted configuration path of the key (`invariants.S-01.grace_seconds`).
    pub fn path(&self) -> String {
        format!("invariants.{}.{}", self.invariant_id, self.key)
    }
}

impl fmt::Display for ParamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path(), self.message)
    }
}

/// Collects the problems of one invariant's parameters; the checks below are the shared
/// vocabulary of threshold validation, so messages read the same for every invariant.
#[derive(Debug)]
pub struct Problems<'a> {
    invariant_id: &'static str,
    out: &'a mut Vec<ParamProblem>,
}

impl<'a> Problems<'a> {
    /// Problems of `invariant_id`'s section, appended to `out`.
    pub fn new(invariant_id: &'static str, out: &'a mut Vec<ParamProblem>) -> Problems<'a> {
        Problems { invariant_id, out }
    }

    /// Reports `message` at `key`.
    pub fn push(&mut self, key: &'static str, message: impl Into<String>) {
        self.out.push(ParamProblem {
            invariant_id: self.invariant_id,
            key,
            message: message.into(),
        });
    }

    /// A whole-seconds threshold that must be at least `min` (0: "0 or more", 1: "greater than 0").
    pub fn seconds_at_least(&mut self, key: &'static str, value: i64, min: i64) {
        if value < min {
            let bound = if min == 1 {
                "greater than 0".to_owned()
            } else {
                format!("{min} or more")
            };
            self.push(key, format!("must be {bound} (got {value})"));
        }
    }

    /// A fractional-seconds threshold that must be finite and 0 or more.
    pub fn non_negative(&mut self, key: &'static str, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            self.push(
                key,
                format!("must be a finite number, 0 or more (got {value})"),
            );
        }
    }

    /// A fractional-seconds threshold that must be finite and greater than 0.
    pub fn positive(&mut self, key: &'static str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.push(key, "must be a number greater than 0");
        }
    }
}

/// Declares one invariant's parameter struct: the common `enabled` (default `true`) and
/// `severity` (default none) keys, then the listed thresholds with their defaults.
///
/// ```text
/// invariant_params! {
///     /// S-07 thresholds.
///     pub struct S07Params {
///         /// A drain sentinel this old (or older) is stale.
///         max_age_seconds: f64 = 10.0,
///     }
/// }
/// ```
macro_rules! invariant_params {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// Run this invariant.
            pub enabled: bool,
            /// Replace the severity of every violation it reports.
            pub severity: Option<$crate::violation::Severity>,
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    enabled: true,
                    severity: None,
                    $( $field: $default, )*
                }
            }
        }

        impl $crate::params::CommonParams for $name {
            fn enabled(&self) -> bool {
                self.enabled
            }

            fn severity(&self) -> Option<$crate::violation::Severity> {
                self.severity
            }
        }
    };
}
pub(crate) use invariant_params;

/// Seconds (possibly fractional) to whole milliseconds, saturating.
pub fn seconds_to_ms(seconds: f64) -> i64 {
    if seconds.is_finite() {
        // `as` saturates for out-of-range floats, which is what a threshold wants.
        (seconds * 1000.0).round() as i64
    } else if seconds > 0.0 {
        i64::MAX
    } else {
        0
    }
}

/// A whole-seconds threshold for a rule text: `300 s`, `30 min`, `1 h`, `24 h 1 min`. Short
/// spans stay in seconds, the unit operators configure them in.
pub fn human_seconds(seconds: i64) -> String {
    if seconds != 0 && seconds % 3600 == 0 {
        return format!("{} h", seconds / 3600);
    }
    if seconds >= 1800 && seconds % 60 == 0 && seconds < 3600 {
        return format!("{} min", seconds / 60);
    }
    if seconds > 3600 {
        let (h, rest) = (seconds / 3600, seconds % 3600);
        let (m, s) = (rest / 60, rest % 60);
        let mut out = format!("{h} h");
        if m > 0 {
            out.push_str(&format!(" {m} min"));
        }
        if s > 0 {
            out.push_str(&format!(" {s} s"));
        }
        return out;
    }
    format!("{seconds} s")
}

/// A fractional-seconds threshold for a rule text: `10 s`, `2.5 s`.
pub fn human_seconds_f(seconds: f64) -> String {
    format!("{seconds} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_an_operator_writes_them() {
        assert_eq!(human_seconds(0), "0 s");
        assert_eq!(human_seconds(45), "45 s");
        assert_eq!(human_seconds(60), "60 s");
        assert_eq!(human_seconds(600), "600 s");
        assert_eq!(human_seconds(1800), "30 min");
        assert_eq!(human_seconds(3600), "1 h");
        assert_eq!(human_seconds(86_460), "24 h 1 min");
        assert_eq!(human_seconds(3661), "1 h 1 min 1 s");
        assert_eq!(human_seconds(-5), "-5 s");
        assert_eq!(human_seconds_f(10.0), "10 s");
        assert_eq!(human_seconds_f(2.5), "2.5 s");
    }

    #[test]
    fn problems_carry_their_dotted_path() {
        let mut out = Vec::new();
        let mut p = Problems::new("S-07", &mut out);
        p.positive("max_age_seconds", 0.0);
        p.seconds_at_least("x", 0, 1);
        p.non_negative("y", f64::NAN);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].path(), "invariants.S-07.max_age_seconds");
        assert_eq!(out[1].message, "must be greater than 0 (got 0)");
        assert_eq!(
            out[2].to_string(),
            "invariants.S-07.y: must be a finite number, 0 or more (got NaN)"
        );
    }
}
