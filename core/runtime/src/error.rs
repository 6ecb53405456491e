//! [`SpaceError`]: what can go wrong when managing agents in a space.

/// An error from a [`crate::Space`] operation, worded for the person who has to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpaceError {
    /// The id breaks the id rules (see [`crate::validate_id`]).
    #[error("invalid agent id {id:?}: {reason}")]
    InvalidId {
        /// The id given.
        id: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// An agent with this id is already in the space (worded as in Python Agency).
    #[error("{}", agency_protocol::message::duplicate_id(.0))]
    DuplicateId(String),
    /// `remove` of an id that is not in this space.
    #[error("no agent '{0}' in this space")]
    UnknownAgent(String),
    /// No plugin or built-in provides this agent type.
    #[error("unknown agent type {name:?}; known types: {known}")]
    UnknownType {
        /// The type asked for.
        name: String,
        /// The types available, comma-separated.
        known: String,
    },
    /// Two agent types of one name (in a catalogue of types).
    #[error("agent type {0:?} is provided twice")]
    DuplicateType(String),
    /// A background agent needs a type.
    #[error("agent '{0}' has no type; only foreground agents may be untyped")]
    MissingType(String),
    /// The agent's constructor failed.
    #[error("agent '{id}' of type {type_name} could not be created: {reason}")]
    Create {
        /// The agent id.
        id: String,
        /// Its type.
        type_name: String,
        /// What the constructor said.
        reason: String,
    },
    /// The transport refused the agent (for example an id taken on another host).
    #[error("transport refused agent '{id}': {reason}")]
    Attach {
        /// The agent id.
        id: String,
        /// What the transport said.
        reason: agency_protocol::boundary::TransportError,
    },
    /// The space was destroyed; open a new one.
    #[error("the space has been destroyed")]
    Destroyed,
}
