//! The Prometheus endpoint of `agency run --metrics`: `GET /metrics` answers what the
//! space counted ([`agency_runtime::metrics`]), the host's plugins and transport, and the
//! process, in the OpenMetrics text format (which Prometheus reads).
//!
//! It is for scrapers, not people: it carries no token (every Prometheus would need one
//! configured), so it is served on loopback unless told otherwise, answers only under its
//! own address (a DNS-rebinding site names its own host), and refuses what a browser marks
//! as coming from another site (`Origin`, `Sec-Fetch-Site`): a page the operator visits
//! cannot read it. It shows counts and the names of agent types, error kinds and, for
//! the agents it picks, ids: never a URL, a password or a key.
//!
//! Series stay few with any number of agents (see [`agency_runtime::metrics`]): per agent
//! type, and per agent only for the [`BUSIEST`] agents and those the operator names.
//!
//! ```no_run
//! # fn demo(space: std::sync::Arc<agency_runtime::Space>) -> Result<(), String> {
//! use agency_web::metrics::{Exposition, MetricsServer};
//!
//! let source = move || Exposition::of(space.metrics(10, &[]));
//! let server = MetricsServer::start("127.0.0.1:9464".parse().unwrap(), false, source)?;
//! println!("scrape http://{}/metrics", server.addr());
//! # Ok(()) }
//! ```

use std::{collections::BTreeMap, fmt, net::SocketAddr, sync::Arc};

use agency_protocol::spec::{PluginMetric, PluginMetrics};
use agency_runtime::metrics::{HistogramSnapshot, Snapshot, TypeSnapshot};
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::{Registry, Unit},
};

use crate::{
    auth::{same_origin, secure, Hosts},
    server::Server,
};

/// The address `agency run --metrics` listens on when none is given (the port
/// OpenTelemetry's Prometheus exporters use).
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// How many of the busiest agents (by messages handled) get series of their own.
pub const BUSIEST: usize = 10;

/// The OpenMetrics text's media type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything one scrape shows (and, as JSON, what the page's Health view plots).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Exposition {
    /// What the space counted.
    pub space: Snapshot,
    /// Plugin libraries loaded, and refused (corrupt, incompatible, ...).
    pub plugins_loaded: u64,
    /// See `plugins_loaded`.
    pub plugins_refused: u64,
    /// The transport the space runs on.
    pub transport: String,
    /// What each plugin reported of itself (a transport's connections, ...), by file.
    pub plugins: Vec<(String, PluginMetrics)>,
}

impl Exposition {
    /// A scrape of `space` alone.
    pub fn of(space: Snapshot) -> Self {
        Self {
            space,
            ..Self::default()
        }
    }

    /// The OpenMetrics text of this scrape.
    ///
    /// ```
    /// use agency_web::metrics::Exposition;
    /// let text = Exposition::default().encode();
    /// assert!(text.contains("# TYPE agency_messages_handled counter"));
    /// assert!(text.ends_with("# EOF\n"));
    /// ```
    pub fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape(self)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Where the server gets each scrape's values.
pub type Source = Arc<dyn Fn() -> Exposition + Send + Sync>;

/// The endpoint being served; dropping it stops it.
pub struct MetricsServer {
    server: Server,
}

impl MetricsServer {
    /// Serves `GET /metrics` on `addr`, each scrape asking `source`; refuses an address
    /// other than loopback unless `public`.
    pub fn start(
        addr: SocketAddr,
        public: bool,
        source: impl Fn() -> Exposition + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let source: Source = Arc::new(source);
        let server = Server::start(addr, public, "metrics", "--metrics-public", |addr| {
            let hosts = Arc::new(Hosts::new(addr, public));
            Ok(Router::new()
                .route("/metrics", get(scrape))
                .with_state(source)
                .layer(middleware::from_fn_with_state(hosts, guard)))
        })?;
        Ok(Self { server })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }
}

async fn scrape(State(source): State<Source>) -> Response {
    // A snapshot locks the space's members a moment: off the server's runtime thread.
    match tokio::task::spawn_blocking(move || source().encode()).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the scrape failed").into_response(),
    }
}

