//! `Assistant`: an agent that talks to any OpenAI-compatible chat model and lets it use
//! the space's actions as tools.
//!
//! ```toml
//! [[agents]]
//! type = "Assistant"
//! id = "Assistant"
//! args = { endpoint = "https://api.openai.com/v1", model = "gpt-4o-mini", api_key_env = "OPENAI_API_KEY" }
//! ```
//!
//! - It learns the tools from `help`: it broadcasts `help` when it joins and when sent
//!   `learn`, and every answer teaches it that agent's actions (those its `tools` patterns
//!   allow; default all). Agents that join later are learnt from their announcements
//!   (`announce = true` in `agency.toml`, or Python Agency's `HelpMethods`). `tools()`
//!   lists what it knows.
//! - `say(content)`: the sender's conversation goes to the model with the tools; each
//!   tool call the model asks for is a request to that agent (the calls of one answer
//!   all at once, so they take as long as the slowest), its result (or its error,
//!   timeout, dead letter or refused permission, as text) goes back to the model, and so
//!   on until the model answers in text or `max_turns` model calls were made. A tool call
//!   is an ordinary request from the Assistant: access policies and the operator's
//!   permission questions apply as to any other.
//! - The key is read from the environment variable `api_key_env` names; it is sent in a
//!   header and nowhere else.

use std::{collections::HashMap, time::Duration};

use agency_sdk::{message, prelude::*};

pub mod api;
pub mod tools;

use api::{Call, Client};
use tools::Catalogue;

agency_sdk::export_plugin!();

/// How many senders' conversations it keeps.
pub const MAX_CONVERSATIONS: usize = 256;

/// How many messages of one conversation it keeps (older exchanges go first).
pub const MAX_MESSAGES: usize = 64;

/// An agent on a chat model, with the space's actions as its tools.
pub struct Assistant {
    client: Client,
    system: Option<String>,
    max_turns: u32,
    tool_timeout: Duration,
    patterns: Vec<String>,
    catalogue: Catalogue,
    conversations: HashMap<String, (u64, Vec<Value>)>,
    clock: u64,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The API's base URL (`.../v1`); requests go to `{endpoint}/chat/completions`.
    endpoint: String,
    /// The model's name.
    model: String,
    /// The environment variable holding the API key (none: no key is sent).
    api_key_env: Option<String>,
    /// The system prompt.
    system: Option<String>,
    /// The most model calls one `say` may make.
    #[serde(default = "default_max_turns")]
    max_turns: u32,
    /// Sampling temperature (default: the server's).
    temperature: Option<f64>,
    /// How long one model call, and one tool call, may take.
    #[serde(default = "default_timeout_secs")]
    timeout_secs: f64,
    /// Which actions it may use: `Agent.action` patterns, `*` matching anything.
    #[serde(default = "everything")]
    tools: Vec<String>,
}

fn default_max_turns() -> u32 {
    8
}
fn default_timeout_secs() -> f64 {
    60.0
}
fn everything() -> Vec<String> {
    vec!["*".into()]
}

impl Agent for Assistant {
    fn new(init: &Init) -> Result<Self, ActionError> {
        let config: Config = init.args()?;
        let invalid = |message: String| ActionError::of(agency_sdk::Kind::Value, message);
        if !(config.timeout_secs.is_finite() && config.timeout_secs > 0.0) {
            return Err(invalid("timeout_secs must be more than 0".into()));
        }
        if config.max_turns == 0 {
            return Err(invalid("max_turns must be at least 1".into()));
        }
        if !config.endpoint.starts_with("http://") && !config.endpoint.starts_with("https://") {
            return Err(invalid(format!(
                "endpoint {:?} is not an http:// or https:// URL",
                config.endpoint
            )));
        }
        let timeout = Duration::from_secs_f64(config.timeout_secs);
        let client = Client::new(
            &config.endpoint,
            &config.model,
            config.api_key_env,
            config.temperature,
            timeout,
        )
        .map_err(|error| invalid(error.to_string()))?;
        Ok(Assistant {
            client,
            system: config.system,
            max_turns: config.max_turns,
            tool_timeout: timeout,
            patterns: config.tools,
            catalogue: Catalogue::default(),
            conversations: HashMap::new(),
            clock: 0,
        })
    }

    fn after_add(&mut self, ctx: &mut Context) {
        ask_for_help(ctx);
    }

    fn handle_action_value(&mut self, ctx: &mut Context, value: &Value) {
        let Some(message) = ctx.current_message() else {
            return;
        };
        let from = message.from.clone();
        let announced = message.is_broadcast()
            && message.meta.parent_id.as_deref() == Some(message::ANNOUNCEMENT);
        let answered_help = announced
            || ctx
                .parent_message()
                .is_some_and(|asked| asked.action.name == "help");
        if answered_help && from != ctx.id() {
            let patterns = &self.patterns;
            self.catalogue.learn(&from, value, |agent, action| {
                allows(patterns, agent, action)
            });
        }
    }
}

