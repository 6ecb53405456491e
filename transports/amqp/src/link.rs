//! The attached agents, the connections their channels use, and keeping both across the
//! broker's failures: [`Shared`], the state the space's tasks share; [`Link`], the
//! agents and their connections; [`supervise`], which rebuilds them after a lost
//! connection; [`resubscribe_cancelled`], after a deleted queue.
//!
//! Each agent consumes on a channel of its own (a refusal or a deleted queue closes that
//! channel, never another agent's), and a broker allows a connection a limited number of
//! channels (`channel_max`, 2,047 on RabbitMQ): the [`Link`] opens another connection
//! whenever the ones it has are full, so a process may hold any number of agents.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use agency_sdk::transport::sender_of;
use futures_util::StreamExt;
use lapin::{Channel, Connection};
use tokio::sync::{mpsc, watch, Mutex};

use crate::{
    config::Config,
    consumer::{self, Cancelled, Inbox},
    counts::Counts,
    host_queue::HostQueue,
    session::{self, LossReports},
};

/// How long a reconnecting agent waits for the broker to drop its old consumers.
const TAKEOVER_GRACE: Duration = Duration::from_secs(5);
/// How many agents of a host queue claim their ids at once after a reconnection (each on
/// a short-lived channel: far fewer than a connection's `channel_max`).
const CONCURRENT_CLAIMS: usize = 64;

/// What the space's tasks share.
pub struct Shared {
    /// The configuration the space was opened with.
    pub config: Config,
    /// The publishing connection, `None` while reconnecting; the publisher watches it.
    pub connection: watch::Sender<Option<Arc<Connection>>>,
    /// Which configured broker the connections go to (the last one, while reconnecting).
    pub broker: AtomicUsize,
    /// The attached agents, their subscriptions and the connections they use.
    pub link: Mutex<Link>,
    /// Messages accepted by `publish` and not yet confirmed by the broker.
    pub unconfirmed: AtomicUsize,
    /// Set once `close` starts.
    pub closed: AtomicBool,
    /// Where each connection's loss is reported, with the generation it belongs to.
    pub losses: LossReports,
    /// What the space counts about itself.
    pub counts: Arc<Counts>,
    /// The queue the agents share, with `queue_per = "host"`.
    pub host: Option<Arc<HostQueue>>,
}

impl Shared {
    /// The address of the broker the space is (or was last) connected to.
    pub fn broker(&self) -> String {
        self.config.broker(self.broker.load(Ordering::Acquire))
    }

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
    pub connections: Vec<Pooled>,
    /// Counts reconnections: a loss reported for an older generation is stale.
    pub generation: u64,
    pub agents: HashMap<String, Subscription>,
    /// Agents being attached: their ids are taken and a channel is kept for each, while
    /// their queues are declared without the lock (so agents attach in parallel).
    pub joining: HashSet<String>,
    /// The channel consuming the host queue (`queue_per = "host"`), while connected.
    pub host_channel: Option<Channel>,
}

/// A connection and how many agents' channels it carries.
pub struct Pooled {
    pub connection: Arc<Connection>,
    pub channels: usize,
}

pub struct Subscription {
    pub inbox: Arc<Inbox>,
    /// The channel consuming the agent's queues, while connected, and the index of its
    /// connection.
    pub channel: Option<(Channel, usize)>,
}

impl Link {
    /// Forgets this generation's connections and their channels (the agents stay
    /// attached), and answers the connections, to be closed.
    pub fn disconnect(&mut self) -> Vec<Arc<Connection>> {
        self.agents.values_mut().for_each(|s| s.channel = None);
        self.host_channel = None;
        self.generation += 1;
        self.connections.drain(..).map(|p| p.connection).collect()
    }

