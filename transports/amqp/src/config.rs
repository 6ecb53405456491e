//! The transport's configuration: `[transports.amqp]` keys, then Agency's environment.
//!
//! The broker address comes from `url` (`amqp://` or `amqps://`), or else from `host`,
//! `port`, `username`, `password` and `vhost`. Each key is read from the configuration
//! object first, then from its environment variable (`AMQP_URL`, `AMQP_HOST`,
//! `AMQP_PORT`, `AMQP_USERNAME`, `AMQP_PASSWORD`, `AMQP_VHOST`, as Python Agency reads
//! them), then falls back to the default (`guest:guest@localhost:5672/`).
//!
//! A cluster is several brokers: `urls = [...]` (or a comma-separated `AMQP_URL`), or a
//! comma-separated `host` / `AMQP_HOST` whose entries may carry their own `:port`. The
//! space connects to one of them and moves to another when it loses it (see `session`).

use std::time::Duration;

use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use serde::Deserialize;

/// The keys accepted in `[transports.amqp]`; every one is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    url: Option<String>,
    urls: Option<Vec<String>>,
    host: Option<String>,
    port: Option<u16>,
    username: Option<String>,
    password: Option<String>,
    vhost: Option<String>,
    exchange: Option<String>,
    queue_prefix: Option<String>,
    heartbeat: Option<u16>,
    prefetch: Option<u16>,
    max_unconfirmed: Option<usize>,
    outbox_capacity: Option<usize>,
    max_message_bytes: Option<usize>,
    queue_expires_secs: Option<u64>,
    connect_timeout_secs: Option<u64>,
    dedup_window: Option<usize>,
    queue_type: Option<QueueType>,
    queue_per: Option<QueuePer>,
    watch: Option<bool>,
}

/// The kind of queue an agent's two queues are declared as (`queue_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// RabbitMQ's default, on the node the agent's host is connected to, as Python
    /// Agency's queues: lost from view while that node is down.
    #[default]
    Classic,
    /// Replicated on a majority of the cluster's nodes (RabbitMQ's `x-queue-type:
    /// quorum`): its messages outlive the loss of a minority of them.
    Quorum,
}

/// Which queues receive an agent's messages (`queue_per`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueuePer {
    /// Two queues of its own per agent, `<id>` and `<id>-broadcast`, each with its
    /// consumer, as Python Agency's agents have.
    #[default]
    Agent,
    /// One queue for all the agents of a host process, bound with each agent's id as a
    /// routing key and once with `__broadcast__`; each agent holds its id with an
    /// exclusive queue `<id>` of the connection (see `host_queue`).
    Host,
}

/// A complete, validated transport configuration.
///
/// Its `Debug` shows the broker without the password (see [`Config::broker`]).
#[derive(Clone)]
pub struct Config {
    /// Where the brokers are, with credentials: one, or the nodes of a cluster.
    pub brokers: Vec<AMQPUri>,
    /// The topic exchange of the space (`agency`, as in Python Agency).
    pub exchange: String,
    /// Prepended to queue names (empty: `<id>` and `<id>-broadcast`, as Python Agency).
    pub queue_prefix: String,
    /// Unacknowledged deliveries per consumer.
    pub prefetch: u16,
    /// Published messages awaiting a broker confirm at once.
    pub max_unconfirmed: usize,
    /// Messages not yet confirmed by the broker (queued, in flight, or kept while
    /// disconnected) before `send` waits (connected) or fails (disconnected).
    pub outbox_capacity: usize,
    /// Larger deliveries are logged and dropped.
    pub max_message_bytes: usize,
    /// How long an agent's queues outlive the last connection that consumed them.
    pub queue_expires: Duration,
    /// How long a start-up connection attempt may take.
    pub connect_timeout: Duration,
    /// How many recent message ids each agent remembers to drop redelivered copies.
    pub dedup_window: usize,
    /// What the agents' queues are declared as.
    pub queue_type: QueueType,
    /// Whether each agent has queues of its own or the host's agents share one.
    pub queue_per: QueuePer,
    /// Open a read-only space that receives copies of all traffic (`agency watch`).
    pub watch: bool,
}

