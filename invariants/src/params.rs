//! Tunable thresholds, one struct per invariant, keyed by catalog id in configuration
//! (`invariants: { S-01: { grace_seconds: 3 } }`). Defaults are DESIGN.md §5's numbers.
//!
//! Every struct carries `enabled` and an optional `severity` override beside its thresholds,
//! and rejects unknown keys so a typo in the config file is an error, not a silently ignored knob.

use serde::{Deserialize, Serialize};

use crate::violation::Severity;

/// All thresholds, by invariant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// S-01 slot–row bijection.
    #[serde(rename = "S-01")]
    pub s01: S01Params,
    /// E-02 no phantom reversal.
    #[serde(rename = "E-02")]
    pub e02: E02Params,
    /// L-03 delete cascades.
    #[serde(rename = "L-03")]
    pub l03: L03Params,
    /// S-03 slot TTL floor.
    #[serde(rename = "S-03")]
    pub s03: S03Params,
    /// S-02 no overbooking.
    #[serde(rename = "S-02")]
    pub s02: S02Params,
    /// S-07 sentinel lifetime bounded.
    #[serde(rename = "S-07")]
    pub s07: S07Params,
    /// E-01 terminal-state closure.
    #[serde(rename = "E-01")]
    pub e01: E01Params,
    /// B-05 stale queued rows expire.
    #[serde(rename = "B-05")]
    pub b05: B05Params,
    /// G-03 clock sanity.
    #[serde(rename = "G-03")]
    pub g03: G03Params,
    /// H-01 collector not blind.
    #[serde(rename = "H-01")]
    pub h01: H01Params,
    /// B-02 no queued without full slots.
    #[serde(rename = "B-02")]
    pub b02: B02Params,
    /// S-04 metadata–membership consistency.
    #[serde(rename = "S-04")]
    pub s04: S04Params,
    /// E-03 completed rows populated.
    #[serde(rename = "E-03")]
    pub e03: E03Params,
    /// E-04 queued rows have metadata.
    #[serde(rename = "E-04")]
    pub e04: E04Params,
    /// E-05 dispatched rows have a session.
    #[serde(rename = "E-05")]
    pub e05: E05Params,
    /// E-06 no overdue next run.
    #[serde(rename = "E-06")]
    pub e06: E06Params,
    /// G-04 no credentials in backlog metadata.
    #[serde(rename = "G-04")]
    pub g04: G04Params,
}

impl Params {
    /// Whether an invariant is enabled (unknown ids are not).
    pub fn enabled(&self, id: &str) -> bool {
        self.common(id).is_some_and(|c| c.0)
    }

    /// The configured severity override for an invariant, if any.
    pub fn severity_override(&self, id: &str) -> Option<Severity> {
        self.common(id).and_then(|c| c.1)
    }

    fn common(&self, id: &str) -> Option<(bool, Option<Severity>)> {
        match id {
            "S-01" => Some((self.s01.enabled, self.s01.severity)),
            "E-02" => Some((self.e02.enabled, self.e02.severity)),
            "L-03" => Some((self.l03.enabled, self.l03.severity)),
            "S-03" => Some((self.s03.enabled, self.s03.severity)),
            "S-02" => Some((self.s02.enabled, self.s02.severity)),
            "S-07" => Some((self.s07.enabled, self.s07.severity)),
            "E-01" => Some((self.e01.enabled, self.e01.severity)),
            "B-05" => Some((self.b05.enabled, self.b05.severity)),
            "G-03" => Some((self.g03.enabled, self.g03.severity)),
            "H-01" => Some((self.h01.enabled, self.h01.severity)),
            "B-02" => Some((self.b02.enabled, self.b02.severity)),
            "S-04" => Some((self.s04.enabled, self.s04.severity)),
            "E-03" => Some((self.e03.enabled, self.e03.severity)),
            "E-04" => Some((self.e04.enabled, self.e04.severity)),
            "E-05" => Some((self.e05.enabled, self.e05.severity)),
            "E-06" => Some((self.e06.enabled, self.e06.severity)),
            "G-04" => Some((self.g04.enabled, self.g04.severity)),
            _ => None,
        }
    }
}

/// S-01 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S01Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// Ids younger than this (by `started_at` or slot score) are not reported: the platform
    /// commits SQL and ZADDs a few ms apart.
    pub grace_seconds: f64,
}

impl Default for S01Params {
    fn default() -> Self {
        S01Params {
            enabled: true,
            severity: None,
            grace_seconds: 3.0,
        }
    }
}

/// E-02 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct E02Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// Terminal rows completed within this window are remembered.
    pub window_seconds: i64,
    /// Remembered ids are forgotten this long after they were first seen.
    pub retention_seconds: i64,
}

impl Default for E02Params {
    fn default() -> Self {
        E02Params {
            enabled: true,
            severity: None,
            window_seconds: 1800,
            retention_seconds: 3600,
        }
    }
}

/// L-03 settings (its per-table severities live in the cascade list of the platform config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct L03Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace every violation's severity (otherwise critical for live orchestration, major for the rest).
    pub severity: Option<Severity>,
}

impl Default for L03Params {
    fn default() -> Self {
        L03Params {
            enabled: true,
            severity: None,
        }
    }
}

