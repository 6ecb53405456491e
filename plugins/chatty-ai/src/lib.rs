//! `ChattyAI`: a chat agent that answers with a small language model, in-process, on the
//! CPU. The model is a GGUF file (for example SmolLM2-135M-Instruct): weights, tokenizer
//! and chat template all come from it, and candle runs it.
//!
//! ```toml
//! [[agents]]
//! type = "ChattyAI"
//! id = "Chatty"
//! args = { model = "target/models/SmolLM2-135M-Instruct.Q4_1.gguf" }
//! ```
//!
//! - `say(content)` answers with the model's words; each sender has a conversation of its
//!   own, whose oldest turns are dropped to fit the context.
//! - `reset()` forgets the sender's conversation.
//!
//! Agents naming the same file share one copy of the weights ([`model::Model::load`]).
//! Generating is plain blocking work on the action's thread: the host's pool notices the
//! thread is busy and lets other agents run meanwhile.

use std::{collections::HashMap, path::PathBuf};

use agency_sdk::prelude::*;

pub mod error;
pub mod llama;
pub mod model;
pub mod prefix;
pub mod quant;
pub mod sample;
pub mod template;
pub mod tokenizer;

pub use error::{GenerateError, LoadError};
use model::{Model, Session};
use sample::Sampler;
use template::{Role, Turn};

agency_sdk::export_plugin!();

/// How many senders' conversations an agent keeps; the one spoken to least recently goes.
pub const MAX_CONVERSATIONS: usize = 256;

/// A chat agent answering with a language model.
pub struct ChattyAi {
    session: Session,
    sampler: Sampler,
    max_new_tokens: usize,
    context: usize,
    system: Option<String>,
    conversations: Conversations,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The GGUF model file (relative paths from the host's working folder).
    model: PathBuf,
    /// The most tokens an answer may have.
    #[serde(default = "default_max_new_tokens")]
    max_new_tokens: usize,
    /// 0: always the most likely token; higher: more varied answers.
    #[serde(default = "default_temperature")]
    temperature: f64,
    /// The random generator's seed: the same seed gives the same answers.
    #[serde(default = "default_seed")]
    seed: u64,
    /// Above 1, recently used tokens are made less likely (1: off).
    #[serde(default = "default_repeat_penalty")]
    repeat_penalty: f32,
    /// The system prompt (default: the chat template's own, if it has one).
    system: Option<String>,
    /// The context limit in tokens, prompt and answer (default: the model's).
    context: Option<usize>,
}

fn default_max_new_tokens() -> usize {
    200
}
fn default_temperature() -> f64 {
    0.7
}
fn default_seed() -> u64 {
    299_792_458
}
fn default_repeat_penalty() -> f32 {
    1.1
}

impl Agent for ChattyAi {
    fn new(init: &Init) -> Result<Self, ActionError> {
        let config: Config = init.args()?;
        let invalid = |message: String| ActionError::of(agency_sdk::Kind::Value, message);
        if !(config.temperature.is_finite() && config.temperature >= 0.0) {
            return Err(invalid("temperature must be 0 or more".into()));
        }
        if !(config.repeat_penalty.is_finite() && config.repeat_penalty > 0.0) {
            return Err(invalid("repeat_penalty must be more than 0".into()));
        }
        let model = Model::load(&config.model)
            .map_err(|error| invalid(format!("model {}: {error}", config.model.display())))?;
        let limit = model.context_length();
        let context = config.context.unwrap_or(limit);
        if context > limit || context <= config.max_new_tokens {
            return Err(invalid(format!(
                "context must be more than max_new_tokens ({}) and at most the model's {limit}",
                config.max_new_tokens
            )));
        }
        Ok(ChattyAi {
            session: model.session(),
            sampler: Sampler::new(config.temperature, config.seed, config.repeat_penalty),
            max_new_tokens: config.max_new_tokens,
            context,
            system: config.system,
            conversations: Conversations::default(),
        })
    }
}

/// A chat agent answering with a language model.
#[actions(name = "ChattyAI")]
impl ChattyAi {
    /// Says something to the model; it answers, remembering this sender's conversation.
    ///
    /// - content: what is said
    ///
    /// Returns: the model's answer
    #[action]
    fn say(&mut self, ctx: &Context, content: String) -> Result<String, ActionError> {
        let sender = sender(ctx);
        let mut history = self.conversations.take(&sender);
        let prompt = loop {
            let turns = self.turns(&history, &content);
            let prompt = self.session.model().prompt(&turns)?;
            if prompt.len() + self.max_new_tokens <= self.context {
                break prompt;
            }
            if history.len() < 2 {
                self.conversations.put(sender, history);
                return Err(GenerateError::TooLong {
                    prompt: prompt.len(),
                    max_new: self.max_new_tokens,
                    context: self.context,
                }
                .into());
            }
            // The oldest exchange goes: a question and its answer.
            history.drain(..2);
        };
        let answer = self
            .session
            .generate(&prompt, self.max_new_tokens, &mut self.sampler)
            .and_then(|tokens| self.session.model().decode(&tokens));
        let answer = match answer {
            Ok(answer) => answer.trim().to_owned(),
            Err(error) => {
                self.conversations.put(sender, history);
                return Err(error.into());
            }
        };
        history.push(Turn::new(Role::User, content));
        history.push(Turn::new(Role::Assistant, answer.clone()));
        self.conversations.put(sender, history);
        Ok(answer)
    }

