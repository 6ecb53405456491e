//! Errors an action reports: `"<Kind>: <text>"`, as in Python Agency.

use std::{error::Error as StdError, fmt};

/// An error sent back to the sender as an `[error]` reply, shaped `"<Kind>: <text>"`.
///
/// Any standard error converts with `?`; its kind is the error type's name.
///
/// ```
/// use agency_sdk::ActionError;
/// let error = ActionError::new("ValueError", "Something went wrong");
/// assert_eq!(error.to_string(), "ValueError: Something went wrong");
///
/// let parsed: Result<f64, _> = "x".parse::<f64>();
/// let error = ActionError::from(parsed.unwrap_err());
/// assert_eq!(error.to_string(), "ParseFloatError: invalid float literal");
///
/// assert_eq!(ActionError::from("plain text").to_string(), "Error: plain text");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionError {
    kind: String,
    message: String,
}

impl ActionError {
    /// An error of the given kind (for example `ValueError`) and text.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self { kind: kind.into(), message: message.into() }
    }

    /// The kind, such as `ValueError`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The text after the kind.
    pub fn message(&self) -> &str {
        &self.message
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

impl<E> From<E> for ActionError
where
    E: Into<Box<dyn StdError + Send + Sync>>,
{
    fn from(error: E) -> Self {
        let kind = short_type_name(std::any::type_name::<E>());
        let message = error.into().to_string();
        Self::new(kind, message)
    }
}

/// `alloc::string::String` → `Error`, `core::num::ParseFloatError` → `ParseFloatError`.
fn short_type_name(full: &str) -> String {
    let without_generics = full.split('<').next().unwrap_or(full);
    let last = without_generics.rsplit("::").next().unwrap_or(without_generics);
    match last.trim_start_matches('&').trim_start_matches("'static ") {
        "String" | "str" | "Box" | "Cow" => "Error".to_owned(),
        name => name.to_owned(),
    }
}
