//! The four traits the host and plugins talk through, typed.
//!
//! Each mirrors one object of the stable ABI (`agency-abi`) as a plain Rust trait with one
//! method per call. The host runtime and plugin code only ever see these; [`crate::ffi`]
//! turns the calls into the ABI's `(operation, JSON)` pairs and back at the library
//! boundary, so an agent in the host binary and one in a plugin are driven alike.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{message::duplicate_id, spec::PluginMetrics, ActionError};

/// What the host offers one agent: sending, requests, the permission prompt, its sent
/// messages and logging.
pub trait HostLink: Send + Sync {
    /// Sends a message (`from` and `meta.id` may be left out: the host fills them in);
    /// answers its id.
    fn send(&self, message: &str) -> Result<String, ActionError>;
    /// Sends a message and waits up to `timeout_secs` (any `f64`: the host checks it) for
    /// the value of its `[response]`; an `[error]` reply or the timeout is an error.
    fn request(&self, message: Value, timeout_secs: f64) -> Result<Value, ActionError>;
    /// [`HostLink::request`] with the message as JSON text, read once by the host
    /// instead of going through a [`Value`]. The default (a host from before this call)
    /// reads it into a [`Value`] and calls [`HostLink::request`].
    fn request_text(&self, message: &str, timeout_secs: f64) -> Result<Value, ActionError> {
        let message = serde_json::from_str(message).map_err(|e| {
            ActionError::of(crate::Kind::Type, format!("a request must be JSON: {e}"))
        })?;
        self.request(message, timeout_secs)
    }
    /// Sends every message at once, then waits up to `timeout_secs` in all for their
    /// replies; answers each one's outcome as [`HostLink::request`] would, in order.
    ///
    /// The default makes the requests one after the other (a host from before this call).
    fn request_all(
        &self,
        messages: Vec<Value>,
        timeout_secs: f64,
    ) -> Vec<Result<Value, ActionError>> {
        one_by_one(self, messages, timeout_secs)
    }
    /// Asks the space's permission prompt whether the message may run.
    fn ask_permission(&self, message: &str) -> Result<bool, ActionError>;
    /// The text of a message this agent sent, by id, if the host still remembers it.
    fn sent_message(&self, id: &str) -> Result<Option<String>, ActionError>;
    /// Writes a log record on the host's log.
    fn log(&self, record: &LogRecord) -> Result<(), ActionError>;
    /// Hands the host what the plugin counts about itself (see [`PluginMetrics`]); the
    /// latest report replaces the one before. Only the host a plugin got at its
    /// initialisation takes it; the default (and a host from before it) refuses it as
    /// unsupported.
    fn report_metrics(&self, metrics: &PluginMetrics) -> Result<(), ActionError> {
        let _ = metrics;
        Err(ActionError::unsupported("metrics"))
    }
}

/// [`HostLink::request_all`] for a host that can only make one request at a time.
pub(crate) fn one_by_one(
    host: &(impl HostLink + ?Sized),
    messages: Vec<Value>,
    timeout_secs: f64,
) -> Vec<Result<Value, ActionError>> {
    messages
        .into_iter()
        .map(|message| host.request(message, timeout_secs))
        .collect()
}

/// An agent instance, driven by the host. Messages are passed as the JSON text they
/// arrived as: the agent reads what it needs of them.
pub trait AgentCore: Send {
    /// The agent is in the space now.
    fn after_add(&mut self) -> Result<(), ActionError>;
    /// The agent is about to leave the space.
    fn before_remove(&mut self) -> Result<(), ActionError>;
    /// Decides whether the `requested` action in `message` may run.
    fn request_permission(&mut self, message: &str) -> Result<bool, ActionError>;
    /// A permitted action is about to run.
    fn before_action(&mut self, message: &str) -> Result<(), ActionError>;
    /// Runs the action in `message`; answers the value to reply with, if any.
    fn action(&mut self, message: &str) -> Result<Option<Value>, ActionError>;
    /// The action of the last [`AgentCore::action`] ended with this outcome.
    fn after_action(
        &mut self,
        outcome: &Result<Option<Value>, ActionError>,
    ) -> Result<(), ActionError>;
    /// A `[response]` arrived that no pending request was waiting for.
    fn handle_action_value(&mut self, message: &str) -> Result<(), ActionError>;
    /// An `[error]` arrived that no pending request was waiting for.
    fn handle_action_error(&mut self, message: &str) -> Result<(), ActionError>;
}

