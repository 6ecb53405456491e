//! The message schema every agent speaks, on every transport.
//!
//! A message is `{"meta": {"id", "parent_id"?, ...}, "from", "to", "action": {"name",
//! "args"?}}`, exactly as in Python Agency: unknown keys at the top level or inside
//! `action` are refused, `meta` keeps any extra keys, `args` may be left out.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ActionError, Kind};

/// The recipient that means "every agent in the space".
pub const BROADCAST: &str = "*";
/// The routing key transports may use for broadcasts; no agent may take it as its id.
pub const BROADCAST_KEY: &str = "__broadcast__";
/// The kind of the error a sender gets back for a message no agent could receive.
pub const UNDELIVERABLE: &str = Kind::Undeliverable.name();
/// The action name of a reply carrying a value.
pub const RESPONSE: &str = "[response]";
/// The action name of a reply carrying an error.
pub const ERROR: &str = "[error]";
/// The `parent_id` of an announcement: a broadcast `[response]` carrying the sender's
/// `help` answer, so that agents already in the space learn what a newcomer can do.
/// Python Agency's demo agents (`HelpMethods`) announce themselves so when they join.
pub const ANNOUNCEMENT: &str = "help_request";

/// A message between agents.
///
/// ```
/// use agency_protocol::Message;
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

/// What a host needs of a delivered message to route, check and answer it: everything but
/// the arguments, which are checked to be an object and skipped, not built. Read from a
/// body (borrowing its text) or taken from a [`Message`], it refuses exactly the texts
/// [`Message::from_json`] refuses.
///
/// ```
/// use agency_protocol::{message::Head, Message};
/// let text = r#"{"meta":{"id":"q"},"from":"a","to":"b","action":{"name":"add","args":{"x":1}}}"#;
/// let head = Head::read(text).unwrap();
/// assert_eq!((&*head.from, &*head.action.name), ("a", "add"));
/// assert_eq!(head.response(serde_json::json!(3)).to, "a");
/// assert!(Head::read(r#"{"meta":{"id":"q"},"from":"a","to":"b","action":{"name":"x","args":[1]}}"#).is_err());
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head<'a> {
    /// Identity and correlation data.
    pub meta: Cow<'a, Meta>,
    /// The sender's id.
    #[serde(borrow)]
    pub from: Cow<'a, str>,
    /// The recipient's id, or [`BROADCAST`].
    #[serde(borrow)]
    pub to: Cow<'a, str>,
    /// The action's name.
    #[serde(borrow)]
    pub action: ActionHead<'a>,
}

/// The `action` part of a [`Head`]: its name; its arguments checked, not kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionHead<'a> {
    /// The action's name.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// Not an `Option`: that would take `"args": null` for no arguments.
    #[serde(default, rename = "args")]
    _args: SkippedObject,
}

impl<'a> Head<'a> {
    /// Reads the head of a delivered message from its JSON text; refuses it as
    /// [`Message::from_json`] does.
    pub fn read(text: &'a str) -> Result<Self, ActionError> {
        read(text)
    }

    /// The head of a message already read.
    pub fn of(message: &'a Message) -> Self {
        Head {
            meta: Cow::Borrowed(&message.meta),
            from: Cow::Borrowed(&message.from),
            to: Cow::Borrowed(&message.to),
            action: ActionHead {
                name: Cow::Borrowed(&message.action.name),
                _args: SkippedObject,
            },
        }
    }

    /// Whether the message is addressed to every agent.
    pub fn is_broadcast(&self) -> bool {
        self.to == BROADCAST
    }

    /// Whether the message is a `[response]` or `[error]` reply.
    pub fn is_reply(&self) -> bool {
        self.action.name == RESPONSE || self.action.name == ERROR
    }

    /// Whether this delivery to `agent_id` is one of its own messages to another agent,
    /// handed back by the transport because no agent holds the recipient's id (see
    /// [`crate::boundary::TransportSpace::publish`]).
    pub fn is_returned_to(&self, agent_id: &str) -> bool {
        self.from == agent_id && self.to != agent_id && !self.is_broadcast()
    }

    /// An unaddressed reply to this message: a `[response]` carrying `value`.
    pub fn response(&self, value: Value) -> Outgoing {
        self.answer(RESPONSE, VALUE, value)
    }

    /// An unaddressed reply to this message: an `[error]` carrying `"<Kind>: <text>"`.
    pub fn error_reply(&self, error: &ActionError) -> Outgoing {
        self.answer(ERROR, ERROR_TEXT, Value::String(error.to_string()))
    }

