//! A space's traffic shown one line a message: what `agency watch`, `agency run --watch`
//! and the console's `/watch` print.
//!
//! ```text
//! 10:42:01.318  #3f2a9c1d  User -> Calculator  add {"a":1,"b":2}
//! 10:42:01.319  #77b0e4a2  Calculator -> User  [response] 3.0  (re #3f2a9c1d, 0.9 ms)
//! 10:42:02.004  #0c1d2e3f  User -> calculator  add {}  (undeliverable: no agent holds "calculator")
//! ```
//!
//! Every field came from some process on the transport: all of it is escaped
//! ([`crate::terminal::inline`]). A reply names the message it answers (`re #id`, its
//! `parent_id`) and how long after it came. With `--json`, each line is one JSON object:
//! `{"at": "10:42:01.318", "kind": "sent"|"undeliverable", "message": {...}}`, or
//! `"kind": "malformed"` with the text as it came.
//!
//! Filters: `--agent ID` keeps messages from or to that agent, `--action NAME` messages
//! of that action and the replies to them; each may be given more than once.

use std::{
    collections::HashMap,
    sync::mpsc::SyncSender,
    time::{SystemTime, UNIX_EPOCH},
};

pub use agency_operator::traffic::Filter;
use agency_operator::traffic::{Analyser, Observed, Seen};
use agency_protocol::{boundary::Inbound, Message};
use agency_runtime::tap::Traffic;
use serde_json::{json, Value};

use crate::terminal::inline;

/// A sink for a watching transport: passes each copy on (waiting for room: the
/// transport's own queue, bounded, holds the rest).
pub struct Copies(pub SyncSender<String>);

impl Inbound for Copies {
    fn deliver(&self, body: &str) {
        let _ = self.0.send(body.to_owned());
    }
}

/// How many agents the tally keeps apart (any peer can make up ids); the others are
/// counted together as [`OTHERS`].
const TALLIED: usize = 10_000;

/// The name the agents beyond [`TALLIED`] are counted under.
const OTHERS: &str = "(others)";

/// How many agents [`Watch::stats`] lists.
const STATS_ROWS: usize = 20;

/// What one agent did in the traffic watched.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sent: u64,
    received: u64,
    errors: u64,
    undeliverable: u64,
}

/// Turns copies of the traffic into lines (the analyser pairs replies with requests).
pub struct Watch {
    filter: Filter,
    json: bool,
    analyser: Analyser,
    /// Per agent, what the messages shown say it did.
    tally: HashMap<String, Tally>,
}

impl Watch {
    /// A watch that shows what `filter` keeps, as text or (`json`) JSON lines.
    pub fn new(filter: Filter, json: bool) -> Self {
        Self {
            filter,
            json,
            analyser: Analyser::default(),
            tally: HashMap::new(),
        }
    }

    /// Per agent, the messages shown so far (`/stats` in `agency watch`): sent,
    /// received, `[error]` replies sent, undeliverable; the busiest first.
    pub fn stats(&self) -> String {
        let mut rows: Vec<(&String, &Tally)> = self.tally.iter().collect();
        rows.sort_by_key(|(id, t)| (std::cmp::Reverse(t.sent + t.received), id.as_str()));
        let mut lines = vec![format!(
            "messages watched, by agent ({} agents):\n  {:<24} {:>9} {:>9} {:>7} {:>14}",
            self.tally.len(),
            "agent",
            "sent",
            "received",
            "errors",
            "undeliverable"
        )];
        lines.extend(rows.iter().take(STATS_ROWS).map(|(id, t)| {
            format!(
                "  {:<24} {:>9} {:>9} {:>7} {:>14}",
                inline(id),
                t.sent,
                t.received,
                t.errors,
                t.undeliverable
            )
        }));
        if rows.len() > STATS_ROWS {
            lines.push(format!("  ... and {} more", rows.len() - STATS_ROWS));
        }
        lines.join("\n")
    }

    /// Counts `message` in its sender's and recipient's tallies; an undeliverable one
    /// (already counted as sent) in its sender's alone.
    fn count(&mut self, message: &Message, undeliverable: bool) {
        if undeliverable {
            self.tally_of(&message.from).undeliverable += 1;
            return;
        }
        let errors = u64::from(matches!(message.reply(), Some(Err(_))));
        let sender = self.tally_of(&message.from);
        sender.sent += 1;
        sender.errors += errors;
        self.tally_of(&message.to).received += 1;
    }

    /// The tally of agent `id` (or of the others, once [`TALLIED`] agents are kept).
    fn tally_of(&mut self, id: &str) -> &mut Tally {
        let key = if self.tally.contains_key(id) || self.tally.len() < TALLIED {
            id
        } else {
            OTHERS
        };
        self.tally.entry(key.to_owned()).or_default()
    }