impl Config {
    /// Reads the configuration object (JSON) and the environment.
    pub fn from_json(text: &str) -> Result<Self, String> {
        Self::new(text, |name| std::env::var(name).ok())
    }

    fn new(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let keys: Keys = if text.trim().is_empty() {
            Keys::default()
        } else {
            serde_json::from_str(text)
                .map_err(|e| format!("invalid amqp transport configuration: {e}"))?
        };
        let pick = |key: Option<String>, var: &str| key.or_else(|| env(var));
        let heartbeat = keys.heartbeat.unwrap_or(60);
        let connect_timeout = Duration::from_secs(keys.connect_timeout_secs.unwrap_or(10));
        let urls = match (keys.url, keys.urls) {
            (Some(_), Some(_)) => {
                return Err("amqp transport: give `url` or `urls`, not both".into())
            }
            (None, Some(urls)) => Some(urls),
            (url, None) => url
                .or_else(|| env("AMQP_URL"))
                .map(|text| text.split(',').map(|url| url.trim().to_owned()).collect()),
        };
        let mut brokers: Vec<AMQPUri> = match urls {
            Some(urls) => urls
                .iter()
                .map(|url| parse_url(url))
                .collect::<Result<_, _>>()?,
            None => {
                let port = match pick(keys.port.map(|p| p.to_string()), "AMQP_PORT") {
                    Some(port) => parse_port(&port)?,
                    None => 5672,
                };
                let userinfo = AMQPUserInfo {
                    username: pick(keys.username, "AMQP_USERNAME")
                        .unwrap_or_else(|| "guest".into()),
                    password: pick(keys.password, "AMQP_PASSWORD")
                        .unwrap_or_else(|| "guest".into()),
                };
                let vhost = pick(keys.vhost, "AMQP_VHOST").unwrap_or_else(|| "/".into());
                let hosts = pick(keys.host, "AMQP_HOST").unwrap_or_else(|| "localhost".into());
                hosts
                    .split(',')
                    .map(|entry| {
                        let entry = entry.trim();
                        let (host, port) = match entry.rsplit_once(':') {
                            Some((host, own)) if !host.contains(':') || host.ends_with(']') => {
                                (host, parse_port(own)?)
                            }
                            _ => (entry, port),
                        };
                        Ok(AMQPUri {
                            scheme: AMQPScheme::AMQP,
                            authority: AMQPAuthority {
                                userinfo: userinfo.clone(),
                                host: host.to_owned(),
                                port,
                            },
                            vhost: vhost.clone(),
                            query: AMQPQueryString::default(),
                        })
                    })
                    .collect::<Result<_, String>>()?
            }
        };
        if brokers.is_empty() {
            return Err("amqp transport: `urls` names no broker".into());
        }
        for uri in &mut brokers {
            uri.query.heartbeat.get_or_insert(heartbeat);
            uri.query
                .connection_timeout
                .get_or_insert(connect_timeout.as_millis() as u64);
        }
        let exchange = keys.exchange.unwrap_or_else(|| "agency".into());
        if exchange.is_empty() || exchange.starts_with("amq.") {
            return Err(format!(
                "invalid exchange name {exchange:?}: it must be non-empty and not start with \"amq.\""
            ));
        }
        let positive = |value: Option<usize>, default: usize, key: &str| match value {
            Some(0) => Err(format!("amqp transport: `{key}` must be at least 1")),
            value => Ok(value.unwrap_or(default)),
        };
        Ok(Self {
            brokers,
            exchange,
            queue_prefix: keys.queue_prefix.unwrap_or_default(),
            prefetch: positive(keys.prefetch.map(usize::from), 200, "prefetch")? as u16,
            max_unconfirmed: positive(keys.max_unconfirmed, 1000, "max_unconfirmed")?,
            outbox_capacity: positive(keys.outbox_capacity, 100_000, "outbox_capacity")?,
            max_message_bytes: positive(keys.max_message_bytes, 8 << 20, "max_message_bytes")?,
            queue_expires: Duration::from_secs(keys.queue_expires_secs.unwrap_or(600).max(1)),
            connect_timeout,
            dedup_window: positive(keys.dedup_window, 65_536, "dedup_window")?,
            queue_type: keys.queue_type.unwrap_or_default(),
            queue_per: keys.queue_per.unwrap_or_default(),
            watch: keys.watch.unwrap_or(false),
        })
    }