    fn answer(&self, name: &str, key: &str, value: Value) -> Outgoing {
        Outgoing {
            meta: PartialMeta {
                parent_id: Some(self.meta.id.clone()),
                ..PartialMeta::default()
            },
            from: None,
            to: self.from.clone().into_owned(),
            action: Action {
                name: name.to_owned(),
                args: Map::from_iter([(key.to_owned(), value)]),
            },
        }
    }
}

/// A message as an agent hands it over for sending: `from` and `meta.id` may be left out,
/// the sender's host fills them in.
///
/// ```
/// use agency_protocol::message::Outgoing;
/// let outgoing = Outgoing::from_json(r#"{"to":"b","action":{"name":"say"}}"#).unwrap();
/// assert_eq!(outgoing.meta.id, None);
/// assert!(Outgoing::from_json("[1]").unwrap_err().to_string().starts_with("TypeError"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a message object")]
pub struct Outgoing {
    /// Identity and correlation data, `id` optional.
    #[serde(default)]
    pub meta: PartialMeta,
    /// The sender's id, if given (it must be the sender's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The recipient's id, or [`BROADCAST`].
    pub to: String,
    /// What the recipient is asked to do.
    pub action: Action,
}

impl Outgoing {
    /// Reads an outgoing message from JSON text.
    pub fn from_json(text: &str) -> Result<Self, ActionError> {
        read(text)
    }

    /// Reads an outgoing message from a JSON value.
    pub fn from_value(value: Value) -> Result<Self, ActionError> {
        if !value.is_object() {
            return Err(not_an_object());
        }
        serde_json::from_value(value).map_err(invalid_message)
    }
}

/// A message to send, typed or as JSON (`{"to", "action": {"name", "args"}}`): what a
/// foreground agent's `send` and `request` take. A typed one is used as it is; JSON is
/// read (and refused, as [`Outgoing::from_value`] says) first.
pub trait IntoOutgoing {
    /// The message, read if need be.
    fn into_outgoing(self) -> Result<Outgoing, ActionError>;
}

impl IntoOutgoing for Outgoing {
    fn into_outgoing(self) -> Result<Outgoing, ActionError> {
        Ok(self)
    }
}

impl IntoOutgoing for Value {
    fn into_outgoing(self) -> Result<Outgoing, ActionError> {
        Outgoing::from_value(self)
    }
}

impl IntoOutgoing for &Value {
    fn into_outgoing(self) -> Result<Outgoing, ActionError> {
        Outgoing::from_value(self.clone())
    }
}

/// Reads a message of either kind from JSON text: JSON that is not an object is a
/// `TypeError`, anything else wrong (not JSON, a field missing or of the wrong type) a
/// `ValueError` saying what.
fn read<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, ActionError> {
    serde_json::from_str(text).map_err(|error| {
        let is_object = text.trim_start().starts_with('{');
        if !is_object && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            not_an_object()
        } else {
            invalid_message(error)
        }
    })
}

fn not_an_object() -> ActionError {
    ActionError::of(Kind::Type, "a message must be a JSON object")
}

fn invalid_message(error: serde_json::Error) -> ActionError {
    ActionError::of(Kind::Value, format!("invalid message: {error}"))
}

/// The fields of `sent` (a message's JSON text without `meta` and `from`) after its
/// opening brace, if they can be kept as they are: not when the text might hold either
/// key (the text `"meta"` or `"from"` anywhere, or an escape that could spell one).
fn fields_of(sent: &str) -> Option<&str> {
    let sent = sent.trim_start();
    let fields = sent.strip_prefix('{')?;
    let may_hold_keys =
        sent.contains("\"meta\"") || sent.contains("\"from\"") || sent.contains('\\');
    (!may_hold_keys).then_some(fields)
}

/// `{"meta":…,"from":…,` followed by `fields`, the rest of a sent text kept as it came.
fn text_around(meta: &Meta, from: &str, fields: &str) -> String {
    let mut text = Vec::with_capacity(fields.len() + 96);
    text.extend_from_slice(b"{\"meta\":");
    serde_json::to_writer(&mut text, meta).expect("a meta always serialises");
    text.extend_from_slice(b",\"from\":");
    serde_json::to_writer(&mut text, from).expect("a string always serialises");
    text.push(b',');
    text.extend_from_slice(fields.as_bytes());
    String::from_utf8(text).expect("JSON text and UTF-8 pieces")
}

