//! Typed action arguments: reading them from `action.args` with errors that name the
//! argument and the expected JSON type, and describing them for `help`.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{ActionError, Kind};

/// Reads an action's arguments one by one; used by the code [`crate::actions`] generates.
#[doc(hidden)]
pub struct ArgReader<'a> {
    action: &'a str,
    args: &'a Map<String, Value>,
    taken: usize,
}

impl<'a> ArgReader<'a> {
    /// Starts reading the arguments of `action`.
    pub fn new(action: &'a str, args: &'a Map<String, Value>) -> Self {
        Self {
            action,
            args,
            taken: 0,
        }
    }

    /// Takes an argument that must be present.
    pub fn required<T: DeserializeOwned + JsonSchema>(
        &mut self,
        name: &str,
    ) -> Result<T, ActionError> {
        match self.optional(name)? {
            Some(value) => Ok(value),
            None => Err(ActionError::of(
                Kind::Type,
                format!(
                    "{}() missing argument \"{name}\" ({})",
                    self.action,
                    json_type::<T>()
                ),
            )),
        }
    }

    /// Takes an argument that may be absent (or `null`).
    pub fn optional<T: DeserializeOwned + JsonSchema>(
        &mut self,
        name: &str,
    ) -> Result<Option<T>, ActionError> {
        let value = self.args.get(name);
        self.taken += usize::from(value.is_some());
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::deserialize(value).map(Some).map_err(|error| {
                let (expected, got) = (json_type::<T>(), describe(value));
                // Of the right JSON type but wrong inside (a missing field, a number out
                // of range): serde's reason says what.
                let text = if got.split(' ').next() == Some(expected.as_str()) {
                    format!(
                        "argument \"{name}\" of {}() is not a valid {expected}: {error}",
                        self.action
                    )
                } else {
                    format!(
                        "argument \"{name}\" of {}() must be {expected}, got {got}",
                        self.action
                    )
                };
                ActionError::of(Kind::Type, text)
            }),
        }
    }

    /// Fails if there are arguments other than `expected`, the action's parameters.
    pub fn finish(self, expected: &[&str]) -> Result<(), ActionError> {
        if self.taken == self.args.len() {
            return Ok(());
        }
        match self
            .args
            .keys()
            .find(|key| !expected.contains(&key.as_str()))
        {
            None => Ok(()),
            Some(extra) => Err(ActionError::of(
                Kind::Type,
                format!("{}() got an unexpected argument \"{extra}\"", self.action),
            )),
        }
    }
}

/// The JSON Schema of `T`.
pub fn schema<T: JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}

/// The Agency type name of `T`: `string`, `number`, `boolean`, `array`, `object`, `null`
/// or `any`.
///
/// ```
/// use agency_sdk::json_type;
/// assert_eq!(json_type::<f64>(), "number");
/// assert_eq!(json_type::<u8>(), "number");
/// assert_eq!(json_type::<Option<String>>(), "string");
/// assert_eq!(json_type::<Vec<i32>>(), "array");
/// assert_eq!(json_type::<serde_json::Value>(), "any");
/// ```
pub fn json_type<T: JsonSchema>() -> String {
    let schema = schema::<T>();
    let names: Vec<&str> = match schema.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    match names.into_iter().find(|name| *name != "null") {
        Some("integer") => "number".to_owned(),
        Some(name) => name.to_owned(),
        None if schema.get("type") == Some(&Value::String("null".into())) => "null".to_owned(),
        None => "any".to_owned(),
    }
}

/// `string "x"`, `number 3`, `object`: a short description of a value for error texts.
fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".to_owned(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => return "array".to_owned(),
        Value::Object(_) => return "object".to_owned(),
    };
    let mut text = value.to_string();
    if text.len() > 40 {
        text.truncate(text.char_indices().nth(37).map_or(text.len(), |(i, _)| i));
        text.push_str("...");
    }
    format!("{kind} {text}")
}
