//! The four data-shaped traits the host and plugins talk through.
//!
//! Each mirrors one object of the stable ABI (`agency-abi`) as a plain Rust trait. The host
//! runtime and plugin code only ever see these; [`crate::ffi`] converts them to and from
//! the ABI boxes at the library boundary.

use std::sync::Arc;

/// Host services for one agent: operations from [`crate::protocol::host_op`].
pub trait HostLink: Send + Sync {
    /// Runs one host operation; answers JSON text or a one-line error.
    fn call(&self, op: &str, payload: &str) -> Result<String, String>;
}

/// An agent instance, driven by the host with operations from
/// [`crate::protocol::agent_op`].
pub trait AgentCore: Send {
    /// Runs one operation; answers JSON text or a one-line error.
    fn call(&mut self, op: &str, payload: &str) -> Result<String, String>;
}

/// Where a transport delivers the message bodies addressed to one agent.
pub trait Inbound: Send + Sync {
    /// Hands over one message body (UTF-8 JSON text).
    fn deliver(&self, body: &str);
}

/// An open space on a transport: it moves bodies, it does not interpret them.
pub trait TransportSpace: Send + Sync {
    /// Attaches an agent id with the sink for its messages; refuses a duplicate id.
    fn attach(&self, agent_id: &str, sink: Arc<dyn Inbound>) -> Result<(), String>;
    /// Detaches an agent id; unknown ids are ignored.
    fn detach(&self, agent_id: &str);
    /// Publishes `body` to agent `to`, or to every attached agent when `to` is `*`.
    /// A message to an id nobody attached is dropped (actor semantics).
    fn publish(&self, to: &str, body: &str) -> Result<(), String>;
    /// Releases the space.
    fn close(&self);
}
