//! The message schema every agent speaks, on every transport.
//!
//! A message is `{"meta": {"id", "parent_id"?, ...}, "from", "to", "action": {"name",
//! "args"?}}`, exactly as in Python Agency: unknown keys at the top level or inside
//! `action` are refused, `meta` keeps any extra keys, `args` may be left out.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The recipient that means "every agent in the space".
pub const BROADCAST: &str = "*";
/// The action name of a reply carrying a value.
pub const RESPONSE: &str = "[response]";
/// The action name of a reply carrying an error.
pub const ERROR: &str = "[error]";

/// A message between agents.
///
/// ```
/// use agency_sdk::Message;
/// let text = r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"name":"say","args":{"content":"hi"}}}"#;
/// let message = Message::from_json(text).unwrap();
/// assert_eq!(message.action.name, "say");
/// assert!(Message::from_json(r#"{"to":"b"}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Identity and correlation data; extra keys pass through unchanged.
    pub meta: Meta,
    /// The sender's id.
    pub from: String,
    /// The recipient's id, or [`BROADCAST`].
    pub to: String,
    /// What the recipient is asked to do.
    pub action: Action,
}

/// The `meta` part of a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PartialMeta")]
pub struct Meta {
    /// The message's unique id (a UUID unless the sender chose one).
    pub id: String,
    /// The id of the message this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Any other keys, passed through unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `action` part of a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// The action's name.
    pub name: String,
    /// Named arguments.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub args: Map<String, Value>,
}

/// `meta` as read from JSON before the `id` rule is applied: an outgoing message may
/// leave `id` out (the sender's host fills it in), a delivered one may not.
///
/// Read in one pass, without building an intermediate map (the hot path of every message).
#[derive(Debug, Default)]
pub struct PartialMeta {
    /// `meta.id`, if given.
    pub id: Option<String>,
    /// `meta.parent_id`, if given.
    pub parent_id: Option<String>,
    /// Every other key.
    pub extra: Map<String, Value>,
}

impl<'de> Deserialize<'de> for PartialMeta {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetaVisitor;
        impl<'de> serde::de::Visitor<'de> for MetaVisitor {
            type Value = PartialMeta;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a meta object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PartialMeta, A::Error> {
                let mut meta = PartialMeta::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*key {
                        "id" => meta.id = Some(map.next_value()?),
                        "parent_id" => meta.parent_id = map.next_value()?,
                        _ => {
                            meta.extra.insert(key.into_owned(), map.next_value()?);
                        }
                    }
                }
                Ok(meta)
            }
        }
        deserializer.deserialize_map(MetaVisitor)
    }
}

impl TryFrom<PartialMeta> for Meta {
    type Error = &'static str;

    fn try_from(meta: PartialMeta) -> Result<Self, Self::Error> {
        let id = meta.id.ok_or("missing field `meta.id`")?;
        Ok(Meta {
            id,
            parent_id: meta.parent_id,
            extra: meta.extra,
        })
    }
}

impl Message {
    /// Parses and validates a message from JSON text, with a reason on failure.
    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("invalid message: {e}"))
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a message always serialises")
    }

    /// Whether the message is addressed to every agent.
    pub fn is_broadcast(&self) -> bool {
        self.to == BROADCAST
    }

    /// Whether the message is a `[response]` or `[error]` reply.
    pub fn is_reply(&self) -> bool {
        self.action.name == RESPONSE || self.action.name == ERROR
    }

    /// An unaddressed reply to this message: a `[response]` carrying `value`.
    ///
    /// ```
    /// # use agency_sdk::Message;
    /// # let question = Message::from_json(r#"{"meta":{"id":"q"},"from":"a","to":"b","action":{"name":"add"}}"#).unwrap();
    /// let reply = question.response(serde_json::json!(3));
    /// assert_eq!(reply["to"], "a");
    /// assert_eq!(reply["meta"]["parent_id"], "q");
    /// assert_eq!(reply["action"]["name"], "[response]");
    /// ```
    pub fn response(&self, value: Value) -> Value {
        self.reply(RESPONSE, "value", value)
    }

    /// An unaddressed reply to this message: an `[error]` carrying `"<Kind>: <text>"`.
    pub fn error_reply(&self, error: &str) -> Value {
        self.reply(ERROR, "error", Value::String(error.to_owned()))
    }

    fn reply(&self, name: &str, key: &str, value: Value) -> Value {
        serde_json::json!({
            "meta": {"parent_id": self.meta.id},
            "to": self.from,
            "action": {"name": name, "args": {key: value}},
        })
    }
}
