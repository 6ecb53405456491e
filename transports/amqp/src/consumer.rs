//! Receiving: an agent's two queues, their consumers, and what happens to a delivery.
//!
//! Each agent gets its own channel with a bounded prefetch and two durable queues that
//! expire once nobody consumes them: `<id>` (routing key `<id>`) and `<id>-broadcast`
//! (routing key `__broadcast__`), as in Python Agency. The consumers are `exclusive`, so a
//! second agent with the same id anywhere on the broker is refused. (Quorum queues
//! ignore `exclusive` on a consumer: there, an exclusive queue `<id>-owner` of the
//! agent's connection holds the id.) A delivery is handed
//! to the agent's sink, then acknowledged: the broker keeps what was not yet acknowledged
//! when a connection drops and delivers it again, and [`RecentIds`] drops those copies.
//!
//! A copy is the same `message_id` with the same body: any client of the broker can
//! publish into an agent's queue, so a message forged with an id it saw (or guessed)
//! and another body never suppresses the real one. A consumer the broker cancels while
//! the channel stays open (its queue was deleted) is reported, and the space subscribes
//! the agent again.

use std::{
    collections::{HashSet, VecDeque},
    hash::BuildHasher,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use agency_sdk::{
    transport::{Inbound, BROADCAST_KEY},
    Repeated,
};
use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Channel, Connection, Consumer,
};

use crate::{
    acks::Acks,
    config::{Config, QueueType},
    counts::Counts,
};

/// A consumer the broker cancelled while its channel stayed open: the agent, and the
/// channel its subscription had.
pub struct Cancelled {
    /// The agent whose queue it consumed.
    pub agent_id: String,
    /// The channel it was on.
    pub channel_id: lapin::types::ChannelId,
}

/// Where cancelled consumers are reported.
pub type CancelReports = tokio::sync::mpsc::UnboundedSender<Cancelled>;

/// Where one agent's deliveries go.
pub struct Inbox {
    agent_id: String,
    sink: Arc<dyn Inbound>,
    seen: Mutex<RecentIds>,
    /// Held by a consumer while it hands over one delivery: after a reconnection, the new
    /// consumers wait for an old one still handing over a delivery (see [`consume`]).
    turn: tokio::sync::Mutex<()>,
    max_message_bytes: usize,
    /// Deliveries dropped for their size or encoding (only some are logged).
    dropped: Repeated,
    cancel_reports: CancelReports,
    counts: Arc<Counts>,
}

impl Inbox {
    /// The sink this inbox delivers to.
    pub fn sink(&self) -> Arc<dyn Inbound> {
        self.sink.clone()
    }

    /// An inbox for `agent_id` delivering to `sink`; cancelled consumers are reported to
    /// `cancel_reports`.
    pub fn new(
        agent_id: &str,
        sink: Arc<dyn Inbound>,
        config: &Config,
        cancel_reports: CancelReports,
        counts: Arc<Counts>,
    ) -> Self {
        Self {
            agent_id: agent_id.to_owned(),
            sink,
            seen: Mutex::new(RecentIds::new(config.dedup_window)),
            turn: tokio::sync::Mutex::new(()),
            max_message_bytes: config.max_message_bytes,
            dropped: Repeated::default(),
            cancel_reports,
            counts,
        }
    }

    /// Hands one delivery to the agent, unless it is too large, not text, or a copy.
    ///
    /// The sink may block to apply backpressure (the agent is behind); see [`consume`]
    /// for how that spares the other agents' consumers.
    fn receive(&self, delivery: &Delivery) {
        let size = delivery.data.len();
        if size > self.max_message_bytes {
            let reason = format!(
                "body of {size} bytes exceeds max_message_bytes ({})",
                self.max_message_bytes
            );
            return self.drop_message(&reason);
        }
        let body = match std::str::from_utf8(&delivery.data) {
            Ok(body) => body,
            Err(error) => return self.drop_message(&format!("body is not UTF-8 text: {error}")),
        };
        if let Some(id) = delivery.properties.message_id() {
            if !self.seen.lock().unwrap().insert(id.as_str(), body) {
                Counts::one(&self.counts.copies_dropped);
                tracing::debug!(agent = %self.agent_id, message_id = ?id.as_str(), "dropped a redelivered copy");
                return;
            }
        }
        self.sink.deliver(body);
    }

