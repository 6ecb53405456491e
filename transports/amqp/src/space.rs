//! [`AmqpSpace`]: the transport's side of one space (the state its tasks share is
//! [`crate::link`]'s).
//!
//! The host calls in from its own threads; each call is short: `publish` queues the message
//! for the publisher task, `attach`/`detach` run their broker round trips on the plugin's
//! runtime and wait for them. Everything asynchronous happens on that runtime, which
//! lives inside this library (the host's runtime, if any, is another copy of tokio).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use agency_sdk::transport::{Inbound, TransportError, TransportSpace, BROADCAST, BROADCAST_KEY};
use lapin::options::QueueDeleteOptions;
use tokio::{
    runtime::Runtime,
    sync::{mpsc, watch, Mutex},
    task::JoinHandle,
};

use crate::{
    config::{Config, QueuePer, QueueType},
    consumer::{self, CancelReports, Inbox},
    host_queue::HostQueue,
    link::{self, Link, Pooled, Shared, SubscribeError, Subscription},
    publisher::{self, Outgoing},
    session, stats,
};

/// The longest queue name or routing key AMQP allows, in bytes.
const MAX_NAME_BYTES: usize = 255;
/// How long `close` waits for the broker to confirm what was sent.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `publish` waits for room in a full outbox while connected.
const FULL_OUTBOX_WAIT: Duration = Duration::from_secs(30);
/// The pause before adding an agent again after its connection was lost meanwhile.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Why one attempt to add an agent failed.
enum Failure {
    /// The connection it was made on was lost meanwhile: it is made again on the next
    /// one, within the connect timeout (a host starting while its broker goes down waits
    /// for the next broker instead of giving up).
    Lost(TransportError),
    /// The answer: the broker refused (a duplicate id, other queue settings) or did not
    /// answer in time on a live connection, or the id is being added already here.
    Final(TransportError),
}

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

/// An open space on the `amqp` transport.
pub struct AmqpSpace {
    shared: Arc<Shared>,
    outbox: mpsc::UnboundedSender<Outgoing>,
    cancel_reports: CancelReports,
    tasks: [JoinHandle<()>; 4],
}

