//! The transport's configuration: `[transports.amqp]` keys, then Agency's environment.
//!
//! The broker address comes from `url` (`amqp://` or `amqps://`), or else from `host`,
//! `port`, `username`, `password` and `vhost`. Each key is read from the configuration
//! object first, then from its environment variable (`AMQP_URL`, `AMQP_HOST`,
//! `AMQP_PORT`, `AMQP_USERNAME`, `AMQP_PASSWORD`, `AMQP_VHOST`, as Python Agency reads
//! them), then falls back to the default (`guest:guest@localhost:5672/`).

use std::time::Duration;

use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use serde::Deserialize;

/// The keys accepted in `[transports.amqp]`; every one is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    url: Option<String>,
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
    watch: Option<bool>,
}

/// A complete, validated transport configuration.
///
/// Its `Debug` shows the broker without the password (see [`Config::broker`]).
#[derive(Clone)]
pub struct Config {
    /// Where the broker is, with credentials.
    pub uri: AMQPUri,
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
        let mut uri = match pick(keys.url, "AMQP_URL") {
            // The parser's error may quote the URL: it is shown redacted too.
            Some(url) => url.parse::<AMQPUri>().map_err(|e| {
                let redacted = redact(&url);
                let reason = e.replace(&url, &redacted);
                format!("invalid AMQP URL {redacted:?}: {reason}")
            })?,
            None => {
                let port = match pick(keys.port.map(|p| p.to_string()), "AMQP_PORT") {
                    Some(port) => port
                        .parse()
                        .map_err(|_| format!("invalid AMQP port {port:?}: expected 1-65535"))?,
                    None => 5672,
                };
                AMQPUri {
                    scheme: AMQPScheme::AMQP,
                    authority: AMQPAuthority {
                        userinfo: AMQPUserInfo {
                            username: pick(keys.username, "AMQP_USERNAME")
                                .unwrap_or_else(|| "guest".into()),
                            password: pick(keys.password, "AMQP_PASSWORD")
                                .unwrap_or_else(|| "guest".into()),
                        },
                        host: pick(keys.host, "AMQP_HOST").unwrap_or_else(|| "localhost".into()),
                        port,
                    },
                    vhost: pick(keys.vhost, "AMQP_VHOST").unwrap_or_else(|| "/".into()),
                    query: AMQPQueryString::default(),
                }
            }
        };
        uri.query.heartbeat.get_or_insert(heartbeat);
        uri.query
            .connection_timeout
            .get_or_insert(connect_timeout.as_millis() as u64);
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
            uri,
            exchange,
            queue_prefix: keys.queue_prefix.unwrap_or_default(),
            prefetch: positive(keys.prefetch.map(usize::from), 200, "prefetch")? as u16,
            max_unconfirmed: positive(keys.max_unconfirmed, 1000, "max_unconfirmed")?,
            outbox_capacity: positive(keys.outbox_capacity, 100_000, "outbox_capacity")?,
            max_message_bytes: positive(keys.max_message_bytes, 8 << 20, "max_message_bytes")?,
            queue_expires: Duration::from_secs(keys.queue_expires_secs.unwrap_or(600).max(1)),
            connect_timeout,
            dedup_window: positive(keys.dedup_window, 65_536, "dedup_window")?,
            watch: keys.watch.unwrap_or(false),
        })
    }

    /// The broker address without the password, for messages and logs.
    pub fn broker(&self) -> String {
        let AMQPAuthority {
            userinfo,
            host,
            port,
            ..
        } = &self.uri.authority;
        format!(
            "{}://{}@{host}:{port}/{}",
            self.uri.scheme,
            userinfo.username,
            self.uri.vhost.replace('/', "%2f")
        )
    }

    /// The queue that receives messages addressed to `agent_id`.
    pub fn direct_queue(&self, agent_id: &str) -> String {
        format!("{}{agent_id}", self.queue_prefix)
    }

    /// The queue that receives broadcasts for `agent_id`.
    pub fn broadcast_queue(&self, agent_id: &str) -> String {
        format!("{}{agent_id}-broadcast", self.queue_prefix)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("broker", &self.broker())
            .field("exchange", &self.exchange)
            .field("queue_prefix", &self.queue_prefix)
            .finish_non_exhaustive()
    }
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
        assert_eq!(config.broker(), "amqp://guest@localhost:5672/%2f");
        assert_eq!(config.exchange, "agency");
        assert_eq!(config.direct_queue("a"), "a");
        assert_eq!(config.broadcast_queue("a"), "a-broadcast");
        assert_eq!(config.uri.query.heartbeat, Some(60));
    }

    #[test]
    fn keys_override_the_environment() {
        let vars = [
            ("AMQP_HOST", "envhost"),
            ("AMQP_PORT", "5673"),
            ("AMQP_VHOST", "v"),
        ];
        let config = config(r#"{"host": "filehost"}"#, &vars).unwrap();
        assert_eq!(config.broker(), "amqp://guest@filehost:5673/v");
    }

    #[test]
    fn url_wins_over_parts_and_keeps_tls() {
        let vars = [("AMQP_URL", "amqps://u:secret@h:5671/x?heartbeat=5")];
        let config = config(r#"{"host": "ignored"}"#, &vars).unwrap();
        assert_eq!(config.broker(), "amqps://u@h:5671/x");
        assert_eq!(config.uri.query.heartbeat, Some(5));
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