/// Answers only under the server's own names, and never to another site's page.
async fn guard(State(hosts): State<Arc<Hosts>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let mut response = if !hosts.serve(headers) {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "the metrics are served under their loopback address only",
        )
            .into_response()
    } else if from_another_site(headers) {
        (
            StatusCode::FORBIDDEN,
            "403 Forbidden: the metrics are not for other sites' pages",
        )
            .into_response()
    } else {
        next.run(request).await
    };
    secure(response.headers_mut());
    response
}

/// Whether a browser says the request comes from another site's page.
fn from_another_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| !matches!(site, "same-origin" | "none"));
    fetch_site || same_origin(headers) == Some(false)
}

/// A family with one number per agent type: its name, help, and the number.
type PerType = (&'static str, &'static str, fn(&TypeSnapshot) -> u64);

/// The per-type counters (`_total` is added on the wire).
const PER_TYPE_COUNTERS: [PerType; 8] = [
    (
        "agency_messages_received",
        "Messages delivered to the agents of a type (replies included).",
        |t| t.counts.received,
    ),
    (
        "agency_messages_handled",
        "Messages the agents of a type finished handling.",
        |t| t.counts.handled,
    ),
    (
        "agency_messages_sent",
        "Messages the agents of a type sent (replies included).",
        |t| t.counts.sent,
    ),
    (
        "agency_dead_letters",
        "Messages of the agents of a type that no agent could receive.",
        |t| t.dead_letters,
    ),
    (
        "agency_request_timeouts",
        "Requests of the agents of a type that got no reply in time.",
        |t| t.request_timeouts,
    ),
    (
        "agency_permission_questions",
        "requested actions of the agents of a type that had to be allowed or refused.",
        |t| t.permission_asked,
    ),
    (
        "agency_permissions_allowed",
        "requested actions of the agents of a type that were allowed.",
        |t| t.permission_allowed,
    ),
    (
        "agency_permissions_refused",
        "requested actions of the agents of a type that were refused.",
        |t| t.permission_asked - t.permission_allowed,
    ),
];

/// The per-type gauges.
const PER_TYPE_GAUGES: [PerType; 3] = [
    (
        "agency_agents",
        "Agents of a type in the space on this host.",
        |t| t.agents,
    ),
    (
        "agency_mailbox_depth",
        "Messages queued for the agents of a type, in all.",
        |t| t.mailbox_sum,
    ),
    (
        "agency_mailbox_depth_max",
        "Messages queued for the one agent of a type with the most.",
        |t| t.mailbox_max,
    ),
];

/// A family with one histogram per agent type: its name, help, and the histogram.
type PerTypeHistogram = (
    &'static str,
    &'static str,
    fn(&TypeSnapshot) -> &HistogramSnapshot,
);

/// The per-type duration histograms (`_seconds` is added on the wire).
const PER_TYPE_HISTOGRAMS: [PerTypeHistogram; 2] = [
    (
        "agency_action_duration",
        "How long the actions of the agents of a type ran.",
        |t| &t.action_seconds,
    ),
    (
        "agency_request_duration",
        "How long the requests of the agents of a type waited for their replies.",
        |t| &t.request_seconds,
    ),
];

