//! [`Outgoing`]: a message as an agent hands it over for sending, before the host fills
//! in `from` and `meta.id`.

use agency_sdk::message::{Action, PartialMeta};
use serde::Deserialize;
use serde_json::Value;

/// A message as an agent sends it: `from` and `meta` (or `meta.id`) may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a message object")]
pub(crate) struct Outgoing {
    #[serde(default)]
    pub meta: PartialMeta,
    pub from: Option<String>,
    pub to: String,
    pub action: Action,
}

impl Outgoing {
    /// Reads an outgoing message from JSON text.
    pub fn from_json(text: &str) -> Result<Self, String> {
        if !text.trim_start().starts_with('{') {
            return Err(NOT_AN_OBJECT.into());
        }
        serde_json::from_str(text).map_err(|e| format!("ValueError: invalid message: {e}"))
    }

    /// Reads an outgoing message from a JSON value.
    pub fn from_value(value: Value) -> Result<Self, String> {
        if !value.is_object() {
            return Err(NOT_AN_OBJECT.into());
        }
        serde_json::from_value(value).map_err(|e| format!("ValueError: invalid message: {e}"))
    }
}

/// Serde would read a JSON array as a struct's fields in order; a message must be an object.
const NOT_AN_OBJECT: &str = "TypeError: a message must be a JSON object";
