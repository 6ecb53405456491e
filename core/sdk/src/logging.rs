//! Log forwarding from inside a plugin to the host.
//!
//! A plugin library has its own copy of `tracing`, which the host's subscriber never sees.
//! When the host loads a plugin, this module installs, inside the plugin, a subscriber that
//! filters at the host's level and hands each event to the host as a
//! [`LogRecord`], so plugin logs appear in the host's output. Records of
//! the `log` crate (used by many libraries) are bridged into the same subscriber.
//!
//! Secrets named with [`hide_in_logs`] never leave the library in a record: a client
//! library's most verbose level may print what it sends, credentials included.

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use tracing::{field::Field, level_filters::LevelFilter, Event, Level, Subscriber};
use tracing_subscriber::{layer::Context as LayerContext, prelude::*, Layer};

use agency_protocol::boundary::{HostLink, LogRecord};

/// Installs the forwarding subscriber (once per library; later calls change nothing),
/// and a panic hook that reports this library's panics through it instead of printing
/// them to standard error (the panic itself still becomes an `[error]` reply).
pub(crate) fn forward_to_host(host: Arc<dyn HostLink>, max_level: &str) {
    let level = max_level
        .parse::<LevelFilter>()
        .unwrap_or(LevelFilter::INFO);
    let subscriber = tracing_subscriber::registry().with(HostLayer { host }.with_filter(level));
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let log_level = level
            .into_level()
            .map_or(tracing_log::log::LevelFilter::Off, |level| {
                tracing_log::AsLog::as_log(&level).to_level_filter()
            });
        let _ = tracing_log::LogTracer::init_with_filter(log_level);
        std::panic::set_hook(Box::new(|info| {
            let location = info.location().map(ToString::to_string).unwrap_or_default();
            tracing::warn!(%location, "panic: {}", agency_abi::panic_message(info.payload()));
        }));
    }
}

/// The texts every forwarded record has replaced by `***`.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Keeps `secret` (a password, a token) out of every log record this library forwards
/// to the host, at every level: the secret itself, its percent-encoded form and the
/// decimal byte list that a `Debug` of its bytes prints are each shown as `***`.
///
/// ```
/// agency_sdk::hide_in_logs("hunter2");
/// ```
pub fn hide_in_logs(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let percent_encoded: String = secret
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect();
    let byte_list = secret
        .bytes()
        .map(|byte| byte.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for form in [secret.to_owned(), percent_encoded, byte_list] {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    // Longest first, so that a secret containing another is hidden whole.
    secrets.sort_by_key(|form| std::cmp::Reverse(form.len()));
}

/// Targets whose records are forwarded only at this level or more severe.
static QUIETED: RwLock<Vec<(String, Level)>> = RwLock::new(Vec::new());

/// Forwards the records of `target` (a module path: `lapin::returned_messages`) and its
/// submodules only at `level` or more severe: for a library that logs, at a level the
/// host shows, what this library handles as a matter of course.
///
/// ```
/// agency_sdk::quiet_log_target("lapin::returned_messages", tracing::Level::ERROR);
/// ```
pub fn quiet_log_target(target: &str, level: Level) {
    let mut quieted = QUIETED.write().unwrap_or_else(|e| e.into_inner());
    quieted.retain(|(known, _)| known != target);
    quieted.push((target.to_owned(), level));
}

/// Whether a record of `target` at `level` is quieted by [`quiet_log_target`].
fn quieted(target: &str, level: &Level) -> bool {
    let quieted = QUIETED.read().unwrap_or_else(|e| e.into_inner());
    quieted.iter().any(|(known, at_most)| {
        let inside = target == known
            || target
                .strip_prefix(known.as_str())
                .is_some_and(|rest| rest.starts_with("::"));
        // In `tracing`, more severe levels compare as smaller.
        inside && level > at_most
    })
}

/// `text` with every secret named by [`hide_in_logs`] replaced by `***`.
fn without_secrets(mut text: String) -> String {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    for secret in secrets.iter() {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// Counts events of one kind that a peer can cause at will (a malformed message, a
/// refused reply) and says which to log: the first ten, then the 100th, 1,000th,
/// 10,000th..., each with the count so far, so a flood writes a handful of lines, not
/// megabytes. [`Repeated::total`] is for a summary at the end.
///
/// ```
/// let dropped = agency_sdk::Repeated::default();
/// let logged = (0..10_000).filter(|_| dropped.occurred().is_some()).count();
/// assert_eq!(logged, 13);
/// assert_eq!(dropped.total(), 10_000);
/// ```
#[derive(Debug, Default)]
pub struct Repeated(AtomicU64);

impl Repeated {
    /// Counts one more event; answers the count so far if this one is to be logged.
    pub fn occurred(&self) -> Option<u64> {
        let count = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        let power_of_ten = count
            .checked_ilog10()
            .is_some_and(|e| 10u64.pow(e) == count);
        (count <= 10 || power_of_ten).then_some(count)
    }

    /// How many events there were.
    pub fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct HostLayer {
    host: Arc<dyn HostLink>,
}

impl<S: Subscriber> Layer<S> for HostLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        if quieted(meta.target(), meta.level()) {
            return;
        }
        let mut text = TextVisitor::default();
        event.record(&mut text);
        let record = LogRecord {
            level: meta.level().as_str().to_ascii_lowercase(),
            target: meta.target().to_owned(),
            message: without_secrets(text.0),
        };
        let _ = self.host.log(&record);
    }
}

/// Renders `message` followed by ` key=value` for the other fields.
#[derive(Default)]
struct TextVisitor(String);

impl tracing::field::Visit for TextVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = if field.name() == "message" {
            write!(self.0, "{value:?}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = if field.name() == "message" {
            write!(self.0, "{value}")
        } else {
            write!(self.0, " {}={value}", field.name())
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quieted_target_forwards_only_severe_records() {
        quiet_log_target("noisy::returns", Level::ERROR);
        assert!(quieted("noisy::returns", &Level::WARN));
        assert!(quieted("noisy::returns::inner", &Level::INFO));
        assert!(!quieted("noisy::returns", &Level::ERROR));
        assert!(!quieted("noisy::returnsx", &Level::WARN));
        assert!(!quieted("noisy", &Level::WARN));
    }

    #[test]
    fn hidden_secrets_never_appear_in_any_form() {
        hide_in_logs("se/cret");
        let text = format!(
            "plain se/cret, encoded se%2Fcret, bytes {:?}",
            b"\0guest\0se/cret".to_vec()
        );
        let shown = without_secrets(text);
        assert_eq!(
            shown,
            "plain ***, encoded ***, bytes [0, 103, 117, 101, 115, 116, 0, ***]"
        );
    }
}
