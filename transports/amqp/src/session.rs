//! The connection: opening it, noticing when it is lost, and rebuilding everything after.
//!
//! A space has one connection, and one more for each `channel_max` agents (see
//! [`crate::space::Link`]). A task per connection waits for it to fail (an error event, a
//! missed heartbeat, a broker-side close) and reports it; the supervisor then closes the
//! whole generation of connections, reconnects with exponential backoff (0.1 s doubling
//! to 5 s, forever) and restores every attached agent's queues and consumers, with their
//! prefetch, before publishing resumes.

use std::{pin::Pin, sync::atomic::Ordering, sync::Arc, time::Duration};

use futures_util::{Stream, StreamExt};
use lapin::{
    options::ExchangeDeclareOptions, types::FieldTable, Connection, ConnectionProperties, Event,
    ExchangeKind,
};
use tokio::sync::mpsc;

use crate::{config::Config, space::Shared};

/// A connection with the stream that reports its failure.
pub struct Live {
    /// The connection, shared with the publisher.
    pub connection: Arc<Connection>,
    events: Pin<Box<dyn Stream<Item = Event> + Send>>,
}

/// Connects and declares the space's exchange (topic, durable, as Python Agency), within
/// the connect timeout.
pub async fn connect(config: &Config) -> Result<Live, String> {
    tokio::time::timeout(config.connect_timeout, open(config))
        .await
        .map_err(|_| {
            format!(
                "cannot connect to the AMQP broker at {}: no answer within {}s",
                config.broker(),
                config.connect_timeout.as_secs_f64()
            )
        })?
}

async fn open(config: &Config) -> Result<Live, String> {
    let broker = config.broker();
    // Named for the broker's list of connections: which process, which space.
    let properties = ConnectionProperties::default().with_connection_name(
        format!("agency (pid {}) {}", std::process::id(), config.exchange).into(),
    );
    let connection = Connection::connect_uri(config.uri.clone(), properties)
        .await
        .map_err(|e| format!("cannot connect to the AMQP broker at {broker}: {e}"))?;
    let events = Box::pin(connection.events_listener());
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel on the AMQP broker at {broker}: {e}"))?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            config.exchange.as_str().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .map_err(|e| {
            format!(
                "cannot declare the topic exchange {:?} on {broker}: {e}",
                config.exchange
            )
        })?;
    let _ = channel.close(200, "exchange declared".into()).await;
    Ok(Live {
        connection: Arc::new(connection),
        events,
    })
}

/// Where connection losses are reported: the connection's generation, and why.
pub type LossReports = mpsc::UnboundedSender<(u64, String)>;

/// Watches a connection of generation `generation` (on the current runtime) and reports
/// its loss to `losses`.
pub fn monitor(mut live: Live, generation: u64, losses: LossReports) {
    tokio::spawn(async move {
        let error = lost(&mut live).await;
        let _ = losses.send((generation, error));
    });
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
            tracing::warn!(broker = %shared.config.broker(), %error, "lost the connection to the AMQP broker; reconnecting");
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

/// Waits until the connection fails; answers why.
///
/// lapin reports a channel's errors on the connection's events too: a refused consumer
/// (another process holds the agent id) or a deleted queue closes one channel, never the
/// connection, and is handled by whoever used that channel.
async fn lost(live: &mut Live) -> String {
    let mut check = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            event = live.events.next() => match event {
                Some(Event::Error(error)) if live.connection.status().connected() => {
                    tracing::debug!(%error, "the broker closed a channel");
                }
                Some(Event::Error(error)) => return error.to_string(),
                Some(_) => {}
                None => return "the connection ended".into(),
            },
            _ = check.tick() => if !live.connection.status().connected() {
                return "the connection is closed".into();
            },
        }
    }
}

/// Connects again, with backoff, and restores the agents; false once the space closes.
async fn reconnect(shared: &Shared) -> bool {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return false;
        }
        match connect(&shared.config).await {
            Ok(live) => {
                let mut link = shared.link.lock().await;
                let primary = live.connection.clone();
                monitor(live, link.generation, shared.losses.clone());
                match link.restore(shared, primary.clone()).await {
                    Ok(()) => {
                        shared.connection.send_replace(Some(primary));
                        tracing::info!(broker = %shared.config.broker(), attempt, "reconnected to the AMQP broker");
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
