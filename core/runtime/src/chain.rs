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
//!
//! A concurrent agent handles several messages at once: it answers a request that closes
//! a cycle through it while one of its handles is free, and fails it only when every
//! handle waits. The chain of the message being handled is therefore kept per thread
//! (an action's requests run on the thread that runs the action), not per agent.

use std::cell::RefCell;

use agency_sdk::{message::Meta, ActionError, Kind};
use serde_json::Value;

thread_local! {
    /// The chain of the message this thread handles now (empty between messages).
    static HANDLING: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Runs `handle` with `chain` as the chain of the message this thread handles: requests
/// made meanwhile carry it on.
pub fn handling<T>(chain: Vec<String>, handle: impl FnOnce() -> T) -> T {
    if chain.is_empty() {
        return handle();
    }
    /// Puts the chain before back, also when `handle` panics.
    struct Restore(Vec<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            HANDLING.set(std::mem::take(&mut self.0));
        }
    }
    let _restore = Restore(HANDLING.replace(chain));
    handle()
}

/// The `meta` key holding a request's chain.
pub const REQUEST_CHAIN: &str = "request_chain";

/// The chain a message carries in its `meta` (empty for one that is no request of ours).
pub fn of(meta: &Meta) -> Vec<String> {
    meta.extra
        .get(REQUEST_CHAIN)
        .cloned()
        .map_or_else(Vec::new, ids)
}

/// The chain a message carries, taken out of its `meta` (its ids moved, not copied):
/// for a message read for the one turn that handles it.
pub fn take(meta: &mut Meta) -> Vec<String> {
    meta.extra.remove(REQUEST_CHAIN).map_or_else(Vec::new, ids)
}

/// The ids of a chain's value (none if it is not a list; only its texts).
fn ids(chain: Value) -> Vec<String> {
    match chain {
        Value::Array(ids) => ids
            .into_iter()
            .filter_map(|id| match id {
                Value::String(id) => Some(id),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The chain of a request `sender` makes on this thread: the chain of the message it
/// handles (see [`handling`]), then itself.
pub fn extended(sender: &str) -> Value {
    HANDLING.with_borrow(|handling| {
        let mut chain: Vec<Value> = handling.iter().map(|id| Value::from(id.as_str())).collect();
        chain.push(Value::from(sender));
        Value::Array(chain)
    })
}

/// The error `agent` answers a request with chain `chain` with, if the request closes a
/// cycle through it: `request cycle p1 -> p2 -> p1 (p1 is waiting for p2)`.
pub fn cycle(chain: &[String], agent: &str) -> Option<ActionError> {
    let start = chain.iter().position(|id| id == agent)?;
    let mut ids: Vec<&str> = chain[start..].iter().map(String::as_str).collect();
    let waiting_for = ids
        .get(1)
        .copied()
        .filter(|id| *id != agent)
        .unwrap_or("itself");
    ids.push(agent);
    Some(ActionError::of(
        Kind::Deadlock,
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
        assert_eq!(
            error(&["User", "p", "p"], "p").unwrap(),
            "DeadlockError: request cycle p -> p -> p (p is waiting for itself)"
        );
        assert_eq!(error(&["User", "p1"], "p2"), None);
        assert_eq!(extended("User"), serde_json::json!(["User"]));
        let nested = handling(ids(&["User"]), || extended("p1"));
        assert_eq!(nested, serde_json::json!(["User", "p1"]));
        assert_eq!(extended("p1"), serde_json::json!(["p1"]), "restored");
    }
}