/// A message an agent sent as JSON text with only `to` and `action`, read without
/// building its arguments: what its host needs to complete and route it. Text that has
/// `meta` or `from`, escapes, arguments that are not an object, or anything else
/// [`Outgoing::from_json`] would refuse is not read this way (`None`): it takes the full
/// path, which says what is wrong.
///
/// ```
/// use agency_protocol::message::{BareOutgoing, Meta};
///
/// let sent = r#"{"to":"b","action":{"name":"tick","args":{"n":1}}}"#;
/// let bare = BareOutgoing::read(sent).unwrap();
/// assert_eq!((bare.to, bare.name), ("b", "tick"));
/// let meta = Meta { id: "7".into(), ..Meta::default() };
/// assert_eq!(
///     bare.text(&meta, "a"),
///     r#"{"meta":{"id":"7"},"from":"a","to":"b","action":{"name":"tick","args":{"n":1}}}"#
/// );
/// assert!(BareOutgoing::read(r#"{"to":"b","action":{"name":"x","args":[1]}}"#).is_none());
/// assert!(BareOutgoing::read(r#"{"meta":{},"to":"b","action":{"name":"x"}}"#).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BareOutgoing<'a> {
    /// The recipient's id, or [`BROADCAST`].
    pub to: &'a str,
    /// The action's name.
    pub name: &'a str,
    /// The sent text after its opening brace.
    fields: &'a str,
}

