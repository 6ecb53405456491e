//! The workers of agents: what a message means, decided once for every agent.
//!
//! A [`Handler`] handles one message on one handle of an agent: replies go to
//! `handle_action_value` / `handle_action_error`, `help` is answered from the agent's type
//! description, unknown actions and refused permissions are answered with the errors
//! Python Agency sends, and actions run between `before_action` and `after_action`, their
//! value or error sent back to the sender.
//!
//! An ordinary agent has one handle and a [`Worker`]: its messages one at a time, in
//! arrival order, in turns that the [`crate::scheduler`] runs on its pool (never two at
//! once). A concurrent agent has k handles and a [`Crew`]: the crew's turns take
//! messages in arrival order and give each to a free handle, to be handled as a task of
//! its own on the pool, so up to k run at once. Invariant: **a handle is in one place at
//! a time**, the crew's free list or one message's task, and goes back to the list when
//! that task ends (even by a panic); `after_add` runs before any message is given out,
//! `before_remove` once every handle is back.

use std::{
    sync::{
        atomic::Ordering,
        mpsc::{self, TryRecvError},
        Arc, Mutex,
    },
    time::Instant,
};

use agency_protocol::{
    boundary::AgentCore,
    message::{Head, Outgoing, ANNOUNCEMENT, BROADCAST, RESPONSE},
    spec::{Access, AgentTypeSpec},
    ActionError, Kind, Message,
};
use serde_json::{Map, Value};

use crate::{
    direct::Speeds,
    endpoint::{Accepted, Endpoint, Incoming, Work},
    mailbox::MailboxReceiver,
    scheduler::{self, Job, Task, Turn},
};

/// The name of the built-in action that describes the others.
pub const HELP: &str = "help";

/// One handle of an agent, with what handling a message on it needs.
pub(crate) struct Handler {
    pub endpoint: Arc<Endpoint>,
    pub agent: Box<dyn AgentCore>,
    pub spec: Arc<AgentTypeSpec>,
    /// Whether `after_add` is followed by an announcement (see [`crate::AgentSpec`]).
    pub announce: bool,
    /// The callbacks around actions that the agent does not implement.
    pub skipped: Skipped,
}

/// The callbacks around actions that an agent answered "unsupported" to (it keeps the
/// SDK's default, which does nothing, or its plugin is older than the callback): they
/// are not called again, two crossings of the plugin boundary fewer per message.
#[derive(Default)]
pub(crate) struct Skipped {
    before_action: bool,
    after_action: bool,
}

/// An ordinary agent's worker: its messages one at a time, in arrival order.
pub(crate) struct Worker {
    pub handler: Handler,
    pub mailbox: MailboxReceiver<Work>,
    /// Whether `after_add` ran.
    pub started: bool,
    /// Dropped with the worker: tells the space it ended.
    pub _ended: mpsc::Sender<()>,
}

impl Job for Worker {
    /// Runs `after_add` first; then up to `budget` messages; at [`Work::Stop`] (or once
    /// the space is gone), `before_remove`, and the worker is done.
    fn turn(&mut self, budget: usize, speeds: &Speeds) -> Turn {
        if !self.started {
            self.started = true;
            self.handler.after_add();
        }
        for _ in 0..budget {
            match self.mailbox.try_next() {
                Ok(Work::Message(incoming)) => {
                    self.handler.accept(*incoming, Some(speeds));
                }
                Ok(Work::Stop) | Err(TryRecvError::Disconnected) => {
                    self.handler.before_remove();
                    return Turn::Done;
                }
                Err(TryRecvError::Empty) => return Turn::Idle,
            }
        }
        // Anything put from now on notifies the task, which runs again.
        if self.mailbox.is_empty() {
            Turn::Idle
        } else {
            Turn::More
        }
    }
}

/// A concurrent agent's worker: gives its messages, in arrival order, to its free
/// handles, each handled as a task of its own.
pub(crate) struct Crew {
    /// The crew's own task, scheduled again when a handle comes back.
    pub task: Arc<Task>,
    pub mailbox: MailboxReceiver<Work>,
    pub free: Arc<Mutex<Vec<Handler>>>,
    /// How many handles the agent has.
    pub handles: usize,
    pub started: bool,
    /// Whether the agent was removed: no message is given out any more.
    pub stopping: bool,
    /// Dropped with the crew: tells the space it ended.
    pub _ended: mpsc::Sender<()>,
}

