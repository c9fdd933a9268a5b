//! The CLI's error: a message for stderr and the exit code.

use maxi::MaxiError;

/// Exit code of bad usage, configs and inputs.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of failures while running.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of a run that finished without finding a valid explanation (outputs written).
pub const EXIT_NO_VALID: u8 = 3;
/// Exit code after Ctrl-C, SIGTERM or SIGHUP (the same handler stops the run).
pub const EXIT_INTERRUPTED: u8 = 130;

/// A failure of a command: what to print after `error: ` and the exit code.
#[derive(Debug, Clone)]
pub struct CliError {
    /// Exit code (2 usage, 1 runtime, 130 interrupted).
    pub code: u8,
    /// Message naming the problem and the fix.
    pub message: String,
}

impl CliError {
    /// A problem with what the user asked for (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// A failure while running (exit 1).
    pub fn runtime(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_RUNTIME,
            message: message.into(),
        }
    }

    /// The run was interrupted (exit 130).
    pub fn interrupted(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_INTERRUPTED,
            message: message.into(),
        }
    }

    /// A maxi error with a suffix telling where it comes from (e.g. `in [loss] of FILE`).
    pub fn from_maxi_in(e: MaxiError, context: &str) -> Self {
        let mut err = CliError::from(e);
        if !context.is_empty() {
            err.message = format!("{} ({context})", err.message);
        }
        err
    }
}

impl From<MaxiError> for CliError {
    fn from(e: MaxiError) -> Self {
        CliError {
            code: if e.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_RUNTIME
            },
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Result of a CLI step.
pub type CliResult<T> = Result<T, CliError>;
