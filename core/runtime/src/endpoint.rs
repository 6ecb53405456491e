//! [`Endpoint`]: one agent's place in a space, whatever runs behind it.
//!
//! An endpoint is what the transport delivers to (it is the agent's [`Inbound`] sink) and
//! what the agent sends through (it is the agent's [`HostLink`]). It validates incoming
//! messages, hands replies straight to the request waiting for them, queues everything
//! else for the agent's worker, and completes outgoing messages (`from`, `meta.id`).

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

use agency_protocol::{
    boundary::{HostLink, Inbound, LogRecord, TransportError, TransportSpace},
    message::{BareOutgoing, Head, Meta, Outgoing, PartialMeta, BROADCAST},
    ActionError, Kind, Message,
};
use agency_sdk::Repeated;
use serde_json::Value;

use crate::{
    chain, direct, handover,
    mailbox::Mailbox,
    message_log::MessageLog,
    metrics::{AgentCounts, TypeCounters},
    scheduler,
    tap::{Taps, Traffic},
    validate_id,
    wait::{ReplySlot, Waiter},
};

/// How many sent messages an agent remembers for `parent_message` look-ups. Its replies
/// are not kept: nothing answers a reply, so none is ever a parent.
pub const SENT_LOG_CAPACITY: usize = 1024;

/// Decides whether a `requested` action may run (for example by asking a person): given
/// the id of the agent whose action it is, and the message.
pub type PermissionPrompt = Arc<dyn Fn(&str, &Message) -> bool + Send + Sync>;

/// What all endpoints of one space share.
pub(crate) struct SpaceCore {
    pub transport: Box<dyn TransportSpace>,
    pub destroyed: AtomicBool,
    pub permission_prompt: RwLock<Option<PermissionPrompt>>,
    /// Messages of this space's agents that no agent could receive.
    pub dead_letters: AtomicU64,
    /// Requests answered at once because they closed a cycle.
    pub cycles_refused: AtomicU64,
    /// Who watches the traffic.
    pub taps: Taps,
}

/// Work for an agent's worker.
pub(crate) enum Work {
    /// A message for the agent. Boxed: a mailbox keeps room for a few dozen items even
    /// when idle, so an item is kept to a pointer.
    Message(Box<Incoming>),
    /// The agent is removed.
    Stop,
}

/// A message on its way to an agent's worker.
pub(crate) struct Incoming {
    /// The body as it arrived, or the `UndeliverableError` reply a returned message
    /// became.
    pub body: String,
    /// The message, if it was already parsed.
    pub parsed: Option<Message>,
}

impl Work {
    /// A message for the agent: its body, and the message if it was already parsed.
    fn message(body: String, parsed: Option<Message>) -> Self {
        Self::Message(Box::new(Incoming { body, parsed }))
    }
}

/// A delivered body a worker handles, as [`Endpoint::accept`] read it.
pub(crate) enum Accepted<'a> {
    /// A message for this agent, read but for its arguments.
    Head(Head<'a>),
    /// The `UndeliverableError` reply one of this agent's returned messages became.
    Returned(Message),
}

/// What [`Endpoint::check`] says of a delivery.
enum Verdict {
    Drop,
    Keep,
    Returned,
}

/// A reply that completes a pending request.
type Reply = Result<Value, ActionError>;

/// A published request: what its timeout error names, where its reply will come, and
/// the agent it woke, if kept to take its turn here (see [`direct`]).
struct SentRequest {
    id: String,
    to: String,
    action: String,
    reply: Arc<ReplySlot<Reply>>,
    woken: Option<scheduler::Next>,
}

pub(crate) struct Endpoint {
    pub id: String,
    receive_own_broadcasts: bool,
    core: Arc<SpaceCore>,
    worker: Option<Mailbox<Work>>,
    log: Option<MessageLog>,
    pending: Mutex<HashMap<String, Arc<ReplySlot<Reply>>>>,
    /// How many of the agent's handles wait, or are about to wait, for replies.
    pending_count: AtomicUsize,
    /// How many messages the agent handles at once (1 but for a concurrent agent).
    handles: usize,
    /// The ids and texts of the last messages sent (replies excepted), oldest first.
    sent: Mutex<VecDeque<(String, String)>>,
    /// Deliveries dropped (malformed, or addressed to another agent): a peer can send
    /// any number, so only some are logged.
    pub dropped: Repeated,
    /// Replies that could not be sent (to a `from` no agent can have, for instance).
    pub unsent_replies: Repeated,
    /// Its type's counters, if the space counts (see [`crate::metrics`]); its own
    /// counts are kept only then.
    pub metrics: Option<Arc<TypeCounters>>,
    /// Boxed: a cache line of its own, without aligning (and growing) the endpoint.
    pub counts: Box<AgentCounts>,
}