impl Job for Crew {
    /// Runs `after_add` first; then gives out up to `budget` messages while handles are
    /// free; once removed, runs `before_remove` when every handle is back.
    fn turn(&mut self, budget: usize, _speeds: &Speeds) -> Turn {
        if !self.started {
            self.started = true;
            if let Some(handler) = self.free.lock().unwrap().first_mut() {
                handler.after_add();
            }
        }
        for _ in 0..budget {
            let mut free = self.free.lock().unwrap();
            if self.stopping {
                if free.len() < self.handles {
                    return Turn::Idle;
                }
                if let Some(handler) = free.first_mut() {
                    handler.before_remove();
                }
                return Turn::Done;
            }
            if free.is_empty() {
                // The next handle that comes back schedules the crew again.
                return Turn::Idle;
            }
            match self.mailbox.try_next() {
                Ok(Work::Message(incoming)) => {
                    let handler = free.pop();
                    drop(free);
                    Task::new().start(Box::new(Shift {
                        handler,
                        incoming: Some(*incoming),
                        free: self.free.clone(),
                        crew: self.task.clone(),
                    }));
                }
                Ok(Work::Stop) | Err(TryRecvError::Disconnected) => self.stopping = true,
                Err(TryRecvError::Empty) => return Turn::Idle,
            }
        }
        Turn::More
    }
}

/// One message of a concurrent agent, handled on one of its handles.
struct Shift {
    handler: Option<Handler>,
    incoming: Option<Incoming>,
    free: Arc<Mutex<Vec<Handler>>>,
    crew: Arc<Task>,
}

impl Job for Shift {
    fn turn(&mut self, _budget: usize, _speeds: &Speeds) -> Turn {
        if let (Some(handler), Some(incoming)) = (&mut self.handler, self.incoming.take()) {
            handler.accept(incoming, None);
        }
        Turn::Done
    }
}

impl Drop for Shift {
    /// Gives the handle back to the crew, and wakes the crew for the next message.
    fn drop(&mut self) {
        if let Some(handler) = self.handler.take() {
            self.free.lock().unwrap().push(handler);
            self.crew.notify();
        }
    }
}

impl Handler {
    fn after_add(&mut self) {
        let result = self.agent.after_add();
        self.callback("after_add", result);
        if self.announce {
            self.announce();
        }
        scheduler::progressed();
    }

    /// Broadcasts this agent's `help` answer as an announcement.
    fn announce(&self) {
        let announcement = serde_json::json!({
            "meta": {"parent_id": ANNOUNCEMENT},
            "to": BROADCAST,
            "action": {"name": RESPONSE, "args": {"value": self.help(None)}},
        });
        let sent = Outgoing::from_value(announcement).and_then(|m| self.endpoint.send(m));
        if let Err(error) = sent {
            tracing::warn!(agent = %self.endpoint.id, %error, "could not announce the agent");
        }
    }

    fn before_remove(&mut self) {
        let result = self.agent.before_remove();
        self.callback("before_remove", result);
    }

    /// Checks a message (reading its head, unless it came parsed) and handles it, with
    /// its request chain as the chain of requests made meanwhile; notes in `speeds`, if
    /// given, how long a request took (a request of this runtime carries a chain).
    fn accept(&mut self, Incoming { body, mut parsed }: Incoming, speeds: Option<&Speeds>) {
        let returned: (Message, String);
        let mut chain = Vec::new();
        let accepted = match &mut parsed {
            Some(message) => {
                chain = crate::chain::take(&mut message.meta);
                Some((Head::of(message), body.as_str()))
            }
            None => match self.endpoint.accept(&body) {
                Some(Accepted::Head(mut head)) => {
                    // Read from the text: the head owns its meta, `to_mut` copies nothing.
                    chain = crate::chain::take(head.meta.to_mut());
                    Some((head, body.as_str()))
                }
                Some(Accepted::Returned(message)) => {
                    let json = message.to_json();
                    returned = (message, json);
                    Some((Head::of(&returned.0), returned.1.as_str()))
                }
                None => None,
            },
        };
        if let Some((head, json)) = accepted {
            self.endpoint.count(|c| &c.received);
            let timed = (!chain.is_empty()).then(Instant::now).zip(speeds);
            crate::chain::handling(chain, || self.handle(&head, json));
            if let Some((started, speeds)) = timed {
                speeds.record(&head.action.name, started.elapsed());
            }
            self.endpoint.count(|c| &c.handled);
        }
        scheduler::progressed();
    }