    fn drop_message(&self, reason: &str) {
        Counts::one(&self.counts.refused);
        if let Some(count) = self.dropped.occurred() {
            tracing::warn!(agent = %self.agent_id, %reason, count, "dropped a message");
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let dropped = self.dropped.total();
        if dropped > 10 {
            tracing::warn!(agent = %self.agent_id, dropped, "in all, messages dropped for their size or encoding (only some were logged)");
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
    let id = inbox.agent_id.as_str();
    let arguments = queue_arguments(config);
    let quorum = config.queue_type == QueueType::Quorum;
    let (direct, broadcast) = (config.direct_queue(id), config.broadcast_queue(id));
    let owner = config.owner_queue(id);
    // A quorum queue takes a second `exclusive` consumer: the id is held by an exclusive
    // queue of this connection instead, which the broker refuses to any other
    // (RESOURCE_LOCKED) and deletes with the connection.
    let hold_id = async {
        if quorum {
            let owned = QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(owner.as_str().into(), owned, FieldTable::default())
                .await?;
        }
        Ok(())
    };
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let declare = |queue: &str| channel.queue_declare(queue.into(), durable, arguments.clone());
    let bind = |queue: &str, key: &str| {
        channel.queue_bind(
            queue.into(),
            config.exchange.as_str().into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
    };
    let exclusive = BasicConsumeOptions {
        exclusive: true,
        ..BasicConsumeOptions::default()
    };
    let consume_from = |queue: &str| {
        channel.basic_consume(queue.into(), queue.into(), exclusive, FieldTable::default())
    };
    // Every step is sent before the broker answers the first (`join!` polls them in this
    // order, and a channel's methods are handled in order): one round trip for all. Once
    // a step fails, the broker closes the channel and lapin fails the later ones, some
    // with the broker's reason, some (not sent yet) with the channel's state: the
    // broker's reason is the one answered.
    let (
        qos,
        held,
        direct_declared,
        direct_bound,
        broadcast_declared,
        broadcast_bound,
        direct_consumer,
        broadcast_consumer,
    ) = tokio::join!(
        channel.basic_qos(config.prefetch, BasicQosOptions::default()),
        hold_id,
        declare(&direct),
        bind(&direct, id),
        declare(&broadcast),
        bind(&broadcast, BROADCAST_KEY),
        consume_from(&direct),
        consume_from(&broadcast),
    );
    let failures = [
        qos.err(),
        held.err(),
        direct_declared.err(),
        direct_bound.err(),
        broadcast_declared.err(),
        broadcast_bound.err(),
    ];
    let (direct_consumer, broadcast_consumer) = match (direct_consumer, broadcast_consumer) {
        (Ok(direct), Ok(broadcast)) if failures.iter().all(Option::is_none) => (direct, broadcast),
        (direct, broadcast) => {
            let failures = failures
                .into_iter()
                .flatten()
                .chain(direct.err())
                .chain(broadcast.err());
            return Err(the_reason(failures));
        }
    };
    let acks = Acks::start(channel.clone());
    for consumer in [direct_consumer, broadcast_consumer] {
        deliveries().spawn(consume(
            consumer,
            inbox.clone(),
            channel.clone(),
            acks.clone(),
        ));
    }
    Ok(channel)
}

/// The arguments of the queues that receive messages: their expiry once unused, and
/// their type.
pub fn queue_arguments(config: &Config) -> FieldTable {
    let mut arguments = FieldTable::default();
    let expires = config.queue_expires.as_millis().min(u32::MAX as u128) as u32;
    arguments.insert("x-expires".into(), AMQPValue::LongUInt(expires));
    if config.queue_type == QueueType::Quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    arguments
}

/// Of the errors of a failed set-up, the broker's reason (a protocol error) if there is
/// one, else the first.
pub fn the_reason(errors: impl IntoIterator<Item = lapin::Error>) -> lapin::Error {
    let mut errors = errors.into_iter().peekable();
    let first = errors.peek().cloned();
    errors
        .find(|error| matches!(error.kind(), lapin::ErrorKind::ProtocolError(_)))
        .or(first)
        .expect("a failed set-up has an error")
}

/// The runtime every consumer of the plugin delivers on: a few threads for any number of
/// agents.
///
/// Kept apart from the transport's own runtime (publishing, reconnection): a delivery
/// may wait for room in a full mailbox, and must never hold back the publisher that the
/// agent it waits for may itself be waiting on.
pub fn deliveries() -> &'static tokio::runtime::Runtime {
    static DELIVERIES: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    DELIVERIES.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores.max(2))
            .max_blocking_threads(MAX_WAITING_CONSUMERS)
            .thread_name("agency-amqp-deliver")
            .enable_all()
            .build()
            .expect("cannot start the amqp transport's delivery runtime")
    })
}

/// How many consumers may wait for room in full mailboxes at once, each on a thread of
/// its own; more wait for one of those threads.
const MAX_WAITING_CONSUMERS: usize = 256;

/// A delivery that took longer than this was waiting for room in the agent's mailbox:
/// the consumer's next deliveries wait on a thread of their own.
const WAITED: Duration = Duration::from_millis(1);

/// Whether a subscription failed because another process holds the agent id.
pub fn is_duplicate(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if matches!(
        e.kind(),
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED | AMQPSoftError::RESOURCELOCKED)
    ))
}