impl Endpoint {
    pub fn new(
        id: String,
        receive_own_broadcasts: bool,
        core: Arc<SpaceCore>,
        worker: Option<Mailbox<Work>>,
        handles: usize,
        log: Option<MessageLog>,
        metrics: Option<Arc<TypeCounters>>,
    ) -> Self {
        Self {
            id,
            receive_own_broadcasts,
            core,
            worker,
            log,
            pending: Mutex::default(),
            pending_count: AtomicUsize::new(0),
            handles,
            sent: Mutex::default(),
            dropped: Repeated::default(),
            unsent_replies: Repeated::default(),
            metrics,
            counts: Box::default(),
        }
    }

    /// Adds one to one of this agent's counts, if the space counts.
    pub fn count(&self, counter: impl FnOnce(&AgentCounts) -> &AtomicU64) {
        if self.metrics.is_some() {
            counter(&self.counts).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Moves this agent's counts into its type's totals: it is leaving the space.
    pub fn retire(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.retire(&self.counts);
        }
    }

    pub fn log(&self) -> Option<&MessageLog> {
        self.log.as_ref()
    }

    /// Completes and publishes a message; answers its id.
    pub fn send(&self, outgoing: Outgoing) -> Result<String, ActionError> {
        let message = self.complete(outgoing)?;
        let id = message.meta.id.clone();
        self.publish(message)?;
        Ok(id)
    }

    /// Completes and publishes a reply (nobody asks for a reply's id).
    pub fn answer(&self, reply: Outgoing) -> Result<(), ActionError> {
        self.publish(self.complete(reply)?)
    }

    /// Sends a message and waits up to `timeout` for its reply's value. The message
    /// carries the request chain (see [`crate::chain`]). An agent of this process that
    /// the request wakes may take its turn on this thread meanwhile (see [`direct`]).
    pub fn request(&self, outgoing: Outgoing, timeout: Duration) -> Result<Value, ActionError> {
        let started = Instant::now();
        let chain = chain::extended(&self.id);
        self.waiting(|| {
            let sent = self.start_request(outgoing, chain, true)?;
            self.finish_request(sent, &Waiter::new(), started, timeout)
        })
    }

    /// Sends every message, then waits up to `timeout` in all for their replies' values;
    /// answers each one's outcome, in order (a message given as an error stays that
    /// error). The agent counts as waiting (for [`Endpoint::closes_a_cycle`]) once,
    /// whatever the number of requests.
    pub fn request_all(
        &self,
        requests: Vec<Result<Outgoing, ActionError>>,
        timeout: Duration,
    ) -> Vec<Result<Value, ActionError>> {
        let started = Instant::now();
        let chain = chain::extended(&self.id);
        self.waiting(|| {
            let sent: Vec<_> = requests
                .into_iter()
                .map(|outgoing| self.start_request(outgoing?, chain.clone(), false))
                .collect();
            let waiter = Waiter::new();
            sent.into_iter()
                .map(|sent| self.finish_request(sent?, &waiter, started, timeout))
                .collect()
        })
    }

    /// Runs `wait` counted as one of the agent's handles waiting for replies.
    fn waiting<T>(&self, wait: impl FnOnce() -> T) -> T {
        self.pending_count.fetch_add(1, Ordering::AcqRel);
        let outcome = wait();
        self.pending_count.fetch_sub(1, Ordering::AcqRel);
        outcome
    }

    /// Publishes one request carrying `chain`, registered before it leaves so that no
    /// reply can miss it; keeps the agent it wakes if `keep_woken`.
    fn start_request(
        &self,
        outgoing: Outgoing,
        chain: Value,
        keep_woken: bool,
    ) -> Result<SentRequest, ActionError> {
        let mut message = self.complete(outgoing)?;
        message
            .meta
            .extra
            .insert(chain::REQUEST_CHAIN.to_owned(), chain);
        let (id, to, action) = (
            message.meta.id.clone(),
            message.to.clone(),
            message.action.name.clone(),
        );
        let reply = ReplySlot::new();
        self.pending
            .lock()
            .unwrap()
            .insert(id.clone(), Arc::clone(&reply));
        let (published, woken) = if keep_woken {
            let (published, woken) = scheduler::keeping_woken(|| self.publish(message));
            (published, Some(woken))
        } else {
            (self.publish(message), None)
        };
        if let Err(error) = published {
            self.pending.lock().unwrap().remove(&id);
            return Err(error);
        }
        Ok(SentRequest {
            id,
            to,
            action,
            reply,
            woken,
        })
    }

    /// Waits for a published request's reply until `timeout` after `started`.
    fn finish_request(
        &self,
        mut sent: SentRequest,
        waiter: &Waiter,
        started: Instant,
        timeout: Duration,
    ) -> Result<Value, ActionError> {
        if let Some(woken) = sent.woken.take() {
            // Published just now: the time left is the timeout.
            woken.run_if(|speeds| direct::may_hand_off(speeds, &sent.action, timeout));
        }
        let reply = waiter.receive(&*sent.reply, started.checked_add(timeout));
        if let Some(metrics) = &self.metrics {
            metrics.request.observe(started.elapsed());
            match reply {
                Some(_) => self.count(|c| &c.received),
                None => {
                    metrics.request_timeouts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some(reply) = reply {
            return reply;
        }
        self.pending.lock().unwrap().remove(&sent.id);
        Err(ActionError::of(
            Kind::Timeout,
            format!(
                "no reply from \"{}\" to \"{}\" within {:.3}s",
                sent.to,
                sent.action,
                started.elapsed().as_secs_f64()
            ),
        ))
    }

    /// Fills in `from` and `meta.id` and checks the recipient.
    fn complete(&self, outgoing: Outgoing) -> Result<Message, ActionError> {
        match &outgoing.from {
            Some(from) if *from != self.id => {
                return Err(ActionError::of(
                    Kind::Value,
                    format!(
                        "\"from\" must be the sender's id \"{}\", not {from:?}",
                        self.id
                    ),
                ));
            }
            _ => {}
        }
        check_recipient(&outgoing.to)?;
        let PartialMeta {
            id,
            parent_id,
            extra,
        } = outgoing.meta;
        Ok(Message {
            meta: Meta {
                id: id.unwrap_or_else(new_id),
                parent_id,
                extra,
            },
            from: self.id.clone(),
            to: outgoing.to,
            action: outgoing.action,
        })
    }

    fn publish(&self, message: Message) -> Result<(), ActionError> {
        let body = message.to_json();
        self.publish_as(message, body)
    }

    /// Publishes `message`, whose text is `body`, on offer to a receiver in this process
    /// (see [`handover`]).
    fn publish_as(&self, message: Message, body: String) -> Result<(), ActionError> {
        self.check_open()?;
        if let Some(log) = &self.log {
            log.record(message.clone(), false);
        }
        // Replies are not remembered (see `published`): their ids are not needed.
        let id = (!message.is_reply()).then(|| message.meta.id.clone());
        let to = message.to.clone();
        let published = handover::offering(&body, message, || self.transmit(&to, &body));
        self.published(id, body, published)
    }

    /// Completes and publishes a message sent as `bare` text: its receiver reads it.
    fn send_bare(&self, bare: BareOutgoing) -> Result<String, ActionError> {
        check_recipient(bare.to)?;
        let meta = Meta {
            id: new_id(),
            ..Meta::default()
        };
        let body = bare.text(&meta, &self.id);
        self.check_open()?;
        let published = self.transmit(bare.to, &body);
        let id = (!bare.is_reply()).then(|| meta.id.clone());
        self.published(id, body, published)?;
        Ok(meta.id)
    }

    /// Fails once the space is destroyed.
    fn check_open(&self) -> Result<(), ActionError> {
        if self.core.destroyed.load(Ordering::Acquire) {
            return Err(ActionError::of(
                Kind::Runtime,
                "the space has been destroyed",
            ));
        }
        Ok(())
    }

    /// Shows `body` to the taps and hands it to the transport.
    fn transmit(&self, to: &str, body: &str) -> Result<(), TransportError> {
        self.core.taps.offer(|| Traffic::Sent(body.to_owned()));
        self.core.transport.publish(to, body)
    }

    /// Counts a message published and remembers it for `parent_message` look-ups if it
    /// has an `id` (replies are given none).
    fn published(
        &self,
        id: Option<String>,
        body: String,
        published: Result<(), TransportError>,
    ) -> Result<(), ActionError> {
        if published.is_ok() {
            self.count(|c| &c.sent);
        }
        if let Some(id) = id {
            let mut sent = self.sent.lock().unwrap();
            if sent.len() == SENT_LOG_CAPACITY {
                sent.pop_front();
            }
            sent.push_back((id, body));
        }
        published.map_err(|e| ActionError::of(Kind::Transport, e.to_string()))
    }

    fn sent_message(&self, id: &str) -> Option<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(sent, _)| sent == id)
            .map(|(_, body)| body.clone())
    }

    fn ask_permission(&self, message: &Message) -> bool {
        let prompt = self.core.permission_prompt.read().unwrap().clone();
        // A person may take a while to answer: other agents run meanwhile.
        prompt.is_some_and(|prompt| crate::scheduler::blocking(|| prompt(&self.id, message)))
    }
}

impl Drop for Endpoint {
    /// Says how many of the agent's drops went unlogged, if any did; moves what it
    /// counted since it left the space into its type's totals.
    fn drop(&mut self) {
        self.retire();
        let (dropped, unsent) = (self.dropped.total(), self.unsent_replies.total());
        if dropped > 10 || unsent > 10 {
            tracing::warn!(
                agent = %self.id,
                dropped,
                unsent_replies = unsent,
                "in all, messages dropped and replies that could not be sent (only some were logged)"
            );
        }
    }
}

impl Endpoint {
    /// Reads a delivered body's head (its arguments are left to the agent) and checks it
    /// is for this agent; logs and drops it if not. One of this agent's own messages
    /// returned by the transport is read whole: it becomes the `UndeliverableError`
    /// reply to it.
    pub fn accept<'a>(&self, body: &'a str) -> Option<Accepted<'a>> {
        let head = match Head::read(body) {
            Ok(head) => head,
            Err(reason) => {
                self.malformed(reason);
                return None;
            }
        };
        match self.check(&head) {
            Verdict::Drop => None,
            Verdict::Keep => Some(Accepted::Head(head)),
            Verdict::Returned => match Message::from_json(body) {
                Ok(message) => Some(Accepted::Returned(self.undeliverable(&message))),
                Err(reason) => {
                    self.malformed(reason);
                    None
                }
            },
        }
    }