/// Where a transport delivers the message bodies addressed to one agent.
pub trait Inbound: Send + Sync {
    /// Hands over one message body (UTF-8 JSON text).
    fn deliver(&self, body: &str);
}

/// Why a transport did not attach an agent or publish a body.
///
/// Across the library boundary it travels as its text (the ABI is frozen); the host
/// reads a refused id back from [`duplicate_id`]'s wording, which every transport uses.
///
/// ```
/// use agency_protocol::boundary::TransportError;
///
/// let taken = TransportError::DuplicateId { id: "Chat".into(), detail: None };
/// assert_eq!(taken.to_string(), "Agent 'Chat' already exists");
/// assert_eq!(TransportError::read("Chat", &taken.to_string()), taken);
/// let down = TransportError::from("the local space is closed".to_owned());
/// assert_eq!(TransportError::read("Chat", &down.to_string()), down);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Another agent holds the id: in this space, or on a shared broker in another
    /// process (then `detail` says where).
    DuplicateId {
        /// The id asked for.
        id: String,
        /// Where it is held, if the transport knows.
        detail: Option<String>,
    },
    /// Anything else, as the transport words it: the space is closed, the broker is
    /// unreachable or refuses, the outbox is full, an id is too long for the broker.
    Failed(String),
}

impl TransportError {
    /// Reads back the text of an error about agent `agent_id` that crossed the library
    /// boundary.
    pub fn read(agent_id: &str, text: &str) -> Self {
        let taken = duplicate_id(agent_id);
        match text.strip_prefix(taken.as_str()) {
            Some("") => Self::DuplicateId {
                id: agent_id.to_owned(),
                detail: None,
            },
            Some(rest) if rest.starts_with(": ") => Self::DuplicateId {
                id: agent_id.to_owned(),
                detail: Some(rest[2..].to_owned()),
            },
            _ => Self::Failed(text.to_owned()),
        }
    }
}

/// `Agent 'Chat' already exists[: detail]`, or the transport's own words.
impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DuplicateId { id, detail: None } => f.write_str(&duplicate_id(id)),
            Self::DuplicateId {
                id,
                detail: Some(detail),
            } => write!(f, "{}: {detail}", duplicate_id(id)),
            Self::Failed(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for TransportError {}

impl From<String> for TransportError {
    fn from(text: String) -> Self {
        Self::Failed(text)
    }
}

impl From<&str> for TransportError {
    fn from(text: &str) -> Self {
        Self::Failed(text.to_owned())
    }
}

/// An open space on a transport: it moves bodies, it does not interpret them.
pub trait TransportSpace: Send + Sync {
    /// Attaches an agent id with the sink for its messages; refuses a duplicate id
    /// ([`TransportError::DuplicateId`]).
    fn attach(&self, agent_id: &str, sink: Arc<dyn Inbound>) -> Result<(), TransportError>;
    /// Detaches an agent id; unknown ids are ignored.
    fn detach(&self, agent_id: &str);
    /// Publishes `body` to agent `to`, or to every attached agent when `to` is `*`.
    ///
    /// A body for an id no agent holds is *returned*: delivered, now or later, to the
    /// sink of the agent its `from` names ([`crate::message::sender_of`]) if that agent is
    /// attached to this space, else dropped. The runtime turns it into an
    /// `UndeliverableError` reply to its sender.
    fn publish(&self, to: &str, body: &str) -> Result<(), TransportError>;
    /// Releases the space.
    fn close(&self);
}

/// One log record a plugin forwards to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// The event's target (module path).
    pub target: String,
    /// The formatted message and fields.
    pub message: String,
}