impl<'a> BareOutgoing<'a> {
    /// Reads `sent` if it is a valid outgoing message with only `to` and `action`,
    /// neither escaped, and arguments (if any) an object.
    pub fn read(sent: &'a str) -> Option<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields<'a> {
            to: &'a str,
            #[serde(borrow)]
            action: ActionFields<'a>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ActionFields<'a> {
            name: &'a str,
            /// Not an `Option`: that would take `"args": null` for no arguments.
            #[serde(default, rename = "args")]
            _args: SkippedObject,
        }
        let fields = fields_of(sent)?;
        let read: Fields = serde_json::from_str(sent).ok()?;
        Some(Self {
            to: read.to,
            name: read.action.name,
            fields,
        })
    }

    /// Whether the message is a `[response]` or `[error]` reply.
    pub fn is_reply(&self) -> bool {
        self.name == RESPONSE || self.name == ERROR
    }

    /// The whole message's text, with `meta` and `from`, as [`Message::to_json_reusing`]
    /// writes it.
    pub fn text(&self, meta: &Meta, from: &str) -> String {
        text_around(meta, from, self.fields)
    }
}

/// A JSON object, checked and skipped: nothing of it is kept. Refused as a `Map` is.
#[derive(Debug, Default)]
struct SkippedObject;

impl<'de> Deserialize<'de> for SkippedObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> serde::de::Visitor<'de> for ObjectVisitor {
            type Value = SkippedObject;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SkippedObject, A::Error> {
                use serde::de::IgnoredAny;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(SkippedObject)
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// `meta` before the `id` rule is applied: an outgoing message may leave `id` out (the
/// sender's host fills it in), a delivered one may not.
///
/// Read in one pass, without building an intermediate map (the hot path of every message).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PartialMeta {
    /// `meta.id`, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `meta.parent_id`, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Every other key.
    #[serde(flatten)]
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
    /// Parses and validates a message from JSON text; refuses it as
    /// [`Outgoing::from_json`] does (a `TypeError` for JSON that is not an object, else a
    /// `ValueError` saying what is wrong).
    pub fn from_json(text: &str) -> Result<Self, ActionError> {
        read(text)
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a message always serialises")
    }

    /// The message as JSON text, made of `sent`, the text it was read from as an
    /// [`Outgoing`] (with only `to` and `action`, the sender's host filling in the rest):
    /// its `meta` and `from` are written before `sent`'s own fields, which are kept as
    /// they came instead of being encoded again. When `sent` may hold either key (the
    /// text `"meta"` or `"from"` anywhere, or an escape that could spell one), the
    /// message is encoded whole, as [`Message::to_json`] does.
    ///
    /// ```
    /// use agency_protocol::{message::Outgoing, Message};
    ///
    /// let sent = r#"{"to":"b","action":{"name":"tick","args":{"n":1}}}"#;
    /// let outgoing = Outgoing::from_json(sent).unwrap();
    /// let text = r#"{"meta":{"id":"7"},"from":"a","to":"b","action":{"name":"tick","args":{"n":1}}}"#;
    /// let message = Message::from_json(text).unwrap();
    /// assert_eq!(message.action, outgoing.action);
    /// assert_eq!(message.to_json_reusing(sent), text);
    /// ```
    pub fn to_json_reusing(&self, sent: &str) -> String {
        match fields_of(sent) {
            Some(fields) => text_around(&self.meta, &self.from, fields),
            None => self.to_json(),
        }
    }

    /// Whether the message is addressed to every agent.
    pub fn is_broadcast(&self) -> bool {
        Head::of(self).is_broadcast()
    }

    /// Whether the message is a `[response]` or `[error]` reply.
    pub fn is_reply(&self) -> bool {
        Head::of(self).is_reply()
    }

    /// Whether this delivery to `agent_id` is one of its own messages to another agent;
    /// see [`Head::is_returned_to`].
    pub fn is_returned_to(&self, agent_id: &str) -> bool {
        Head::of(self).is_returned_to(agent_id)
    }

    /// The `[error]` reply the sender of this message gets when no agent holds its
    /// recipient's id: from that id, of kind [`UNDELIVERABLE`].
    ///
    /// ```
    /// # use agency_protocol::Message;
    /// let lost = Message::from_json(r#"{"meta":{"id":"1"},"from":"a","to":"nobody","action":{"name":"x"}}"#).unwrap();
    /// let error = lost.undeliverable().reply().unwrap().unwrap_err();
    /// assert_eq!(error.to_string(), r#"UndeliverableError: no agent "nobody" in the space"#);
    /// ```
    pub fn undeliverable(&self) -> Message {
        let error = ActionError::new(
            UNDELIVERABLE,
            format!("no agent {:?} in the space", self.to),
        );
        let answer = self.error_reply(&error);
        Message {
            meta: Meta {
                id: format!("{}-undeliverable", self.meta.id),
                parent_id: answer.meta.parent_id,
                extra: Map::new(),
            },
            from: self.to.clone(),
            to: answer.to,
            action: answer.action,
        }
    }

    /// What this reply carries: `Some(Ok(value))` for a `[response]`, `Some(Err(error))`
    /// for an `[error]` (its `"<Kind>: <text>"` read back), `None` for any other message.
    ///
    /// ```
    /// # use agency_protocol::Message;
    /// let text = r#"{"meta":{"id":"r"},"from":"b","to":"a","action":{"name":"[error]","args":{"error":"ValueError: no"}}}"#;
    /// let error = Message::from_json(text).unwrap().reply().unwrap().unwrap_err();
    /// assert_eq!(error.kind(), "ValueError");
    /// ```
    pub fn reply(&self) -> Option<Result<Value, ActionError>> {
        self.action.reply()
    }

    /// What this reply carries, as [`Message::reply`] answers it, the value moved out
    /// instead of copied.
    ///
    /// ```
    /// # use agency_protocol::Message;
    /// let text = r#"{"meta":{"id":"r"},"from":"b","to":"a","action":{"name":"[response]","args":{"value":[1,2]}}}"#;
    /// let value = Message::from_json(text).unwrap().into_reply().unwrap().unwrap();
    /// assert_eq!(value, serde_json::json!([1, 2]));
    /// ```
    pub fn into_reply(self) -> Option<Result<Value, ActionError>> {
        self.action.into_reply()
    }

    /// An unaddressed reply to this message: a `[response]` carrying `value`.
    ///
    /// ```
    /// # use agency_protocol::Message;
    /// # let question = Message::from_json(r#"{"meta":{"id":"q"},"from":"a","to":"b","action":{"name":"add"}}"#).unwrap();
    /// let reply = question.response(serde_json::json!(3));
    /// assert_eq!(reply.to, "a");
    /// assert_eq!(reply.meta.parent_id.as_deref(), Some("q"));
    /// assert_eq!(reply.action.name, "[response]");
    /// ```
    pub fn response(&self, value: Value) -> Outgoing {
        Head::of(self).response(value)
    }

    /// An unaddressed reply to this message: an `[error]` carrying `"<Kind>: <text>"`.
    pub fn error_reply(&self, error: &ActionError) -> Outgoing {
        Head::of(self).error_reply(error)
    }
}

impl Action {
    /// What this action carries if it is a reply; see [`Message::reply`].
    pub fn reply(&self) -> Option<Result<Value, ActionError>> {
        let args = &self.args;
        match self.name.as_str() {
            RESPONSE => Some(Ok(args.get(VALUE).cloned().unwrap_or(Value::Null))),
            ERROR => Some(Err(ActionError::parse(
                args.get(ERROR_TEXT)
                    .and_then(Value::as_str)
                    .unwrap_or("Error: (no text)"),
            ))),
            _ => None,
        }
    }