    /// Forgets the conversation with the sender.
    ///
    /// Returns: how many turns (questions and answers) were forgotten
    #[action]
    fn reset(&mut self, ctx: &Context) -> usize {
        self.conversations.take(&sender(ctx)).len()
    }
}

impl ChattyAi {
    /// The conversation as the model sees it: the system prompt, `history`, `content`.
    fn turns(&self, history: &[Turn], content: &str) -> Vec<Turn> {
        let system = self
            .system
            .as_ref()
            .map(|system| Turn::new(Role::System, system.clone()));
        system
            .into_iter()
            .chain(history.iter().cloned())
            .chain([Turn::new(Role::User, content)])
            .collect()
    }
}

/// Who sent the message being handled.
fn sender(ctx: &Context) -> String {
    ctx.current_message()
        .map_or_else(String::new, |message| message.from.clone())
}

/// Each sender's conversation, at most [`MAX_CONVERSATIONS`] of them.
#[derive(Default)]
struct Conversations {
    by_sender: HashMap<String, (u64, Vec<Turn>)>,
    clock: u64,
}

impl Conversations {
    /// Takes `sender`'s conversation out (empty if none).
    fn take(&mut self, sender: &str) -> Vec<Turn> {
        self.by_sender
            .remove(sender)
            .map(|(_, turns)| turns)
            .unwrap_or_default()
    }

    /// Keeps `turns` as `sender`'s conversation, forgetting the least recent one if full.
    fn put(&mut self, sender: String, turns: Vec<Turn>) {
        if turns.is_empty() {
            return;
        }
        if self.by_sender.len() >= MAX_CONVERSATIONS {
            let oldest = self
                .by_sender
                .iter()
                .min_by_key(|(_, (when, _))| *when)
                .map(|(sender, _)| sender.clone());
            if let Some(oldest) = oldest {
                self.by_sender.remove(&oldest);
            }
        }
        self.clock += 1;
        self.by_sender.insert(sender, (self.clock, turns));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversations_are_bounded_and_the_least_recent_goes() {
        let mut conversations = Conversations::default();
        let turn = || vec![Turn::new(Role::User, "hi")];
        for n in 0..MAX_CONVERSATIONS {
            conversations.put(format!("s{n}"), turn());
        }
        // s0 speaks again, so s1 is the least recent.
        let s0 = conversations.take("s0");
        conversations.put("s0".into(), s0);
        conversations.put("new".into(), turn());
        assert_eq!(conversations.by_sender.len(), MAX_CONVERSATIONS);
        assert!(conversations.take("s1").is_empty());
        assert_eq!(conversations.take("s0").len(), 1);
        assert_eq!(conversations.take("new").len(), 1);
    }
}
