//! What every open page shares: one operator [`Session`] (its agent, `<console id>-web`,
//! what it sent and awaits, the agents it knows of), one chat, one traffic view. What one
//! tab sends and receives is shown in all of them, as [`events`](Pages::events). Lines
//! are read by the console's parser ([`agency_operator::command::parse`]), so the syntax
//! and its errors are the same; what a message means is the session's, as at the console.
//!
//! Agents are discovered the way the protocol allows on every transport: this host's are
//! listed by the space, and a broadcast `help` (at start, and on each page's request)
//! brings an answer from every agent that hears it, Python agents included. Those
//! answers are not shown in the chat; they fill the agents view and the completion.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use agency_operator::{
    command::{self, help_lines, Command, STATS_HELP, SYNTAX_HELP},
    session, Permissions, Session,
};
use agency_protocol::{message::Outgoing, ActionError, Message};
use agency_runtime::{Foreground, Space};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::{events::PageEvent, traffic::Traffic};

/// How many events may wait for a slow page before it misses some (it is told how many).
const EVENTS_BOUND: usize = 1024;

/// The name the page answers permission questions under.
const PAGE: &str = "web page";

/// The pages' session and what they share; shared by every request and WebSocket.
pub struct Pages {
    session: Session,
    wait: Duration,
    events: broadcast::Sender<Arc<str>>,
    traffic: Traffic,
    closed: Arc<AtomicBool>,
    /// Held from sending a message until its `sent` event is out, and by the incoming
    /// thread before each event: a reply never reaches a page before what it answers.
    order: Mutex<()>,
}

impl Pages {
    /// Starts the pages' session, driving agent `me`: its incoming messages and the
    /// permission questions become events, and a broadcast `help` asks every agent what
    /// it does.
    pub fn start(
        space: Arc<Space>,
        me: Foreground,
        permissions: Permissions,
        wait: Duration,
    ) -> Arc<Self> {
        let session = Session::new(space, me, permissions, PAGE);
        let (events, _) = broadcast::channel(EVENTS_BOUND);
        let pages = Arc::new(Self {
            traffic: Traffic::start(session.space().clone()),
            session,
            wait,
            events,
            closed: Arc::default(),
            order: Mutex::default(),
        });
        spawn("web page messages", {
            let pages = pages.clone();
            let incoming = pages.session.me().subscribe();
            move || {
                while !pages.closed.load(Ordering::Acquire) {
                    if let Some(message) = incoming.recv_timeout(Duration::from_millis(200)) {
                        pages.on_incoming(message);
                    }
                }
            }
        });
        spawn("web page questions", {
            let (listener, events, closed) = (
                pages.session.listen(),
                pages.events.clone(),
                pages.closed.clone(),
            );
            move || {
                while !closed.load(Ordering::Acquire) {
                    if let Ok(notice) = listener.notices().recv_timeout(Duration::from_millis(200))
                    {
                        let _ = events.send(PageEvent::notice(&notice).text().into());
                    }
                }
            }
        });
        pages.refresh();
        pages
    }

    /// The events every page receives, as JSON texts (see [`PageEvent`]).
    pub fn events(&self) -> broadcast::Receiver<Arc<str>> {
        self.events.subscribe()
    }

    /// The space's traffic, for the traffic view.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The first event a page receives: who it is, how long it waits for a reply, the
    /// agents and the questions open.
    pub fn hello(&self) -> String {
        let open = self.session.open_questions();
        PageEvent::Hello {
            me: self.session.me().id(),
            wait_ms: self.wait.as_millis() as u64,
            agents: self.agents(),
            questions: open.iter().map(|q| PageEvent::question(q)).collect(),
        }
        .text()
    }

    /// Every agent known: this host's (with their type) and those that answered `help`.
    pub fn agents(&self) -> Value {
        let me = self.session.me().id();
        let mut agents: BTreeMap<String, Value> = BTreeMap::new();
        for (id, kind) in self.session.space().agents() {
            if id != me {
                agents.insert(id.clone(), json!({"id": id, "type": kind, "local": true}));
            }
        }
        for (id, help) in self.session.catalogue().helped() {
            let entry = agents
                .entry(id.to_owned())
                .or_insert_with(|| json!({"id": id, "type": null, "local": false}));
            entry["help"] = help.clone();
        }
        Value::Array(agents.into_values().collect())
    }

