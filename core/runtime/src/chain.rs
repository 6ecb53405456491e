//! Request chains: request cycles answered at once instead of at their timeout.
//!
//! An agent handles one message at a time, so an agent that waits in a request cannot
//! answer anything else until its reply comes. A request therefore carries, in
//! `meta.request_chain`, the ids of the agents waiting for it: those up the chain of the
//! request being handled when it was made, then its sender. An agent that receives a
//! request whose chain holds its own id, while it is waiting itself, can only answer it
//! once the chain unwinds, which needs this very answer: it answers at once with a
//! `DeadlockError` naming the cycle. Peers that do not pass the chain on (Python Agency)
//! break it: a cycle through them ends at its timeout, as before.

use agency_sdk::{ActionError, Message};
use serde_json::Value;

/// The `meta` key holding a request's chain.
pub const REQUEST_CHAIN: &str = "request_chain";

/// The chain a message carries (empty for one that is no request of ours).
pub fn of(message: &Message) -> Vec<String> {
    match message.meta.extra.get(REQUEST_CHAIN) {
        Some(Value::Array(ids)) => ids
            .iter()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The chain of a request `sender` makes while handling a message with chain `handling`.
pub fn extended(handling: &[String], sender: &str) -> Value {
    let mut chain: Vec<Value> = handling.iter().map(|id| Value::from(id.as_str())).collect();
    chain.push(Value::from(sender));
    Value::Array(chain)
}

/// The error `agent` answers a request with chain `chain` with, if the request closes a
/// cycle through it: `request cycle p1 -> p2 -> p1 (p1 is waiting for p2)`.
pub fn cycle(chain: &[String], agent: &str) -> Option<ActionError> {
    let start = chain.iter().position(|id| id == agent)?;
    let mut ids: Vec<&str> = chain[start..].iter().map(String::as_str).collect();
    let waiting_for = ids.get(1).copied().unwrap_or("itself");
    ids.push(agent);
    Some(ActionError::new(
        "DeadlockError",
        format!(
            "request cycle {} ({agent} is waiting for {waiting_for})",
            ids.join(" -> ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn cycles_are_named_from_the_agent_that_closes_them() {
        let error = |chain: &[&str], agent| cycle(&ids(chain), agent).map(|e| e.to_string());
        assert_eq!(
            error(&["User", "p1", "p2"], "p1").unwrap(),
            "DeadlockError: request cycle p1 -> p2 -> p1 (p1 is waiting for p2)"
        );
        assert_eq!(
            error(&["p1"], "p1").unwrap(),
            "DeadlockError: request cycle p1 -> p1 (p1 is waiting for itself)"
        );
        assert_eq!(error(&["User", "p1"], "p2"), None);
        assert_eq!(
            extended(&ids(&["User"]), "p1"),
            serde_json::json!(["User", "p1"])
        );
    }
}
