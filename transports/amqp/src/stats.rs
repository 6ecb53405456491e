//! What the transport tells the host's metrics (`agency run --metrics`) about itself:
//! the events counted as they happen (`counts`) and its state now, which a task of the
//! space ([`report`]) hands the host every [`REPORT_EVERY`] while the space is open
//! (`agency_sdk::metrics`). With several spaces open in one
//! process (tests), the host shows the latest report. A watching space reports only
//! where it is ([`place`]), which `agency watch` prints.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use agency_sdk::metrics::{report_metrics, PluginMetric, PluginMetrics};

use crate::{config::Config, link::Shared};

/// How often a space reports its figures to the host.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Reports the space's figures every [`REPORT_EVERY`] until it closes, or until the
/// host turns out not to take them.
pub async fn report(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(REPORT_EVERY);
    while !shared.closed.load(Ordering::Acquire) {
        every.tick().await;
        if !report_metrics(&figures(&shared).await) {
            return;
        }
    }
}

/// The space's figures now.
async fn figures(shared: &Shared) -> PluginMetrics {
    let (connections, agents) = {
        let link = shared.link.lock().await;
        (link.connections.len(), link.agents.len())
    };
    let counts = &shared.counts;
    let count = |name, help, value: &AtomicU64| {
        PluginMetric::new(name, help, value.load(Ordering::Relaxed))
    };
    let gauge = |name, help, value: usize| PluginMetric::new(name, help, value as u64);
    let connected = shared.connection.borrow().is_some();
    PluginMetrics {
        counters: vec![
            count("amqp_reconnects", "Connections to the broker lost and made again.", &counts.reconnects),
            count("amqp_confirmed", "Messages the broker confirmed.", &counts.confirmed),
            count("amqp_publishes_refused", "Publishes the broker refused (a negative confirm); each went again, on a new channel.", &counts.publishes_refused),
            count("amqp_returned", "Messages the broker returned: no queue was bound to their recipient (dead letters).", &counts.returned),
            count("amqp_copies_dropped", "Deliveries dropped as copies of a message already delivered (de-duplication).", &counts.copies_dropped),
            count("amqp_deliveries_refused", "Deliveries refused for their size or encoding.", &counts.refused),
        ],
        gauges: vec![
            gauge("amqp_connected", "Whether the space is connected to a broker (1) or reconnecting (0).", usize::from(connected)),
            gauge("amqp_connections", "Connections to the broker.", connections),
            gauge("amqp_agents", "Agents attached to the broker.", agents),
            gauge("amqp_unconfirmed", "Messages published, or waiting in the outbox, not yet confirmed by the broker.", shared.unconfirmed.load(Ordering::Acquire)),
        ],
        info: place(&shared.config, shared.broker.load(Ordering::Acquire)),
    }
}

/// Where a space is: the broker's host and port (no credentials) and the exchange.
pub fn place(config: &Config, broker: usize) -> BTreeMap<String, String> {
    [
        ("broker".to_owned(), config.address(broker)),
        ("exchange".to_owned(), config.exchange.clone()),
    ]
    .into()
}
