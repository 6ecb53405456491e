//! Many agents on few threads (`agency_runtime::scheduler`): every agent answers, an agent
//! that blocks holds up nobody else, a request waiting while every thread is busy gets its
//! reply, and removing a busy agent keeps its timeout. Agents come from the test plugins,
//! on the `local` transport.

use std::time::Duration;

use agency_runtime::{AgentSpec, Space};
use agency_sdk::Message;
use agency_tests::{driver, open_space, LOAD_PATIENCE};
use serde_json::{json, Value};

/// This process's threads (Linux).
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

fn add_receivers(space: &Space, prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            let id = format!("{prefix}{n}");
            space.add(&AgentSpec::new("Receiver", &id)).unwrap();
            id
        })
        .collect()
}

/// Sends `action` to each of `ids` (no waiting), then waits until each has replied;
/// answers the replies in the order they arrived.
fn ask_each(me: &agency_runtime::Foreground, ids: &[String], action: &str) -> Vec<Message> {
    let replies = me.subscribe();
    for id in ids {
        me.send(json!({"to": id, "action": {"name": action, "args": {}}}))
            .unwrap();
    }
    let mut arrived = Vec::new();
    while arrived.len() < ids.len() {
        let reply = replies
            .recv_timeout(LOAD_PATIENCE)
            .unwrap_or_else(|| panic!("only {} of {} replies", arrived.len(), ids.len()));
        arrived.push(reply);
    }
    arrived
}

#[test]
fn a_hundred_thousand_agents_start_and_each_answers_on_a_few_threads() {
    let space = open_space("local");
    let before = threads();
    let ids = add_receivers(&space, "r", 100_000);
    let me = driver(&space, "me");
    let replies = ask_each(&me, &ids, "value");
    assert!(replies.iter().all(|r| r.reply() == Some(Ok(json!(42)))));
    let mut from: Vec<&str> = replies.iter().map(|r| r.from.as_str()).collect();
    from.sort_unstable();
    from.dedup();
    assert_eq!(from.len(), 100_000, "each agent answered once");
    let added = threads().saturating_sub(before);
    assert!(
        added < 64,
        "100,000 agents added {added} threads (one a core, plus a few)"
    );
    space.destroy();
}

/// Sleepers block their threads without saying so (more of them than cores): the
/// watchdog notices, and 1,000 other agents still answer while they sleep.
#[test]
fn agents_blocked_in_a_sleep_do_not_stop_a_thousand_others() {
    let space = open_space("local");
    let sleepers = add_receivers(&space, "sleeper", 4);
    let others = add_receivers(&space, "busy", 1000);
    let me = driver(&space, "me");
    let replies = me.subscribe();
    for id in &sleepers {
        me.send(json!({"to": id, "action": {"name": "sleep", "args": {"seconds": 20}}}))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    for id in &others {
        me.send(json!({"to": id, "action": {"name": "value", "args": {}}}))
            .unwrap();
    }
    for answered in 0..others.len() {
        let reply = replies
            .recv_timeout(LOAD_PATIENCE)
            .unwrap_or_else(|| panic!("{answered} of 1,000 answered"));
        assert_eq!(
            reply.reply(),
            Some(Ok(json!(42))),
            "{answered} others answered before a sleeper woke: {reply:?}"
        );
    }
    space.set_stop_timeout(Duration::from_millis(100));
    space.destroy();
}

/// Every thread is taken by a sleeper, and one more agent requests a value from another:
/// the waiting request hands its thread over, and the reply comes.
#[test]
fn a_request_made_while_every_thread_is_busy_gets_its_reply() {
    let space = open_space("local");
    let sleepers = add_receivers(&space, "sleeper", 8);
    add_receivers(&space, "asker", 1);
    add_receivers(&space, "answerer", 1);
    let me = driver(&space, "me");
    for id in &sleepers {
        me.send(json!({"to": id, "action": {"name": "sleep", "args": {"seconds": 20}}}))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    let answer = me.request(
        json!({"to": "asker0", "action": {"name": "ask", "args": {"to": "answerer0", "action": "value"}}}),
        Duration::from_secs(15),
    );
    assert_eq!(answer.unwrap(), json!(42));
    space.set_stop_timeout(Duration::from_millis(100));
    space.destroy();
}

/// Removing an agent in the middle of a long action waits for it up to the stop timeout,
/// then leaves it to finish detached; the space and its other agents go on.
#[test]
fn removing_a_busy_agent_keeps_its_stop_timeout() {
    let sleep = json!({"name": "sleep", "args": {"seconds": 3}});
    remove_while_busy(AgentSpec::new("Receiver", "slow"), sleep, 1, json!("awake"));
}

/// The same for a concurrent agent with two actions running: `remove` waits up to the
/// stop timeout, not for both actions, and both replies come after it returned.
#[test]
fn removing_a_busy_concurrent_agent_keeps_its_stop_timeout() {
    let hold = json!({"name": "hold", "args": {"seconds": 3}});
    remove_while_busy(AgentSpec::new("Parallel", "P"), hold, 2, json!("held"));
}

/// Adds the agent of `spec`, sends it `action` `count` times, removes it with a 300 ms
/// stop timeout, and checks that another agent answers first and that each action still
/// answers `done` afterwards.
fn remove_while_busy(spec: AgentSpec, action: Value, count: usize, done: Value) {
    let space = open_space("local");
    space.add(&spec).unwrap();
    add_receivers(&space, "quick", 1);
    let me = driver(&space, "me");
    let replies = me.subscribe();
    for _ in 0..count {
        me.send(json!({"to": spec.id, "action": action})).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    space.set_stop_timeout(Duration::from_millis(300));
    space.remove(&spec.id).unwrap();
    // remove returned while the actions still run: their replies come after.
    me.send(json!({"to": "quick0", "action": {"name": "value", "args": {}}}))
        .unwrap();
    let first = replies.recv_timeout(LOAD_PATIENCE).unwrap();
    assert_eq!(first.from, "quick0");
    for _ in 0..count {
        let reply = replies.recv_timeout(LOAD_PATIENCE).unwrap();
        assert_eq!(
            (reply.from.as_str(), reply.reply()),
            (spec.id.as_str(), Some(Ok(done.clone())))
        );
    }
    space.destroy();
}
