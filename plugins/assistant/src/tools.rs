//! The space's actions as the model's tools: learnt from `help` answers, filtered by the
//! agent's `tools` patterns, named for the API through a table.
//!
//! The API wants function names matching `^[a-zA-Z0-9_-]{1,64}$`; agent ids and action
//! names may hold anything else. A name is `agent__action` with other characters made
//! `_`, cut and given a hash suffix when too long or already taken; the table maps it back,
//! so a name is never split to find its agent.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

/// The longest function name the API takes.
const MAX_NAME: usize = 64;

/// One action as a tool.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    /// The agent that runs it.
    pub agent: String,
    /// The action's name.
    pub action: String,
    /// What the model reads.
    pub description: String,
    /// The arguments' JSON Schema (an object).
    pub parameters: Value,
}

/// The tools known, by API name.
#[derive(Default)]
pub struct Catalogue {
    by_name: BTreeMap<String, Tool>,
    names: HashMap<(String, String), String>,
}

impl Catalogue {
    /// Learns (or relearns) `agent`'s actions from its `help` answer; keeps those that
    /// `allowed` lets through. Answers how many tools the agent now has.
    pub fn learn(
        &mut self,
        agent: &str,
        help: &Value,
        allowed: impl Fn(&str, &str) -> bool,
    ) -> usize {
        let Some(actions) = help.as_object() else {
            return 0;
        };
        self.by_name.retain(|_, tool| tool.agent != agent);
        let mut count = 0;
        for (action, entry) in actions {
            if action == "help" || !allowed(agent, action) {
                continue;
            }
            let tool = Tool {
                agent: agent.to_owned(),
                action: action.clone(),
                description: describe(agent, action, entry),
                parameters: parameters(entry),
            };
            let name = self.name_for(agent, action);
            self.by_name.insert(name, tool);
            count += 1;
        }
        count
    }

    /// The tool called `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.by_name.get(name)
    }

    /// `(API name, "agent.action")` of every tool.
    pub fn list(&self) -> Vec<(String, String)> {
        self.by_name
            .iter()
            .map(|(name, tool)| (name.clone(), format!("{}.{}", tool.agent, tool.action)))
            .collect()
    }

    /// The `tools` array of a chat-completions request.
    pub fn definitions(&self) -> Vec<Value> {
        self.by_name
            .iter()
            .map(|(name, tool)| {
                json!({"type": "function", "function": {
                    "name": name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                }})
            })
            .collect()
    }

    /// The API name of `agent.action`: the one it had, or a new one no other tool has.
    fn name_for(&mut self, agent: &str, action: &str) -> String {
        let key = (agent.to_owned(), action.to_owned());
        if let Some(name) = self.names.get(&key) {
            return name.clone();
        }
        let clean = |text: &str| -> String {
            text.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let mut name = format!("{}__{}", clean(agent), clean(action));
        let taken = |name: &str| self.names.values().any(|n| n == name);
        if name.len() > MAX_NAME || taken(&name) {
            let suffix = format!("_{:016x}", fnv1a(&format!("{agent}\0{action}")));
            name.truncate(MAX_NAME - suffix.len());
            name += &suffix;
        }
        self.names.insert(key, name.clone());
        name
    }
}

/// A stable 64-bit hash (FNV-1a): the same id and action give the same name in every run.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The description the model reads: the action's own, and who runs it.
fn describe(agent: &str, action: &str, entry: &Value) -> String {
    let own = entry["description"].as_str().unwrap_or_default().trim();
    let mut text = format!("Action {action:?} of agent {agent:?}.");
    if !own.is_empty() {
        text = format!("{own} ({text})");
    }
    if let Some(returns) = entry["returns"]["description"].as_str() {
        text += &format!(" Returns: {returns}");
    }
    text
}

