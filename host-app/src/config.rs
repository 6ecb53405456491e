//! `agency.toml`: which transport, its options, and which agents to start.

use std::{collections::BTreeMap, path::Path};

use agency_runtime::AgentSpec;
use serde::Deserialize;

/// The contents of `agency.toml`.
///
/// ```toml
/// transport = "local"          # overridden by --transport or AGENCY_TRANSPORT
/// console_id = "User"          # the id of the console's agent
///
/// [transports.local]           # options handed to a transport when it opens
///
/// [[agents]]
/// type = "Calculator"
/// id = "Calculator"
///
/// [[agents]]
/// type = "Chat"
/// id = "Chatty"
/// args = { name = "Chatty" }
/// ```
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The transport to use when neither `--transport` nor `AGENCY_TRANSPORT` is given.
    pub transport: Option<String>,
    /// The id of the console's agent (default `User`).
    pub console_id: Option<String>,
    /// Options per transport name.
    #[serde(default)]
    pub transports: BTreeMap<String, serde_json::Value>,
    /// The agents to start.
    #[serde(default)]
    pub agents: Vec<AgentSpec>,
}

/// The largest config file read, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl Config {
    /// Reads a config file: a regular file of at most [`MAX_CONFIG_BYTES`]; anything else
    /// (missing, a FIFO, a device, too large, not UTF-8) is an error naming it.
    pub fn read(path: &Path) -> Result<Self, String> {
        let cannot = |reason: String| format!("config {}: {reason}", path.display());
        let bytes = agency_loader::read_regular_file(path, MAX_CONFIG_BYTES).map_err(cannot)?;
        let text =
            String::from_utf8(bytes).map_err(|e| cannot(format!("is not UTF-8 text ({e})")))?;
        // toml's own rendering quotes the offending line, which may hold a password.
        let config: Self = toml::from_str(&text).map_err(|e| {
            let place = e.span().map_or_else(String::new, |span| {
                let before = &text[..span.start];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!(" (line {line}, column {column})")
            });
            format!(
                "{} is not a valid agency config{place}: {}",
                path.display(),
                e.message().trim_end()
            )
        })?;
        for (index, agent) in config.agents.iter().enumerate() {
            if config.agents[..index].iter().any(|a| a.id == agent.id) {
                return Err(format!(
                    "{} is not a valid agency config: agent id {:?} is listed twice",
                    path.display(),
                    agent.id
                ));
            }
        }
        Ok(config)
    }

    /// Whether `other` differs at most in its `[[agents]]`.
    pub fn same_apart_from_agents(&self, other: &Self) -> bool {
        self.transport == other.transport
            && self.console_id == other.console_id
            && self.transports == other.transports
    }

    /// The options for transport `name` (an empty object when none are given).
    pub fn transport_options(&self, name: &str) -> serde_json::Value {
        self.transports
            .get(name)
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}))
    }
}
