//! A plugin's own figures for the host's metrics (`agency run --metrics`): a transport
//! reports its connections, reconnections, publishes waiting for confirms and the like
//! with [`report_metrics`], every few seconds; the host shows the latest report.
//!
//! ```
//! use agency_sdk::metrics::{report_metrics, PluginMetric, PluginMetrics};
//! let mut metrics = PluginMetrics::default();
//! metrics.gauges.push(PluginMetric::new("my_connections", "Connections open.", 1));
//! // Outside a host (as here) nobody takes it.
//! assert!(!report_metrics(&metrics));
//! ```

use std::sync::{Arc, OnceLock};

use agency_protocol::boundary::HostLink;
pub use agency_protocol::spec::{PluginMetric, PluginMetrics};

/// The host this library got at its initialisation.
static HOST: OnceLock<Arc<dyn HostLink>> = OnceLock::new();

/// Keeps the host of the library's initialisation (the first one).
pub(crate) fn install(host: Arc<dyn HostLink>) {
    let _ = HOST.set(host);
}

/// Hands the host what this plugin counts; answers whether the host took it: not before
/// the library is initialised, nor on a host from before metrics (stop reporting then).
pub fn report_metrics(metrics: &PluginMetrics) -> bool {
    HOST.get()
        .is_some_and(|host| host.report_metrics(metrics).is_ok())
}