impl AmqpSpace {
    /// Connects to the broker and starts the supervisor and publisher tasks.
    pub fn open(config: Config) -> Result<Self, String> {
        let runtime = runtime();
        let live = runtime
            .block_on(session::connect(&config, session::any_broker(&config)))
            .map_err(|e| e.to_string())?;
        tracing::info!(broker = %config.broker(live.broker), exchange = %config.exchange, "connected to the AMQP broker");
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let (losses, lost) = mpsc::unbounded_channel();
        let host = (config.queue_per == QueuePer::Host).then(|| Arc::new(HostQueue::new(&config)));
        let host_channel = match &host {
            Some(host) => {
                let subscribed = host.subscribe(&config, &live.connection, 0, losses.clone());
                let channel = runtime.block_on(subscribed).map_err(|e| {
                    format!(
                        "cannot declare the host queue {:?} on {}: {e}",
                        host.name,
                        config.broker(live.broker)
                    )
                })?;
                Some(channel)
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            connection: watch::Sender::new(Some(live.connection.clone())),
            broker: AtomicUsize::new(live.broker),
            link: Mutex::new(Link {
                connections: vec![Pooled {
                    connection: live.connection.clone(),
                    channels: 0,
                }],
                generation: 0,
                agents: HashMap::new(),
                joining: HashSet::new(),
                host_channel,
            }),
            config,
            unconfirmed: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            losses,
            counts: Arc::default(),
            host,
        });
        let _guard = runtime.enter();
        session::monitor(live, 0, shared.losses.clone());
        let (cancel_reports, cancelled) = mpsc::unbounded_channel();
        let tasks = [
            runtime.spawn(link::supervise(shared.clone(), lost)),
            runtime.spawn(publisher::run(shared.clone(), outbox_rx)),
            runtime.spawn(link::resubscribe_cancelled(shared.clone(), cancelled)),
            runtime.spawn(stats::report(shared.clone())),
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
    fn reserve(&self) -> Result<(), TransportError> {
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
                    self.shared.broker(),
                    if self.connected() {
                        ""
                    } else {
                        " (reconnecting)"
                    },
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The error for an agent whose connection was lost while it was being added.
    fn lost(&self, agent_id: &str) -> TransportError {
        format!(
            "cannot add agent '{agent_id}': the connection to the AMQP broker at {} was \
             lost; try again",
            self.shared.broker()
        )
        .into()
    }

    /// The error for an agent the broker would not subscribe.
    fn cannot_add(&self, agent_id: &str, error: SubscribeError) -> TransportError {
        let config = &self.shared.config;
        let text = match error {
            SubscribeError::Broker(error) if consumer::is_duplicate(&error) => {
                let detail = format!(
                    "another process {} its queue {:?} on {}",
                    if self.shared.host.is_some() {
                        "holds"
                    } else {
                        "consumes"
                    },
                    config.direct_queue(agent_id),
                    self.shared.broker()
                );
                return TransportError::DuplicateId {
                    id: agent_id.to_owned(),
                    detail: Some(detail),
                };
            }
            SubscribeError::Broker(error) if consumer::is_inequivalent(&error) => format!(
                "cannot add agent '{agent_id}' on {}: its queues exist with other settings \
                 ({error}); use the `queue_type` and `queue_expires_secs` they were made \
                 with, or delete them (`rabbitmqctl delete_queue`) once no process uses them",
                self.shared.broker()
            ),
            error => format!(
                "cannot add agent '{agent_id}' on {}: {error}",
                self.shared.broker()
            ),
        };
        TransportError::Failed(text)
    }

    /// Takes `agent_id` in the link while it is added, refusing a duplicate; answers the
    /// link's generation. The lock is held to check the id, not across the broker round
    /// trips: agents attach in parallel.
    fn join(link: &mut Link, agent_id: &str) -> Result<u64, TransportError> {
        if link.agents.contains_key(agent_id) || link.joining.contains(agent_id) {
            return Err(TransportError::DuplicateId {
                id: agent_id.to_owned(),
                detail: None,
            });
        }
        link.joining.insert(agent_id.to_owned());
        Ok(link.generation)
    }

    /// Adds an agent with queues, consumers and a channel of its own.
    async fn attach_with_own_queues(
        &self,
        agent_id: &str,
        sink: Arc<dyn Inbound>,
    ) -> Result<(), Failure> {
        let config = &self.shared.config;
        let mut watching = self.shared.connection.subscribe();
        let (connection, index, generation) = {
            let mut link = self.shared.link.lock().await;
            if link.connections.is_empty() {
                return Err(Failure::Lost(self.lost(agent_id)));
            }
            let generation = Self::join(&mut link, agent_id).map_err(Failure::Final)?;
            match link.place(&self.shared).await {
                Ok((connection, index)) => (connection, index, generation),
                Err(error) => {
                    link.joining.remove(agent_id);
                    return Err(Failure::Final(self.cannot_add(agent_id, error)));
                }
            }
        };
        let inbox = self.inbox(agent_id, sink);
        let subscribed = consumer::subscribe(config, &connection, &inbox);
        let subscribed = self
            .step(agent_id, &mut watching, &connection, subscribed)
            .await;
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
            Ok(_) => Err(Failure::Lost(self.lost(agent_id))),
            Err(failure) => {
                if current {
                    link.unplace(index);
                }
                Err(failure)
            }
        }
    }

    /// Adds an agent to the host queue: routes its deliveries, then claims its id and
    /// binding (see [`crate::host_queue`]).
    async fn attach_to_host(
        &self,
        host: &HostQueue,
        agent_id: &str,
        sink: Arc<dyn Inbound>,
    ) -> Result<(), Failure> {
        let mut watching = self.shared.connection.subscribe();
        let (connection, generation) = {
            let mut link = self.shared.link.lock().await;
            let Some(pooled) = link.connections.first() else {
                return Err(Failure::Lost(self.lost(agent_id)));
            };
            let connection = pooled.connection.clone();
            let generation = Self::join(&mut link, agent_id).map_err(Failure::Final)?;
            (connection, generation)
        };
        let inbox = self.inbox(agent_id, sink);
        host.route(agent_id, inbox.clone());
        let claimed = host.claim(&self.shared.config, &connection, agent_id);
        let claimed = self
            .step(agent_id, &mut watching, &connection, claimed)
            .await;
        let mut link = self.shared.link.lock().await;
        link.joining.remove(agent_id);
        let current = link.generation == generation;
        match claimed {
            Ok(()) if current => {
                let channel = None;
                link.agents
                    .insert(agent_id.to_owned(), Subscription { inbox, channel });
                return Ok(());
            }
            _ => host.unroute(agent_id),
        }
        match claimed {
            // Reconnected (or closed) meanwhile: the claim went with that connection.
            Ok(()) => Err(Failure::Lost(self.lost(agent_id))),
            Err(failure) => Err(failure),
        }
    }

    /// Runs the broker step of adding `agent_id` on `connection`. It fails as `Lost` when
    /// the connection went down under it, and is abandoned as soon as the supervisor
    /// reports a loss after `watching` was taken: a step on a connection cut under it
    /// can otherwise wait out its whole timeout (lapin issue 409).
    async fn step<T>(
        &self,
        agent_id: &str,
        watching: &mut watch::Receiver<Option<Arc<lapin::Connection>>>,
        connection: &lapin::Connection,
        step: impl std::future::Future<Output = lapin::Result<T>>,
    ) -> Result<T, Failure> {
        let result = tokio::select! {
            biased;
            _ = watching.changed() => return Err(Failure::Lost(self.lost(agent_id))),
            result = step => result,
        };
        result.map_err(|error| {
            let error = self.cannot_add(agent_id, SubscribeError::Broker(error));
            if connection.status().connected() {
                Failure::Final(error)
            } else {
                Failure::Lost(error)
            }
        })
    }

    /// A new inbox for `agent_id`'s deliveries.
    fn inbox(&self, agent_id: &str, sink: Arc<dyn Inbound>) -> Arc<Inbox> {
        Arc::new(Inbox::new(
            agent_id,
            sink,
            &self.shared.config,
            self.cancel_reports.clone(),
            self.shared.counts.clone(),
        ))
    }

    fn closed_error(&self) -> TransportError {
        TransportError::Failed("the amqp space is closed".into())
    }
}

impl TransportSpace for AmqpSpace {
    fn attach(&self, agent_id: &str, sink: Arc<dyn Inbound>) -> Result<(), TransportError> {
        let config = &self.shared.config;
        let queue = config.broadcast_queue(agent_id);
        if queue.len() > MAX_NAME_BYTES {
            return Err(format!(
                "agent id '{agent_id}' is too long for AMQP: its queue name {queue:?} has {} \
                 bytes, the limit is {MAX_NAME_BYTES}",
                queue.len()
            )
            .into());
        }
        runtime().block_on(async {
            let deadline = tokio::time::Instant::now() + config.connect_timeout;
            let mut connections = self.shared.connection.subscribe();
            loop {
                // While reconnecting, wait (up to the connect timeout) for the connection.
                let live = |c: &Option<Arc<lapin::Connection>>| {
                    c.as_ref().is_some_and(|c| c.status().connected())
                };
                let reconnected = connections.wait_for(live);
                if !matches!(tokio::time::timeout_at(deadline, reconnected).await, Ok(Ok(_))) {
                    return Err(format!(
                        "cannot add agent '{agent_id}': the connection to the AMQP broker at \
                         {} is down (reconnecting); try again",
                        self.shared.broker()
                    )
                    .into());
                }
                let attempt = match &self.shared.host {
                    Some(host) => self.attach_to_host(host, agent_id, sink.clone()).await,
                    None => self.attach_with_own_queues(agent_id, sink.clone()).await,
                };
                match attempt {
                    Ok(()) => return Ok(()),
                    Err(Failure::Lost(error)) if tokio::time::Instant::now() < deadline => {
                        tracing::debug!(agent = %agent_id, %error, "adding the agent again once reconnected");
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Err(Failure::Lost(error) | Failure::Final(error)) => return Err(error),
                }
            }
        })
    }

    fn detach(&self, agent_id: &str) {
        let config = &self.shared.config;
        let removal = async {
            let mut link = self.shared.link.lock().await;
            if let Some(host) = &self.shared.host {
                if link.agents.remove(agent_id).is_none() {
                    return;
                }
                host.unroute(agent_id);
                // Disconnected: its binding is left on the host queue, where deliveries
                // for an id no longer attached are dropped.
                let Some(connection) = link.connections.first().map(|p| p.connection.clone())
                else {
                    return;
                };
                drop(link);
                if let Err(error) = host.release(config, &connection, agent_id).await {
                    tracing::warn!(agent = %agent_id, %error, "cannot remove the agent's binding");
                }
                return;
            }
            let removed = link.agents.remove(agent_id).and_then(|s| s.channel);
            let Some((channel, _)) = &removed else {
                return;
            };
            // The agent is gone for good: so are its queues (Python's are auto-deleted).
            let mut queues = vec![
                config.direct_queue(agent_id),
                config.broadcast_queue(agent_id),
            ];
            if config.queue_type == QueueType::Quorum {
                queues.push(config.owner_queue(agent_id));
            }
            for queue in queues {
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

    fn publish(&self, to: &str, body: &str) -> Result<(), TransportError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        if to.len() > MAX_NAME_BYTES {
            return Err(format!(
                "recipient id of {} bytes is too long for an AMQP routing key (at most {MAX_NAME_BYTES})",
                to.len()
            )
            .into());
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
                    broker = %self.shared.broker(),
                    "closing with {left} messages the broker has not confirmed; they may be lost"
                );
            }
            if let Some(host) = &self.shared.host {
                let primary = self.shared.connection.borrow().clone();
                if let Some(connection) = primary {
                    let deleted = host.delete(&connection);
                    let limit = self.shared.config.connect_timeout;
                    if !matches!(tokio::time::timeout(limit, deleted).await, Ok(Ok(()))) {
                        tracing::warn!(queue = %host.name, "cannot delete the host queue; it expires unused");
                    }
                }
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
