//! Receiving: an agent's two queues, their consumers, and what happens to a delivery.
//!
//! Each agent gets its own channel with a bounded prefetch and two durable queues that
//! expire once nobody consumes them: `<id>` (routing key `<id>`) and `<id>-broadcast`
//! (routing key `__broadcast__`), as in Python Agency. The consumers are `exclusive`, so a
//! second agent with the same id anywhere on the broker is refused. A delivery is handed
//! to the agent's sink, then acknowledged: the broker keeps what was not yet acknowledged
//! when a connection drops and delivers it again, and [`RecentIds`] drops those copies.

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, Mutex},
};

use agency_sdk::boundary::Inbound;
use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    Channel, Connection, Consumer,
};

use crate::config::Config;

/// The routing key of broadcasts, as in Python Agency.
pub const BROADCAST_KEY: &str = "__broadcast__";

/// Where one agent's deliveries go.
pub struct Inbox {
    agent_id: String,
    sink: Arc<dyn Inbound>,
    seen: Mutex<RecentIds>,
    max_message_bytes: usize,
}

impl Inbox {
    /// An inbox for `agent_id` delivering to `sink`.
    pub fn new(agent_id: &str, sink: Arc<dyn Inbound>, config: &Config) -> Self {
        Self {
            agent_id: agent_id.to_owned(),
            sink,
            seen: Mutex::new(RecentIds::new(config.dedup_window)),
            max_message_bytes: config.max_message_bytes,
        }
    }

    /// Hands one delivery to the agent, unless it is a copy, too large or not text.
    ///
    /// The sink may block to apply backpressure (the agent is behind); this runs on the
    /// agent's own consumer thread, so only this agent's consumers wait.
    fn receive(&self, delivery: &Delivery) {
        if let Some(id) = delivery.properties.message_id() {
            if !self.seen.lock().unwrap().insert(id.as_str()) {
                tracing::debug!(agent = %self.agent_id, message_id = %id, "dropped a redelivered copy");
                return;
            }
        }
        let size = delivery.data.len();
        if size > self.max_message_bytes {
            tracing::warn!(
                agent = %self.agent_id,
                reason = %format!("body of {size} bytes exceeds max_message_bytes ({})", self.max_message_bytes),
                "dropped a message"
            );
            return;
        }
        match std::str::from_utf8(&delivery.data) {
            Ok(body) => self.sink.deliver(body),
            Err(error) => tracing::warn!(
                agent = %self.agent_id,
                reason = %format!("body is not UTF-8 text: {error}"),
                "dropped a message"
            ),
        }
    }
}

/// Declares and binds the agent's queues and starts consuming them on a new channel.
///
/// Fails with ACCESS_REFUSED (our exclusive consumer) or RESOURCE_LOCKED (a Python
/// agent's exclusive queue) when another process already holds the id; see
/// [`is_duplicate`].
pub async fn subscribe(
    config: &Config,
    connection: &Connection,
    inbox: &Arc<Inbox>,
) -> lapin::Result<Channel> {
    tokio::time::timeout(config.connect_timeout, open(config, connection, inbox))
        .await
        .map_err(|_| {
            let silent = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the broker did not answer in time",
            );
            lapin::Error::from(silent)
        })?
}

async fn open(
    config: &Config,
    connection: &Connection,
    inbox: &Arc<Inbox>,
) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    let mut arguments = FieldTable::default();
    let expires = config.queue_expires.as_millis().min(u32::MAX as u128) as u32;
    arguments.insert("x-expires".into(), AMQPValue::LongUInt(expires));
    let id = inbox.agent_id.as_str();
    let queues = [
        (config.direct_queue(id), id),
        (config.broadcast_queue(id), BROADCAST_KEY),
    ];
    for (queue, key) in &queues {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.as_str().into(), durable, arguments.clone())
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                config.exchange.as_str().into(),
                (*key).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let mut consumers = Vec::new();
    for (queue, _) in &queues {
        let exclusive = BasicConsumeOptions {
            exclusive: true,
            ..BasicConsumeOptions::default()
        };
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                queue.as_str().into(),
                exclusive,
                FieldTable::default(),
            )
            .await?;
        consumers.push(consume(
            consumer,
            inbox.clone(),
            tokio::runtime::Handle::current(),
        ));
    }
    // Deliveries may wait for room in the agent's mailbox: they run on a thread of the
    // agent's own, so that a slow agent holds back nobody else's consumers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(lapin::Error::from)?;
    std::thread::Builder::new()
        .name(format!("amqp {id}"))
        .spawn(move || runtime.block_on(futures_util::future::join_all(consumers)))
        .map_err(lapin::Error::from)?;
    Ok(channel)
}

/// Whether a subscription failed because another process holds the agent id.
pub fn is_duplicate(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if matches!(
        e.kind(),
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED | AMQPSoftError::RESOURCELOCKED)
    ))
}

/// Delivers until the consumer ends (cancelled, or its connection lost).
///
/// Each delivery is acknowledged once it is in the agent's mailbox, by a task on the
/// transport's runtime (`acks`), so this thread goes on to the next delivery instead of
/// waiting for lapin to write the ack.
async fn consume(mut consumer: Consumer, inbox: Arc<Inbox>, acks: tokio::runtime::Handle) {
    while let Some(Ok(delivery)) = consumer.next().await {
        inbox.receive(&delivery);
        // A failed ack means the connection is gone: the broker will deliver the message
        // again after reconnection, and `RecentIds` drops that copy.
        acks.spawn(async move {
            let _ = delivery.ack(BasicAckOptions::default()).await;
        });
    }
}

/// The last `capacity` message ids seen, to recognise a copy.
struct RecentIds {
    set: HashSet<Box<str>>,
    order: VecDeque<Box<str>>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Records `id`; false if it was already there.
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        self.set.insert(id.into());
        self.order.push_back(id.into());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::RecentIds;

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut ids = RecentIds::new(2);
        assert!(ids.insert("a"));
        assert!(!ids.insert("a"));
        assert!(ids.insert("b"));
        assert!(ids.insert("c"));
        assert!(ids.insert("a"), "a was pushed out by c");
        assert!(!ids.insert("c"));
    }
}
