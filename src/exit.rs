//! Process exit codes and the one mapping from a failure to its code.
//!
//! `main.rs` turns the outcome of a subcommand into a code here and nowhere else: a verdict via
//! [`ExitCode::of_verdict`], an error via [`ExitCode::of_error`]. [`ConfigFailure`] lives here
//! because it is the error every layer (CLI, daemon start-up, fleet) raises for "exit 78".
//!
//! It must not print, log or know about `anyhow`: the binary edge hands it a plain error chain.

use canary_invariants::Outcome;

use crate::cycle::CycleError;

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything evaluated and green, or a command succeeded.
    Green = 0,
    /// At least one invariant red.
    Red = 1,
    /// Something could not be evaluated (a source unavailable) and nothing was red.
    Unknown = 2,
    /// Any other failure (state DB, cycle in progress).
    Failure = 3,
    /// Configuration error (sysexits `EX_CONFIG`).
    Config = 78,
}

impl ExitCode {
    /// The exit code of an error escaping a subcommand: [`ExitCode::Config`] when the error or
    /// anything in its source chain is a [`ConfigFailure`] or an unknown invariant id, else
    /// [`ExitCode::Failure`]. The whole chain is searched so added context never changes a code.
    pub fn of_error(error: &(dyn std::error::Error + 'static)) -> ExitCode {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.is::<ConfigFailure>()
                || matches!(
                    e.downcast_ref::<CycleError>(),
                    Some(CycleError::UnknownInvariants(_))
                )
            {
                return ExitCode::Config;
            }
            next = e.source();
        }
        ExitCode::Failure
    }

    /// The exit code of a cycle's overall verdict.
    pub fn of_verdict(verdict: Outcome) -> ExitCode {
        match verdict {
            Outcome::Green => ExitCode::Green,
            Outcome::Red => ExitCode::Red,
            Outcome::Unknown => ExitCode::Unknown,
        }
    }
}

/// Every configuration problem found (exit 78).
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigFailure(pub Vec<String>);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("starting")]
    struct Wrapper(#[source] ConfigFailure);

    #[test]
    fn config_failures_anywhere_in_the_chain_exit_78() {
        let direct = ConfigFailure(vec!["a".into()]);
        assert_eq!(ExitCode::of_error(&direct), ExitCode::Config);
        let wrapped = Wrapper(ConfigFailure(vec!["a".into()]));
        assert_eq!(ExitCode::of_error(&wrapped), ExitCode::Config);
        let unknown = CycleError::UnknownInvariants(vec!["X-1".into()]);
        assert_eq!(ExitCode::of_error(&unknown), ExitCode::Config);
    }

    #[test]
    fn other_errors_exit_3() {
        assert_eq!(
            ExitCode::of_error(&CycleError::InProgress(None)),
            ExitCode::Failure
        );
        let io = std::io::Error::other("boom");
        assert_eq!(ExitCode::of_error(&io), ExitCode::Failure);
    }

    #[test]
    fn verdicts_map_to_0_1_2() {
        assert_eq!(ExitCode::of_verdict(Outcome::Green) as u8, 0);
        assert_eq!(ExitCode::of_verdict(Outcome::Red) as u8, 1);
        assert_eq!(ExitCode::of_verdict(Outcome::Unknown) as u8, 2);
    }
}