/// Whether a declaration failed because the agent's queue exists with other arguments
/// (another `queue_type` or `queue_expires_secs`).
pub fn is_inequivalent(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if matches!(
        e.kind(),
        AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    ))
}

/// Delivers until the consumer ends: its connection lost or its channel closed (the
/// space takes care of both), or cancelled by the broker while the channel stays open
/// (its queue was deleted), which is reported to the space.
///
/// A delivery normally takes microseconds (the message is queued in the agent's
/// mailbox). One that had to wait for room (the agent is behind) marks the consumer as
/// *held back*: its next deliveries run under `block_in_place`, which hands the other
/// consumers of this thread to another one before waiting, until a delivery goes
/// through at once again. Only the first wait of such a spell holds a delivery thread;
/// the runtime has several, and idle ones take over the queued consumers meanwhile.
///
/// Each delivery is acknowledged once it is in the agent's mailbox, by the channel's
/// acknowledger ([`Acks`]), so this thread goes on to the next delivery instead of
/// waiting for lapin to write the ack.
///
/// Order across a lost connection: the broker delivers again, in order, what was not
/// acknowledged, to the consumers of the new connection. Those must not overtake a
/// delivery the old consumer is still handing over (waiting for room in a full mailbox),
/// nor may the old one go on with what lapin had buffered: a consumer hands over one
/// delivery at a time under the inbox's `turn`, and only while its channel is open. (The
/// copy of the delivery the old consumer handed over is then dropped by [`RecentIds`].)
async fn consume(mut consumer: Consumer, inbox: Arc<Inbox>, channel: Channel, acks: Acks) {
    let mut held_back = false;
    while let Some(Ok(delivery)) = consumer.next().await {
        if !inbox.hand_over(&delivery, &channel, &mut held_back).await {
            // Its connection is gone: the broker delivers it again to the new consumer.
            break;
        }
        acks.handed_over(delivery.delivery_tag);
    }
    if channel.status().connected() {
        let _ = inbox.cancel_reports.send(Cancelled {
            agent_id: inbox.agent_id.clone(),
            channel_id: channel.id(),
        });
    }
}

impl Inbox {
    /// Hands over one `delivery` that came on `channel`, under the inbox's `turn`, unless
    /// that channel is closed (false: the broker delivers it again on the new one). One
    /// that had to wait for room sets `held_back`, and the next runs under
    /// `block_in_place` (see [`consume`]).
    pub async fn hand_over(
        &self,
        delivery: &Delivery,
        channel: &Channel,
        held_back: &mut bool,
    ) -> bool {
        let _turn = self.turn.lock().await;
        if !channel.status().connected() {
            return false;
        }
        let started = Instant::now();
        if *held_back {
            tokio::task::block_in_place(|| self.receive(delivery));
        } else {
            self.receive(delivery);
        }
        *held_back = started.elapsed() > WAITED;
        true
    }
}

/// The last `capacity` messages seen, by `message_id` and body, to recognise a copy.
///
/// Each is kept as a 64-bit keyed hash (SipHash with this process's random keys), so a
/// peer can neither forge a collision nor make the window cost more than a few bytes a
/// message.
struct RecentIds {
    keys: std::collections::hash_map::RandomState,
    set: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self {
            keys: Default::default(),
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Records message `id` with `body`; false if the same was already there.
    fn insert(&mut self, id: &str, body: &str) -> bool {
        let key = self.keys.hash_one((id, body));
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        self.set.insert(key);
        self.order.push_back(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{is_duplicate, the_reason, RecentIds};
    use lapin::{
        protocol::{AMQPError, AMQPErrorKind, AMQPSoftError},
        ChannelState, ErrorKind,
    };

    #[test]
    fn the_brokers_reason_is_answered_before_the_channels_state() {
        let closing = || {
            lapin::Error::from(ErrorKind::InvalidChannelState(
                ChannelState::Closing,
                "sent after the close",
            ))
        };
        let refused = lapin::Error::from(ErrorKind::ProtocolError(AMQPError::new(
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED),
            "queue in exclusive use".into(),
        )));
        assert!(is_duplicate(&the_reason([closing(), refused, closing()])));
        assert!(!is_duplicate(&the_reason([closing()])));
    }

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut ids = RecentIds::new(2);
        assert!(ids.insert("a", "x"));
        assert!(!ids.insert("a", "x"));
        assert!(ids.insert("b", "x"));
        assert!(ids.insert("c", "x"));
        assert!(ids.insert("a", "x"), "a was pushed out by c");
        assert!(!ids.insert("c", "x"));
    }

    #[test]
    fn a_forged_id_with_another_body_is_no_copy() {
        let mut ids = RecentIds::new(8);
        assert!(ids.insert("id-1", "forged"));
        assert!(ids.insert("id-1", "real"));
        assert!(!ids.insert("id-1", "real"));
    }
}
