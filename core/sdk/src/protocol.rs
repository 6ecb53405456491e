//! The data that crosses the plugin boundary, in one place.
//!
//! The ABI carries `(operation, JSON)` pairs; this module names the operations and defines
//! the JSON shapes, so the host and plugins built from this SDK agree by construction.
//! New operations may be added; an unknown one is answered with [`UNSUPPORTED`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The prefix of the error a plugin gives for an operation it does not know.
pub const UNSUPPORTED: &str = "unsupported operation";

/// Operations the host runs on an agent. The payload is the message JSON unless noted.
pub mod agent_op {
    /// The agent was added to a space (payload `{}`).
    pub const AFTER_ADD: &str = "after_add";
    /// The agent is about to leave the space (payload `{}`).
    pub const BEFORE_REMOVE: &str = "before_remove";
    /// Asks whether a `requested` action may run; answers `true` or `false`.
    pub const REQUEST_PERMISSION: &str = "request_permission";
    /// A permitted action is about to run.
    pub const BEFORE_ACTION: &str = "before_action";
    /// Runs an action; answers an [`super::ActionOutcome`] or fails with `"<Kind>: <text>"`.
    pub const ACTION: &str = "action";
    /// The action of the last `action` operation ended (payload [`super::AfterAction`]).
    pub const AFTER_ACTION: &str = "after_action";
    /// A `[response]` arrived that no pending request was waiting for.
    pub const HANDLE_ACTION_VALUE: &str = "handle_action_value";
    /// An `[error]` arrived that no pending request was waiting for.
    pub const HANDLE_ACTION_ERROR: &str = "handle_action_error";
}

/// Operations an agent runs on the host.
pub mod host_op {
    /// Sends a message (payload: the message, `from`/`meta.id` optional); answers the id.
    pub const SEND: &str = "send";
    /// Sends and waits for the reply (payload [`super::RequestCall`]); answers the value.
    pub const REQUEST: &str = "request";
    /// Asks the space's permission prompt about a message; answers `true` or `false`.
    pub const ASK_PERMISSION: &str = "ask_permission";
    /// Looks up a message this agent sent, by id (payload `{"id"}`); answers it or `null`.
    pub const SENT_MESSAGE: &str = "sent_message";
    /// Writes a log record (payload [`super::LogRecord`]).
    pub const LOG: &str = "log";
}

/// The answer to [`agent_op::ACTION`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// The value to send back as `[response]` (`null` included); absent when the action
    /// returns nothing.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub value: Option<Value>,
}

/// Reads a field that is present as `Some`, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// The payload of [`agent_op::AFTER_ACTION`]; the message is the one the last
/// [`agent_op::ACTION`] ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AfterAction {
    /// What the action returned, if anything.
    pub value: Option<Value>,
    /// The error text, if it failed.
    pub error: Option<String>,
}

/// The payload of [`host_op::REQUEST`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestCall {
    /// The message to send.
    pub message: Value,
    /// How long to wait for the reply, in seconds.
    pub timeout: f64,
}

/// The payload of [`host_op::LOG`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogRecord {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// The event's target (module path).
    pub target: String,
    /// The formatted message and fields.
    pub message: String,
}

/// The configuration the host hands a plugin when it loads it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PluginConfig {
    /// The most verbose level the host will print (`error` ... `trace`), or `off`.
    pub max_log_level: String,
}

/// What a plugin library provides, as returned by its `init`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// The plugin crate's package name (empty from plugins built before SDK 0.2).
    #[serde(default)]
    pub name: String,
    /// The plugin crate's version (empty from plugins built before SDK 0.2).
    #[serde(default)]
    pub version: String,
    /// The ABI generation the plugin was built for.
    pub abi_version: u32,
    /// The SDK version the plugin was built with.
    pub sdk_version: String,
    /// Transport names it provides.
    pub transports: Vec<String>,
    /// Agent types it provides.
    pub agent_types: Vec<AgentTypeSpec>,
}

/// The description of one agent type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentTypeSpec {
    /// The type name used in `agency.toml` and `Space::add`.
    pub name: String,
    /// What the agent does.
    pub description: String,
    /// Its actions, `help` excluded.
    pub actions: Vec<ActionSpec>,
}

/// Who may run an action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone (the default).
    #[default]
    Permitted,
    /// Nobody: always answered with a `PermissionError`.
    Denied,
    /// Decided per message by the agent's `request_permission`.
    Requested,
}

/// The description of one action, as its `help` shows it and its dispatcher checks it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActionSpec {
    /// The action's name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its arguments, in declaration order.
    pub args: Vec<ArgSpec>,
    /// What it returns, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns: Option<TypeDoc>,
    /// Who may run it.
    #[serde(default)]
    pub access: Access,
    /// A help entry given by the author, shown instead of the generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<Value>,
}

/// One argument of an action.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ArgSpec {
    /// The argument's name in `action.args`.
    pub name: String,
    /// Its JSON type (`string`, `number`, `boolean`, `array`, `object`, `any`) and meaning.
    #[serde(flatten)]
    pub doc: TypeDoc,
    /// Whether it may be left out.
    #[serde(default)]
    pub optional: bool,
    /// The JSON Schema of its values.
    #[serde(default)]
    pub schema: Value,
}

/// A JSON type name with a description, as in Agency's help.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TypeDoc {
    /// The JSON type name.
    #[serde(rename = "type")]
    pub json_type: String,
    /// What the value means.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl ActionSpec {
    /// The entry for this action in a `help` answer: the author's custom help if given,
    /// else `{"description", "args": {name: {"type", "description"}}, "returns"?}`.
    pub fn help_entry(&self) -> Value {
        if let Some(help) = &self.help {
            return help.clone();
        }
        let args: Map<String, Value> = self
            .args
            .iter()
            .map(|arg| {
                (
                    arg.name.clone(),
                    serde_json::to_value(&arg.doc).unwrap_or_default(),
                )
            })
            .collect();
        let mut entry = serde_json::json!({"description": self.description, "args": args});
        if let Some(returns) = &self.returns {
            entry["returns"] = serde_json::to_value(returns).unwrap_or_default();
        }
        entry
    }
}