    /// The line for one copy, or `None` if the filter leaves it out.
    pub fn line(&mut self, copy: &Traffic) -> Option<String> {
        let at = time_of_day();
        let observed = self.analyser.observe(copy);
        if !self.filter.keeps(&observed) {
            return None;
        }
        let seen = match observed {
            Observed::Malformed { body, reason } => {
                return Some(if self.json {
                    json!({"at": at, "kind": "malformed", "body": body}).to_string()
                } else {
                    format!(
                        "{at}  (not a message: {}) {}",
                        inline(reason.message()),
                        inline(body)
                    )
                })
            }
            Observed::Message(seen) => seen,
        };
        let Seen {
            message,
            body,
            undeliverable,
            answers,
        } = seen;
        self.count(&message, undeliverable);
        if self.json {
            let kind = if undeliverable {
                "undeliverable"
            } else {
                "sent"
            };
            let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            return Some(json!({"at": at, "kind": kind, "message": value}).to_string());
        }
        let action = &message.action;
        let mut line = format!(
            "{at}  #{}  {} -> {}  {}",
            short(&message.meta.id),
            inline(&message.from),
            inline(&message.to),
            inline(&action.name)
        );
        match message.reply() {
            Some(Ok(value)) => line.push_str(&format!(" {}", inline(&value.to_string()))),
            Some(Err(error)) => line.push_str(&format!(" {}", inline(&error.to_string()))),
            None => line.push_str(&format!(
                " {}",
                inline(&Value::Object(action.args.clone()).to_string())
            )),
        }
        if let Some(parent) = message.meta.parent_id.as_deref() {
            line.push_str(&format!("  (re #{}", short(parent)));
            if let Some(answered) = answers {
                let millis = answered.after.as_secs_f64() * 1000.0;
                line.push_str(&format!(", {millis:.1} ms"));
            }
            line.push(')');
        }
        if undeliverable {
            line.push_str(&format!(
                "  (undeliverable: no agent holds {})",
                inline(&format!("{:?}", message.to))
            ));
        }
        Some(line)
    }
}

/// The first 8 characters of a message id, escaped.
fn short(id: &str) -> String {
    inline(&id.chars().take(8).collect::<String>()).into_owned()
}

/// `HH:MM:SS.mmm`, UTC, as the log lines are.
fn time_of_day() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let millis = since_epoch.as_millis() % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000
    )
}

#[cfg(test)]
mod tests {
    use agency_runtime::tap::Traffic;
    use serde_json::json;

    use super::{Filter, Watch};

    fn sent(value: serde_json::Value) -> Traffic {
        Traffic::Sent(value.to_string())
    }

    #[test]
    fn replies_name_what_they_answer_and_filters_keep_them() {
        let request = sent(
            json!({"meta": {"id": "aaaaaaaa-1"}, "from": "User", "to": "Calc",
            "action": {"name": "add", "args": {"a": 1}}}),
        );
        let reply = sent(
            json!({"meta": {"id": "bbbbbbbb-2", "parent_id": "aaaaaaaa-1"},
            "from": "Calc", "to": "User", "action": {"name": "[response]", "args": {"value": 1}}}),
        );
        let other = sent(
            json!({"meta": {"id": "cccccccc-3"}, "from": "A\u{1b}[2J", "to": "*",
            "action": {"name": "say", "args": {"content": "\u{1b}[2J"}}}),
        );
        let mut watch = Watch::new(
            Filter {
                agents: vec![],
                actions: vec!["add".into()],
            },
            false,
        );
        let line = watch.line(&request).unwrap();
        assert!(
            line.ends_with("#aaaaaaaa  User -> Calc  add {\"a\":1}"),
            "{line}"
        );
        let line = watch.line(&reply).unwrap();
        assert!(
            line.contains("#bbbbbbbb  Calc -> User  [response] 1  (re #aaaaaaaa, "),
            "{line}"
        );
        assert_eq!(watch.line(&other), None);
        let mut everything = Watch::new(Filter::default(), false);
        let line = everything.line(&other).unwrap();
        assert!(
            line.contains("#cccccccc  A\\u{1b}[2J -> *  say {\"content\":\"\\u001b[2J\"}"),
            "{line}"
        );
        let dead = Traffic::Undeliverable(
            json!({"meta": {"id": "d"}, "from": "User", "to": "nobody",
                "action": {"name": "x", "args": {}}})
            .to_string(),
        );
        assert!(everything
            .line(&dead)
            .unwrap()
            .ends_with("(undeliverable: no agent holds \"nobody\")"));
        let stats = watch.stats();
        assert!(stats.contains("(2 agents)"), "{stats}");
        let calc = stats
            .lines()
            .find(|l| l.trim_start().starts_with("Calc"))
            .unwrap();
        assert_eq!(
            calc.split_whitespace().collect::<Vec<_>>(),
            ["Calc", "1", "1", "0", "0"]
        );
        let stats = everything.stats();
        assert!(stats.contains("A\\u{1b}[2J"), "escaped: {stats}");
        let user = stats
            .lines()
            .find(|l| l.trim_start().starts_with("User"))
            .unwrap();
        assert!(
            user.ends_with(" 1"),
            "one undeliverable, not sent twice: {user}"
        );
        let mut json_lines = Watch::new(Filter::default(), true);
        let line: serde_json::Value =
            serde_json::from_str(&json_lines.line(&dead).unwrap()).unwrap();
        assert_eq!(line["kind"], "undeliverable");
        assert_eq!(line["message"]["to"], "nobody");
        assert!(everything
            .line(&Traffic::Sent("not json".into()))
            .unwrap()
            .contains("(not a message: "));
    }
}
