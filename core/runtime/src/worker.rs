//! The worker thread of an agent: what a message means, decided once for every agent.
//!
//! One worker per agent handles its messages one at a time, in arrival order: replies go
//! to `handle_action_value` / `handle_action_error`, `help` is answered from the agent's
//! type description, unknown actions and refused permissions are answered with the
//! errors Python Agency sends, and actions run between `before_action` and `after_action`,
//! their value or error sent back to the sender.

use std::sync::Arc;

use agency_sdk::{
    agent::unknown_action,
    boundary::AgentCore,
    message::RESPONSE,
    protocol::{agent_op, Access, ActionOutcome, AfterAction, AgentTypeSpec},
    Message,
};
use serde_json::{Map, Value};

use crate::{
    endpoint::{Endpoint, Work},
    mailbox::MailboxReceiver,
    outgoing::Outgoing,
};

/// The name of the built-in action that describes the others.
pub const HELP: &str = "help";

pub(crate) struct Worker {
    pub endpoint: Arc<Endpoint>,
    pub agent: Box<dyn AgentCore>,
    pub spec: AgentTypeSpec,
}

impl Worker {
    /// Runs `after_add`, then every message until [`Work::Stop`], then `before_remove`.
    pub fn run(mut self, mailbox: MailboxReceiver<Work>) {
        crate::mailbox::never_wait_here();
        self.callback(agent_op::AFTER_ADD, "{}");
        while let Some(Work::Message(body, parsed)) = mailbox.next(std::time::Duration::MAX) {
            if let Some(message) = parsed.or_else(|| self.endpoint.accept(&body)) {
                self.handle(&message, &body);
            }
        }
        self.callback(agent_op::BEFORE_REMOVE, "{}");
    }

    /// Handles one message; `json` is its text as it arrived.
    fn handle(&mut self, message: &Message, json: &str) {
        if message.is_reply() {
            let op = if message.action.name == RESPONSE {
                agent_op::HANDLE_ACTION_VALUE
            } else {
                agent_op::HANDLE_ACTION_ERROR
            };
            self.callback(op, json);
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
                    Err(unknown_action(&message.action.name, &self.endpoint.id).to_string()),
                );
            }
            return;
        };
        if !self.permitted(action.access, json) {
            let error = format!(
                "PermissionError: \"{}.{}\" not permitted",
                self.endpoint.id, message.action.name
            );
            self.reply(message, Err(error));
            return;
        }
        self.callback(agent_op::BEFORE_ACTION, json);
        let outcome = self.agent.call(agent_op::ACTION, json).and_then(|text| {
            serde_json::from_str::<ActionOutcome>(&text)
                .map(|outcome| outcome.value)
                .map_err(|e| format!("TypeError: unreadable action outcome: {e}"))
        });
        let after = AfterAction {
            value: outcome.as_ref().ok().cloned().flatten(),
            error: outcome.as_ref().err().cloned(),
        };
        self.reply(message, outcome);
        self.callback(
            agent_op::AFTER_ACTION,
            &serde_json::to_string(&after).unwrap_or_default(),
        );
    }

    fn permitted(&mut self, access: Access, json: &str) -> bool {
        match access {
            Access::Permitted => true,
            Access::Denied => false,
            Access::Requested => match self.agent.call(agent_op::REQUEST_PERMISSION, json) {
                Ok(answer) => answer.trim() == "true",
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
    fn reply(&self, message: &Message, outcome: Result<Option<Value>, String>) {
        let reply = match outcome {
            Ok(None) => return,
            Ok(Some(value)) => message.response(value),
            Err(error) => message.error_reply(&error),
        };
        if let Err(error) = Outgoing::from_value(reply).and_then(|reply| self.endpoint.send(reply))
        {
            if let Some(count) = self.endpoint.unsent_replies.occurred() {
                tracing::warn!(agent = %self.endpoint.id, ?error, count, "could not send a reply");
            }
        }
    }

    fn callback(&mut self, op: &str, payload: &str) {
        if let Err(error) = self.agent.call(op, payload) {
            tracing::warn!(agent = %self.endpoint.id, callback = op, %error, "callback failed");
        }
    }
}