    /// Logs (some of) the malformed deliveries dropped.
    fn malformed(&self, reason: ActionError) {
        if let Some(count) = self.dropped.occurred() {
            tracing::warn!(agent = %self.id, ?reason, count, "dropped a message");
        }
    }

    /// What to do with a delivery: drop it (logged if it was for another agent), keep
    /// it, or answer it as undeliverable (one of this agent's own messages, returned).
    fn check(&self, head: &Head) -> Verdict {
        if head.is_returned_to(&self.id) {
            return Verdict::Returned;
        }
        if head.to != self.id && !head.is_broadcast() {
            if let Some(count) = self.dropped.occurred() {
                tracing::warn!(agent = %self.id, to = ?head.to, count, "dropped a message addressed to another agent");
            }
            return Verdict::Drop;
        }
        if head.is_broadcast() && head.from == self.id && !self.receive_own_broadcasts {
            return Verdict::Drop;
        }
        Verdict::Keep
    }

    /// The `UndeliverableError` reply one of this agent's messages becomes when the
    /// transport returns it; counted as a dead letter and shown to the taps.
    fn undeliverable(&self, message: &Message) -> Message {
        self.core.dead_letters.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.dead_letters.fetch_add(1, Ordering::Relaxed);
        }
        self.core
            .taps
            .offer(|| Traffic::Undeliverable(message.to_json()));
        tracing::debug!(agent = %self.id, to = ?message.to, "a message of this agent was undeliverable");
        message.undeliverable()
    }

    /// Answers at once, with a `DeadlockError`, a request that closes a cycle through this
    /// agent while it waits in a request itself, in every one of its handles (see
    /// [`crate::chain`]); answers whether it did.
    fn closes_a_cycle(&self, message: &Message) -> bool {
        if self.pending_count.load(Ordering::Acquire) < self.handles
            || message.is_reply()
            || message.to != self.id
        {
            return false;
        }
        let Some(error) = chain::cycle(&chain::of(&message.meta), &self.id) else {
            return false;
        };
        self.core.cycles_refused.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = self.answer(message.error_reply(&error)) {
            if let Some(count) = self.unsent_replies.occurred() {
                tracing::warn!(agent = %self.id, ?error, count, "could not send a reply");
            }
        }
        true
    }

    /// Hands a reply to the request waiting for it; gives the message back otherwise.
    fn complete_request(&self, message: Message) -> Option<Message> {
        if self.pending_count.load(Ordering::Acquire) == 0 || !message.is_reply() {
            return Some(message);
        }
        let waiter = message
            .meta
            .parent_id
            .as_ref()
            .and_then(|id| self.pending.lock().unwrap().remove(id));
        let Some(waiter) = waiter else {
            return Some(message);
        };
        if let Some(reply) = message.into_reply() {
            waiter.fill(reply);
        }
        None
    }
}

