//! One operator's conversation with the space, whatever front end shows it: the console,
//! the web page, or a third one (a JSON-lines mode, say) that would only read input and
//! render [`Event`]s.
//!
//! A [`Session`] drives one foreground agent. It sends what the operator typed
//! ([`Session::send`]) and remembers what awaits a reply; it reads every message for its
//! agent ([`Session::on_message`]) into typed events: replies paired with what they
//! answer, messages that came back undeliverable (with the nearest id as a suggestion),
//! actions other agents sent. It asks agents for their `help` quietly, to fill the
//! [`Catalogue`] that completion and forms use: those answers become
//! [`Event::Learned`], never chat. Permission questions are answered through it, under
//! its front end's name.
//!
//! Invariant: **a reply is never read before the request it answers is recorded.** The
//! state lock is held from sending until the request is noted, and `on_message` takes it
//! first; so a quick reply cannot be taken for an unsolicited message.
//!
//! The session starts no thread: its front end delivers the messages (from
//! [`Foreground::subscribe`]) and the permission notices (from [`Session::listen`]) on
//! whichever thread suits it.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use agency_protocol::{
    message::{Outgoing, BROADCAST},
    ActionError, Kind, Message,
};
use agency_runtime::{Foreground, Space, HELP};
use serde_json::Value;

use crate::{
    catalogue::Catalogue,
    permissions::{Listener, Permissions, Question, TooLate},
    suggest::did_you_mean,
};

/// What a message for the session's agent means to the operator.
#[derive(Debug, Clone)]
pub enum Event {
    /// `agent`'s `help` answered: the catalogue now has its actions.
    Learned(String),
    /// A reply to a message this session sent.
    Reply {
        /// The reply.
        message: Message,
        /// The action of the message it answers, when this session awaited it (replies
        /// to a broadcast are not awaited).
        asked: Option<String>,
        /// Its value, or the error the agent raised.
        result: Result<Value, ActionError>,
    },
    /// A message this session sent came back: nobody holds its recipient.
    Undeliverable {
        /// The returned message (its `from` is the id nobody holds).
        message: Message,
        /// What the transport said.
        error: ActionError,
        /// The nearest id of an agent here, if one is near.
        did_you_mean: Option<String>,
    },
    /// An action another agent sent to this session's agent.
    Action(Message),
}

/// A message the session sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Its `meta.id`.
    pub id: String,
    /// Whether a reply is awaited (it went to one agent, not to every agent).
    pub expects_reply: bool,
}

/// How many `help` requests are remembered to recognise their answers (the oldest are
/// forgotten first).
const HELP_REMEMBERED: usize = 1024;

/// One front end's session: its agent, what it awaits, what it learnt.
pub struct Session {
    space: Arc<Space>,
    me: Foreground,
    permissions: Permissions,
    /// The front end's name, as permission answers are signed (`"console"`).
    name: &'static str,
    state: Mutex<State>,
    catalogue: Mutex<Catalogue>,
}

#[derive(Default)]
struct State {
    /// Messages sent to one agent whose reply has not come: id -> action name.
    awaited: HashMap<String, String>,
    /// `help` requests sent: id -> whether quietly (answers are then not shown).
    helps: HashMap<String, bool>,
    /// The ids of `helps`, oldest first.
    help_order: VecDeque<String>,
}

impl State {
    fn note_help(&mut self, id: String, quiet: bool) {
        if self.help_order.len() >= HELP_REMEMBERED {
            if let Some(oldest) = self.help_order.pop_front() {
                self.helps.remove(&oldest);
            }
        }
        self.help_order.push_back(id.clone());
        self.helps.insert(id, quiet);
    }
}

impl Session {
    /// A session driving agent `me` of `space`; it answers permission questions as
    /// `name` (`"console"`, `"web page"`).
    pub fn new(
        space: Arc<Space>,
        me: Foreground,
        permissions: Permissions,
        name: &'static str,
    ) -> Self {
        Self {
            space,
            me,
            permissions,
            name,
            state: Mutex::default(),
            catalogue: Mutex::default(),
        }
    }

    /// The session's agent.
    pub fn me(&self) -> &Foreground {
        &self.me
    }

    /// The space it talks to.
    pub fn space(&self) -> &Arc<Space> {
        &self.space
    }