/// The arguments' JSON Schema from a `help` entry's `args`: each argument's own `schema`
/// where `help` gives one, else its type; all but the optional ones required.
fn parameters(entry: &Value) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    if let Some(args) = entry["args"].as_object() {
        for (name, arg) in args {
            let mut schema = match &arg["schema"] {
                Value::Object(schema) => schema.clone(),
                _ => Map::new(),
            };
            if let Some(kind) = arg["type"].as_str().and_then(json_type) {
                schema.entry("type").or_insert_with(|| kind.into());
            }
            if let Some(description) = arg["description"].as_str() {
                schema.insert("description".into(), description.into());
            }
            properties.insert(name.clone(), Value::Object(schema));
            if arg["optional"] != Value::Bool(true) {
                required.push(Value::from(name.as_str()));
            }
        }
    }
    json!({"type": "object", "properties": properties, "required": required})
}

/// A JSON Schema type for a `help` type (Rust agents give JSON's; Python Agency's give
/// Python's); `None` for one that says nothing a schema can.
fn json_type(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "string" | "str" => "string",
        "number" | "float" => "number",
        "integer" | "int" => "integer",
        "boolean" | "bool" => "boolean",
        "array" | "list" => "array",
        "object" | "dict" => "object",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calculator_help() -> Value {
        json!({
            "add": {"description": "Adds two numbers.", "args": {
                "a": {"type": "number", "description": "the first number"},
                "b": {"type": "number"}}, "returns": {"type": "number", "description": "their sum"}},
            "round": {"description": "", "args": {
                "x": {"type": "number"},
                "digits": {"type": "integer", "optional": true, "schema": {"type": "integer", "minimum": 0}}}},
            "help": {"description": "Lists actions.", "args": {}},
        })
    }

    #[test]
    fn help_answers_become_tools_with_schemas() {
        let mut catalogue = Catalogue::default();
        assert_eq!(
            catalogue.learn("Calculator", &calculator_help(), |_, _| true),
            2
        );
        let add = catalogue.get("Calculator__add").unwrap();
        assert_eq!(
            add.parameters,
            json!({"type": "object", "properties": {
            "a": {"type": "number", "description": "the first number"},
            "b": {"type": "number"}}, "required": ["a", "b"]})
        );
        assert!(
            add.description.contains("Adds two numbers.") && add.description.contains("their sum")
        );
        let round = catalogue.get("Calculator__round").unwrap();
        assert_eq!(round.parameters["required"], json!(["x"]));
        assert_eq!(round.parameters["properties"]["digits"]["minimum"], 0);
        assert!(catalogue.get("Calculator__help").is_none());
        assert_eq!(catalogue.definitions().len(), 2);
    }

    #[test]
    fn names_fit_the_api_and_never_collide() {
        let mut catalogue = Catalogue::default();
        let odd = "a.b c/ü";
        let long = "x".repeat(80);
        catalogue.learn(odd, &calculator_help(), |_, _| true);
        catalogue.learn("a_b_c__", &calculator_help(), |_, _| true);
        catalogue.learn(&long, &calculator_help(), |_, _| true);
        let valid = |name: &str| {
            !name.is_empty()
                && name.len() <= MAX_NAME
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        let list = catalogue.list();
        assert_eq!(list.len(), 6);
        for (name, _) in &list {
            assert!(valid(name), "{name}");
        }
        let names: std::collections::HashSet<_> = list.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 6, "{list:?}");
        let back: Vec<_> = list.iter().map(|(_, target)| target.clone()).collect();
        assert!(back.contains(&format!("{odd}.add")) && back.contains(&format!("{long}.round")));
        // Relearning keeps the names.
        let before = catalogue.list();
        catalogue.learn(odd, &calculator_help(), |_, _| true);
        assert_eq!(catalogue.list(), before);
    }

    #[test]
    fn patterns_filter_and_a_bad_answer_teaches_nothing() {
        let mut catalogue = Catalogue::default();
        assert_eq!(
            catalogue.learn("Calculator", &calculator_help(), |_, action| action
                == "add"),
            1
        );
        assert_eq!(
            catalogue.learn("Odd", &json!("not a help answer"), |_, _| true),
            0
        );
        assert_eq!(
            catalogue.list(),
            [("Calculator__add".to_owned(), "Calculator.add".to_owned())]
        );
    }
}