    /// Asks every agent for its `help`, quietly (the answers update the agents view).
    pub fn refresh(&self) {
        self.session.learn_all();
    }

    /// Runs a line typed in the chat: a message to send (answers its id and what it
    /// asked), or a console command answered with text; or says what is wrong.
    pub fn line(&self, line: &str) -> Result<Value, String> {
        match command::parse(line).map_err(|e| e.to_string())? {
            Command::Help => Ok(json!({"text": help_text()})),
            Command::Agents => {
                let ids: Vec<String> = self
                    .agents()
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|agent| agent["id"].as_str().map(str::to_owned))
                    .collect();
                Ok(json!({"text": format!("agents: {}", ids.join(", "))}))
            }
            Command::Watch { .. } => Err("the page shows the traffic in its Traffic tab".into()),
            Command::Quit => {
                Err("close the tab to leave; the console's /quit ends the host".into())
            }
            Command::Stats(id) => Ok(json!({ "text": self.session.stats(id.as_deref()) })),
            Command::Send(message) => self.send(message, Some(line)),
            Command::Nothing => Err("nothing to send".into()),
        }
    }

    /// Sends a message (`{"to", "action": {"name", "args"}}`, from a form) as the page's
    /// agent; every page is told, as for a typed line.
    pub fn send_json(&self, message: Value) -> Result<Value, String> {
        let message = Outgoing::from_value(message).map_err(|e| e.to_string())?;
        self.send(message, None)
    }

    /// Sends a message as the page's agent; every page is told (`sent`), with `line` as
    /// the user typed it, if typed.
    fn send(&self, message: Outgoing, line: Option<&str>) -> Result<Value, String> {
        let (to, action) = (message.to.clone(), message.action.clone());
        let _order = self.order.lock().unwrap();
        let sent = self.session.send(message).map_err(|e| e.to_string())?;
        let event = PageEvent::Sent {
            id: &sent.id,
            to: &to,
            action: &action,
            line,
            expects_reply: sent.expects_reply,
        };
        let _ = self.events.send(event.text().into());
        Ok(json!({"id": sent.id}))
    }

    /// Answers permission question `id` for the page; fails with how it was decided, if
    /// another answer came first.
    pub fn answer(&self, id: u64, allowed: bool) -> Result<(), String> {
        self.session
            .answer(id, allowed)
            .map_err(|too_late| too_late.to_string())
    }

    /// Stops the pages' threads and takes their agent out of the space.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.traffic.close();
        let _ = self.session.space().remove(self.session.me().id());
    }

    /// A message for the page's agent, as the session reads it: a `help` answer updates
    /// the agents view; anything not asked quietly becomes a `message` event.
    fn on_incoming(&self, message: Message) {
        drop(self.order.lock().unwrap());
        for event in self.session.on_message(message) {
            let text = match &event {
                session::Event::Learned(_) => PageEvent::Agents {
                    agents: self.agents(),
                }
                .text(),
                session::Event::Reply {
                    message, result, ..
                } => message_event(message, Some(result), None),
                session::Event::Undeliverable {
                    message,
                    error,
                    did_you_mean,
                } => message_event(message, Some(&Err(error.clone())), Some(did_you_mean)),
                session::Event::Action(message) => message_event(message, None, None),
            };
            let _ = self.events.send(text.into());
        }
    }
}

/// A `message` event: a reply's value or error, an undeliverable one's suggestion.
fn message_event(
    message: &Message,
    result: Option<&Result<Value, ActionError>>,
    did_you_mean: Option<&Option<String>>,
) -> String {
    PageEvent::Message {
        from: &message.from,
        id: &message.meta.id,
        parent_id: message.meta.parent_id.as_deref(),
        action: &message.action.name,
        args: &message.action.args,
        value: result.and_then(|r| r.as_ref().ok()),
        error: result
            .and_then(|r| r.as_ref().err())
            .map(ToString::to_string),
        undeliverable: did_you_mean.is_some(),
        did_you_mean: did_you_mean.map(Option::as_deref),
    }
    .text()
}

/// Starts a named thread.
fn spawn(name: &str, body: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .expect("the system can start a thread");
}

/// What `/help` answers on the page.
fn help_text() -> String {
    let own = [
        ("/agents", "the agents known to this page"),
        STATS_HELP,
        ("/help", "this help"),
    ];
    let lines = help_lines(SYNTAX_HELP.iter().chain(&own), "");
    format!("{lines}\nTab completes agent ids, actions and argument names.")
}
