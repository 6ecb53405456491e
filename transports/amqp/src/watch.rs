//! [`WatchSpace`]: watching a space from outside, with copies of every message published
//! to its exchange, read from the broker's firehose.
//!
//! A space opened with `watch = true` (`agency watch` does) sends nothing and takes no
//! message from anyone: each attached sink receives a *copy* of every message published
//! to the exchange, by Rust or Python agents, to one agent, to all, or to an id nobody
//! holds. The copies come from RabbitMQ's firehose, the `amq.rabbitmq.trace` exchange, on
//! a queue of the watcher's own bound to `publish.<exchange>`.
//!
//! Why not a queue bound to the space's exchange with `#`: such a queue makes every
//! message routable, so the broker would no longer return a message for an id nobody
//! holds, and senders would stop learning of their dead letters (see `publisher`). The
//! firehose copies each message as it is published, after routing, so the space behaves
//! exactly as without a watcher.
//!
//! The cost: the firehose is off by default. An administrator turns it on for the vhost
//! (`rabbitmqctl trace_on -p VHOST`; on a cluster the firehose is per node, so on every
//! node, or messages published through the others are missed); while it is on, the broker copies every message
//! published in that vhost, watched or not (BENCHMARKS.md has the figures). `attach`
//! publishes a probe nobody receives and fails, saying how to turn the firehose on, when
//! no copy of it arrives within [`PROBE_WAIT`].
//!
//! The watcher's queue is exclusive (deleted with its connection) and keeps at most
//! [`WATCH_QUEUE_LENGTH`] copies: a watcher that cannot keep up loses the oldest copies at
//! the broker and never slows the space. A lost connection ends the watch, with an error
//! in the log; there is no reconnection.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use agency_sdk::{
    metrics::{report_metrics, PluginMetrics},
    transport::{Inbound, TransportError, TransportSpace},
};
use futures_util::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection,
};

use crate::{config::Config, session, space::runtime, stats};

/// How long `attach` waits for the copy of its probe.
pub const PROBE_WAIT: Duration = Duration::from_secs(3);
/// The most copies a watcher's queue keeps; beyond, the oldest are dropped.
pub const WATCH_QUEUE_LENGTH: u32 = 100_000;
/// The firehose's exchange.
const FIREHOSE: &str = "amq.rabbitmq.trace";
/// How every probe's body starts; watchers skip such copies.
const PROBE_PREFIX: &str = "{\"agency_watch_probe\":";

/// A read-only view of a space on the broker.
pub struct WatchSpace {
    config: Config,
    /// The broker watched from, without its password, and its vhost.
    broker: String,
    vhost: String,
    connection: Arc<Connection>,
    watchers: Mutex<HashMap<String, Channel>>,
    /// Set by `close`: the end of the connection is no loss then.
    closing: Arc<AtomicBool>,
}

impl WatchSpace {
    /// Connects to the broker.
    pub fn open(config: Config) -> Result<Self, String> {
        let live = runtime()
            .block_on(session::connect(&config, session::any_broker(&config)))
            .map_err(|e| e.to_string())?;
        tracing::info!(broker = %config.broker(live.broker), exchange = %config.exchange, "watching from the AMQP broker");
        report_metrics(&PluginMetrics {
            info: stats::place(&config, live.broker),
            ..PluginMetrics::default()
        });
        Ok(Self {
            broker: config.broker(live.broker),
            vhost: config.brokers[live.broker].vhost.clone(),
            config,
            connection: live.connection,
            watchers: Mutex::default(),
            closing: Arc::default(),
        })
    }

