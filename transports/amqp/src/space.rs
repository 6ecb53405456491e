//! [`AmqpSpace`]: the transport's side of one space, and the state its tasks share.
//!
//! The host calls in from its own threads; each call is short: `publish` queues the message
//! for the publisher task, `attach`/`detach` run their broker round trips on the plugin's
//! runtime and wait for them. Everything asynchronous happens on that runtime, which
//! lives inside this library (the host's runtime, if any, is another copy of tokio).
//!
//! Each agent consumes on a channel of its own (a refusal or a deleted queue closes that
//! channel, never another agent's), and a broker allows a connection a limited number of
//! channels (`channel_max`, 2,047 on RabbitMQ): the [`Link`] opens another connection
//! whenever the ones it has are full, so a process may hold any number of agents.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use agency_sdk::transport::{
    duplicate_id, sender_of, Inbound, TransportSpace, BROADCAST, BROADCAST_KEY,
};
use lapin::{options::QueueDeleteOptions, Channel, Connection};
use tokio::{
    runtime::Runtime,
    sync::{mpsc, watch, Mutex},
    task::JoinHandle,
};

use crate::{
    config::Config,
    consumer::{self, CancelReports, Cancelled, Inbox},
    publisher::{self, Outgoing},
    session,
};

/// The longest queue name or routing key AMQP allows, in bytes.
const MAX_NAME_BYTES: usize = 255;
/// How long a reconnecting agent waits for the broker to drop its old consumers.
const TAKEOVER_GRACE: Duration = Duration::from_secs(5);
/// How long `close` waits for the broker to confirm what was sent.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `publish` waits for room in a full outbox while connected.
const FULL_OUTBOX_WAIT: Duration = Duration::from_secs(30);

/// The plugin's own runtime, shared by every space it opens.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("agency-amqp")
            .enable_all()
            .build()
            .expect("cannot start the amqp transport's runtime")
    })
}

/// What the space's tasks share.
pub struct Shared {
    /// The configuration the space was opened with.
    pub config: Config,
    /// The publishing connection, `None` while reconnecting; the publisher watches it.
    pub connection: watch::Sender<Option<Arc<Connection>>>,
    /// The attached agents, their subscriptions and the connections they use.
    pub link: Mutex<Link>,
    /// Messages accepted by `publish` and not yet confirmed by the broker.
    pub unconfirmed: AtomicUsize,
    /// Set once `close` starts.
    pub closed: AtomicBool,
    /// Where each connection's loss is reported, with the generation it belongs to.
    pub losses: session::LossReports,
}

impl Shared {
    /// Hands a body the broker could not route back to its sender, the agent its `from`
    /// names, if that agent is attached here (see `TransportSpace::publish`).
    pub async fn return_to_sender(&self, body: String) {
        let Some(from) = sender_of(&body) else {
            return;
        };
        let sink = self
            .link
            .lock()
            .await
            .agents
            .get(&from)
            .map(|s| s.inbox.sink());
        if let Some(sink) = sink {
            // A delivery may wait for room in the sender's mailbox: not on a worker of the
            // transport's runtime.
            tokio::task::spawn_blocking(move || sink.deliver(&body));
        }
    }
}

/// The attached agents, and the connections their channels belong to.
#[derive(Default)]
pub struct Link {
    /// This generation's connections, the first one also publishing; empty while
    /// reconnecting.
    connections: Vec<Pooled>,
    /// Counts reconnections: a loss reported for an older generation is stale.
    pub generation: u64,
    agents: HashMap<String, Subscription>,
    /// Agents being attached: their ids are taken and a channel is kept for each, while
    /// their queues are declared without the lock (so agents attach in parallel).
    joining: HashSet<String>,
}

/// A connection and how many agents' channels it carries.
struct Pooled {
    connection: Arc<Connection>,
    channels: usize,
}

struct Subscription {
    inbox: Arc<Inbox>,
    /// The channel consuming the agent's queues, while connected, and the index of its
    /// connection.
    channel: Option<(Channel, usize)>,
}

impl Link {
    /// Forgets this generation's connections and their channels (the agents stay
    /// attached), and answers the connections, to be closed.
    pub fn disconnect(&mut self) -> Vec<Arc<Connection>> {
        self.agents.values_mut().for_each(|s| s.channel = None);
        self.generation += 1;
        self.connections.drain(..).map(|p| p.connection).collect()
    }