impl Inbound for Endpoint {
    /// Runs on the transport's thread. While no request of this agent is pending, a body
    /// for a worker is queued as it is and read (its head) on the worker's thread (no
    /// reply can be waited for, since a request registers before it publishes);
    /// otherwise it is read here so that a reply reaches its waiting request even while
    /// the worker is busy.
    ///
    /// A message for the worker is counted as received by the worker (see
    /// `Handler::accept`): counting it here, on the sender's thread, would share a cache
    /// line between two threads on every message. Here only what stops here is counted.
    fn deliver(&self, body: &str) {
        let handed_over = handover::take(body);
        let idle = self.pending_count.load(Ordering::Acquire) == 0;
        if let (Some(worker), None, true, None) = (&self.worker, &self.log, idle, &handed_over) {
            worker.put(Work::message(body.to_owned(), None));
            return;
        }
        let message = match handed_over.map_or_else(|| Message::from_json(body), Ok) {
            Ok(message) => message,
            Err(reason) => return self.malformed(reason),
        };
        let (message, returned) = match self.check(&Head::of(&message)) {
            Verdict::Drop => return,
            Verdict::Keep => (message, false),
            Verdict::Returned => (self.undeliverable(&message), true),
        };
        if let Some(log) = &self.log {
            log.record(message.clone(), true);
        }
        let Some(message) = self.complete_request(message) else {
            // Counted by the request that takes it, on the agent's own thread.
            return;
        };
        if self.closes_a_cycle(&message) || self.worker.is_none() {
            self.count(|c| &c.received);
            return;
        }
        if let Some(worker) = &self.worker {
            let body = if returned {
                message.to_json()
            } else {
                body.to_owned()
            };
            worker.put(Work::message(body, Some(message)));
        }
    }
}