/// S-03 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S03Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// The platform sets the slot TTL to `timeout_seconds + buffer_seconds` at acquire.
    pub buffer_seconds: i64,
    /// Rounding tolerance subtracted from the floor.
    pub tolerance_seconds: f64,
}

impl Default for S03Params {
    fn default() -> Self {
        S03Params {
            enabled: true,
            severity: None,
            buffer_seconds: 300,
            tolerance_seconds: 1.0,
        }
    }
}

/// S-02 settings (the cap is each agent's own `max_parallel_tasks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S02Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
}

impl Default for S02Params {
    fn default() -> Self {
        S02Params {
            enabled: true,
            severity: None,
        }
    }
}

/// S-07 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S07Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// A drain sentinel this old (or older) is stale.
    pub max_age_seconds: f64,
}

impl Default for S07Params {
    fn default() -> Self {
        S07Params {
            enabled: true,
            severity: None,
            max_age_seconds: 10.0,
        }
    }
}

/// E-01 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct E01Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// Added to the agent's execution timeout before a running row counts as stale.
    pub buffer_seconds: i64,
    /// Leased rows are excused until their lease has been expired this long (the reaper's window).
    pub lease_grace_seconds: i64,
}

impl Default for E01Params {
    fn default() -> Self {
        E01Params {
            enabled: true,
            severity: None,
            buffer_seconds: 300,
            lease_grace_seconds: 600,
        }
    }
}

/// B-05 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct B05Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// A queued row older than this should have been expired by the platform (24 h + 60 s).
    pub max_age_seconds: i64,
}

impl Default for B05Params {
    fn default() -> Self {
        B05Params {
            enabled: true,
            severity: None,
            max_age_seconds: 86_460,
        }
    }
}

/// G-03 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct G03Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// `started_at` may exceed `completed_at` by this much (rounding between writers).
    pub tolerance_seconds: f64,
}

impl Default for G03Params {
    fn default() -> Self {
        G03Params {
            enabled: true,
            severity: None,
            tolerance_seconds: 1.0,
        }
    }
}

/// H-01 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct H01Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// The suspicion must last this long before it is reported (one cycle interval).
    pub confirm_after_seconds: i64,
}

impl Default for H01Params {
    fn default() -> Self {
        H01Params {
            enabled: true,
            severity: None,
            confirm_after_seconds: 300,
        }
    }
}

/// B-02 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct B02Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// Queued rows younger than this do not count (dispatch may take that long to claim a slot).
    pub grace_seconds: i64,
    /// A drain heartbeat younger than this means the sweep is alive: nothing is judged.
    pub heartbeat_max_age_seconds: i64,
}

impl Default for B02Params {
    fn default() -> Self {
        B02Params {
            enabled: true,
            severity: None,
            grace_seconds: 60,
            heartbeat_max_age_seconds: 60,
        }
    }
}

/// S-04 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S04Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace every violation's severity (otherwise critical for a member without metadata,
    /// major for metadata without a member).
    pub severity: Option<Severity>,
    /// A member whose slot score is younger than this is not reported without metadata: the
    /// platform ZADDs, then writes the hash a few ms later.
    pub grace_seconds: f64,
}

impl Default for S04Params {
    fn default() -> Self {
        S04Params {
            enabled: true,
            severity: None,
            grace_seconds: 3.0,
        }
    }
}

/// E-03 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct E03Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// Terminal rows started within this window are judged (the collector reads terminal rows
    /// of the larger of this and E-02's window).
    pub window_seconds: i64,
    /// Terminal status words that legitimately have no `completed_at` (the row never ran).
    pub exempt_statuses: Vec<String>,
}

impl Default for E03Params {
    fn default() -> Self {
        E03Params {
            enabled: true,
            severity: None,
            window_seconds: 1800,
            exempt_statuses: vec!["skipped".to_owned()],
        }
    }
}

/// E-04 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct E04Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
}

impl Default for E04Params {
    fn default() -> Self {
        E04Params {
            enabled: true,
            severity: None,
        }
    }
}

/// E-05 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct E05Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// A running row older than this (by `started_at`) must have a session id.
    pub max_age_seconds: i64,
}

impl Default for E05Params {
    fn default() -> Self {
        E05Params {
            enabled: true,
            severity: None,
            max_age_seconds: 60,
        }
    }
}

/// E-06 thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct E06Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
    /// An enabled schedule's `next_run_at` may lie this far in the past (the scheduler's slack).
    pub max_overdue_seconds: i64,
}

impl Default for E06Params {
    fn default() -> Self {
        E06Params {
            enabled: true,
            severity: None,
            max_overdue_seconds: 3600,
        }
    }
}

/// G-04 settings (the credential patterns are fixed in the collector, which scans the metadata
/// so its text never enters the snapshot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct G04Params {
    /// Run this invariant.
    pub enabled: bool,
    /// Replace the default severity.
    pub severity: Option<Severity>,
}

impl Default for G04Params {
    fn default() -> Self {
        G04Params {
            enabled: true,
            severity: None,
        }
    }
}

/// Seconds (possibly fractional) to whole milliseconds, saturating.
pub(crate) fn seconds_to_ms(seconds: f64) -> i64 {
    if seconds.is_finite() {
        // `as` saturates for out-of-range floats, which is what a threshold wants.
        (seconds * 1000.0).round() as i64
    } else if seconds > 0.0 {
        i64::MAX
    } else {
        0
    }
}
