//! [`Endpoint`]: one agent's place in a space, whatever runs behind it.
//!
//! An endpoint is what the transport delivers to (it is the agent's [`Inbound`] sink) and
//! what the agent sends through (it is the agent's [`HostLink`]). It validates incoming
//! messages, hands replies straight to the request waiting for them, queues everything
//! else for the agent's worker, and completes outgoing messages (`from`, `meta.id`).

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Condvar, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use agency_sdk::{
    boundary::{HostLink, Inbound, TransportSpace},
    message::{BROADCAST, ERROR},
    protocol::{host_op, LogRecord, RequestCall, UNSUPPORTED},
    Message,
};
use serde_json::{Map, Value};

use crate::validate_id;

/// How many sent messages an agent remembers for `parent_message` look-ups.
pub const SENT_LOG_CAPACITY: usize = 1024;

/// Decides whether a `requested` action may run (for example by asking a person).
pub type PermissionPrompt = Arc<dyn Fn(&Message) -> bool + Send + Sync>;

/// What all endpoints of one space share.
pub(crate) struct SpaceCore {
    pub transport: Box<dyn TransportSpace>,
    pub destroyed: AtomicBool,
    pub permission_prompt: RwLock<Option<PermissionPrompt>>,
}

/// Work for an agent's worker thread.
pub(crate) enum Work {
    Message(Message),
    Stop,
}

/// A reply that completes a pending request.
enum Reply {
    Value(Value),
    Error(String),
}

pub(crate) struct Endpoint {
    pub id: String,
    receive_own_broadcasts: bool,
    core: Arc<SpaceCore>,
    worker: Option<mpsc::Sender<Work>>,
    log: Option<MessageLog>,
    pending: Mutex<HashMap<String, mpsc::SyncSender<Reply>>>,
    sent: Mutex<VecDeque<Message>>,
}

impl Endpoint {
    pub fn new(
        id: String,
        receive_own_broadcasts: bool,
        core: Arc<SpaceCore>,
        worker: Option<mpsc::Sender<Work>>,
        keep_log: bool,
    ) -> Self {
        Self {
            id,
            receive_own_broadcasts,
            core,
            worker,
            log: keep_log.then(MessageLog::default),
            pending: Mutex::default(),
            sent: Mutex::default(),
        }
    }

    pub fn log(&self) -> Option<&MessageLog> {
        self.log.as_ref()
    }

    /// Completes and publishes a message; answers it as sent, or `"<Kind>: <text>"`.
    pub fn send(&self, outgoing: Value) -> Result<Message, String> {
        let message = self.complete(outgoing)?;
        self.publish(&message)?;
        Ok(message)
    }

    /// Sends a message and waits up to `timeout` for its reply's value.
    pub fn request(&self, outgoing: Value, timeout: Duration) -> Result<Value, String> {
        let message = self.complete(outgoing)?;
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.pending.lock().unwrap().insert(message.meta.id.clone(), reply_tx);
        if let Err(error) = self.publish(&message) {
            self.pending.lock().unwrap().remove(&message.meta.id);
            return Err(error);
        }
        let started = Instant::now();
        match reply_rx.recv_timeout(timeout) {
            Ok(Reply::Value(value)) => Ok(value),
            Ok(Reply::Error(error)) => Err(error),
            Err(_) => {
                self.pending.lock().unwrap().remove(&message.meta.id);
                Err(format!(
                    "TimeoutError: no reply from \"{}\" to \"{}\" within {:.3}s",
                    message.to,
                    message.action.name,
                    started.elapsed().as_secs_f64()
                ))
            }
        }
    }

    /// Fills in `from` and `meta.id` and validates the result.
    fn complete(&self, outgoing: Value) -> Result<Message, String> {
        let Value::Object(mut fields) = outgoing else {
            return Err("TypeError: a message must be a JSON object".into());
        };
        match fields.get("from") {
            None => {
                fields.insert("from".into(), Value::String(self.id.clone()));
            }
            Some(Value::String(from)) if *from == self.id => {}
            Some(other) => {
                return Err(format!("ValueError: \"from\" must be the sender's id \"{}\", not {other}", self.id));
            }
        }
        let meta = fields.entry("meta").or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(meta) = meta else {
            return Err("ValueError: invalid message: \"meta\" must be an object".into());
        };
        meta.entry("id").or_insert_with(|| Value::String(uuid::Uuid::new_v4().to_string()));
        let message: Message = serde_json::from_value(Value::Object(fields))
            .map_err(|e| format!("ValueError: invalid message: {e}"))?;
        if message.to != BROADCAST {
            validate_id(&message.to).map_err(|e| format!("ValueError: invalid recipient {:?}: {e}", message.to))?;
        }
        Ok(message)
    }

