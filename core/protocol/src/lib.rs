//! # Agency protocol
//!
//! What the `agency` host and its plugins say to each other, typed: the implementation
//! layer between the frozen ABI (`agency-abi`, the interface: operation names and JSON
//! texts) and its two users, the host (runtime, loader) and the plugins (through
//! `agency-sdk`, which re-exports what plugin authors need and nothing else).
//!
//! - [`message`]: the message schema every agent speaks, on every transport, and the
//!   outgoing form an agent hands over for sending.
//! - [`ActionError`]: errors as values, `"<Kind>: <text>"` only on the wire.
//! - [`boundary`]: the traits host and plugins call each other through, one method per
//!   call.
//! - [`ffi`]: those calls as enums, encoded to and decoded from the ABI's pairs, and the
//!   wrappers between the traits and the ABI's boxes.
//! - [`spec`]: what a plugin provides (its manifest, agent types and actions).
//!
//! ```
//! use agency_protocol::{message::Outgoing, ActionError, Message};
//!
//! let question = Message::from_json(
//!     r#"{"meta":{"id":"q"},"from":"a","to":"b","action":{"name":"divide"}}"#,
//! ).unwrap();
//! let reply: Outgoing = question.error_reply(&ActionError::new("ValueError", "by zero"));
//! assert_eq!(reply.to, "a");
//! ```
#![warn(missing_docs)]

pub mod boundary;
mod error;
pub mod ffi;
pub mod message;
pub mod spec;

pub use error::{ActionError, Kind, UNSUPPORTED};
pub use message::Message;
