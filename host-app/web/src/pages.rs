//! The page's side of the space: its agent, what it sends and receives, and the agents
//! it knows of.
//!
//! Every open page (every tab) shares one agent, `<console id>-web`, and one chat: what
//! one tab sends and receives is shown in all of them, as [`events`](Session::events).
//! Lines are read by the console's parser ([`agency_operator::command::parse`]), so the
//! syntax and its errors are the same.
//!
//! Agents are discovered the way the protocol allows on every transport: this host's are
//! listed by the space, and a broadcast `help` (at start, and on each page's request)
//! brings an answer from every agent that hears it, Python agents included. Those
//! answers are not shown in the chat; they fill the agents view and the completion.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use agency_operator::{
    command::{self, help_lines, Command, STATS_HELP, SYNTAX_HELP},
    suggest::did_you_mean,
    Notice, Permissions,
};
use agency_protocol::Kind;
use agency_protocol::Message;
use agency_runtime::{Foreground, Space, HELP};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::traffic::Traffic;

/// How many `help` requests are remembered to recognise their answers.
const HELP_REMEMBERED: usize = 1024;

/// How many events may wait for a slow page before it misses some (it is told how many).
const EVENTS_BOUND: usize = 1024;

/// The page's agent and what it learnt; shared by every request and WebSocket.
pub struct Session {
    space: Arc<Space>,
    me: Foreground,
    permissions: Permissions,
    wait: Duration,
    events: broadcast::Sender<Arc<str>>,
    /// Agents heard from (by their `help` answers): id -> help.
    heard: Mutex<BTreeMap<String, Value>>,
    /// Ids of the `help` requests sent, each with whether it was sent to learn the
    /// agents (its answers are then not chat). Answers to all of them fill `heard`.
    asked_help: Mutex<HashMap<String, bool>>,
    traffic: Traffic,
    closed: Arc<AtomicBool>,
    /// Held from sending a message until its `sent` event is out, and by the incoming
    /// thread before each event: a reply never reaches a page before what it answers.
    order: Mutex<()>,
}

/// What the page's name is when it answers a permission question.
const PAGE: &str = "web page";

impl Session {
    /// Starts the session of agent `me`: its incoming messages and the permission
    /// questions become events, and a broadcast `help` asks every agent what it does.
    pub fn start(
        space: Arc<Space>,
        me: Foreground,
        permissions: Permissions,
        wait: Duration,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(EVENTS_BOUND);
        let session = Arc::new(Self {
            traffic: Traffic::start(space.clone()),
            space,
            me,
            permissions,
            wait,
            events,
            heard: Mutex::default(),
            asked_help: Mutex::default(),
            closed: Arc::default(),
            order: Mutex::default(),
        });
        spawn("web page messages", {
            let session = session.clone();
            let incoming = session.me.subscribe();
            move || {
                while !session.closed.load(Ordering::Acquire) {
                    if let Some(message) = incoming.recv_timeout(Duration::from_millis(200)) {
                        session.on_incoming(message);
                    }
                }
            }
        });
        spawn("web page questions", {
            let (listener, events, closed) = (
                session.permissions.listen(),
                session.events.clone(),
                session.closed.clone(),
            );
            move || {
                while !closed.load(Ordering::Acquire) {
                    if let Ok(notice) = listener.notices().recv_timeout(Duration::from_millis(200))
                    {
                        let _ = events.send(notice_event(&notice).to_string().into());
                    }
                }
            }
        });
        session.refresh();
        session
    }

    /// The events every page receives, as JSON texts (see `assets/app.js`).
    pub fn events(&self) -> broadcast::Receiver<Arc<str>> {
        self.events.subscribe()
    }

    /// The space's traffic, for the traffic view.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// The first event a page receives: who it is, how long it waits for a reply, the
    /// agents and the questions open.
    pub fn hello(&self) -> Value {
        let questions: Vec<Value> = self
            .permissions
            .open()
            .into_iter()
            .map(|question| notice_event(&Notice::Asked(question)))
            .collect();
        json!({
            "type": "hello",
            "me": self.me.id(),
            "wait_ms": self.wait.as_millis() as u64,
            "agents": self.agents(),
            "questions": questions,
        })
    }

    /// Every agent known: this host's (with their type) and those that answered `help`.
    pub fn agents(&self) -> Value {
        let mut agents: BTreeMap<String, Value> = BTreeMap::new();
        for (id, kind) in self.space.agents() {
            if id != self.me.id() {
                agents.insert(id.clone(), json!({"id": id, "type": kind, "local": true}));
            }
        }
        for (id, help) in self.heard.lock().unwrap().iter() {
            let entry = agents
                .entry(id.clone())
                .or_insert_with(|| json!({"id": id, "type": null, "local": false}));
            entry["help"] = help.clone();
        }
        Value::Array(agents.into_values().collect())
    }