    fn publish(&self, message: &Message) -> Result<(), String> {
        if self.core.destroyed.load(Ordering::Acquire) {
            return Err("RuntimeError: the space has been destroyed".into());
        }
        {
            let mut sent = self.sent.lock().unwrap();
            if sent.len() == SENT_LOG_CAPACITY {
                sent.pop_front();
            }
            sent.push_back(message.clone());
        }
        if let Some(log) = &self.log {
            log.record(message.clone(), false);
        }
        self.core
            .transport
            .publish(&message.to, &message.to_json())
            .map_err(|e| format!("TransportError: {e}"))
    }

    fn sent_message(&self, id: &str) -> Option<Message> {
        self.sent.lock().unwrap().iter().rev().find(|m| m.meta.id == id).cloned()
    }

    fn ask_permission(&self, message: &Message) -> bool {
        let prompt = self.core.permission_prompt.read().unwrap().clone();
        prompt.is_some_and(|prompt| prompt(message))
    }
}

impl Inbound for Endpoint {
    fn deliver(&self, body: &str) {
        let message = match Message::from_json(body) {
            Ok(message) => message,
            Err(reason) => {
                tracing::warn!(agent = %self.id, %reason, "dropped a message");
                return;
            }
        };
        if message.to != self.id && !message.is_broadcast() {
            tracing::warn!(agent = %self.id, to = %message.to, "dropped a message addressed to another agent");
            return;
        }
        if message.is_broadcast() && message.from == self.id && !self.receive_own_broadcasts {
            return;
        }
        if let Some(log) = &self.log {
            log.record(message.clone(), true);
        }
        if message.is_reply() {
            let waiter = message.meta.parent_id.as_ref().and_then(|id| self.pending.lock().unwrap().remove(id));
            if let Some(waiter) = waiter {
                let args = &message.action.args;
                let reply = if message.action.name == ERROR {
                    Reply::Error(args.get("error").and_then(Value::as_str).unwrap_or("Error: (no text)").to_owned())
                } else {
                    Reply::Value(args.get("value").cloned().unwrap_or(Value::Null))
                };
                let _ = waiter.try_send(reply);
                return;
            }
        }
        if let Some(worker) = &self.worker {
            let _ = worker.send(Work::Message(message));
        }
    }
}

impl HostLink for Endpoint {
    fn call(&self, op: &str, payload: &str) -> Result<String, String> {
        let parse = |text: &str| serde_json::from_str::<Value>(text).map_err(|e| format!("TypeError: {e}"));
        match op {
            host_op::SEND => Ok(Value::String(self.send(parse(payload)?)?.meta.id).to_string()),
            host_op::REQUEST => {
                let call: RequestCall = serde_json::from_str(payload).map_err(|e| format!("TypeError: {e}"))?;
                let timeout = Duration::try_from_secs_f64(call.timeout).unwrap_or(Duration::ZERO);
                Ok(self.request(call.message, timeout)?.to_string())
            }
            host_op::ASK_PERMISSION => Ok(self.ask_permission(&Message::from_json(payload)?).to_string()),
            host_op::SENT_MESSAGE => {
                let id = parse(payload)?.get("id").and_then(Value::as_str).map(str::to_owned).unwrap_or_default();
                Ok(self.sent_message(&id).map_or_else(|| "null".to_owned(), |m| m.to_json()))
            }
            host_op::LOG => {
                let record: LogRecord = serde_json::from_str(payload).map_err(|e| e.to_string())?;
                crate::emit_log(&self.id, &record);
                Ok("null".into())
            }
            _ => Err(format!("{UNSUPPORTED} {op:?}")),
        }
    }
}

/// The messages a foreground agent sent and received, in order.
#[derive(Default)]
pub(crate) struct MessageLog {
    entries: Mutex<LogEntries>,
    changed: Condvar,
    subscribers: Mutex<Vec<mpsc::Sender<Message>>>,
}

#[derive(Default)]
struct LogEntries {
    all: Vec<Message>,
    received: Vec<Message>,
}

impl MessageLog {
    /// Appends a message; received ones also go to the subscribers.
    fn record(&self, message: Message, received: bool) {
        let mut entries = self.entries.lock().unwrap();
        if received {
            self.subscribers.lock().unwrap().retain(|s| s.send(message.clone()).is_ok());
            entries.received.push(message.clone());
        }
        entries.all.push(message);
        self.changed.notify_all();
    }

    pub fn all(&self) -> Vec<Message> {
        self.entries.lock().unwrap().all.clone()
    }

    pub fn received(&self) -> Vec<Message> {
        self.entries.lock().unwrap().received.clone()
    }

    pub fn subscribe(&self) -> mpsc::Receiver<Message> {
        let (tx, rx) = mpsc::channel();
        self.subscribers.lock().unwrap().push(tx);
        rx
    }

    /// Waits until `done(received messages)` holds or `timeout` passes; answers whether
    /// it held.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&[Message]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut entries = self.entries.lock().unwrap();
        loop {
            if done(&entries.received) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            entries = self.changed.wait_timeout(entries, left).unwrap().0;
        }
    }
}