    /// Opens the watcher's queue and consumer; answers the channel once the copy of a
    /// probe came through.
    async fn watch(&self, watcher: &str, sink: Arc<dyn Inbound>) -> Result<Channel, String> {
        let config = &self.config;
        let broker = self.broker.clone();
        let failed = |error: lapin::Error| format!("cannot watch the space on {broker}: {error}");
        let channel = self.connection.create_channel().await.map_err(failed)?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-max-length".into(),
            AMQPValue::LongUInt(WATCH_QUEUE_LENGTH),
        );
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
        let private = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare("".into(), private, arguments)
            .await
            .map_err(failed)?;
        channel
            .queue_bind(
                queue.name().as_str().into(),
                FIREHOSE.into(),
                format!("publish.{}", config.exchange).as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(failed)?;
        let read_only = BasicConsumeOptions {
            no_ack: true,
            exclusive: true,
            ..BasicConsumeOptions::default()
        };
        let mut consumer = channel
            .basic_consume(
                queue.name().as_str().into(),
                watcher.into(),
                read_only,
                FieldTable::default(),
            )
            .await
            .map_err(failed)?;
        let probe = format!("{PROBE_PREFIX}\"{}\"}}", uuid::Uuid::new_v4().simple());
        let (probed, probe_seen) = tokio::sync::oneshot::channel();
        let expected = probe.clone();
        let (connection, closing) = (self.connection.clone(), self.closing.clone());
        // A delivery may wait for room in the sink: on a thread of its own.
        let deliveries = async move {
            let mut probed = Some(probed);
            while let Some(Ok(delivery)) = consumer.next().await {
                let Ok(body) = std::str::from_utf8(&delivery.data) else {
                    continue;
                };
                if body.starts_with(PROBE_PREFIX) {
                    if body == expected {
                        probed.take().map(|probed| probed.send(()));
                    }
                    continue;
                }
                sink.deliver(body);
            }
            if !connection.status().connected() && !closing.load(Ordering::Acquire) {
                tracing::error!(%broker, "the watch ended: the connection to the broker was lost");
            }
        };
        let consumer_runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name(format!("amqp watch {watcher}"))
            .spawn(move || consumer_runtime.block_on(deliveries))
            .map_err(|e| e.to_string())?;
        // A routing key no agent binds: nobody receives the probe, the firehose copies it.
        let key = format!("agency-watch-probe.{}", uuid::Uuid::new_v4().simple());
        channel
            .basic_publish(
                config.exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                probe.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .map_err(|e| format!("cannot watch the space on {}: {e}", self.broker))?;
        if tokio::time::timeout(PROBE_WAIT, probe_seen).await.is_err() {
            let _ = channel.close(200, "no firehose".into()).await;
            let vhost = &self.vhost;
            return Err(format!(
                "no copy of the traffic arrives from {}: the broker's firehose is off in vhost \
                 {vhost:?}. An administrator turns it on with `rabbitmqctl trace_on -p {vhost}` \
                 (while it is on, the broker copies every message published in that vhost, \
                 which costs throughput) and off with `rabbitmqctl trace_off -p {vhost}`; on a \
                 cluster, on every node (`rabbitmqctl -n NODE trace_on -p {vhost}`)",
                self.broker
            ));
        }
        Ok(channel)
    }
}

impl TransportSpace for WatchSpace {
    /// Starts sending `sink` a copy of every message published in the space; fails when
    /// the broker's firehose is off.
    fn attach(&self, watcher: &str, sink: Arc<dyn Inbound>) -> Result<(), TransportError> {
        let channel = runtime().block_on(self.watch(watcher, sink))?;
        self.watchers
            .lock()
            .unwrap()
            .insert(watcher.to_owned(), channel);
        Ok(())
    }

    fn detach(&self, watcher: &str) {
        if let Some(channel) = self.watchers.lock().unwrap().remove(watcher) {
            let _ = runtime().block_on(channel.close(200, "watch ended".into()));
        }
    }

    fn publish(&self, _to: &str, _body: &str) -> Result<(), TransportError> {
        Err("this amqp space was opened to watch (`watch = true`): it sends nothing".into())
    }

    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let closing = self.connection.close(200, "watch ended".into());
        let _ = runtime().block_on(tokio::time::timeout(self.config.connect_timeout, closing));
    }
}
