//! One queue for all the agents of a host process (`queue_per = "host"`).
//!
//! With a queue per agent, each agent costs the broker two queues, two bindings, two
//! consumers and a channel (89 KiB, and a queue is the costliest thing it makes: about
//! 1,500 a second here; `docs/scaling.md`). Here a space has one queue,
//! `<prefix>agency-host-<random>`, bound once with `__broadcast__` and consumed once. An
//! agent adds two things:
//! - a **binding** of the host queue with its id as the routing key, so the wire stays
//!   Python Agency's: any agent sends to it by its id, as before;
//! - an **exclusive transient queue named `<id>`**, never bound (it receives nothing),
//!   which holds the id: the broker refuses it to any other connection
//!   (RESOURCE_LOCKED), exactly as it refuses a Python agent's own exclusive `<id>`
//!   queue or a per-agent Rust agent's consumed `<id>` queue, and deletes it with the
//!   connection. A duplicate id is refused across processes and languages as before.
//!
//! Both go out pipelined on one of a few pooled channels (a channel costs the broker about
//! as much as a binding to open and close): a refusal closes that channel, and the
//! claims it was carrying are decided again each on a channel of its own.
//!
//! **Delivery.** The host's consumer never waits: it routes each delivery by its routing
//! key to the agent's hand-over task (every agent's, for a broadcast), which hands it over
//! under the inbox's turn as a per-agent consumer does ([`Inbox::hand_over`]). A delivery
//! is acknowledged once the last agent it went to has it, so the prefetch bounds what the
//! tasks hold. The price of sharing: an agent whose mailbox stays full keeps its
//! deliveries unacknowledged, and once they fill the prefetch the host's other agents
//! wait for it too. A delivery for an id no longer attached is acknowledged and dropped.
//!
//! If the broker cancels the host's consumer (someone deleted the queue), the space
//! treats it as a lost connection: it reconnects and restores everything.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use agency_sdk::transport::BROADCAST_KEY;
use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::FieldTable,
    Channel, Connection, Consumer,
};
use tokio::sync::mpsc;

use crate::{
    acks::Acks,
    config::Config,
    consumer::{self, deliveries, Inbox},
    session::LossReports,
};

/// The queue a host's agents share, and where each agent's deliveries go.
pub struct HostQueue {
    /// The queue's name, fixed for the life of the space (it outlives a reconnection).
    pub name: String,
    /// Each attached agent's hand-over task, by id.
    routes: RwLock<HashMap<String, mpsc::UnboundedSender<Arc<Handed>>>>,
    /// The channels agents' ids are claimed and released on, of the current connection.
    channels: Mutex<Vec<Channel>>,
}

/// How many channels claim and release agents' ids side by side.
const POOLED_CHANNELS: usize = 16;

/// A delivery on its way to one agent or more, acknowledged when the last lets it go.
struct Handed {
    delivery: Delivery,
    channel: Channel,
    acks: Acks,
}

impl Drop for Handed {
    fn drop(&mut self) {
        self.acks.handed_over(self.delivery.delivery_tag);
    }
}

impl HostQueue {
    /// A host queue with a new name.
    pub fn new(config: &Config) -> Self {
        Self {
            name: config.host_queue(),
            routes: RwLock::default(),
            channels: Mutex::default(),
        }
    }

    /// Declares the host queue, binds it to broadcasts and consumes it on a new channel of
    /// `connection` (of generation `generation`, whose loss is reported to `losses`).
    pub async fn subscribe(
        self: &Arc<Self>,
        config: &Config,
        connection: &Connection,
        generation: u64,
        losses: LossReports,
    ) -> lapin::Result<Channel> {
        let channel = connection.create_channel().await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let exclusive = BasicConsumeOptions {
            exclusive: true,
            ..BasicConsumeOptions::default()
        };
        let name = self.name.as_str();
        let (qos, declared, bound, consumer) = tokio::join!(
            channel.basic_qos(config.prefetch, BasicQosOptions::default()),
            channel.queue_declare(name.into(), durable, consumer::queue_arguments(config)),
            channel.queue_bind(
                name.into(),
                config.exchange.as_str().into(),
                BROADCAST_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            ),
            channel.basic_consume(name.into(), name.into(), exclusive, FieldTable::default()),
        );
        let failures = [qos.err(), declared.err(), bound.err()];
        let consumer = match consumer {
            Ok(consumer) if failures.iter().all(Option::is_none) => consumer,
            consumer => {
                let failures = failures.into_iter().flatten().chain(consumer.err());
                return Err(consumer::the_reason(failures));
            }
        };
        let acks = Acks::start(channel.clone());
        deliveries().spawn(self.clone().dispatch(
            consumer,
            channel.clone(),
            acks,
            (generation, losses),
        ));
        Ok(channel)
    }

    /// Routes the deliveries for `inbox`'s agent to a hand-over task of its own, before
    /// its binding exists (a delivery never finds the binding without the route).
    pub fn route(&self, agent_id: &str, inbox: Arc<Inbox>) {
        let (handing, mut handed) = mpsc::unbounded_channel::<Arc<Handed>>();
        deliveries().spawn(async move {
            let mut held_back = false;
            while let Some(handed) = handed.recv().await {
                inbox
                    .hand_over(&handed.delivery, &handed.channel, &mut held_back)
                    .await;
            }
        });
        self.routes
            .write()
            .unwrap()
            .insert(agent_id.to_owned(), handing);
    }

    /// Stops routing deliveries to `agent_id` (what its task holds is still handed over).
    pub fn unroute(&self, agent_id: &str) {
        self.routes.write().unwrap().remove(agent_id);
    }