    /// Broker `index`'s address without the password, for messages and logs.
    pub fn broker(&self, index: usize) -> String {
        let uri = &self.brokers[index % self.brokers.len()];
        let AMQPAuthority {
            userinfo,
            host,
            port,
            ..
        } = &uri.authority;
        format!(
            "{}://{}@{host}:{port}/{}",
            uri.scheme,
            userinfo.username,
            uri.vhost.replace('/', "%2f")
        )
    }

    /// Broker `index`'s host and port alone.
    pub fn address(&self, index: usize) -> String {
        let AMQPAuthority { host, port, .. } = &self.brokers[index % self.brokers.len()].authority;
        format!("{host}:{port}")
    }

    /// Every broker's address without the password, comma-separated.
    pub fn brokers(&self) -> String {
        (0..self.brokers.len())
            .map(|index| self.broker(index))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The queue that receives messages addressed to `agent_id`.
    pub fn direct_queue(&self, agent_id: &str) -> String {
        format!("{}{agent_id}", self.queue_prefix)
    }

    /// The exclusive queue that holds `agent_id` for its connection, with quorum queues
    /// (which take more than one `exclusive` consumer).
    pub fn owner_queue(&self, agent_id: &str) -> String {
        format!("{}{agent_id}-owner", self.queue_prefix)
    }

    /// A new name for the queue of one host process (`queue_per = "host"`): random, so
    /// two processes never share one.
    pub fn host_queue(&self) -> String {
        format!(
            "{}agency-host-{}",
            self.queue_prefix,
            uuid::Uuid::new_v4().simple()
        )
    }

    /// The queue that receives broadcasts for `agent_id`.
    pub fn broadcast_queue(&self, agent_id: &str) -> String {
        format!("{}{agent_id}-broadcast", self.queue_prefix)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("brokers", &self.brokers())
            .field("exchange", &self.exchange)
            .field("queue_prefix", &self.queue_prefix)
            .finish_non_exhaustive()
    }
}

/// Parses one broker URL; the error shows it without its password (the parser's error
/// may quote it too).
fn parse_url(url: &str) -> Result<AMQPUri, String> {
    url.parse::<AMQPUri>().map_err(|e| {
        let redacted = redact(url);
        let reason = e.replace(url, &redacted);
        format!("invalid AMQP URL {redacted:?}: {reason}")
    })
}

/// Parses a port number.
fn parse_port(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("invalid AMQP port {text:?}: expected 1-65535"))
}

