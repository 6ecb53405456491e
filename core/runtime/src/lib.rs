//! # Agency runtime
//!
//! The meaning of every message, implemented once for all agents and transports:
//! a [`Space`] joins agents through a transport; each agent's messages are validated,
//! routed (replies straight to the request waiting for them), checked against its access
//! policies, run between its callbacks, and answered with `[response]` or `[error]`
//! exactly as Python Agency does. Transports only move bytes and agent plugins only
//! implement actions; this crate decides what happens in between.
//!
//! - [`space`]: [`Space`], [`AgentSpec`], [`Catalog`], [`Foreground`].
//! - `endpoint`: one agent's sink and sender (validation, pending requests).
//! - `worker`: what one agent does with its messages (help, permissions, callbacks,
//!   replies), a turn at a time.
//! - [`scheduler`]: the pool of threads that runs agents' turns; waits hand the thread
//!   over.
//! - `direct`: a request's callee taking its turn on the requester's thread.
//! - `mailbox`: an agent's queue, bounded for deliveries from transport threads.
//! - `handover`: parsed messages passed through in-process transports without re-parsing.
//! - `chain`: request chains, so that a request cycle is answered at once.
//! - `id`, `error`, `message_log`, `wait`: agent ids' rules, the space's errors, foreground
//!   agents' message logs, spin-then-sleep waits (and the slot a request's reply is put
//!   in).
//! - `text`: [`printable`], for showing what other processes sent.
//! - [`tap`]: [`Tap`], copies of a space's traffic for whoever watches it.
//! - [`metrics`]: what a space counts ([`Space::metrics`]), for whoever shows it.
#![warn(missing_docs)]

mod chain;
mod direct;
mod endpoint;
mod error;
mod handover;
mod id;
mod mailbox;
mod message_log;
pub mod metrics;
pub mod scheduler;
pub mod space;
pub mod tap;
mod text;
mod wait;
mod worker;

#[cfg(test)]
mod tests;

pub use endpoint::{PermissionPrompt, SENT_LOG_CAPACITY};
pub use error::SpaceError;
pub use id::{validate_id, MAX_ID_BYTES};
pub use mailbox::{never_wait_here, MAILBOX_LIMIT};
pub use message_log::Subscription;
pub use space::{AgentFactory, AgentSpec, Catalog, Foreground, Space, DEFAULT_STOP_TIMEOUT};
pub use tap::Tap;
pub use text::printable;
pub use worker::HELP;

use agency_protocol::boundary::LogRecord;

/// Writes a log record that came from a plugin or an agent into the host's `tracing`
/// output under the record's own target (`lapin::io_loop`, `agency_transport_amqp`, ...),
/// so `RUST_LOG` filters it as if the code ran in the host, naming its source.
///
/// Targets are only known at run time; records with a run-time target travel the way
/// `tracing-log` carries the `log` crate's records, which the host's subscriber filters
/// and prints by their own target.
pub fn emit_log(source: &str, record: &LogRecord) {
    let level = match record.level.as_str() {
        "error" => log::Level::Error,
        "warn" => log::Level::Warn,
        "info" => log::Level::Info,
        "debug" => log::Level::Debug,
        _ => log::Level::Trace,
    };
    // A plugin's log line may quote what a peer sent (an id, a reason).
    let message = printable(&record.message);
    let _ = tracing_log::format_trace(
        &::log::Record::builder()
            .level(level)
            .target(&record.target)
            .args(format_args!("{message} source={source}"))
            .build(),
    );
}