/// The collector of one scrape: the values were read before encoding began.
#[derive(Debug)]
struct Scrape(Exposition);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Exposition { space, .. } = &self.0;
        let by_type = |value: fn(&TypeSnapshot) -> u64| {
            space
                .types
                .iter()
                .map(move |t| ([("type", t.name.clone())], value(t)))
        };
        let mut family = Family(&mut encoder);
        for (name, help, value) in PER_TYPE_COUNTERS {
            family.counters(name, help, by_type(value))?;
        }
        family.counters(
            "agency_errors",
            "[error] replies the agents of a type sent, by error kind.",
            space.types.iter().flat_map(|t| {
                t.errors.iter().map(|(kind, count)| {
                    ([("type", t.name.clone()), ("kind", kind.clone())], *count)
                })
            }),
        )?;
        for (name, help, histogram) in PER_TYPE_HISTOGRAMS {
            let values = space
                .types
                .iter()
                .map(|t| ([("type", t.name.clone())], histogram(t)));
            family.histograms(name, help, values)?;
        }
        for (name, help, value) in PER_TYPE_GAUGES {
            family.gauges(name, help, by_type(value))?;
        }
        let agents = || space.agents.iter();
        let agent_labels = |a: &agency_runtime::metrics::AgentSnapshot| {
            [("agent", a.id.clone()), ("type", a.type_name.clone())]
        };
        family.counters(
            "agency_agent_messages_handled",
            "Messages one agent finished handling (the busiest agents, and those named with --metrics-agents).",
            agents().map(|a| (agent_labels(a), a.counts.handled)),
        )?;
        family.counters(
            "agency_agent_messages_sent",
            "Messages one agent sent (the busiest agents, and those named with --metrics-agents).",
            agents().map(|a| (agent_labels(a), a.counts.sent)),
        )?;
        family.gauges(
            "agency_agent_mailbox_depth",
            "Messages queued for one agent (the busiest agents, and those named with --metrics-agents).",
            agents().map(|a| (agent_labels(a), a.queued)),
        )?;
        self.encode_runtime(&mut family)?;
        self.encode_plugins(&mut family)?;
        self.encode_process(&mut family)
    }
}

impl Scrape {
    fn encode_runtime(&self, family: &mut Family) -> fmt::Result {
        let Exposition { space, .. } = &self.0;
        let pool = &space.pool;
        family.gauge(
            "agency_pool_threads",
            "Threads of the agents' pool.",
            pool.threads,
        )?;
        family.gauge(
            "agency_pool_running_threads",
            "Threads of the agents' pool not waiting in a request or a permission question.",
            pool.running,
        )?;
        family.gauge(
            "agency_pool_queued_agents",
            "Agents with messages waiting for a thread of the pool.",
            pool.queued,
        )?;
        family.counter(
            "agency_pool_compensations",
            "Threads the pool started beyond one a core because others waited.",
            pool.compensations,
        )?;
        family.counter(
            "agency_request_cycles_refused",
            "Requests answered at once with a DeadlockError because they closed a cycle.",
            space.cycles_refused,
        )
    }

    /// The plugins' own figures, `agency_<name>{plugin="<file>"}`; a name that is not
    /// `snake_case`, or that one of the host's own metrics has, is left out.
    fn encode_plugins(&self, family: &mut Family) -> fmt::Result {
        let plugins = &self.0.plugins;
        for kind in [MetricType::Counter, MetricType::Gauge] {
            let mut by_name: FiguresByName = BTreeMap::new();
            for (plugin, metrics) in plugins {
                let figures = match kind {
                    MetricType::Counter => &metrics.counters,
                    _ => &metrics.gauges,
                };
                for PluginMetric { name, help, value } in figures {
                    if usable_name(name) {
                        let entry = by_name.entry(name).or_insert((help, Vec::new()));
                        entry.1.push(([("plugin", plugin.clone())], *value));
                    }
                }
            }
            for (name, (help, values)) in by_name {
                let name = format!("agency_{name}");
                match kind {
                    MetricType::Counter => family.counters(&name, help, values)?,
                    _ => family.gauges(&name, help, values)?,
                }
            }
        }
        let mut metric = family.0.encode_descriptor(
            "agency_plugin",
            "What plugins say of themselves (a transport: the broker it is on).",
            None,
            MetricType::Info,
        )?;
        for (plugin, metrics) in plugins {
            let mut labels = vec![("plugin".to_owned(), plugin.clone())];
            labels.extend(
                metrics
                    .info
                    .iter()
                    .filter(|(key, _)| usable_name(key) && key.as_str() != "plugin")
                    .map(|(key, value)| (key.clone(), value.clone())),
            );
            metric.encode_info(&labels)?;
        }
        Ok(())
    }

