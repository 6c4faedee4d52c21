//! What a broken invariant produces: [`Violation`], plus the small vocabulary around it
//! (tier, severity, per-invariant outcome).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A: must hold at every instant. B: must reconcile within a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    /// Must hold at every instant.
    A,
    /// Must reconcile within a bound.
    B,
}

impl Tier {
    /// `"A"` or `"B"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::A => "A",
            Tier::B => "B",
        }
    }

    /// Parses `A` or `B` (either case).
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "A" | "a" => Some(Tier::A),
            "B" | "b" => Some(Tier::B),
            _ => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How loudly a violation should be treated. Ordered: `Minor < Major < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Minor,
    /// Something is degrading.
    Major,
    /// Live orchestration is wrong right now.
    Critical,
}

impl Severity {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "minor" => Some(Severity::Minor),
            "major" => Some(Severity::Major),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per invariant and cycle: evaluated and fine, evaluated and broken, or not evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Evaluated, no violation.
    Green,
    /// Evaluated, at least one violation.
    Red,
    /// Not evaluated: a source or column it needs was unavailable. Never counts as green.
    Unknown,
}

impl Outcome {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Green => "green",
            Outcome::Red => "red",
            Outcome::Unknown => "unknown",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "green" => Some(Outcome::Green),
            "red" => Some(Outcome::Red),
            "unknown" => Some(Outcome::Unknown),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken subject of one invariant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// Catalog id, e.g. `S-01`.
    pub invariant_id: String,
    /// The invariant's tier.
    pub tier: Tier,
    /// Severity of this violation (an invariant may split severities by subject, e.g. L-03).
    pub severity: Severity,
    /// What is broken: an agent name, an execution id, a slot member.
    pub subject: String,
    /// One human line.
    pub summary: String,
    /// JSON evidence.
    pub observed_state: serde_json::Value,
    /// Short machine-readable reason code, e.g. `in_redis_only`, `below_floor`, `reversal`.
    pub signal: String,
}

impl Violation {
    /// Sort key making evaluation output independent of input order.
    pub(crate) fn sort_key(&self) -> (&str, &str, &str, &str) {
        (
            &self.invariant_id,
            &self.subject,
            &self.signal,
            &self.summary,
        )
    }
}
