//! What a copy of the space's traffic says, for every view of it: `agency watch`,
//! `agency run --watch` and the console's `/watch` print it one line a message, the page
//! shows it in its traffic view; each renders what [`Analyser::observe`] makes of a copy.
//!
//! A copy is a message (or text that is none: any process on the transport can send
//! anything), sent or undeliverable. The analyser pairs a reply with the request it
//! answers (by `parent_id`): which action it answers and how long after the request it
//! came, as seen here. It remembers the last [`REMEMBERED`] requests, so its memory is
//! bounded whatever the peers send. Filters ([`Filter`]) keep messages from or to some
//! agents, of some actions, and the replies to those actions, alike in every view.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use agency_protocol::{ActionError, Message};
use agency_runtime::tap::Traffic;

/// How many requests are remembered to pair replies with them.
pub const REMEMBERED: usize = 10_000;

/// One copy of the traffic, analysed.
#[derive(Debug)]
pub enum Observed<'a> {
    /// Text that is not a message, with why.
    Malformed {
        /// The text as it came.
        body: &'a str,
        /// Why it is no message.
        reason: ActionError,
    },
    /// A message.
    Message(Seen<'a>),
}

/// A message seen in the traffic.
#[derive(Debug)]
pub struct Seen<'a> {
    /// The message, parsed.
    pub message: Box<Message>,
    /// Its JSON text as it came.
    pub body: &'a str,
    /// Whether it came back undeliverable: no agent holds its recipient.
    pub undeliverable: bool,
    /// For a reply to a request seen lately: what it answers.
    pub answers: Option<Answered>,
}

/// The request a reply answers, as seen here.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// The request's action.
    pub action: String,
    /// How long after the request the reply came.
    pub after: Duration,
}

/// Which messages a view keeps: from or to one of `agents`, of one of `actions` or a
/// reply to one; an empty list keeps everything.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Keep messages from or to these agents.
    pub agents: Vec<String>,
    /// Keep messages of these actions, and the replies to them.
    pub actions: Vec<String>,
}

impl Filter {
    /// Whether the filter keeps `observed` (text that is no message only when it keeps
    /// everything).
    pub fn keeps(&self, observed: &Observed) -> bool {
        match observed {
            Observed::Malformed { .. } => self.agents.is_empty() && self.actions.is_empty(),
            Observed::Message(Seen {
                message, answers, ..
            }) => self.keeps_message(
                &message.from,
                &message.to,
                &message.action.name,
                answers.as_ref().map(|a| a.action.as_str()),
            ),
        }
    }

    /// Whether the filter keeps a message from `from` to `to` of `action`, which answers
    /// a request of action `answers`, if it is a reply to one seen.
    pub fn keeps_message(&self, from: &str, to: &str, action: &str, answers: Option<&str>) -> bool {
        let agent_kept =
            self.agents.is_empty() || self.agents.iter().any(|id| id == from || id == to);
        let kept = |action: &str| self.actions.iter().any(|kept| kept == action);
        let action_kept = self.actions.is_empty() || kept(action) || answers.is_some_and(kept);
        agent_kept && action_kept
    }
}

/// Analyses copies one after the other, remembering requests to pair replies with them.
#[derive(Default)]
pub struct Analyser {
    requests: HashMap<String, (Instant, String)>,
    order: VecDeque<String>,
}

impl Analyser {
    /// What `copy` is; a request sent is remembered.
    pub fn observe<'a>(&mut self, copy: &'a Traffic) -> Observed<'a> {
        let (body, undeliverable) = match copy {
            Traffic::Sent(body) => (body.as_str(), false),
            Traffic::Undeliverable(body) => (body.as_str(), true),
        };
        let message = match Message::from_json(body) {
            Ok(message) => message,
            Err(reason) => return Observed::Malformed { body, reason },
        };
        let answers = message
            .meta
            .parent_id
            .as_deref()
            .and_then(|parent| self.requests.get(parent))
            .map(|(when, action)| Answered {
                action: action.clone(),
                after: when.elapsed(),
            });
        if !undeliverable && message.reply().is_none() {
            self.remember(&message.meta.id, &message.action.name);
        }
        Observed::Message(Seen {
            message: Box::new(message),
            body,
            undeliverable,
            answers,
        })
    }

    fn remember(&mut self, id: &str, action: &str) {
        if self.order.len() == REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.requests.remove(&oldest);
            }
        }
        self.order.push_back(id.to_owned());
        self.requests
            .insert(id.to_owned(), (Instant::now(), action.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sent(value: serde_json::Value) -> Traffic {
        Traffic::Sent(value.to_string())
    }

    #[test]
    fn a_reply_names_the_request_it_answers_and_filters_keep_it() {
        let mut analyser = Analyser::default();
        let request = sent(json!({"meta": {"id": "m1"}, "from": "a", "to": "b",
            "action": {"name": "add", "args": {}}}));
        let reply = sent(json!({"meta": {"id": "r1", "parent_id": "m1"}, "from": "b",
            "to": "a", "action": {"name": "[response]", "args": {"value": 1}}}));
        let adds = Filter {
            agents: vec![],
            actions: vec!["add".into()],
        };
        assert!(adds.keeps(&analyser.observe(&request)));
        let observed = analyser.observe(&reply);
        let Observed::Message(Seen { answers, .. }) = &observed else {
            panic!("{observed:?}")
        };
        assert_eq!(answers.as_ref().unwrap().action, "add");
        assert!(adds.keeps(&observed), "a reply to an add is kept");
        let of_c = Filter {
            agents: vec!["c".into()],
            actions: vec![],
        };
        assert!(!of_c.keeps(&observed));
        let junk = Traffic::Sent("not json".into());
        let observed = analyser.observe(&junk);
        assert!(matches!(observed, Observed::Malformed { .. }));
        assert!(Filter::default().keeps(&observed) && !adds.keeps(&observed));
    }

    #[test]
    fn only_the_last_requests_are_remembered() {
        let mut analyser = Analyser::default();
        for n in 0..=REMEMBERED {
            analyser.observe(&sent(json!({"meta": {"id": format!("m{n}")}, "from": "a",
                "to": "b", "action": {"name": "x", "args": {}}})));
        }
        let reply_to = |id: &str| {
            sent(
                json!({"meta": {"id": "r", "parent_id": id}, "from": "b", "to": "a",
                "action": {"name": "[response]", "args": {"value": 1}}}),
            )
        };
        let answers = |analyser: &mut Analyser, id: &str| match analyser.observe(&reply_to(id)) {
            Observed::Message(seen) => seen.answers.is_some(),
            Observed::Malformed { .. } => unreachable!(),
        };
        assert!(!answers(&mut analyser, "m0"), "forgotten");
        assert!(answers(&mut analyser, "m1"));
    }
}
