//! The connection: opening it, noticing when it is lost, and rebuilding everything after.
//!
//! One connection per space. A supervisor task waits for the connection to fail (an
//! error event, a missed heartbeat, a broker-side close), then reconnects with
//! exponential backoff (0.1 s doubling to 5 s, forever) and restores every attached
//! agent's queues and consumers, with their prefetch, before publishing resumes.

use std::{pin::Pin, sync::atomic::Ordering, sync::Arc, time::Duration};

use futures_util::{Stream, StreamExt};
use lapin::{
    options::ExchangeDeclareOptions, types::FieldTable, Connection, ConnectionProperties, Event,
    ExchangeKind,
};

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
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("agency (pid {})", std::process::id()).into());
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

/// Keeps the space connected until it is closed.
pub async fn supervise(shared: Arc<Shared>, mut live: Live) {
    loop {
        let error = lost(&mut live).await;
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        tracing::warn!(broker = %shared.config.broker(), %error, "lost the connection to the AMQP broker; reconnecting");
        // Half-open (the broker may still hold its consumers, which would refuse ours):
        // closed before the next one opens, so a process holds one connection at a time.
        let closing = live.connection.close(320, "reconnecting".into());
        let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
        shared.connection.send_replace(None);
        shared.link.lock().await.disconnect();
        let Some(next) = reconnect(&shared).await else {
            return;
        };
        live = next;
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

/// Connects again, with backoff, and restores the agents; `None` once the space closes.
async fn reconnect(shared: &Shared) -> Option<Live> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        if shared.closed.load(Ordering::Acquire) {
            return None;
        }
        match connect(&shared.config).await {
            Ok(live) => {
                let mut link = shared.link.lock().await;
                match link.restore(&shared.config, &live.connection).await {
                    Ok(()) => {
                        shared
                            .connection
                            .send_replace(Some(live.connection.clone()));
                        tracing::info!(broker = %shared.config.broker(), attempt, "reconnected to the AMQP broker");
                        return Some(live);
                    }
                    Err(error) => {
                        tracing::warn!(%error, attempt, "cannot restore the agents' queues")
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