    /// Asks every agent for its `help`, quietly (the answers update the agents view).
    pub fn refresh(&self) {
        let request = json!({"to": "*", "action": {"name": HELP, "args": {}}});
        if let Ok(id) = self.me.send(request) {
            self.note_help(id, true);
        }
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
            Command::Stats(id) => {
                let text = agency_operator::stats::answer(&self.space, id.as_deref());
                Ok(json!({ "text": text }))
            }
            Command::Send(message) => {
                let message = json!({"to": message.to, "action": {
                    "name": message.action.name, "args": message.action.args}});
                self.send(message, Some(line))
            }
            Command::Nothing => Err("nothing to send".into()),
        }
    }

    /// Sends a message (`{"to", "action": {"name", "args"}}`) as the page's agent; every
    /// page is told (`sent`), with `line` as the user typed it, if typed.
    pub fn send(&self, message: Value, line: Option<&str>) -> Result<Value, String> {
        let _order = self.order.lock().unwrap();
        let id = self.me.send(&message).map_err(|e| e.to_string())?;
        if message["action"]["name"] == HELP {
            self.note_help(id.clone(), false);
        }
        let sent = json!({
            "type": "sent",
            "id": id,
            "to": message["to"],
            "action": message["action"],
            "line": line,
            "expects_reply": message["to"] != "*",
        });
        let _ = self.events.send(sent.to_string().into());
        Ok(json!({"id": id}))
    }

    /// Answers permission question `id` for the page; fails with how it was decided, if
    /// another answer came first.
    pub fn answer(&self, id: u64, allowed: bool) -> Result<(), String> {
        self.permissions
            .answer(id, allowed, PAGE)
            .map_err(|earlier| match earlier {
                Some(decision) => format!("already {decision}"),
                None => format!("no question {id} was asked"),
            })
    }

    /// Remembers a `help` request (the latest [`HELP_REMEMBERED`]).
    fn note_help(&self, id: String, quiet: bool) {
        let mut asked = self.asked_help.lock().unwrap();
        if asked.len() >= HELP_REMEMBERED {
            asked.clear();
        }
        asked.insert(id, quiet);
    }

    /// Stops the session's threads and takes its agent out of the space.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.traffic.close();
        let _ = self.space.remove(self.me.id());
    }

    /// A message for the page's agent: a `help` answer it asked for quietly fills the
    /// agents view; anything else becomes a `message` event.
    fn on_incoming(&self, message: Message) {
        drop(self.order.lock().unwrap());
        let reply = message.reply();
        let asked_help = message
            .meta
            .parent_id
            .as_ref()
            .and_then(|parent| self.asked_help.lock().unwrap().get(parent).copied());
        let quiet = asked_help == Some(true);
        if let (Some(Ok(help)), Some(_)) = (&reply, asked_help) {
            if help.is_object() {
                self.heard
                    .lock()
                    .unwrap()
                    .insert(message.from.clone(), help.clone());
                let _ = self.events.send(
                    json!({"type": "agents", "agents": self.agents()})
                        .to_string()
                        .into(),
                );
            }
        }
        if quiet {
            return;
        }
        let mut event = json!({
            "type": "message",
            "from": message.from,
            "id": message.meta.id,
            "parent_id": message.meta.parent_id,
            "action": message.action.name,
            "args": message.action.args,
        });
        match reply {
            Some(Ok(value)) => event["value"] = value,
            Some(Err(error)) => {
                event["error"] = error.to_string().into();
                if error.is(Kind::Undeliverable) {
                    event["undeliverable"] = true.into();
                    event["did_you_mean"] = did_you_mean(&self.space, &message.from).into();
                }
            }
            None => {}
        }
        let _ = self.events.send(event.to_string().into());
    }
}

/// A permission notice as the page receives it.
fn notice_event(notice: &Notice) -> Value {
    match notice {
        Notice::Asked(question) => json!({
            "type": "question",
            "id": question.id,
            "agent": question.agent,
            "from": question.message.from,
            "action": question.message.action.name,
            "args": question.message.action.args,
            "broadcast": question.message.is_broadcast(),
        }),
        Notice::Decided { id, allowed, by } => {
            json!({"type": "decided", "id": id, "allowed": allowed, "by": by})
        }
    }
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