    fn encode_process(&self, family: &mut Family) -> fmt::Result {
        let exposition = &self.0;
        family.counter(
            "agency_plugins_loaded",
            "Plugin libraries loaded.",
            exposition.plugins_loaded,
        )?;
        family.counter(
            "agency_plugins_refused",
            "Plugin libraries refused (not a library, corrupt, incompatible, unsafe).",
            exposition.plugins_refused,
        )?;
        let process = crate::process::Process::now();
        family.gauge(
            "agency_process_resident_memory_bytes",
            "Resident memory of the host process.",
            process.resident_bytes,
        )?;
        family.gauge(
            "agency_process_threads",
            "Threads of the host process.",
            process.threads,
        )?;
        family.gauge(
            "agency_process_start_time_seconds",
            "When the host process started, in seconds since the Unix epoch.",
            process.start_time,
        )?;
        let info = [
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("transport", exposition.transport.clone()),
        ];
        let mut metric = family.0.encode_descriptor(
            "agency_build",
            "The host's version and the transport its space runs on.",
            None,
            MetricType::Info,
        )?;
        metric.encode_info(&info)
    }
}

/// The label of a plugin's figure: the plugin's file.
type PluginLabel = [(&'static str, String); 1];

/// The plugins' figures of one kind by name: their help, and each plugin's value.
type FiguresByName<'a> = BTreeMap<&'a str, (&'a str, Vec<(PluginLabel, u64)>)>;

/// Whether a plugin's name for a figure or a label can be shown: `snake_case`, and no
/// name of the host's own (those start with a word the host uses).
fn usable_name(name: &str) -> bool {
    const HOSTS_OWN: [&str; 10] = [
        "messages",
        "errors",
        "dead",
        "request",
        "permission",
        "action",
        "agents",
        "mailbox",
        "pool",
        "process",
    ];
    let snake = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let first_word = name.split('_').next().unwrap_or_default();
    snake && !HOSTS_OWN.contains(&first_word) && !name.starts_with("agent_")
}

/// Writes metric families with their HELP and TYPE lines.
struct Family<'a, 'b>(&'a mut DescriptorEncoder<'b>);

impl Family<'_, '_> {
    fn counters<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        values: impl IntoIterator<Item = (L, u64)>,
    ) -> fmt::Result {
        let mut metric = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in values {
            ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn gauges<L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        values: impl IntoIterator<Item = (L, u64)>,
    ) -> fmt::Result {
        let mut metric = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in values {
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let metric = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(metric)
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let metric = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(metric)
    }

    fn histograms<'h, L: EncodeLabelSet>(
        &mut self,
        name: &str,
        help: &str,
        values: impl IntoIterator<Item = (L, &'h HistogramSnapshot)>,
    ) -> fmt::Result {
        let mut metric =
            self.0
                .encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
        for (labels, histogram) in values {
            // The encoder adds the buckets up itself, and writes `f64::MAX` as `+Inf`.
            let mut below = 0;
            let buckets: Vec<(f64, u64)> = histogram
                .buckets
                .iter()
                .map(|&(bound, cumulative)| {
                    let bound = if bound.is_infinite() { f64::MAX } else { bound };
                    let count = cumulative - below;
                    below = cumulative;
                    (bound, count)
                })
                .collect();
            metric
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(histogram.sum, histogram.count, &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn plugins_figures_are_shown_under_their_plugin_when_their_names_can_be() {
        let mut metrics = PluginMetrics::default();
        metrics.counters.push(PluginMetric::new(
            "amqp_reconnects",
            "Lost and made again.",
            3,
        ));
        metrics
            .counters
            .push(PluginMetric::new("Bad-Name", "Not snake case.", 1));
        metrics
            .gauges
            .push(PluginMetric::new("messages_handled", "The host's own.", 1));
        metrics
            .info
            .insert("broker".into(), "127.0.0.1:5672".into());
        metrics.info.insert("bad key".into(), "x".into());
        let text = Exposition {
            plugins: vec![("libamqp.so".into(), metrics)],
            ..Exposition::default()
        }
        .encode();
        assert!(
            text.contains("agency_amqp_reconnects_total{plugin=\"libamqp.so\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("agency_plugin_info{plugin=\"libamqp.so\",broker=\"127.0.0.1:5672\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("Bad-Name") && !text.contains("bad key"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE agency_messages_handled ").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn another_sites_page_is_refused() {
        let mut headers = HeaderMap::new();
        assert!(
            !from_another_site(&headers),
            "Prometheus sends neither header"
        );
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(from_another_site(&headers));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(!from_another_site(&headers));
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:9464"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(from_another_site(&headers));
    }
}