    /// Keeps a channel for one more agent on a connection with room, opening one more
    /// connection if every one is full; answers that connection and its index.
    async fn place(&mut self, shared: &Shared) -> Result<(Arc<Connection>, usize), SubscribeError> {
        let index = match self
            .connections
            .iter()
            .position(|p| p.channels < agent_channels(&p.connection))
        {
            Some(index) => index,
            None => {
                let live = session::connect(&shared.config)
                    .await
                    .map_err(SubscribeError::Connect)?;
                self.connections.push(Pooled {
                    connection: live.connection.clone(),
                    channels: 0,
                });
                session::monitor(live, self.generation, shared.losses.clone());
                self.connections.len() - 1
            }
        };
        let pooled = &mut self.connections[index];
        pooled.channels += 1;
        Ok((pooled.connection.clone(), index))
    }

    /// Gives back the channel kept by [`Link::place`] on connection `index`.
    fn unplace(&mut self, index: usize) {
        if let Some(pooled) = self.connections.get_mut(index) {
            pooled.channels -= 1;
        }
    }

    /// Subscribes `inbox` on a connection with a free channel (see [`Link::place`]).
    async fn subscribe(
        &mut self,
        shared: &Shared,
        inbox: &Arc<Inbox>,
    ) -> Result<(Channel, usize), SubscribeError> {
        let (connection, index) = self.place(shared).await?;
        match consumer::subscribe(&shared.config, &connection, inbox).await {
            Ok(channel) => Ok((channel, index)),
            Err(error) => {
                self.unplace(index);
                Err(SubscribeError::Broker(error))
            }
        }
    }

    /// Closes an agent's channel (if any) and frees its place.
    async fn unsubscribe(&mut self, channel: Option<(Channel, usize)>, why: &str) {
        let Some((channel, index)) = channel else {
            return;
        };
        self.unplace(index);
        let _ = tokio::time::timeout(Duration::from_secs(5), channel.close(200, why.into())).await;
    }

    /// Subscribes every attached agent on a new generation of connections, `primary`
    /// first.
    ///
    /// The broker may not have noticed yet that the old connections are gone and still
    /// hold their exclusive consumers: a refused subscription is retried for
    /// [`TAKEOVER_GRACE`], then reported (another process took the id) and the agent is
    /// left without a channel. Any other failure means the connections are bad.
    pub async fn restore(
        &mut self,
        shared: &Shared,
        primary: Arc<Connection>,
    ) -> Result<(), String> {
        self.connections = vec![Pooled {
            connection: primary,
            channels: 0,
        }];
        let ids: Vec<String> = self.agents.keys().cloned().collect();
        for id in ids {
            let inbox = self.agents[&id].inbox.clone();
            let deadline = Instant::now() + TAKEOVER_GRACE;
            loop {
                match self.subscribe(shared, &inbox).await {
                    Ok(channel) => self.agents.get_mut(&id).unwrap().channel = Some(channel),
                    Err(SubscribeError::Broker(error))
                        if consumer::is_duplicate(&error) && Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(SubscribeError::Broker(error)) if consumer::is_duplicate(&error) => {
                        tracing::error!(
                            agent = %id,
                            "another process took this agent's id while the connection was down; it no longer receives messages"
                        )
                    }
                    Err(error) => return Err(error.to_string()),
                }
                break;
            }
        }
        Ok(())
    }
}

/// Why an agent could not be subscribed.
enum SubscribeError {
    /// Another connection was needed and could not be opened.
    Connect(String),
    /// The broker refused a step (see [`consumer::is_duplicate`]).
    Broker(lapin::Error),
}

impl std::fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(reason) => f.write_str(reason),
            Self::Broker(error) => error.fmt(f),
        }
    }
}

/// How many agents' channels one connection carries: what the broker allows, less the
/// publisher's channel and one spare for short-lived ones.
fn agent_channels(connection: &Connection) -> usize {
    // 0 means the broker sets no limit.
    let max = match connection.configuration().channel_max() {
        0 => u16::MAX,
        max => max,
    };
    usize::from(max).saturating_sub(2).max(1)
}