    /// Keeps a channel for one more agent on a connection with room, opening one more
    /// connection if every one is full; answers that connection and its index.
    pub async fn place(
        &mut self,
        shared: &Shared,
    ) -> Result<(Arc<Connection>, usize), SubscribeError> {
        let index = match self
            .connections
            .iter()
            .position(|p| p.channels < agent_channels(&p.connection))
        {
            Some(index) => index,
            None => {
                let live = session::connect(&shared.config, shared.broker.load(Ordering::Acquire))
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
    pub fn unplace(&mut self, index: usize) {
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
    pub async fn unsubscribe(&mut self, channel: Option<(Channel, usize)>, why: &str) {
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
    /// hold their exclusive consumers (or id-holding queues): a refused subscription is
    /// retried for [`TAKEOVER_GRACE`], then reported (another process took the id) and the
    /// agent is left without a channel. Any other failure means the connections are bad.
    pub async fn restore(
        &mut self,
        shared: &Shared,
        primary: Arc<Connection>,
    ) -> Result<(), String> {
        self.connections = vec![Pooled {
            connection: primary.clone(),
            channels: 0,
        }];
        if let Some(host) = &shared.host {
            return self.restore_host(shared, host, &primary).await;
        }
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
                        id_taken(&id)
                    }
                    Err(error) => return Err(error.to_string()),
                }
                break;
            }
        }
        Ok(())
    }

    /// [`Link::restore`] with a host queue: consumes it again, then claims every agent's
    /// id and binding again, [`CONCURRENT_CLAIMS`] at a time. An agent whose id another
    /// process took meanwhile loses its binding, so the host queue stops receiving its
    /// messages.
    async fn restore_host(
        &mut self,
        shared: &Shared,
        host: &Arc<HostQueue>,
        connection: &Connection,
    ) -> Result<(), String> {
        let config = &shared.config;
        let losses = shared.losses.clone();
        let channel = host
            .subscribe(config, connection, self.generation, losses)
            .await
            .map_err(|e| e.to_string())?;
        self.host_channel = Some(channel);
        let claim = |id: String| async move {
            let deadline = Instant::now() + TAKEOVER_GRACE;
            loop {
                match host.claim(config, connection, &id).await {
                    Err(error) if consumer::is_duplicate(&error) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    claimed => return (id, claimed),
                }
            }
        };
        let claims: Vec<_> = futures_util::stream::iter(self.agents.keys().cloned())
            .map(claim)
            .buffer_unordered(CONCURRENT_CLAIMS)
            .collect()
            .await;
        for (id, claimed) in claims {
            match claimed {
                Ok(()) => {}
                Err(error) if consumer::is_duplicate(&error) => {
                    id_taken(&id);
                    host.unroute(&id);
                    // The binding goes; the other process's queue holding the id stays.
                    let _ = host.release(config, connection, &id).await;
                }
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(())
    }
}

/// Reports an agent whose id another process took while the connection was down.
fn id_taken(id: &str) {
    tracing::error!(
        agent = %id,
        "another process took this agent's id while the connection was down; it no longer receives messages"
    )
}

/// Why an agent could not be subscribed.
pub enum SubscribeError {
    /// Another connection was needed and could not be opened.
    Connect(session::ConnectError),
    /// The broker refused a step (see [`consumer::is_duplicate`]).
    Broker(lapin::Error),
}

impl std::fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(error) => error.fmt(f),
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
pub async fn resubscribe_cancelled(
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

/// Keeps the space connected until it is closed: when any connection of the current
/// generation is lost, every one is closed and the space connects and subscribes anew.
pub async fn supervise(shared: Arc<Shared>, mut losses: mpsc::UnboundedReceiver<(u64, String)>) {
    while let Some((generation, error)) = losses.recv().await {
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        let old = {
            let mut link = shared.link.lock().await;
            if generation != link.generation {
                continue;
            }
            tracing::warn!(broker = %shared.broker(), %error, "lost the connection to the AMQP broker; reconnecting");
            shared.connection.send_replace(None);
            link.disconnect()
        };
        // Half-open ones (the broker may still hold their consumers, which would refuse
        // ours) are closed before new ones open: a process holds one generation at a time.
        for connection in old {
            let closing = connection.close(320, "reconnecting".into());
            let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
        }
        if !reconnect(&shared).await {
            return;
        }
    }
}

/// Connects again, with backoff, and restores the agents; false once the space closes.
/// The brokers are tried from the one after the broker just lost (see `session`).
async fn reconnect(shared: &Shared) -> bool {
    let lost = shared.broker.load(Ordering::Acquire);
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return false;
        }
        match session::connect(&shared.config, lost + 1).await {
            Ok(live) => {
                shared.broker.store(live.broker, Ordering::Release);
                let mut link = shared.link.lock().await;
                let primary = live.connection.clone();
                session::monitor(live, link.generation, shared.losses.clone());
                match link.restore(shared, primary.clone()).await {
                    Ok(()) => {
                        shared.connection.send_replace(Some(primary));
                        Counts::one(&shared.counts.reconnects);
                        tracing::info!(broker = %shared.broker(), attempt, "reconnected to the AMQP broker");
                        return true;
                    }
                    Err(error) => {
                        tracing::warn!(%error, attempt, "cannot restore the agents' queues");
                        for connection in link.disconnect() {
                            let _ = connection.close(320, "restore failed".into()).await;
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(%error, attempt, "reconnection failed"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
}
