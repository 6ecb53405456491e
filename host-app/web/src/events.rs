//! What the server tells a page over its WebSocket, one JSON object per frame, tagged by
//! `type` (read by `assets/app.js`). Traffic samples are written by hand in
//! [`crate::traffic`], on the hot path of every sample; everything else is one of these.

use agency_operator::{Notice, Question};
use agency_protocol::message::Action;
use serde::Serialize;
use serde_json::{Map, Value};

/// One event for a page.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PageEvent<'a> {
    /// The first event: who the page is, how long it waits for a reply, the agents and
    /// the questions open.
    Hello {
        /// The page's agent id.
        me: &'a str,
        /// How long the page waits for a reply, in milliseconds.
        wait_ms: u64,
        /// As [`PageEvent::Agents`].
        agents: Value,
        /// The questions open, as [`PageEvent::Question`]s.
        questions: Vec<PageEvent<'a>>,
    },
    /// The agents known changed.
    Agents {
        /// `[{"id", "type", "local", "help"?}]`.
        agents: Value,
    },
    /// A page sent a message (every page shows it).
    Sent {
        /// Its id.
        id: &'a str,
        /// Its recipient.
        to: &'a str,
        /// What it asked.
        action: &'a Action,
        /// The line as typed, if it was typed.
        line: Option<&'a str>,
        /// Whether a reply is awaited.
        expects_reply: bool,
    },
    /// A message for the page's agent: a reply (`value` or `error`) or an action.
    Message {
        /// Its sender.
        from: &'a str,
        /// Its id.
        id: &'a str,
        /// The id of the message it answers.
        parent_id: Option<&'a str>,
        /// Its action's name.
        action: &'a str,
        /// Its action's arguments.
        args: &'a Map<String, Value>,
        /// A reply's value.
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<&'a Value>,
        /// A reply's error.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Set when the message came back: nobody holds its recipient.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        undeliverable: bool,
        /// For an undeliverable one, the nearest id here (or `null`).
        #[serde(skip_serializing_if = "Option::is_none")]
        did_you_mean: Option<Option<&'a str>>,
    },
    /// A permission question was asked.
    Question {
        /// Its number.
        id: u64,
        /// The agent whose action would run.
        agent: &'a str,
        /// Who asks.
        from: &'a str,
        /// The action.
        action: &'a str,
        /// Its exact arguments.
        args: &'a Map<String, Value>,
        /// Whether the message went to every agent.
        broadcast: bool,
    },
    /// A permission question was decided.
    Decided {
        /// Its number.
        id: u64,
        /// Whether the action may run.
        allowed: bool,
        /// Who answered.
        by: &'a str,
    },
    /// The page fell behind and missed `count` events.
    Missed {
        /// How many.
        count: u64,
    },
    /// The page's wish was applied: whether it now receives traffic samples.
    Viewing {
        /// Whether it does.
        traffic: bool,
    },
}

impl<'a> PageEvent<'a> {
    /// A question asked.
    pub fn question(question: &'a Question) -> Self {
        let message = &question.message;
        Self::Question {
            id: question.id,
            agent: &question.agent,
            from: &message.from,
            action: &message.action.name,
            args: &message.action.args,
            broadcast: message.is_broadcast(),
        }
    }

    /// A permission notice.
    pub fn notice(notice: &'a Notice) -> Self {
        match notice {
            Notice::Asked(question) => Self::question(question),
            Notice::Decided { id, allowed, by } => Self::Decided {
                id: *id,
                allowed: *allowed,
                by,
            },
        }
    }

    /// The event as the page receives it.
    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("an event always serialises")
    }
}