/// A URL with any password replaced by `***`.
///
/// Everything between the scheme (if there is one) and the *last* `@` is taken for user
/// information, of which only the user name (up to the first `:`) is kept: a password may
/// hold `/`, `@` or `:` that a URL parser would read otherwise, and hiding too much is
/// better than showing a password.
fn redact(url: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .map_or(("", url), |(scheme, rest)| (scheme, rest));
    let separator = if scheme.is_empty() { "" } else { "://" };
    match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}{separator}{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        Config::new(json, |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn defaults_match_python_agency() {
        let config = config("{}", &[]).unwrap();
        assert_eq!(config.broker(0), "amqp://guest@localhost:5672/%2f");
        assert_eq!(config.exchange, "agency");
        assert_eq!(config.direct_queue("a"), "a");
        assert_eq!(config.broadcast_queue("a"), "a-broadcast");
        assert_eq!(config.brokers[0].query.heartbeat, Some(60));
    }

    #[test]
    fn keys_override_the_environment() {
        let vars = [
            ("AMQP_HOST", "envhost"),
            ("AMQP_PORT", "5673"),
            ("AMQP_VHOST", "v"),
        ];
        let config = config(r#"{"host": "filehost"}"#, &vars).unwrap();
        assert_eq!(config.broker(0), "amqp://guest@filehost:5673/v");
    }

    #[test]
    fn url_wins_over_parts_and_keeps_tls() {
        let vars = [("AMQP_URL", "amqps://u:secret@h:5671/x?heartbeat=5")];
        let config = config(r#"{"host": "ignored"}"#, &vars).unwrap();
        assert_eq!(config.broker(0), "amqps://u@h:5671/x");
        assert_eq!(config.brokers[0].query.heartbeat, Some(5));
    }

    #[test]
    fn a_cluster_is_several_urls_or_hosts() {
        let urls = r#"{"urls": ["amqp://u:p@a:5672/v", "amqp://u:p@b:5673/v"]}"#;
        assert_eq!(
            config(urls, &[]).unwrap().brokers(),
            "amqp://u@a:5672/v, amqp://u@b:5673/v"
        );
        let vars = [("AMQP_URL", "amqp://a/v, amqp://b/v")];
        assert_eq!(
            config("{}", &vars).unwrap().brokers(),
            "amqp://guest@a:5672/v, amqp://guest@b:5672/v"
        );
        let vars = [("AMQP_HOST", "a,b:5673, [::1]:5674"), ("AMQP_PORT", "5671")];
        let config_ = config("{}", &vars).unwrap();
        assert_eq!(
            config_.brokers(),
            "amqp://guest@a:5671/%2f, amqp://guest@b:5673/%2f, amqp://guest@[::1]:5674/%2f"
        );
        assert_eq!(config_.broker(4), config_.broker(1), "indexes wrap around");
        let both = r#"{"url": "amqp://a", "urls": ["amqp://b"]}"#;
        assert!(config(both, &[]).unwrap_err().contains("not both"));
        let none = r#"{"urls": []}"#;
        assert!(config(none, &[]).unwrap_err().contains("names no broker"));
        let bad = config("{}", &[("AMQP_HOST", "a:x")]).unwrap_err();
        assert!(bad.contains("invalid AMQP port \"x\""), "{bad}");
    }

    #[test]
    fn queues_are_classic_unless_quorum_is_asked_for() {
        assert_eq!(config("{}", &[]).unwrap().queue_type, QueueType::Classic);
        let quorum = config(r#"{"queue_type": "quorum"}"#, &[]).unwrap();
        assert_eq!(quorum.queue_type, QueueType::Quorum);
        let error = config(r#"{"queue_type": "stream"}"#, &[]).unwrap_err();
        assert!(error.contains("unknown variant `stream`"), "{error}");
        assert_eq!(config("{}", &[]).unwrap().queue_per, QueuePer::Agent);
        let per_host = config(r#"{"queue_per": "host"}"#, &[]).unwrap();
        assert_eq!(per_host.queue_per, QueuePer::Host);
        let error = config(r#"{"queue_per": "space"}"#, &[]).unwrap_err();
        assert!(error.contains("unknown variant `space`"), "{error}");
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        for (url, shown) in [
            (
                "amqp://guest:se/cretPass@127.0.0.1:5672/x",
                "amqp://guest:***@127.0.0.1:5672/x",
            ),
            ("guest:secret@host", "guest:***@host"),
            ("amqp://u:p@ss:w@h/v@x", "amqp://u:***@x"),
            ("amqp://h:5672/", "amqp://h:5672/"),
        ] {
            assert_eq!(redact(url), shown);
        }
        for url in [
            "amqp://guest:se/cretPass@127.0.0.1:5672/x",
            "guest:secret@host",
            "amqps://u:s%2Fecret@h:99999/",
        ] {
            let error = config(&format!(r#"{{"url": "{url}"}}"#), &[]).unwrap_err();
            assert!(error.starts_with("invalid AMQP URL"), "{error}");
            for secret in ["cret", "s%2F"] {
                assert!(!error.contains(secret), "{error}");
            }
        }
        let config = config(r#"{"password": "hunter2"}"#, &[]).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn errors_never_show_the_password() {
        let error = config(r#"{"url": "http://u:secret@h/"}"#, &[]).unwrap_err();
        assert!(error.contains("http://u:***@h/"), "{error}");
        assert!(!error.contains("secret"), "{error}");
        let error = config("{}", &[("AMQP_PORT", "x")]).unwrap_err();
        assert!(error.contains("invalid AMQP port"), "{error}");
        let error = config(r#"{"exchange": "amq.topic"}"#, &[]).unwrap_err();
        assert!(error.contains("amq."), "{error}");
        let error = config(r#"{"hots": "h"}"#, &[]).unwrap_err();
        assert!(error.contains("unknown field `hots`"), "{error}");
    }
}
