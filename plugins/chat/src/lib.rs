//! A chat agent that answers whatever is said to it, or to everyone.

use agency_sdk::prelude::*;

agency_sdk::export_plugin!();

/// Answers `say` messages, sent to it or broadcast.
pub struct Chat {
    name: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ChatConfig {
    /// The name it introduces itself with (default: its id).
    name: Option<String>,
}

impl Agent for Chat {
    fn new(init: &Init) -> Result<Self, ActionError> {
        let config: ChatConfig = init.args()?;
        Ok(Chat {
            name: config.name.unwrap_or_else(|| init.id.clone()),
        })
    }
}

/// Answers `say` messages, sent to it or broadcast.
#[actions]
impl Chat {
    /// Says something; the agent answers.
    ///
    /// - content: what is said
    ///
    /// Returns: the agent's answer
    #[action]
    fn say(&mut self, ctx: &Context, content: String) -> String {
        let from = ctx
            .current_message()
            .map(|m| m.from.as_str())
            .unwrap_or("stranger");
        let text = content.trim().to_lowercase();
        if ["hello", "hi", "hey"]
            .iter()
            .any(|greeting| text.starts_with(greeting))
        {
            format!("Hello, {from}! I am {}.", self.name)
        } else if text.ends_with('?') {
            format!("Good question, {from}. I am only a demo, so I cannot say.")
        } else {
            format!("{} heard {from} say: {}", self.name, content.trim())
        }
    }
}