    /// Handles one message, of which `head` was read; `json` is its text as it arrived.
    fn handle(&mut self, head: &Head, json: &str) {
        if head.is_reply() {
            let (name, result) = if head.action.name == RESPONSE {
                ("handle_action_value", self.agent.handle_action_value(json))
            } else {
                ("handle_action_error", self.agent.handle_action_error(json))
            };
            self.callback(name, result);
            return;
        }
        if head.action.name == HELP {
            let message = Message::from_json(json).ok();
            let only = message
                .as_ref()
                .and_then(|m| m.action.args.get("action_name"))
                .and_then(Value::as_str);
            self.reply(head, Ok(Some(self.help(only))));
            return;
        }
        let Some(action) = self
            .spec
            .actions
            .iter()
            .find(|a| a.name == head.action.name)
        else {
            if !head.is_broadcast() {
                self.reply(
                    head,
                    Err(ActionError::unknown_action(
                        &head.action.name,
                        &self.endpoint.id,
                    )),
                );
            }
            return;
        };
        if !self.permitted(action.access, json) {
            let error = ActionError::of(
                Kind::Permission,
                format!(
                    "\"{}.{}\" not permitted",
                    self.endpoint.id, head.action.name
                ),
            );
            self.reply(head, Err(error));
            return;
        }
        if !self.skipped.before_action {
            let result = self.agent.before_action(json);
            self.skipped.before_action = self.callback("before_action", result);
        }
        let outcome = match &self.endpoint.metrics {
            Some(metrics) => {
                let started = Instant::now();
                let outcome = self.agent.action(json);
                metrics.action.observe(started.elapsed());
                outcome
            }
            None => self.agent.action(json),
        };
        if self.skipped.after_action {
            self.reply(head, outcome);
        } else {
            self.reply(head, outcome.clone());
            let result = self.agent.after_action(&outcome);
            self.skipped.after_action = self.callback("after_action", result);
        }
    }

    fn permitted(&mut self, access: Access, json: &str) -> bool {
        match access {
            Access::Permitted => true,
            Access::Denied => false,
            Access::Requested => {
                let allowed = match self.agent.request_permission(json) {
                    Ok(allowed) => allowed,
                    Err(error) => {
                        tracing::warn!(agent = %self.endpoint.id, %error, "request_permission failed; refusing");
                        false
                    }
                };
                if let Some(metrics) = &self.endpoint.metrics {
                    metrics.permission_asked.fetch_add(1, Ordering::Relaxed);
                    if allowed {
                        metrics.permission_allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                allowed
            }
        }
    }

    /// `{name: help entry}` for every action, or only for action `only`.
    fn help(&self, only: Option<&str>) -> Value {
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
    fn reply(&self, head: &Head, outcome: Result<Option<Value>, ActionError>) {
        let reply = match outcome {
            Ok(None) => return,
            Ok(Some(value)) => head.response(value),
            Err(error) => {
                if let Some(metrics) = &self.endpoint.metrics {
                    self.endpoint.count(|c| &c.errors);
                    metrics.error(error.kind());
                }
                head.error_reply(&error)
            }
        };
        if let Err(error) = self.endpoint.answer(reply) {
            if let Some(count) = self.endpoint.unsent_replies.occurred() {
                tracing::warn!(agent = %self.endpoint.id, ?error, count, "could not send a reply");
            }
        }
    }

    /// Logs a callback's failure; answers whether the agent does not implement the
    /// callback (it said "unsupported": its plugin is older, or it keeps the default).
    fn callback(&self, name: &str, result: Result<(), ActionError>) -> bool {
        match result {
            Err(error) if error.is_unsupported() => true,
            Err(error) => {
                tracing::warn!(agent = %self.endpoint.id, callback = name, %error, "callback failed");
                false
            }
            Ok(()) => false,
        }
    }
}
