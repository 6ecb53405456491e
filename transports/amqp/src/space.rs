//! [`AmqpSpace`]: the transport's side of one space, and the state its tasks share.
//!
//! The host calls in from its own threads; each call is short: `publish` queues the message
//! for the publisher task, `attach`/`detach` run their broker round trips on the plugin's
//! runtime and wait for them. Everything asynchronous happens on that runtime, which
//! lives inside this library (the host's runtime, if any, is another copy of tokio).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use agency_sdk::{
    boundary::{Inbound, TransportSpace},
    message::BROADCAST,
};
use lapin::{options::QueueDeleteOptions, Channel, Connection};
use tokio::{
    runtime::Runtime,
    sync::{mpsc, watch, Mutex},
    task::JoinHandle,
};

use crate::{
    config::Config,
    consumer::{self, CancelReports, Cancelled, Inbox, BROADCAST_KEY},
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
fn runtime() -> &'static Runtime {
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
    /// The current connection, `None` while reconnecting; the publisher watches it.
    pub connection: watch::Sender<Option<Arc<Connection>>>,
    /// The attached agents and their subscriptions.
    pub link: Mutex<Link>,
    /// Messages accepted by `publish` and not yet confirmed by the broker.
    pub unconfirmed: AtomicUsize,
    /// Set once `close` starts.
    pub closed: AtomicBool,
}

/// The attached agents, and the connection their channels belong to.
#[derive(Default)]
pub struct Link {
    connection: Option<Arc<Connection>>,
    agents: HashMap<String, Subscription>,
}

struct Subscription {
    inbox: Arc<Inbox>,
    /// The channel consuming the agent's queues, while connected.
    channel: Option<Channel>,
}

impl Link {
    /// Forgets the lost connection and its channels; the agents stay attached.
    pub fn disconnect(&mut self) {
        self.connection = None;
        self.agents.values_mut().for_each(|s| s.channel = None);
    }

    /// Subscribes every attached agent on a new connection.
    ///
    /// The broker may not have noticed yet that the old connection is gone and still
    /// hold its exclusive consumers: a refused subscription is retried for
    /// [`TAKEOVER_GRACE`], then reported (another process took the id) and the agent is
    /// left without a channel. Any other failure means the connection is bad.
    pub async fn restore(
        &mut self,
        config: &Config,
        connection: &Arc<Connection>,
    ) -> Result<(), String> {
        for (id, subscription) in &mut self.agents {
            let deadline = Instant::now() + TAKEOVER_GRACE;
            loop {
                match consumer::subscribe(config, connection, &subscription.inbox).await {
                    Ok(channel) => subscription.channel = Some(channel),
                    Err(error) if consumer::is_duplicate(&error) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(error) if consumer::is_duplicate(&error) => tracing::error!(
                        agent = %id,
                        "another process took this agent's id while the connection was down; it no longer receives messages"
                    ),
                    Err(error) => return Err(error.to_string()),
                }
                break;
            }
        }
        self.connection = Some(connection.clone());
        Ok(())
    }
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
        let Some(connection) = link.connection.clone() else {
            continue;
        };
        let Some(subscription) = link.agents.get_mut(&agent_id) else {
            continue;
        };
        let Some(old) = subscription.channel.take_if(|c| c.id() == channel_id) else {
            continue;
        };
        tracing::warn!(agent = %agent_id, "the broker cancelled the agent's consumer (was its queue deleted?); subscribing again");
        let closing = old.close(200, "subscribing again".into());
        let _ = tokio::time::timeout(shared.config.connect_timeout, closing).await;
        match consumer::subscribe(&shared.config, &connection, &subscription.inbox).await {
            Ok(channel) => {
                subscription.channel = Some(channel);
                tracing::info!(agent = %agent_id, "subscribed again");
            }
            Err(error) if consumer::is_duplicate(&error) => tracing::error!(
                agent = %agent_id,
                "another process took this agent's id meanwhile; it no longer receives messages"
            ),
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
        let shared = Arc::new(Shared {
            connection: watch::Sender::new(Some(live.connection.clone())),
            link: Mutex::new(Link {
                connection: Some(live.connection.clone()),
                agents: HashMap::new(),
            }),
            config,
            unconfirmed: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        let (cancel_reports, cancelled) = mpsc::unbounded_channel();
        let tasks = [
            runtime.spawn(session::supervise(shared.clone(), live)),
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
            let mut link = self.shared.link.lock().await;
            if link.agents.contains_key(agent_id) {
                return Err(format!("Agent '{agent_id}' already exists"));
            }
            let Some(connection) = link.connection.clone() else {
                return Err(format!(
                    "cannot add agent '{agent_id}': the connection to the AMQP broker at {} \
                     was lost; try again",
                    config.broker()
                ));
            };
            let inbox = Arc::new(Inbox::new(
                agent_id,
                sink,
                config,
                self.cancel_reports.clone(),
            ));
            let channel = consumer::subscribe(config, &connection, &inbox)
                .await
                .map_err(|error| {
                    if consumer::is_duplicate(&error) {
                        format!(
                            "Agent '{agent_id}' already exists: another process consumes its \
                             queue {:?} on {}",
                            config.direct_queue(agent_id),
                            config.broker()
                        )
                    } else {
                        format!(
                            "cannot add agent '{agent_id}' on {}: {error}",
                            config.broker()
                        )
                    }
                })?;
            let channel = Some(channel);
            link.agents
                .insert(agent_id.to_owned(), Subscription { inbox, channel });
            Ok(())
        })
    }

    fn detach(&self, agent_id: &str) {
        let config = &self.shared.config;
        let removal = async {
            let removed = self.shared.link.lock().await.agents.remove(agent_id);
            let Some(channel) = removed.and_then(|s| s.channel) else {
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
            let _ = channel.close(200, "agent removed".into()).await;
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
            let connection = self.shared.link.lock().await.connection.take();
            if let Some(connection) = connection {
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