/// Subscribes again each agent whose consumer the broker cancelled while its channel
/// stayed open (someone deleted its queue): the queues are declared anew and consumed on
/// a new channel. A report about a channel the agent no longer has (already replaced, or
/// lost with its connection, which the supervisor restores) changes nothing.
async fn resubscribe_cancelled(
    shared: Arc<Shared>,
    mut reports: mpsc::UnboundedReceiver<Cancelled>,
) {
    while let Some(Cancelled {
        agent_id,
        channel_id,
    }) = reports.recv().await
    {
        let mut link = shared.link.lock().await;
        let Some(subscription) = link.agents.get_mut(&agent_id) else {
            continue;
        };
        let old = subscription
            .channel
            .take_if(|(channel, _)| channel.id() == channel_id);
        let (Some(old), inbox) = (old, subscription.inbox.clone()) else {
            continue;
        };
        tracing::warn!(agent = %agent_id, "the broker cancelled the agent's consumer (was its queue deleted?); subscribing again");
        link.unsubscribe(Some(old), "subscribing again").await;
        match link.subscribe(&shared, &inbox).await {
            Ok(channel) => {
                if let Some(subscription) = link.agents.get_mut(&agent_id) {
                    subscription.channel = Some(channel);
                }
                tracing::info!(agent = %agent_id, "subscribed again");
            }
            Err(SubscribeError::Broker(error)) if consumer::is_duplicate(&error) => {
                tracing::error!(
                    agent = %agent_id,
                    "another process took this agent's id meanwhile; it no longer receives messages"
                )
            }
            Err(error) => tracing::warn!(
                agent = %agent_id, %error,
                "cannot subscribe the agent again now; it will be at the next reconnection"
            ),
        }
    }
}

/// An open space on the `amqp` transport.
pub struct AmqpSpace {
    shared: Arc<Shared>,
    outbox: mpsc::UnboundedSender<Outgoing>,
    cancel_reports: CancelReports,
    tasks: [JoinHandle<()>; 3],
}

