//! What the operator types, at the console or in the page's chat: the front end's own
//! commands (`/help`, `/agents`, `/quit`, `/watch`, `/stats`), or a message to send.
//!
//! - plain text is broadcast as `say` with `content`;
//! - `/Agent.action key:value ...` sends `action` to `Agent`; values are JSON (quoted
//!   strings, numbers, `true`/`false`, `null`, arrays, objects) or bare words (strings).

use agency_protocol::message::{Action, Outgoing, BROADCAST};
use serde_json::{Map, Value};

/// What one line typed by the operator asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// An empty line.
    Nothing,
    /// `/help`: the front end's own help.
    Help,
    /// `/agents`: the agents of this host.
    Agents,
    /// `/quit`.
    Quit,
    /// `/watch` (`on`), or `/watch off`.
    Watch {
        /// Whether to start watching (else stop).
        on: bool,
    },
    /// `/stats`, or `/stats ID` for one agent.
    Stats(Option<String>),
    /// A message to send: plain text is a broadcast `say`, `/Agent.action ...` a message
    /// to `Agent`.
    Send(Outgoing),
}

/// What both front ends' `/help` says of the syntax, a line each: what to type, and what
/// it does.
pub const SYNTAX_HELP: [(&str, &str); 3] = [
    (
        "/Agent.action key:value ...",
        "send an action to an agent (values: JSON or bare words)",
    ),
    ("/Agent.help", "what an agent can do"),
    ("any other text", "say it to every agent"),
];

/// `/stats` in both front ends' `/help`.
pub const STATS_HELP: (&str, &str) = (
    "/stats, /stats ID",
    "what this host's agents counted (messages, errors, timings)",
);

