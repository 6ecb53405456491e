//! What the user types on the console, turned into messages.
//!
//! - plain text is broadcast as `say` with `content`;
//! - `/Agent.action key:value ...` sends `action` to `Agent`; values are JSON (quoted
//!   strings, numbers, `true`/`false`, `null`, arrays, objects) or bare words (strings).

use serde_json::{json, Map, Value};

/// Parses one console line into a message to send, or explains what is wrong.
///
/// ```
/// use agency_operator::parse_line;
///
/// let message = parse_line("/Calculator.add a:1 b:2").unwrap().unwrap();
/// assert_eq!(message["action"]["args"]["b"], 2);
/// ```
pub fn parse_line(line: &str) -> Result<Option<Value>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Some(
            json!({"to": "*", "action": {"name": "say", "args": {"content": line}}}),
        ));
    };
    let (target, rest) = command
        .split_once(char::is_whitespace)
        .unwrap_or((command, ""));
    let (agent, action) = target
        .rsplit_once('.')
        .filter(|(agent, action)| !agent.is_empty() && !action.is_empty())
        .ok_or_else(|| format!("expected /Agent.action key:value ..., got {target:?}"))?;
    let mut args = Map::new();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once(':')
            .filter(|(key, _)| !key.is_empty() && !key.contains(char::is_whitespace))
            .ok_or_else(|| {
                format!(
                    "expected key:value, got {:?}",
                    rest.split_whitespace().next().unwrap_or(rest)
                )
            })?;
        let (value, after) = take_value(after)?;
        args.insert(key.to_owned(), value);
        rest = after.trim_start();
    }
    Ok(Some(
        json!({"to": agent, "action": {"name": action, "args": args}}),
    ))
}

/// Reads one value from the start of `text`; returns it and the text after it.
fn take_value(text: &str) -> Result<(Value, &str), String> {
    if text.starts_with(['"', '[', '{']) {
        let mut values = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        let value = values
            .next()
            .ok_or("a value is missing")?
            .map_err(|e| format!("invalid JSON value {:?}: {e}", truncate(text)))?;
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
    use super::*;

    #[test]
    fn plain_text_is_a_broadcast_say() {
        let message = parse_line("hello there").unwrap().unwrap();
        assert_eq!(
            message,
            json!({"to": "*", "action": {"name": "say", "args": {"content": "hello there"}}})
        );
    }

    #[test]
    fn slash_command_reads_typed_values() {
        let line = r#"/Calc.op n:1.5 s:"a b" t:true l:[1, 2] o:{"k": "v"} w:word"#;
        let message = parse_line(line).unwrap().unwrap();
        assert_eq!(message["to"], "Calc");
        assert_eq!(
            message["action"]["args"],
            json!({"n": 1.5, "s": "a b", "t": true, "l": [1, 2], "o": {"k": "v"}, "w": "word"})
        );
    }

    #[test]
    fn dotted_agent_ids_split_at_the_last_dot() {
        let message = parse_line("/team.alice.help").unwrap().unwrap();
        assert_eq!(message["to"], "team.alice");
        assert_eq!(message["action"]["name"], "help");
    }

    #[test]
    fn bad_commands_are_explained() {
        assert!(parse_line("/Calc").unwrap_err().contains("/Agent.action"));
        assert!(parse_line("/Calc.add a").unwrap_err().contains("key:value"));
        assert!(parse_line(r#"/Calc.add a:"open"#)
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(parse_line("/Calc.add a:").unwrap_err().contains("missing"));
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
            if let Ok(Some(message)) = parse_line(&line) {
                assert!(
                    message["to"].is_string() && message["action"]["args"].is_object(),
                    "{line:?}"
                );
            }
        }
    }

    #[test]
    fn empty_lines_send_nothing() {
        assert_eq!(parse_line("   ").unwrap(), None);
    }
}