impl AmqpSpace {
    /// Connects to the broker and starts the supervisor and publisher tasks.
    pub fn open(config: Config) -> Result<Self, String> {
        let runtime = runtime();
        let live = runtime.block_on(session::connect(&config))?;
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let (losses, lost) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            connection: watch::Sender::new(Some(live.connection.clone())),
            link: Mutex::new(Link {
                connections: vec![Pooled {
                    connection: live.connection.clone(),
                    channels: 0,
                }],
                generation: 0,
                agents: HashMap::new(),
                joining: HashSet::new(),
            }),
            config,
            unconfirmed: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            losses,
        });
        let _guard = runtime.enter();
        session::monitor(live, 0, shared.losses.clone());
        let (cancel_reports, cancelled) = mpsc::unbounded_channel();
        let tasks = [
            runtime.spawn(session::supervise(shared.clone(), lost)),
            runtime.spawn(publisher::run(shared.clone(), outbox_rx)),
            runtime.spawn(resubscribe_cancelled(shared.clone(), cancelled)),
        ];
        Ok(Self {
            shared,
            outbox,
            cancel_reports,
            tasks,
        })
    }

    fn connected(&self) -> bool {
        self.shared.connection.borrow().is_some()
    }

    /// Counts one more unconfirmed message, within `outbox_capacity`. At the bound it
    /// waits for room while connected (the broker is slower than the senders), and fails
    /// at once while disconnected, so nothing piles up unseen.
    fn reserve(&self) -> Result<(), String> {
        let capacity = self.shared.config.outbox_capacity;
        let deadline = Instant::now() + FULL_OUTBOX_WAIT;
        loop {
            let count = self.shared.unconfirmed.load(Ordering::Acquire);
            if count < capacity {
                let next = count + 1;
                let unconfirmed = &self.shared.unconfirmed;
                if unconfirmed
                    .compare_exchange(count, next, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Ok(());
                }
                continue;
            }
            if !self.connected() || Instant::now() >= deadline {
                return Err(format!(
                    "the amqp outbox is full: {capacity} messages are waiting for the broker at \
                     {}{}; retry later or raise `outbox_capacity`",
                    self.shared.config.broker(),
                    if self.connected() {
                        ""
                    } else {
                        " (reconnecting)"
                    },
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn closed_error(&self) -> String {
        "the amqp space is closed".into()
    }
}

impl TransportSpace for AmqpSpace {
    fn attach(&self, agent_id: &str, sink: Arc<dyn Inbound>) -> Result<(), String> {
        let config = &self.shared.config;
        let queue = config.broadcast_queue(agent_id);
        if queue.len() > MAX_NAME_BYTES {
            return Err(format!(
                "agent id '{agent_id}' is too long for AMQP: its queue name {queue:?} has {} \
                 bytes, the limit is {MAX_NAME_BYTES}",
                queue.len()
            ));
        }
        let lost = || {
            format!(
                "cannot add agent '{agent_id}': the connection to the AMQP broker at {} was \
                 lost; try again",
                config.broker()
            )
        };
        let cannot_add = |error: SubscribeError| match error {
            SubscribeError::Broker(error) if consumer::is_duplicate(&error) => format!(
                "{}: another process consumes its queue {:?} on {}",
                duplicate_id(agent_id),
                config.direct_queue(agent_id),
                config.broker()
            ),
            error => format!(
                "cannot add agent '{agent_id}' on {}: {error}",
                config.broker()
            ),
        };
        runtime().block_on(async {
            // While reconnecting, wait (up to the connect timeout) for the connection.
            let mut connected = self.shared.connection.subscribe();
            let waited = connected.wait_for(Option::is_some);
            if tokio::time::timeout(config.connect_timeout, waited)
                .await
                .is_err()
            {
                return Err(format!(
                    "cannot add agent '{agent_id}': the connection to the AMQP broker at {} \
                     is down (reconnecting); try again",
                    config.broker()
                ));
            }
            // The lock is held to check the id and keep a channel, not across the broker
            // round trips: agents attach in parallel.
            let (connection, index, generation) = {
                let mut link = self.shared.link.lock().await;
                if link.agents.contains_key(agent_id) || link.joining.contains(agent_id) {
                    return Err(duplicate_id(agent_id));
                }
                if link.connections.is_empty() {
                    return Err(lost());
                }
                let (connection, index) = link.place(&self.shared).await.map_err(&cannot_add)?;
                link.joining.insert(agent_id.to_owned());
                (connection, index, link.generation)
            };
            let inbox = Arc::new(Inbox::new(
                agent_id,
                sink,
                config,
                self.cancel_reports.clone(),
            ));
            let subscribed = consumer::subscribe(config, &connection, &inbox).await;
            let mut link = self.shared.link.lock().await;
            link.joining.remove(agent_id);
            let current = link.generation == generation;
            match subscribed {
                Ok(channel) if current => {
                    let channel = Some((channel, index));
                    link.agents
                        .insert(agent_id.to_owned(), Subscription { inbox, channel });
                    Ok(())
                }
                // Reconnected (or closed) meanwhile: that channel's connection is gone.
                Ok(_) => Err(lost()),
                Err(error) => {
                    if current {
                        link.unplace(index);
                    }
                    Err(cannot_add(SubscribeError::Broker(error)))
                }
            }
        })
    }

    fn detach(&self, agent_id: &str) {
        let config = &self.shared.config;
        let removal = async {
            let mut link = self.shared.link.lock().await;
            let removed = link.agents.remove(agent_id).and_then(|s| s.channel);
            let Some((channel, _)) = &removed else {
                return;
            };
            // The agent is gone for good: so are its queues (Python's are auto-deleted).
            for queue in [
                config.direct_queue(agent_id),
                config.broadcast_queue(agent_id),
            ] {
                if let Err(error) = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await
                {
                    tracing::warn!(agent = %agent_id, %queue, %error, "cannot delete the queue; it expires unused");
                }
            }
            link.unsubscribe(removed, "agent removed").await;
        };
        let limit = config.connect_timeout;
        if runtime()
            .block_on(async { tokio::time::timeout(limit, removal).await })
            .is_err()
        {
            tracing::warn!(agent = %agent_id, "the broker did not answer in time; the agent's queues expire unused");
        }
    }

    fn publish(&self, to: &str, body: &str) -> Result<(), String> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        if to.len() > MAX_NAME_BYTES {
            return Err(format!(
                "recipient id of {} bytes is too long for an AMQP routing key (at most {MAX_NAME_BYTES})",
                to.len()
            ));
        }
        let message = Outgoing {
            routing_key: if to == BROADCAST { BROADCAST_KEY } else { to }.to_owned(),
            body: body.to_owned(),
            // 122 random bits: a peer that saw one id cannot tell the next.
            message_id: uuid::Uuid::new_v4().simple().to_string(),
        };
        self.reserve()?;
        self.outbox.send(message).map_err(|_| {
            self.shared.unconfirmed.fetch_sub(1, Ordering::AcqRel);
            self.closed_error()
        })
    }

    /// Waits (up to 10 s) for the broker to confirm every message sent, then closes the
    /// connection.
    fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        runtime().block_on(async {
            let deadline = Instant::now() + CLOSE_TIMEOUT;
            while self.shared.unconfirmed.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let left = self.shared.unconfirmed.load(Ordering::Acquire);
            if left > 0 {
                tracing::warn!(
                    broker = %self.shared.config.broker(),
                    "closing with {left} messages the broker has not confirmed; they may be lost"
                );
            }
            let connections = self.shared.link.lock().await.disconnect();
            for connection in connections {
                let closing = connection.close(200, "space closed".into());
                let _ = tokio::time::timeout(self.shared.config.connect_timeout, closing).await;
            }
            self.tasks.iter().for_each(JoinHandle::abort);
            self.shared.connection.send_replace(None);
        });
    }
}

impl Drop for AmqpSpace {
    fn drop(&mut self) {
        self.close();
    }
}