/// A new message id: a random UUID.
fn new_id() -> String {
    let mut text = uuid::Uuid::encode_buffer();
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut text)
        .to_owned()
}

/// Refuses a recipient that is neither [`BROADCAST`] nor a valid agent id.
fn check_recipient(to: &str) -> Result<(), ActionError> {
    if to == BROADCAST {
        return Ok(());
    }
    validate_id(to)
        .map_err(|e| ActionError::of(Kind::Value, format!("invalid recipient {to:?}: {e}")))
}

/// A request's timeout in seconds as a duration: beyond what a duration holds is
/// "forever"; negative or not a number is an error.
fn timeout_of(seconds: f64) -> Result<Duration, ActionError> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(ActionError::of(
            Kind::Value,
            format!("a timeout must be a number of seconds, at least 0, not {seconds}"),
        ));
    }
    Ok(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

impl HostLink for Endpoint {
    /// The text a plugin sent is kept in the message's own (see
    /// [`Message::to_json_reusing`]): a message is read once here, not encoded again.
    /// Unless a log keeps it, a message to one agent with only `to` and `action` is not
    /// even read whole here (see [`BareOutgoing`]): its receiver reads it.
    fn send(&self, text: &str) -> Result<String, ActionError> {
        if self.log.is_none() {
            if let Some(bare) = BareOutgoing::read(text).filter(|bare| bare.to != BROADCAST) {
                return self.send_bare(bare);
            }
        }
        let message = self.complete(Outgoing::from_json(text)?)?;
        let id = message.meta.id.clone();
        let body = message.to_json_reusing(text);
        self.publish_as(message, body)?;
        Ok(id)
    }

    fn request(&self, message: Value, timeout_secs: f64) -> Result<Value, ActionError> {
        let timeout = timeout_of(timeout_secs)?;
        Endpoint::request(self, Outgoing::from_value(message)?, timeout)
    }

    fn request_text(&self, message: &str, timeout_secs: f64) -> Result<Value, ActionError> {
        let timeout = timeout_of(timeout_secs)?;
        Endpoint::request(self, Outgoing::from_json(message)?, timeout)
    }

    fn request_all(
        &self,
        messages: Vec<Value>,
        timeout_secs: f64,
    ) -> Vec<Result<Value, ActionError>> {
        match timeout_of(timeout_secs) {
            Ok(timeout) => {
                let requests = messages.into_iter().map(Outgoing::from_value).collect();
                Endpoint::request_all(self, requests, timeout)
            }
            Err(error) => vec![Err(error); messages.len()],
        }
    }

    fn ask_permission(&self, message: &str) -> Result<bool, ActionError> {
        let message = Message::from_json(message)?;
        Ok(Endpoint::ask_permission(self, &message))
    }

    fn sent_message(&self, id: &str) -> Result<Option<String>, ActionError> {
        Ok(Endpoint::sent_message(self, id))
    }

    fn log(&self, record: &LogRecord) -> Result<(), ActionError> {
        crate::emit_log(&self.id, record);
        Ok(())
    }
}
