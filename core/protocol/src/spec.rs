//! What a plugin library provides, as the host reads it: its [`Manifest`], agent types
//! and actions (the data behind `help`, argument checks and access policies).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// The most messages one concurrent agent may handle at once: a host refuses a plugin
/// that declares more (each handle is a box the host holds).
pub const MAX_CONCURRENCY: u32 = 1024;

/// The description of one agent type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentTypeSpec {
    /// The type name used in `agency.toml` and `Space::add`.
    pub name: String,
    /// What the agent does.
    pub description: String,
    /// Its actions, `help` excluded.
    pub actions: Vec<ActionSpec>,
    /// For a concurrent agent type, how many messages one agent may handle at once
    /// (`None`: one at a time, in arrival order). Hosts from before it read none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

impl AgentTypeSpec {
    /// How many messages one agent of this type handles at once: its concurrency, at
    /// least 1.
    ///
    /// ```
    /// let spec = agency_protocol::spec::AgentTypeSpec { concurrency: Some(4), ..Default::default() };
    /// assert_eq!(spec.handles(), 4);
    /// assert_eq!(agency_protocol::spec::AgentTypeSpec::default().handles(), 1);
    /// ```
    pub fn handles(&self) -> usize {
        self.concurrency.map_or(1, |k| k.max(1) as usize)
    }
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
    /// else `{"description", "args": {name: {"type", "description"}}, "returns"?}` as in
    /// Python Agency, with what a form needs besides: `"access"` when not `permitted`,
    /// and per argument `"optional": true` and its `"schema"` when they say more than its
    /// type (peers that do not know these keys ignore them).
    pub fn help_entry(&self) -> Value {
        if let Some(help) = &self.help {
            return help.clone();
        }
        let args: Map<String, Value> = self
            .args
            .iter()
            .map(|arg| (arg.name.clone(), arg.help_entry()))
            .collect();
        let mut entry = serde_json::json!({"description": self.description, "args": args});
        if let Some(returns) = &self.returns {
            entry["returns"] = serde_json::to_value(returns).unwrap_or_default();
        }
        if self.access != Access::Permitted {
            entry["access"] = serde_json::to_value(self.access).unwrap_or_default();
        }
        entry
    }
}

impl ArgSpec {
    /// This argument in a `help` answer: `{"type", "description"?, "optional"?, "schema"?}`.
    fn help_entry(&self) -> Value {
        let mut entry = serde_json::to_value(&self.doc).unwrap_or_default();
        if self.optional {
            entry["optional"] = true.into();
        }
        let mut schema = self.schema.clone();
        if let Some(fields) = schema.as_object_mut() {
            for noise in ["$schema", "title", "format"] {
                fields.remove(noise);
            }
            let only_type =
                fields.len() == 1 && fields.get("type") == Some(&self.doc.json_type.clone().into());
            if !fields.is_empty() && !only_type {
                entry["schema"] = schema;
            }
        }
        entry
    }
}

/// What a plugin counts about itself (a transport: its connections, publishes waiting
/// for confirms, ...), reported to the host, which shows it with its own metrics
/// (`agency run --metrics`). Names are `snake_case` without a prefix; the host adds
/// `agency_` and a `plugin` label, and leaves out a name it cannot use.
///
/// ```
/// use agency_protocol::spec::{PluginMetric, PluginMetrics};
/// let mut metrics = PluginMetrics::default();
/// metrics.counters.push(PluginMetric::new("amqp_reconnects", "Connections lost and made again.", 2));
/// metrics.info.insert("broker".into(), "127.0.0.1:5672".into());
/// let text = serde_json::to_string(&metrics).unwrap();
/// assert_eq!(serde_json::from_str::<PluginMetrics>(&text).unwrap(), metrics);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginMetrics {
    /// Values that only go up (a restart of the process aside).
    #[serde(default)]
    pub counters: Vec<PluginMetric>,
    /// Values that go up and down.
    #[serde(default)]
    pub gauges: Vec<PluginMetric>,
    /// Texts worth showing as labels (the broker a transport is on), never a secret.
    #[serde(default)]
    pub info: std::collections::BTreeMap<String, String>,
}

/// One figure of [`PluginMetrics`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginMetric {
    /// `snake_case`, such as `amqp_reconnects`.
    pub name: String,
    /// One sentence saying what it counts.
    pub help: String,
    /// The value.
    pub value: u64,
}

impl PluginMetric {
    /// A figure named `name`, described by `help`.
    pub fn new(name: &str, help: &str, value: u64) -> Self {
        Self {
            name: name.to_owned(),
            help: help.to_owned(),
            value,
        }
    }
}
