//! The worker of an agent: what a message means, decided once for every agent.
//!
//! One worker per agent handles its messages one at a time, in arrival order, in turns
//! that the [`crate::scheduler`] runs on its pool (never two at once): replies go
//! to `handle_action_value` / `handle_action_error`, `help` is answered from the agent's
//! type description, unknown actions and refused permissions are answered with the
//! errors Python Agency sends, and actions run between `before_action` and `after_action`,
//! their value or error sent back to the sender.

use std::sync::{
    mpsc::{self, TryRecvError},
    Arc,
};

use agency_protocol::{
    boundary::AgentCore,
    message::RESPONSE,
    spec::{Access, AgentTypeSpec},
    ActionError, Message,
};
use agency_sdk::agent::unknown_action;
use serde_json::{Map, Value};

use crate::{
    endpoint::{Endpoint, Incoming, Work},
    mailbox::MailboxReceiver,
    scheduler::{self, Job, Turn, BATCH},
};

/// The name of the built-in action that describes the others.
pub const HELP: &str = "help";

pub(crate) struct Worker {
    pub endpoint: Arc<Endpoint>,
    pub agent: Box<dyn AgentCore>,
    pub spec: Arc<AgentTypeSpec>,
    pub mailbox: MailboxReceiver<Work>,
    /// Whether `after_add` ran.
    pub started: bool,
    /// Dropped with the worker: tells the space it ended.
    pub _ended: mpsc::Sender<()>,
}

impl Job for Worker {
    /// Runs `after_add` first; then up to [`BATCH`] messages; at [`Work::Stop`] (or once
    /// the space is gone), `before_remove`, and the worker is done.
    fn turn(&mut self) -> Turn {
        if !self.started {
            self.started = true;
            let result = self.agent.after_add();
            self.callback("after_add", result);
            scheduler::progressed();
        }
        for _ in 0..BATCH {
            match self.mailbox.try_next() {
                Ok(Work::Message(incoming)) => {
                    let Incoming { body, parsed } = *incoming;
                    self.accept(body, parsed);
                    scheduler::progressed();
                }
                Ok(Work::Stop) | Err(TryRecvError::Disconnected) => {
                    let result = self.agent.before_remove();
                    self.callback("before_remove", result);
                    return Turn::Done;
                }
                Err(TryRecvError::Empty) => return Turn::Idle,
            }
        }
        Turn::More
    }
}

impl Worker {
    /// Checks a message (unless it came parsed) and handles it.
    fn accept(&mut self, body: String, parsed: Option<Message>) {
        let accepted = match parsed {
            Some(message) => Some((message, body)),
            None => self.endpoint.accept(body),
        };
        if let Some((message, body)) = accepted {
            // Requests made meanwhile carry the chain of the one handled (if any).
            let chain = crate::chain::of(&message);
            let chained = !chain.is_empty();
            if chained {
                self.endpoint.set_handling(chain);
            }
            self.handle(&message, &body);
            if chained {
                self.endpoint.set_handling(Vec::new());
            }
        }
    }

    /// Handles one message; `json` is its text as it arrived.
    fn handle(&mut self, message: &Message, json: &str) {
        if message.is_reply() {
            let (name, result) = if message.action.name == RESPONSE {
                ("handle_action_value", self.agent.handle_action_value(json))
            } else {
                ("handle_action_error", self.agent.handle_action_error(json))
            };
            self.callback(name, result);
            return;
        }
        if message.action.name == HELP {
            self.reply(message, Ok(Some(self.help(message))));
            return;
        }
        let Some(action) = self
            .spec
            .actions
            .iter()
            .find(|a| a.name == message.action.name)
        else {
            if !message.is_broadcast() {
                self.reply(
                    message,
                    Err(unknown_action(&message.action.name, &self.endpoint.id)),
                );
            }
            return;
        };
        if !self.permitted(action.access, json) {
            let error = ActionError::new(
                "PermissionError",
                format!(
                    "\"{}.{}\" not permitted",
                    self.endpoint.id, message.action.name
                ),
            );
            self.reply(message, Err(error));
            return;
        }
        let result = self.agent.before_action(json);
        self.callback("before_action", result);
        let outcome = self.agent.action(json);
        self.reply(message, outcome.clone());
        let result = self.agent.after_action(&outcome);
        self.callback("after_action", result);
    }

    fn permitted(&mut self, access: Access, json: &str) -> bool {
        match access {
            Access::Permitted => true,
            Access::Denied => false,
            Access::Requested => match self.agent.request_permission(json) {
                Ok(allowed) => allowed,
                Err(error) => {
                    tracing::warn!(agent = %self.endpoint.id, %error, "request_permission failed; refusing");
                    false
                }
            },
        }
    }

    /// `{name: help entry}` for every action, or only for `args.action_name` when given.
    fn help(&self, message: &Message) -> Value {
        let only = message
            .action
            .args
            .get("action_name")
            .and_then(Value::as_str);
        let entries: Map<String, Value> = self
            .spec
            .actions
            .iter()
            .filter(|a| only.is_none_or(|name| a.name == name))
            .map(|a| (a.name.clone(), a.help_entry()))
            .collect();
        Value::Object(entries)
    }

    /// Sends the value (if any) as `[response]`, or the error as `[error]`.
    fn reply(&self, message: &Message, outcome: Result<Option<Value>, ActionError>) {
        let reply = match outcome {
            Ok(None) => return,
            Ok(Some(value)) => message.response(value),
            Err(error) => message.error_reply(&error),
        };
        if let Err(error) = self.endpoint.send(reply) {
            if let Some(count) = self.endpoint.unsent_replies.occurred() {
                tracing::warn!(agent = %self.endpoint.id, ?error, count, "could not send a reply");
            }
        }
    }

    /// Logs a callback's failure; a callback the agent's plugin does not know (an older
    /// one) is one it does not implement.
    fn callback(&self, name: &str, result: Result<(), ActionError>) {
        match result {
            Err(error) if !error.is_unsupported() => {
                tracing::warn!(agent = %self.endpoint.id, callback = name, %error, "callback failed");
            }
            _ => {}
        }
    }
}