    /// Holds `agent_id` for `connection` and binds it to the host queue. Fails with
    /// RESOURCE_LOCKED when another connection holds the id (see
    /// [`consumer::is_duplicate`]); the binding is then not made.
    pub async fn claim(
        &self,
        config: &Config,
        connection: &Connection,
        agent_id: &str,
    ) -> lapin::Result<()> {
        let holder = QueueDeclareOptions {
            exclusive: true,
            ..QueueDeclareOptions::default()
        };
        let owner = &config.direct_queue(agent_id);
        self.on_a_channel(connection, |channel| async move {
            // The binding is sent after the declaration on the same channel: a refused id
            // closes the channel, and the broker never makes the binding.
            let (held, bound) = tokio::join!(
                channel.queue_declare(owner.as_str().into(), holder, FieldTable::default()),
                channel.queue_bind(
                    self.name.as_str().into(),
                    config.exchange.as_str().into(),
                    agent_id.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            );
            failure(held.map(drop), bound)
        })
        .await
    }

    /// Gives up `agent_id`: removes its binding and the queue that holds the id.
    pub async fn release(
        &self,
        config: &Config,
        connection: &Connection,
        agent_id: &str,
    ) -> lapin::Result<()> {
        let owner = &config.direct_queue(agent_id);
        self.on_a_channel(connection, |channel| async move {
            let (unbound, deleted) = tokio::join!(
                channel.queue_unbind(
                    self.name.as_str().into(),
                    config.exchange.as_str().into(),
                    agent_id.into(),
                    FieldTable::default(),
                ),
                channel.queue_delete(owner.as_str().into(), QueueDeleteOptions::default()),
            );
            failure(unbound, deleted.map(drop))
        })
        .await
    }

    /// Runs `steps` on one of the pooled channels of `connection` (opening one if the
    /// pool is short).
    ///
    /// The broker's refusal of one claim closes its channel, and lapin fails the other
    /// steps in flight on it, with the channel's state or with that same refusal: so any
    /// failure that closed the channel is decided again on a channel of the steps' own,
    /// which only their own refusal closes. (A step the broker did before the refusal,
    /// such as declaring the id's own queue, is harmless to repeat.)
    async fn on_a_channel<F, Fut>(&self, connection: &Connection, steps: F) -> lapin::Result<()>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = lapin::Result<()>>,
    {
        match steps(self.pooled_channel(connection).await?).await {
            Err(error) if closes_the_channel(&error) => {
                tracing::debug!(%error, "a pooled channel closed under a step; again on its own");
                let channel = connection.create_channel().await?;
                let done = steps(channel.clone()).await;
                close_soon(channel);
                done
            }
            done => done,
        }
    }

    /// One of the [`POOLED_CHANNELS`] open channels of `connection`, in turn.
    async fn pooled_channel(&self, connection: &Connection) -> lapin::Result<Channel> {
        {
            let mut pool = self.channels.lock().unwrap();
            pool.retain(|channel| channel.status().connected());
            if pool.len() >= POOLED_CHANNELS {
                pool.rotate_left(1);
                return Ok(pool[0].clone());
            }
        }
        let channel = connection.create_channel().await?;
        self.channels.lock().unwrap().push(channel.clone());
        Ok(channel)
    }

    /// Deletes the host queue (with its bindings), once the space closes.
    pub async fn delete(&self, connection: &Connection) -> lapin::Result<()> {
        let channel = connection.create_channel().await?;
        let deleted = channel
            .queue_delete(self.name.as_str().into(), QueueDeleteOptions::default())
            .await;
        close_soon(channel);
        deleted.map(drop)
    }

    /// Routes every delivery of the host's consumer until it ends. A consumer that ends
    /// while its channel stays open was cancelled by the broker: reported as the loss of
    /// its connection's generation, so the space reconnects and restores it.
    async fn dispatch(
        self: Arc<Self>,
        mut consumer: Consumer,
        channel: Channel,
        acks: Acks,
        (generation, losses): (u64, LossReports),
    ) {
        while let Some(Ok(delivery)) = consumer.next().await {
            let handed = Arc::new(Handed {
                delivery,
                channel: channel.clone(),
                acks: acks.clone(),
            });
            let key = handed.delivery.routing_key.as_str();
            let routes = self.routes.read().unwrap();
            if key == BROADCAST_KEY {
                for route in routes.values() {
                    let _ = route.send(handed.clone());
                }
            } else if let Some(route) = routes.get(key) {
                let _ = route.send(handed.clone());
            }
        }
        if channel.status().connected() {
            let _ = losses.send((
                generation,
                format!(
                    "the broker cancelled the consumer of the host queue {:?}",
                    self.name
                ),
            ));
        }
    }
}

/// Whether a failed step closed its channel: the broker refused a step on it, or it was
/// closed already.
fn closes_the_channel(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(_) | lapin::ErrorKind::InvalidChannelState(..)
    )
}

/// The broker's reason if either of two pipelined steps failed, else the first error.
fn failure(first: lapin::Result<()>, second: lapin::Result<()>) -> lapin::Result<()> {
    match (first, second) {
        (Ok(()), Ok(())) => Ok(()),
        (first, second) => Err(consumer::the_reason(
            first.err().into_iter().chain(second.err()),
        )),
    }
}

/// Closes a short-lived channel without waiting for the broker's answer.
fn close_soon(channel: Channel) {
    tokio::spawn(async move {
        let _ = channel.close(200, "done".into()).await;
    });
}
