//! Errors an action reports: `"<Kind>: <text>"`, as in Python Agency.

use std::{error::Error as StdError, fmt};

/// The kinds of error the framework itself reports, each named on the wire as Python
/// Agency (or Python) names it, so a Python peer reads them as its own. An agent may
/// report any other kind: [`ActionError::new`] takes any name.
///
/// ```
/// use agency_protocol::{ActionError, Kind};
/// let error = ActionError::of(Kind::Timeout, "no reply");
/// assert_eq!(error.to_string(), "TimeoutError: no reply");
/// assert!(error.is(Kind::Timeout));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value of the wrong type (a message that is no JSON object, an argument).
    Type,
    /// A value of the right type that cannot be used (an invalid id, timeout, message).
    Value,
    /// An action the agent does not have.
    Attribute,
    /// An action its access policy, or the person asked, refused.
    Permission,
    /// A request not answered in time.
    Timeout,
    /// A request that closes a cycle of agents waiting for each other.
    Deadlock,
    /// A message no agent could receive.
    Undeliverable,
    /// The runtime cannot do what was asked (a destroyed space, no current message).
    Runtime,
    /// The transport refused or lost a message.
    Transport,
    /// A call the other side of the plugin boundary does not know.
    Unsupported,
}

impl Kind {
    /// The kind's name on the wire: `TimeoutError`, ...
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Type => "TypeError",
            Kind::Value => "ValueError",
            Kind::Attribute => "AttributeError",
            Kind::Permission => "PermissionError",
            Kind::Timeout => "TimeoutError",
            Kind::Deadlock => "DeadlockError",
            Kind::Undeliverable => "UndeliverableError",
            Kind::Runtime => "RuntimeError",
            Kind::Transport => "TransportError",
            Kind::Unsupported => "UnsupportedOperation",
        }
    }
}

/// The kind of the error for a call the other side of the plugin boundary does not know.
pub const UNSUPPORTED: &str = Kind::Unsupported.name();

/// An error sent back to the sender as an `[error]` reply, shaped `"<Kind>: <text>"`.
///
/// Any standard error converts with `?`; its kind is the error type's name. Text alone
/// becomes kind `Error` with [`ActionError::msg`]. It converts into `Box<dyn Error>` for
/// programs that use `?` on it.
///
/// ```
/// use agency_protocol::ActionError;
/// let error = ActionError::new("ValueError", "Something went wrong");
/// assert_eq!(error.to_string(), "ValueError: Something went wrong");
///
/// let parsed: Result<f64, _> = "x".parse::<f64>();
/// let error = ActionError::from(parsed.unwrap_err());
/// assert_eq!(error.to_string(), "ParseFloatError: invalid float literal");
///
/// assert_eq!(ActionError::msg("plain text").to_string(), "Error: plain text");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    kind: String,
    message: String,
}

impl ActionError {
    /// An error of the given kind (for example `ValueError`) and text.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// An error of one of the framework's own kinds.
    pub fn of(kind: Kind, message: impl Into<String>) -> Self {
        Self::new(kind.name(), message)
    }

    /// The error for an action agent `agent_id` does not have, worded as in Python
    /// Agency (the runtime and an agent plugin's own dispatch answer it alike).
    pub fn unknown_action(action: &str, agent_id: &str) -> Self {
        Self::of(
            Kind::Attribute,
            format!("\"{action}\" not found on \"{agent_id}\""),
        )
    }

    /// Whether it is of the framework's kind `kind`.
    pub fn is(&self, kind: Kind) -> bool {
        self.kind == kind.name()
    }

    /// An error of kind `Error` with this text.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::new("Error", message)
    }

    /// The kind, such as `ValueError`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The text after the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error for a call across the plugin boundary that this side does not know.
    pub fn unsupported(call: &str) -> Self {
        Self::of(Kind::Unsupported, format!("{call:?}"))
    }

    /// Whether the other side of the plugin boundary does not know the call: recognised by
    /// kind, and by the texts of older plugins (`RuntimeError: unsupported operation "x"`)
    /// and hosts (`unsupported operation "x"`).
    ///
    /// ```
    /// use agency_protocol::ActionError;
    /// assert!(ActionError::unsupported("after_add").is_unsupported());
    /// assert!(ActionError::parse("RuntimeError: unsupported operation \"x\"").is_unsupported());
    /// assert!(!ActionError::msg("unsupported").is_unsupported());
    /// ```
    pub fn is_unsupported(&self) -> bool {
        self.kind == UNSUPPORTED || self.message.starts_with("unsupported operation ")
    }

    /// Reads `"<Kind>: <text>"` back; text without a kind becomes kind `Error`.
    pub fn parse(text: &str) -> Self {
        match text.split_once(": ") {
            Some((kind, message)) if !kind.is_empty() && !kind.contains(' ') => {
                Self::new(kind, message)
            }
            _ => Self::new("Error", text),
        }
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for ActionError {
    fn from(error: E) -> Self {
        Self::new(
            short_type_name(std::any::type_name::<E>()),
            error.to_string(),
        )
    }
}

/// `core::num::ParseFloatError` → `ParseFloatError`.
fn short_type_name(full: &str) -> &str {
    let without_generics = full.split('<').next().unwrap_or(full);
    without_generics
        .rsplit("::")
        .next()
        .unwrap_or(without_generics)
}

/// An [`ActionError`] seen as a standard error (it cannot implement the trait itself,
/// since every standard error converts into it).
#[derive(Debug)]
struct StdActionError(ActionError);

impl fmt::Display for StdActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StdError for StdActionError {}

impl From<ActionError> for Box<dyn StdError + Send + Sync> {
    fn from(error: ActionError) -> Self {
        Box::new(StdActionError(error))
    }
}

impl From<ActionError> for Box<dyn StdError> {
    fn from(error: ActionError) -> Self {
        Box::new(StdActionError(error))
    }
}
