//! How the console puts things into words: replies, actions other agents sent, `help`
//! answers as tables, its own `/help`, permission questions. Every part that came from
//! elsewhere (ids, action names, values) is escaped here ([`crate::terminal`]), so no
//! peer can move the cursor or colour the screen.

use std::time::Duration;

use agency_operator::{
    command::{help_lines, STATS_HELP, SYNTAX_HELP},
    Question,
};
use agency_protocol::{ActionError, Message};
use agency_runtime::HELP;
use serde_json::Value;

use crate::terminal::{block, inline, red, Stream};

/// A reply to a message: its value (a `help` answer the console asked for as a table),
/// or the error the agent raised, in red.
pub fn reply(result: &Result<Value, ActionError>, asked: Option<&str>) -> String {
    match result {
        Ok(value) if asked == Some(HELP) => {
            help_table(value).unwrap_or_else(|| block(&render(value)))
        }
        Ok(value) => block(&render(value)),
        Err(error) => {
            let error = format!("error: {}", block(&error.to_string()));
            red(&error, Stream::Stdout).into_owned()
        }
    }
}

/// An action another agent sent: `says: ...` for `say`, else `-> name {args}`.
pub fn action(message: &Message) -> String {
    let args = &message.action.args;
    match message.action.name.as_str() {
        "say" => format!(
            "says: {}",
            block(&render(args.get("content").unwrap_or(&Value::Null)))
        ),
        name => format!(
            "-> {} {}",
            inline(name),
            inline(&Value::Object(args.clone()).to_string())
        ),
    }
}

/// A message that came back undeliverable, with the nearest id if one is near.
pub fn undeliverable(error: &ActionError, did_you_mean: Option<&str>) -> String {
    let hint = did_you_mean
        .map(|id| format!(" (did you mean {}?)", inline(&format!("{id:?}"))))
        .unwrap_or_default();
    format!("error: {}{hint}", inline(error.message()))
}

/// A question as the user is asked it.
pub fn prompt(question: &Question) -> String {
    format!("permission: allow {}? [y/N] ", describe(question))
}

/// `User -> Host.run_command {"command":"ls"}`: exactly what would run and for whom
/// (`(broadcast)` when the message went to every agent), every part escaped (any of them
/// may come from another process).
pub fn describe(question: &Question) -> String {
    let message = &question.message;
    format!(
        "{} -> {}.{} {}{}",
        inline(&message.from),
        inline(&question.agent),
        inline(&message.action.name),
        inline(&Value::Object(message.action.args.clone()).to_string()),
        if message.is_broadcast() {
            " (broadcast)"
        } else {
            ""
        }
    )
}

/// Compact JSON longer than this is shown indented, one field or item a line.
const COMPACT_WIDTH: usize = 100;

/// Strings as they are, anything else as JSON: compact when short, else indented.
fn render(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => {
            let compact = other.to_string();
            if compact.len() <= COMPACT_WIDTH {
                compact
            } else {
                serde_json::to_string_pretty(other).unwrap_or(compact)
            }
        }
    }
}

/// What `/help` prints.
pub fn console_help() -> String {
    let own = [
        ("/agents", "the agents in this space, on this host"),
        STATS_HELP,
        (
            "/watch, /watch off",
            "show every message of this host's agents, or stop",
        ),
        ("/help", "this help"),
        ("/quit", "leave (as do Ctrl-D and Ctrl-C)"),
    ];
    let lines = help_lines(SYNTAX_HELP.iter().chain(&own), "  ");
    format!("console commands:\n{lines}")
}

/// A `help` answer as a table, one line per action: `name(arg: type, ...) -> type` and
/// its description; `None` if the value is not shaped like one.
fn help_table(help: &Value) -> Option<String> {
    let actions = help.as_object()?;
    let mut rows = Vec::new();
    for (name, entry) in actions {
        let entry = entry.as_object()?;
        let args: Vec<String> = entry
            .get("args")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(arg, doc)| format!("{arg}: {}", doc["type"].as_str().unwrap_or("any")))
            .collect();
        let returns = entry
            .get("returns")
            .and_then(|r| r["type"].as_str())
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        let signature = inline(&format!("{name}({}){returns}", args.join(", "))).into_owned();
        let description = entry
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        rows.push((signature, inline(description).into_owned()));
    }
    let width = rows
        .iter()
        .map(|(s, _)| s.chars().count())
        .max()
        .unwrap_or(0);
    let count = rows.len();
    let lines: Vec<String> = rows
        .into_iter()
        .map(|(signature, description)| format!("  {signature:width$}  {description}"))
        .collect();
    Some(format!(
        "{count} action{}\n{}",
        if count == 1 { "" } else { "s" },
        lines.join("\n")
    ))
}

/// `5 s`, `0.5 s`: a duration as a person reads it.
pub fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// `reply` or `replies`.
pub fn replies(count: usize) -> &'static str {
    if count == 1 {
        "reply"
    } else {
        "replies"
    }
}
