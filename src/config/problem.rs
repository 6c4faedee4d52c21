//! One configuration problem: a dotted key path and what is wrong there. A leaf: validation
//! (`validate.rs`, `custom.rs`), loading (`load.rs`) and the platform preflight
//! (`collect::preflight`) all report with it, so it depends on none of them.

use std::fmt;

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path (`platform.cascade[3].table`).
    pub path: String,
    /// What is wrong (never a secret's value).
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
