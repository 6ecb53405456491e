//! How the process ends: the exit codes both `agency run` and `agency watch` use.

use std::process::ExitCode;

/// Ended by Ctrl-C: 130 (128 + SIGINT), as a shell reports it.
pub fn interrupted() -> ExitCode {
    ExitCode::from(130)
}