/// Help lines as both front ends show them: what to type, padded, then what it does;
/// each line after `indent`.
pub fn help_lines<'a>(
    lines: impl IntoIterator<Item = &'a (&'a str, &'a str)>,
    indent: &str,
) -> String {
    lines
        .into_iter()
        .map(|(typed, does)| format!("{indent}{typed:<30}{does}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The operator's own commands, as completion offers them after `/`.
pub const LOCAL_COMMANDS: [&str; 4] = ["agents", "help", "quit", "watch"];

/// Why a typed line cannot be read: what was expected, and what came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

impl From<&str> for ParseError {
    fn from(reason: &str) -> Self {
        Self(reason.to_owned())
    }
}

/// Reads one typed line, or explains what is wrong.
///
/// ```
/// use agency_operator::command::{parse, Command};
///
/// let Command::Send(message) = parse("/Calculator.add a:1 b:2").unwrap() else {
///     panic!("a message")
/// };
/// assert_eq!(message.to, "Calculator");
/// assert_eq!(message.action.args["b"], 2);
/// assert_eq!(parse("/stats calc").unwrap(), Command::Stats(Some("calc".into())));
/// ```
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let line = line.trim();
    match line {
        "" => return Ok(Command::Nothing),
        "/help" => return Ok(Command::Help),
        "/agents" => return Ok(Command::Agents),
        "/quit" => return Ok(Command::Quit),
        "/watch" => return Ok(Command::Watch { on: true }),
        "/watch off" => return Ok(Command::Watch { on: false }),
        _ => {}
    }
    if let Some(rest) = line.strip_prefix("/stats") {
        if rest.is_empty() || rest.starts_with(' ') {
            let id = rest.trim();
            return Ok(Command::Stats((!id.is_empty()).then(|| id.to_owned())));
        }
    }
    let Some(command) = line.strip_prefix('/') else {
        let mut args = Map::new();
        args.insert("content".into(), line.into());
        return Ok(Command::Send(message(BROADCAST, "say", args)));
    };
    let (target, rest) = command
        .split_once(char::is_whitespace)
        .unwrap_or((command, ""));
    let (agent, action) = target
        .rsplit_once('.')
        .filter(|(agent, action)| !agent.is_empty() && !action.is_empty())
        .ok_or_else(|| {
            ParseError(format!(
                "expected /Agent.action key:value ..., got {target:?}"
            ))
        })?;
    let mut args = Map::new();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once(':')
            .filter(|(key, _)| !key.is_empty() && !key.contains(char::is_whitespace))
            .ok_or_else(|| {
                ParseError(format!(
                    "expected key:value, got {:?}",
                    rest.split_whitespace().next().unwrap_or(rest)
                ))
            })?;
        let (value, after) = take_value(after)?;
        args.insert(key.to_owned(), value);
        rest = after.trim_start();
    }
    Ok(Command::Send(message(agent, action, args)))
}

/// A message to `to` asking `action` with `args`.
fn message(to: &str, action: &str, args: Map<String, Value>) -> Outgoing {
    Outgoing {
        to: to.to_owned(),
        action: Action {
            name: action.to_owned(),
            args,
        },
        ..Outgoing::default()
    }
}

/// Reads one value from the start of `text`; returns it and the text after it.
fn take_value(text: &str) -> Result<(Value, &str), ParseError> {
    if text.starts_with(['"', '[', '{']) {
        let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        let value = values
            .next()
            .ok_or("a value is missing")?
            .map_err(|e| ParseError(format!("invalid JSON value {:?}: {e}", truncate(text))))?;
        return Ok((value, &text[values.byte_offset()..]));
    }
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    let word = &text[..end];
    if word.is_empty() {
        return Err("a value is missing after ':'".into());
    }
    let value = match serde_json::from_str::<Value>(word) {
        Ok(value @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => value,
        _ => Value::String(word.to_owned()),
    };
    Ok((value, &text[end..]))
}

fn truncate(text: &str) -> &str {
    text.char_indices()
        .nth(30)
        .map_or(text, |(i, _)| &text[..i])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The message a line sends, as JSON (`to` and `action`).
    fn sent(line: &str) -> Value {
        match parse(line).unwrap() {
            Command::Send(message) => json!({"to": message.to, "action": {
                "name": message.action.name, "args": message.action.args}}),
            other => panic!("{line:?} sends nothing: {other:?}"),
        }
    }

    fn error(line: &str) -> String {
        parse(line).unwrap_err().to_string()
    }

    #[test]
    fn plain_text_is_a_broadcast_say() {
        assert_eq!(
            sent("hello there"),
            json!({"to": "*", "action": {"name": "say", "args": {"content": "hello there"}}})
        );
    }

    #[test]
    fn slash_command_reads_typed_values() {
        let line = r#"/Calc.op n:1.5 s:"a b" t:true l:[1, 2] o:{"k": "v"} w:word"#;
        let message = sent(line);
        assert_eq!(message["to"], "Calc");
        assert_eq!(
            message["action"]["args"],
            json!({"n": 1.5, "s": "a b", "t": true, "l": [1, 2], "o": {"k": "v"}, "w": "word"})
        );
    }

    #[test]
    fn dotted_agent_ids_split_at_the_last_dot() {
        let message = sent("/team.alice.help");
        assert_eq!(message["to"], "team.alice");
        assert_eq!(message["action"]["name"], "help");
    }

    #[test]
    fn the_front_ends_own_commands_are_read_as_such() {
        assert_eq!(parse(" /help ").unwrap(), Command::Help);
        assert_eq!(parse("/agents").unwrap(), Command::Agents);
        assert_eq!(parse("/quit").unwrap(), Command::Quit);
        assert_eq!(parse("/watch").unwrap(), Command::Watch { on: true });
        assert_eq!(parse("/watch off").unwrap(), Command::Watch { on: false });
        assert_eq!(parse("/stats").unwrap(), Command::Stats(None));
        assert_eq!(
            parse("/stats  a.b ").unwrap(),
            Command::Stats(Some("a.b".into()))
        );
        assert!(error("/statsx").contains("/Agent.action"));
    }

    #[test]
    fn bad_commands_are_explained() {
        assert!(error("/Calc").contains("/Agent.action"));
        assert!(error("/Calc.add a").contains("key:value"));
        assert!(error(r#"/Calc.add a:"open"#).contains("invalid JSON"));
        assert!(error("/Calc.add a:").contains("missing"));
    }

    #[test]
    fn any_line_parses_or_is_explained_without_panicking() {
        let alphabet: Vec<char> = "/.:\" [{]}ab1-é€😀\\tn".chars().collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let length = (seed % 24) as usize;
            let line: String = (0..length)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            if let Ok(Command::Send(message)) = parse(&line) {
                assert!(!message.to.is_empty(), "{line:?}");
            }
        }
    }

    #[test]
    fn empty_lines_send_nothing() {
        assert_eq!(parse("   ").unwrap(), Command::Nothing);
    }
}
