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
//! - `worker`: one agent's thread (help, permissions, callbacks, replies).
//! - `mailbox`: an agent's queue, bounded for deliveries from transport threads.
//! - `handover`: parsed messages passed through in-process transports without re-parsing.
//! - `outgoing`, `log`, `wait`: outgoing messages, foreground logs, spin-then-sleep waits.
#![warn(missing_docs)]

mod endpoint;
mod error;
mod handover;
mod id;
mod log;
mod mailbox;
mod outgoing;
pub mod space;
mod wait;
mod worker;

pub use endpoint::{PermissionPrompt, SENT_LOG_CAPACITY};
pub use error::SpaceError;
pub use id::{validate_id, RESERVED_BROADCAST_KEY};
pub use mailbox::MAILBOX_LIMIT;
pub use space::{AgentFactory, AgentSpec, Catalog, Foreground, Space, DEFAULT_STOP_TIMEOUT};
pub use worker::HELP;

use agency_sdk::protocol::LogRecord;

/// Writes a log record that came from a plugin or an agent into the host's `tracing`
/// output, naming its source.
pub fn emit_log(source: &str, record: &LogRecord) {
    let (target, message) = (record.target.as_str(), record.message.as_str());
    match record.level.as_str() {
        "error" => tracing::error!(source, target, "{message}"),
        "warn" => tracing::warn!(source, target, "{message}"),
        "info" => tracing::info!(source, target, "{message}"),
        "debug" => tracing::debug!(source, target, "{message}"),
        _ => tracing::trace!(source, target, "{message}"),
    }
}
