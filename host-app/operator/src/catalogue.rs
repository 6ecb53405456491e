//! What an operator's session knows of the agents: their ids, and for those whose `help`
//! answered, what that answer said (action names, their arguments and descriptions).
//!
//! The console's completion and the page's agents view and forms read the same
//! catalogue, filled by [`Session`](crate::Session) from the space's list of this host's
//! agents and from `help` answers, which every agent gives on every transport (Python
//! agents included). It only grows: an agent that left is still offered, and a message to
//! it comes back undeliverable with a suggestion.

use std::collections::BTreeMap;

use serde_json::Value;

/// Agent ids, each with its `help` answer once one came.
///
/// ```
/// use agency_operator::Catalogue;
/// use serde_json::json;
///
/// let mut catalogue = Catalogue::default();
/// assert!(catalogue.add_agent("Calculator"));
/// assert!(!catalogue.add_agent("Calculator"));
/// catalogue.learn_help("Calculator", &json!({"add": {"args": {"a": {}, "b": {}}}}));
/// assert_eq!(catalogue.actions("Calculator"), vec!["add"]);
/// assert_eq!(catalogue.args("Calculator", "add"), vec!["a", "b"]);
/// ```
#[derive(Debug, Default, Clone)]
pub struct Catalogue {
    agents: BTreeMap<String, Option<Value>>,
}

impl Catalogue {
    /// Notes an agent id; answers whether it is new.
    pub fn add_agent(&mut self, id: &str) -> bool {
        if self.agents.contains_key(id) {
            return false;
        }
        self.agents.insert(id.to_owned(), None);
        true
    }

    /// Keeps an agent's `help` answer (action name -> `{"args": {...}, ...}`); answers
    /// whether it was one (an object).
    pub fn learn_help(&mut self, id: &str, help: &Value) -> bool {
        if !help.is_object() {
            return false;
        }
        self.agents.insert(id.to_owned(), Some(help.clone()));
        true
    }

    /// Every agent id known, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.agents.keys().map(String::as_str)
    }

    /// The agents whose `help` answered, with that answer, in order.
    pub fn helped(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.agents
            .iter()
            .filter_map(|(id, help)| Some((id.as_str(), help.as_ref()?)))
    }

    /// The action names of `agent`, as its `help` gave them (none before it answered).
    pub fn actions(&self, agent: &str) -> Vec<&str> {
        self.help(agent)
            .map(|actions| actions.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The argument names of `agent`'s `action`, as its `help` gave them.
    pub fn args(&self, agent: &str, action: &str) -> Vec<&str> {
        self.help(agent)
            .and_then(|actions| actions.get(action)?.get("args")?.as_object())
            .map(|args| args.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    fn help(&self, agent: &str) -> Option<&serde_json::Map<String, Value>> {
        self.agents.get(agent)?.as_ref()?.as_object()
    }
}