/// An agent on a chat model, with the space's actions as its tools.
#[actions]
impl Assistant {
    /// Says something to the assistant; it answers, using the space's actions as it
    /// sees fit.
    ///
    /// - content: what is said
    ///
    /// Returns: the model's answer
    #[action]
    fn say(&mut self, ctx: &Context, content: String) -> Result<String, ActionError> {
        let sender = ctx
            .current_message()
            .map_or_else(String::new, |m| m.from.clone());
        let history = self.conversation(&sender);
        let mut messages: Vec<Value> = self
            .system
            .iter()
            .map(|system| json!({"role": "system", "content": system}))
            .chain(history.iter().cloned())
            .chain([json!({"role": "user", "content": content})])
            .collect();
        let tools = self.catalogue.definitions();
        for _ in 0..self.max_turns {
            let reply = self
                .client
                .complete(&messages, &tools)
                .map_err(|error| ActionError::new("ApiError", error.to_string()))?;
            messages.push(reply.message());
            if reply.calls.is_empty() {
                let answer = reply.content.unwrap_or_default();
                let kept = messages.split_off(usize::from(self.system.is_some()));
                self.keep(sender, kept);
                return Ok(answer);
            }
            for (call, result) in reply.calls.iter().zip(self.run_all(ctx, &reply.calls)) {
                messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": result}));
            }
        }
        Err(ActionError::new(
            "MaxTurnsError",
            format!(
                "no answer after {} model calls (max_turns); the tools' results so far were given to the model",
                self.max_turns
            ),
        ))
    }

    /// Asks every agent for its actions again (broadcast `help`); the answers teach it
    /// the tools of agents that joined since.
    ///
    /// Returns: what it did (the answers come in after; `tools` lists what is learnt)
    #[action]
    fn learn(&mut self, ctx: &Context) -> &'static str {
        ask_for_help(ctx);
        "asked every agent for its actions"
    }

    /// The tools it knows, as `Agent.action`.
    ///
    /// Returns: the tools, sorted by their names for the model
    #[action]
    fn tools(&mut self) -> Vec<String> {
        self.catalogue
            .list()
            .into_iter()
            .map(|(_, target)| target)
            .collect()
    }
}

impl Assistant {
    /// Runs the tool calls of one model answer, all at once, as requests; answers what
    /// the model reads back for each, in order.
    fn run_all(&self, ctx: &Context, calls: &[Call]) -> Vec<String> {
        let requests: Vec<Result<Value, String>> =
            calls.iter().map(|call| self.request_for(call)).collect();
        let mut outcomes = ctx
            .request_all(requests.iter().flatten(), self.tool_timeout)
            .into_iter();
        requests
            .into_iter()
            .map(|request| match request.map(|_| outcomes.next()) {
                Err(refusal) => refusal,
                Ok(Some(Ok(Value::String(text)))) => text,
                Ok(Some(Ok(value))) => value.to_string(),
                Ok(Some(Err(error))) => format!("error: {}: {}", error.kind(), error.message()),
                Ok(None) => "error: no outcome".into(),
            })
            .collect()
    }

    /// The request a tool call stands for, or why there is none (as the model reads it).
    fn request_for(&self, call: &Call) -> Result<Value, String> {
        let Some(tool) = self.catalogue.get(&call.name) else {
            return Err(format!("error: there is no tool {:?}", call.name));
        };
        let arguments = match &call.arguments {
            Ok(Value::Object(arguments)) => Value::Object(arguments.clone()),
            Ok(other) => {
                return Err(format!(
                    "error: the arguments must be an object, not {other}"
                ))
            }
            Err(text) => return Err(format!("error: the arguments are not JSON: {text}")),
        };
        Ok(json!({"to": tool.agent, "action": {"name": tool.action, "args": arguments}}))
    }

    /// The sender's conversation so far.
    fn conversation(&self, sender: &str) -> Vec<Value> {
        self.conversations
            .get(sender)
            .map(|(_, messages)| messages.clone())
            .unwrap_or_default()
    }

    /// Keeps `messages` as the sender's conversation: its last [`MAX_MESSAGES`], cut where
    /// an exchange starts (a user message), at most [`MAX_CONVERSATIONS`] senders.
    fn keep(&mut self, sender: String, mut messages: Vec<Value>) {
        while messages.len() > MAX_MESSAGES {
            let next_user = messages
                .iter()
                .skip(1)
                .position(|m| m["role"] == "user")
                .map_or(messages.len(), |at| at + 1);
            messages.drain(..next_user);
        }
        if self.conversations.len() >= MAX_CONVERSATIONS
            && !self.conversations.contains_key(&sender)
        {
            let oldest = self
                .conversations
                .iter()
                .min_by_key(|(_, (when, _))| *when)
                .map(|(sender, _)| sender.clone());
            if let Some(oldest) = oldest {
                self.conversations.remove(&oldest);
            }
        }
        self.clock += 1;
        self.conversations.insert(sender, (self.clock, messages));
    }
}

/// Broadcasts `help`: every agent answers with its actions. A failed broadcast is not
/// fatal (`learn` asks again).
fn ask_for_help(ctx: &Context) {
    let asked = ctx.send(json!({"to": "*", "action": {"name": "help", "args": {}}}));
    if let Err(error) = asked {
        tracing::warn!(
            agent = ctx.id(),
            "could not ask the space for help: {error}"
        );
    }
}

/// Whether `patterns` let the model use `agent.action`.
fn allows(patterns: &[String], agent: &str, action: &str) -> bool {
    patterns.iter().any(|pattern| {
        let (agents, actions) = pattern.rsplit_once('.').unwrap_or((pattern, "*"));
        glob(agents, agent) && glob(actions, action)
    })
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|at| tail.is_char_boundary(*at))
                .any(|at| glob(rest, &tail[at..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_choose_the_tools() {
        let patterns = ["Calculator.*".to_owned(), "Host.read_file".to_owned()];
        assert!(allows(&patterns, "Calculator", "add"));
        assert!(allows(&patterns, "Host", "read_file"));
        assert!(!allows(&patterns, "Host", "run_command"));
        assert!(!allows(&patterns, "Calculator2", "add"));
        assert!(allows(&["*".to_owned()], "any.id", "x"));
        assert!(allows(&["*.add".to_owned()], "Calc", "add"));
        assert!(allows(&["Calc*".to_owned()], "Calculator", "divide"));
        assert!(!allows(&[], "Calc", "add"));
    }
}