    /// What the session knows of the agents (locked while the guard lives).
    pub fn catalogue(&self) -> MutexGuard<'_, Catalogue> {
        self.catalogue.lock().unwrap()
    }

    /// Sends `message` as the session's agent; a reply to it is awaited unless it went
    /// to every agent.
    pub fn send(&self, message: Outgoing) -> Result<Sent, ActionError> {
        let expects_reply = message.to != BROADCAST;
        let action = message.action.name.clone();
        let mut state = self.state.lock().unwrap();
        let id = self.me.send(message)?;
        if action == HELP {
            state.note_help(id.clone(), false);
        }
        if expects_reply {
            state.awaited.insert(id.clone(), action);
        }
        Ok(Sent { id, expects_reply })
    }

    /// How many replies are awaited.
    pub fn awaiting(&self) -> usize {
        self.state.lock().unwrap().awaited.len()
    }

    /// Asks `to` (an agent, or `*` for every agent) for its `help`, quietly: the answers
    /// fill the catalogue and are not shown.
    pub fn learn_from(&self, to: &str) {
        let request = Outgoing {
            to: to.to_owned(),
            action: agency_protocol::message::Action {
                name: HELP.to_owned(),
                args: Default::default(),
            },
            ..Default::default()
        };
        let mut state = self.state.lock().unwrap();
        if let Ok(id) = self.me.send(request) {
            state.note_help(id, true);
        }
    }

    /// Notes agent `id` in the catalogue; if it is new, asks for its `help`, quietly.
    pub fn discover(&self, id: &str) {
        if id != self.me.id() && self.catalogue().add_agent(id) {
            self.learn_from(id);
        }
    }

    /// Notes this host's agents, then asks every agent of the space for its `help`
    /// with one quiet broadcast.
    pub fn learn_all(&self) {
        {
            let mut catalogue = self.catalogue();
            for id in self.space.agent_ids() {
                if id != self.me.id() {
                    catalogue.add_agent(&id);
                }
            }
        }
        self.learn_from(BROADCAST);
    }

    /// Notes this host's agents that the catalogue does not know yet, and asks each
    /// for its `help`, quietly.
    pub fn discover_local(&self) {
        for id in self.space.agent_ids() {
            self.discover(&id);
        }
    }

    /// What a message for the session's agent means: [`Event::Learned`] when it is a
    /// `help` answer (then nothing more, if the request was quiet), and what to show.
    pub fn on_message(&self, message: Message) -> Vec<Event> {
        let mut events = Vec::with_capacity(1);
        let reply = message.reply();
        let (help, asked) = {
            let mut state = self.state.lock().unwrap();
            match &message.meta.parent_id {
                Some(parent) => (
                    state.helps.get(parent).copied(),
                    state.awaited.remove(parent),
                ),
                None => (None, None),
            }
        };
        if let (Some(_), Some(Ok(value))) = (help, &reply) {
            if self.catalogue().learn_help(&message.from, value) {
                events.push(Event::Learned(message.from.clone()));
            }
        }
        if help == Some(true) {
            return events;
        }
        events.push(match reply {
            Some(Err(error)) if error.is(Kind::Undeliverable) => Event::Undeliverable {
                did_you_mean: did_you_mean(&self.space, &message.from),
                message,
                error,
            },
            Some(result) => Event::Reply {
                message,
                asked,
                result,
            },
            None => Event::Action(message),
        });
        events
    }

    /// The permission notices, for this front end to show.
    pub fn listen(&self) -> Listener {
        self.permissions.listen()
    }

    /// The permission questions open now, oldest first.
    pub fn open_questions(&self) -> Vec<Arc<Question>> {
        self.permissions.open()
    }

    /// Answers permission question `id` in this front end's name; fails with why, when
    /// another answer came first or no such question was asked.
    pub fn answer(&self, id: u64, allowed: bool) -> Result<(), TooLate> {
        self.permissions.answer(id, allowed, self.name)
    }

    /// This front end's name, as its permission answers are signed.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What `/stats` answers: this host's agents' counts, or agent `id`'s.
    pub fn stats(&self, id: Option<&str>) -> String {
        crate::stats::answer(&self.space, id)
    }
}
