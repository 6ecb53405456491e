//! The connection: opening it, and noticing when it is lost.
//!
//! A space has one connection, and one more for each `channel_max` agents (see
//! [`crate::link::Link`]). A task per connection waits for it to fail (an error event, a
//! missed heartbeat, a broker-side close) and reports it; [`crate::link::supervise`] then
//! closes the whole generation of connections, reconnects with exponential backoff (0.1 s
//! doubling to 5 s, forever) and restores every attached agent's queues and consumers,
//! with their prefetch, before publishing resumes.
//!
//! With several brokers (the nodes of a cluster), a space starts on one picked at random,
//! so the hosts of a space spread over the nodes; all the connections of one generation
//! go to the same broker. After a loss the brokers are tried in turn from the *next* one:
//! a node that crashed is left at once, and one that only dropped the connection is
//! tried again last.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures_util::{Stream, StreamExt};
use lapin::{
    options::ExchangeDeclareOptions, types::FieldTable, Connection, ConnectionProperties, Event,
    ExchangeKind,
};
use tokio::sync::mpsc;

use crate::config::Config;

/// A connection with the stream that reports its failure.
pub struct Live {
    /// The connection, shared with the publisher.
    pub connection: Arc<Connection>,
    /// Which of the configured brokers it goes to.
    pub broker: usize,
    events: Pin<Box<dyn Stream<Item = Event> + Send>>,
}

/// A broker to start with, picked at random among the configured ones.
pub fn any_broker(config: &Config) -> usize {
    (uuid::Uuid::new_v4().as_u128() % config.brokers.len() as u128) as usize
}

/// Why one broker could not be used (its address shown without the password).
#[derive(Debug, thiserror::Error)]
pub enum BrokerFailure {
    /// The connection was refused or failed.
    #[error("cannot connect to the AMQP broker at {broker}: {error}")]
    Connect {
        /// The broker.
        broker: String,
        /// What lapin said.
        error: lapin::Error,
    },
    /// Nothing answered within the connect timeout.
    #[error("cannot connect to the AMQP broker at {broker}: no answer within {seconds}s")]
    NoAnswer {
        /// The broker.
        broker: String,
        /// The connect timeout.
        seconds: f64,
    },
    /// Connected, but no channel could be opened.
    #[error("cannot open a channel on the AMQP broker at {broker}: {error}")]
    Channel {
        /// The broker.
        broker: String,
        /// What lapin said.
        error: lapin::Error,
    },
    /// The space's exchange could not be declared (it exists with other settings, say).
    #[error("cannot declare the topic exchange {exchange:?} on {broker}: {error}")]
    Exchange {
        /// The broker.
        broker: String,
        /// The exchange.
        exchange: String,
        /// What the broker said.
        error: lapin::Error,
    },
}

/// Why no broker of the space could be used: each one's failure, in the order tried.
#[derive(Debug)]
pub struct ConnectError(pub Vec<BrokerFailure>);

/// The failures, `; `-separated.
impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, failure) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            failure.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConnectError {}

/// Connects to a broker, trying each in turn from broker `first`, and declares the
/// space's exchange (topic, durable, as Python Agency); each try within the connect
/// timeout.
pub async fn connect(config: &Config, first: usize) -> Result<Live, ConnectError> {
    let mut failures = Vec::new();
    for step in 0..config.brokers.len() {
        let broker = (first + step) % config.brokers.len();
        match tokio::time::timeout(config.connect_timeout, open(config, broker)).await {
            Ok(Ok(live)) => return Ok(live),
            Ok(Err(failure)) => failures.push(failure),
            Err(_) => failures.push(BrokerFailure::NoAnswer {
                broker: config.broker(broker),
                seconds: config.connect_timeout.as_secs_f64(),
            }),
        }
    }
    Err(ConnectError(failures))
}

async fn open(config: &Config, index: usize) -> Result<Live, BrokerFailure> {
    let broker = || config.broker(index);
    // Named for the broker's list of connections: which process, which space.
    let properties = ConnectionProperties::default().with_connection_name(
        format!("agency (pid {}) {}", std::process::id(), config.exchange).into(),
    );
    let connection = Connection::connect_uri(config.brokers[index].clone(), properties)
        .await
        .map_err(|error| BrokerFailure::Connect {
            broker: broker(),
            error,
        })?;
    let events = Box::pin(connection.events_listener());
    let channel = connection
        .create_channel()
        .await
        .map_err(|error| BrokerFailure::Channel {
            broker: broker(),
            error,
        })?;
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
        .map_err(|error| BrokerFailure::Exchange {
            broker: broker(),
            exchange: config.exchange.clone(),
            error,
        })?;
    let _ = channel.close(200, "exchange declared".into()).await;
    Ok(Live {
        connection: Arc::new(connection),
        broker: index,
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