    /// What this action carries if it is a reply, the value moved out; see
    /// [`Message::into_reply`].
    pub fn into_reply(mut self) -> Option<Result<Value, ActionError>> {
        if self.name == RESPONSE {
            return Some(Ok(self.args.remove(VALUE).unwrap_or(Value::Null)));
        }
        self.reply()
    }
}

/// The argument of a `[response]` that holds its value.
const VALUE: &str = "value";
/// The argument of an `[error]` that holds its `"<Kind>: <text>"`.
const ERROR_TEXT: &str = "error";

/// The sender (`from`) of a message body, the rest unread: where a transport returns a
/// body it cannot deliver. `None` if the body has no `from` text.
///
/// ```
/// use agency_protocol::message::sender_of;
/// assert_eq!(sender_of(r#"{"to":"b","from":"a","action":{}}"#).as_deref(), Some("a"));
/// assert_eq!(sender_of("not json"), None);
/// ```
pub fn sender_of(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Sender {
        from: String,
    }
    serde_json::from_str::<Sender>(body).ok().map(|s| s.from)
}

/// How a transport (and the space) refuses an id already taken, worded as in Python
/// Agency.
pub fn duplicate_id(agent_id: &str) -> String {
    format!("Agent '{agent_id}' already exists")
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::{Head, Message, Outgoing};

    /// A message written around the text it was sent as reads back as the message;
    /// text that might carry `meta` or `from` is encoded whole.
    #[test]
    fn a_message_reuses_the_text_it_was_sent_as_only_when_it_may() {
        // Spaced as no encoder writes them: reused text is told from encoded text.
        let sent = [
            r#"{"to": "b", "action": {"name": "tick", "args": {"n": 1}}}"#,
            r#"  { "action" : {"name":"x"}, "to" : "*" } "#,
            r#"{"to": "b", "action": {"name": "say", "args": {"content": "from"}}}"#,
            r#"{"to": "b", "action": {"name": "say", "args": {"content": "a \"quote\""}}}"#,
            r#"{"meta": {"parent_id": "p"}, "to": "b", "action": {"name": "x"}}"#,
            r#"{"from": "a", "to": "b", "action": {"name": "x"}}"#,
        ];
        for (n, sent) in sent.into_iter().enumerate() {
            let outgoing = Outgoing::from_json(sent).unwrap();
            let mut extra = serde_json::Map::new();
            extra.insert("request_chain".into(), serde_json::json!(["a"]));
            let message = Message {
                meta: super::Meta {
                    id: format!("id-{n}"),
                    parent_id: outgoing.meta.parent_id.clone(),
                    extra,
                },
                from: "a".into(),
                to: outgoing.to,
                action: outgoing.action,
            };
            let text = message.to_json_reusing(sent);
            assert_eq!(Message::from_json(&text).unwrap(), message, "{sent}");
            let reused = text.ends_with(sent.trim_start().strip_prefix('{').unwrap());
            assert_eq!(reused, n < 2, "{sent} -> {text}");
        }
    }

    /// A bare read takes exactly the texts a full read takes that have neither `meta`
    /// nor `from` nor an escape, and finds the same recipient and action.
    #[test]
    fn a_bare_read_takes_what_a_full_read_takes_without_meta_or_from() {
        let texts = [
            (
                r#"{"to":"b","action":{"name":"tick","args":{"n":1}}}"#,
                true,
            ),
            (r#" {"action":{"args":{},"name":"x"},"to":"*"}"#, true),
            (r#"{"to":"b","action":{"name":"x"}}"#, true),
            (
                r#"{"to":"b","action":{"name":"x","args":{"a":[{"b":null}]}}}"#,
                true,
            ),
            (r#"{"to":"b","action":{"name":"x","args":null}}"#, false),
            (r#"{"to":"b","action":{"name":"x","args":[1]}}"#, false),
            (r#"{"to":"b","action":{"name":"x","args":"a"}}"#, false),
            (r#"{"to":"b","action":{"name":"x","extra":1}}"#, false),
            (r#"{"to":"b","action":{"name":"x"},"extra":1}"#, false),
            (r#"{"to":"b","action":{"args":{}}}"#, false),
            (r#"{"action":{"name":"x"}}"#, false),
            (r#"{"to":1,"action":{"name":"x"}}"#, false),
            (r#"{"to":"b","to":"c","action":{"name":"x"}}"#, false),
            (r#"{"to":"b","action":{"name":"x"}} 1"#, false),
            (r#"{"to":"b","action":{"name":"x"}"#, false),
            (r#"{"to":"b\u0041","action":{"name":"x"}}"#, false),
            (r#"{"meta":{},"to":"b","action":{"name":"x"}}"#, false),
            (r#"{"from":"a","to":"b","action":{"name":"x"}}"#, false),
            ("[1]", false),
        ];
        for (text, bare) in texts {
            let read = super::BareOutgoing::read(text);
            assert_eq!(read.is_some(), bare, "{text}");
            let full = Outgoing::from_json(text);
            if let Some(read) = read {
                let full = full.unwrap();
                assert_eq!((read.to, read.name), (&*full.to, &*full.action.name));
            } else if !text.contains("meta") && !text.contains("from") && !text.contains('\\') {
                assert!(full.is_err(), "{text}");
            }
        }
    }

    /// A head takes and refuses what a full read does, with the same error, and reads
    /// the same fields.
    #[test]
    fn a_head_reads_what_a_full_read_reads() {
        let texts = [
            r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"name":"x"}}"#,
            r#"{"meta":{"id":"1","parent_id":"0","request_chain":["a"],"k":[1]},"from":"a","to":"*","action":{"name":"x","args":{"n":{"m":[1,2]}}}}"#,
            r#"{"action":{"args":{},"name":"x"},"to":"b","from":"a","meta":{"id":"1"}}"#,
            r#"{"meta":{"id":"\u0031"},"from":"\"a","to":"b\n","action":{"name":"\u00e9"}}"#,
            r#"{"meta":{"id":"1","parent_id":null},"from":"a","to":"b","action":{"name":"x"}}"#,
            r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"name":"x","args":null}}"#,
            r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"name":"x","args":[1]}}"#,
            r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"name":"x","args":{"n":}}}"#,
            r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"name":"x","extra":1}}"#,
            r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"name":"x"},"extra":1}"#,
            r#"{"meta":{"id":"1"},"from":"a","to":"b","to":"c","action":{"name":"x"}}"#,
            r#"{"meta":{"id":1},"from":"a","to":"b","action":{"name":"x"}}"#,
            r#"{"meta":{"parent_id":"0"},"from":"a","to":"b","action":{"name":"x"}}"#,
            r#"{"meta":{"id":"1"},"to":"b","action":{"name":"x"}}"#,
            r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"args":{}}}"#,
            r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"name":"x"}} 1"#,
            r#"{"meta":{"id":"1"},"from":"a","to":"b","action":{"name":"x"}"#,
            r#"{"meta":[],"from":"a","to":"b","action":{"name":"x"}}"#,
            "[1]",
            "null",
            "not json",
        ];
        for text in texts {
            match (Head::read(text), Message::from_json(text)) {
                (Ok(head), Ok(full)) => {
                    assert_eq!(*head.meta, full.meta, "{text}");
                    let read = (&*head.from, &*head.to, &*head.action.name);
                    assert_eq!(read, (&*full.from, &*full.to, &*full.action.name), "{text}");
                    let of = Head::of(&full);
                    assert_eq!((&*of.from, &*of.to, &*of.action.name), read, "{text}");
                    assert_eq!(head.response(Value::Null), full.response(Value::Null));
                }
                (Err(head), Err(full)) => assert_eq!(head.to_string(), full.to_string()),
                (head, full) => panic!("{text}: head {head:?}, full {full:?}"),
            }
        }
    }

    /// Both kinds of message refuse the same text alike: the kind, then what is wrong.
    #[test]
    fn delivered_and_outgoing_messages_are_refused_alike() {
        let refusal = |text: &str| {
            let delivered = Message::from_json(text).unwrap_err().to_string();
            let outgoing = Outgoing::from_json(text).unwrap_err().to_string();
            (delivered, outgoing)
        };
        for text in ["[1]", " 7", "\"to\"", "null"] {
            let (delivered, outgoing) = refusal(text);
            assert_eq!(delivered, outgoing);
            assert!(delivered.starts_with("TypeError"), "{text}: {delivered}");
        }
        for text in ["not json", "{\"to\": 7}", "{", "[1"] {
            let (delivered, outgoing) = refusal(text);
            assert!(
                delivered.starts_with("ValueError: invalid message: "),
                "{text}: {delivered}"
            );
            assert!(
                outgoing.starts_with("ValueError: invalid message: "),
                "{text}: {outgoing}"
            );
        }
    }
}
