//! Python Agency's test suite, behaviour by behaviour, through real plugin libraries on
//! every transport.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use agency_runtime::{AgentSpec, Space, SpaceError, MAILBOX_LIMIT, MAX_ID_BYTES};
use agency_tests::{
    action, ask, assert_nothing_else_received, driver, for_each_transport, open_space, plugin_of,
    plugins, space_options, unique_name, wait_for_received, LOAD_PATIENCE, PATIENCE,
};
use serde_json::{json, Value};

for_each_transport!(
    send_and_reply,
    send_and_error,
    send_and_respond,
    request_and_respond,
    request_and_error,
    request_and_timeout,
    own_broadcast_is_received,
    own_broadcast_can_be_ignored,
    meta_is_passed_unchanged,
    undefined_action_is_an_error,
    undefined_broadcast_action_is_ignored,
    denied_action,
    requested_action_granted,
    requested_action_rejected,
    default_permission_asks_the_space_prompt,
    help_lists_all_actions,
    help_for_one_action,
    callbacks_run_in_order,
    id_validation,
    outgoing_messages_are_validated,
    request_from_inside_an_action,
    one_agent_handles_messages_in_arrival_order,
    parent_message_is_found,
    removed_agent_receives_nothing,
    destroyed_space_refuses_work,
    duplicate_id_is_refused,
    unknown_type_lists_known_types,
    message_to_unknown_agent_comes_back_as_an_error,
    request_cycles_fail_at_once,
    concurrent_agent_runs_messages_side_by_side,
    request_cycles_through_a_concurrent_agent_answer,
);

fn receiver(space: &Space, id: &str, args: Value) {
    space
        .add(&AgentSpec::new("Receiver", id).with_args(args))
        .expect("receiver added");
}

fn send_and_reply(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    let id = sender
        .send(action(
            "Receiver",
            "say",
            json!({"content": "Hello, Receiver!"}),
        ))
        .unwrap();
    let reply = wait_for_received(&sender, |m| m.action.name == "say");
    assert_eq!(reply.from, "Receiver");
    assert_eq!(reply.to, "Sender");
    assert_eq!(reply.action.args["content"], "Hello, Sender!");
    let log = sender.log();
    assert_eq!(
        log.len(),
        2,
        "Agency's log: the message sent, then the reply"
    );
    assert_eq!(log[0].meta.id, id);
    assert_eq!(log[0].from, "Sender");
    assert_eq!(log[0].action.args["content"], "Hello, Receiver!");
}

fn send_and_error(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    let id = sender.send(action("Receiver", "fail", json!({}))).unwrap();
    let reply = wait_for_received(&sender, |m| m.action.name == "[error]");
    assert_eq!(reply.meta.parent_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        reply.action.args["error"],
        "ValueError: Something went wrong"
    );
}

fn send_and_respond(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    let id = sender
        .send(action("Receiver", "respond", json!({})))
        .unwrap();
    assert!(sender.wait_for(PATIENCE, |got| got.len() == 2));
    let values: Vec<Value> = sender
        .received()
        .iter()
        .map(|m| m.action.args["value"].clone())
        .collect();
    assert_eq!(values, [json!("Hello, Sender!"), json!("again")]);
    assert!(sender
        .received()
        .iter()
        .all(|m| m.action.name == "[response]" && m.meta.parent_id.as_deref() == Some(&*id)));
}

fn request_and_respond(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    assert_eq!(ask(&sender, "Receiver", "value").unwrap(), 42);
    assert_eq!(
        ask(&sender, "Receiver", "respond").unwrap(),
        "Hello, Sender!"
    );
}

fn request_and_error(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    for name in ["fail", "raise"] {
        let error = sender
            .request(action("Receiver", name, json!({})), PATIENCE)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "ValueError: Something went wrong",
            "{name}"
        );
    }
}

fn request_and_timeout(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    let error = sender
        .request(
            action("Receiver", "ignore", json!({})),
            Duration::from_millis(300),
        )
        .unwrap_err();
    assert_eq!(error.kind(), "TimeoutError");
    assert!(error.message().contains("Receiver"), "{error}");
}

fn own_broadcast_is_received(transport: &str) {
    let space = open_space(transport);
    let sender = driver(&space, "Sender");
    let other = driver(&space, "Other");
    sender
        .send(action("*", "say", json!({"content": "hi all"})))
        .unwrap();
    wait_for_received(&sender, |m| m.from == "Sender" && m.is_broadcast());
    wait_for_received(&other, |m| m.from == "Sender" && m.is_broadcast());
}

fn own_broadcast_can_be_ignored(transport: &str) {
    let space = open_space(transport);
    let sender = space
        .add_foreground(&AgentSpec::untyped("Sender").ignoring_own_broadcasts())
        .unwrap();
    let other = driver(&space, "Other");
    sender
        .send(action("*", "say", json!({"content": "hi all"})))
        .unwrap();
    wait_for_received(&other, |m| m.from == "Sender");
    // A point-to-point marker sent after the broadcast arrives after it: ordering proves
    // the broadcast would have been seen by now.
    other.send(action("Sender", "marker", json!({}))).unwrap();
    wait_for_received(&sender, |m| m.action.name == "marker");
    assert_eq!(sender.received().len(), 1, "{:#?}", sender.received());
}

fn meta_is_passed_unchanged(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    let meta = json!({"id": "custom-id", "trace": {"span": 7}, "tags": ["a"]});
    let mut message = action("Receiver", "echo_meta", json!({}));
    message["meta"] = meta.clone();
    assert_eq!(sender.send(message).unwrap(), "custom-id");
    let reply = wait_for_received(&sender, |m| m.action.name == "[response]");
    assert_eq!(reply.action.args["value"], meta);
    assert_eq!(reply.meta.parent_id.as_deref(), Some("custom-id"));
}

fn undefined_action_is_an_error(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    let error = ask(&sender, "Receiver", "undefined_action").unwrap_err();
    assert_eq!(
        error.to_string(),
        "AttributeError: \"undefined_action\" not found on \"Receiver\""
    );
}

fn undefined_broadcast_action_is_ignored(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = space
        .add_foreground(&AgentSpec::untyped("Sender").ignoring_own_broadcasts())
        .unwrap();
    sender
        .send(action("*", "undefined_action", json!({})))
        .unwrap();
    assert_nothing_else_received(&sender, "Receiver");
}

fn denied_action(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({"grant": true}));
    let sender = driver(&space, "Sender");
    let error = ask(&sender, "Receiver", "forbidden").unwrap_err();
    assert_eq!(
        error.to_string(),
        "PermissionError: \"Receiver.forbidden\" not permitted"
    );
}

fn requested_action_granted(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({"grant": true}));
    let sender = driver(&space, "Sender");
    assert_eq!(ask(&sender, "Receiver", "guarded").unwrap(), "ran");
}

fn requested_action_rejected(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({"grant": false}));
    let sender = driver(&space, "Sender");
    let error = ask(&sender, "Receiver", "guarded").unwrap_err();
    assert_eq!(
        error.to_string(),
        "PermissionError: \"Receiver.guarded\" not permitted"
    );
}

fn default_permission_asks_the_space_prompt(transport: &str) {
    let space = open_space(transport);
    space.add(&AgentSpec::new("Host", "Host")).unwrap();
    let sender = driver(&space, "Sender");
    let list = action(
        "Host",
        "list_files",
        json!({"path": env!("CARGO_MANIFEST_DIR")}),
    );
    let refused = sender.request(list.clone(), PATIENCE).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "PermissionError: \"Host.list_files\" not permitted",
        "no prompt means no"
    );
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = asked.clone();
    space.set_permission_prompt(move |_agent, message| {
        record.lock().unwrap().push(message.action.name.clone());
        message.action.name == "list_files"
    });
    let files = sender.request(list, PATIENCE).unwrap();
    assert!(
        files.as_array().unwrap().contains(&json!("Cargo.toml")),
        "{files}"
    );
    let read = action("Host", "read_file", json!({"path": "Cargo.toml"}));
    assert!(sender
        .request(read, PATIENCE)
        .unwrap_err()
        .to_string()
        .starts_with("PermissionError"));
    assert_eq!(*asked.lock().unwrap(), ["list_files", "read_file"]);
}

fn help_lists_all_actions(transport: &str) {
    let space = open_space(transport);
    space
        .add(&AgentSpec::new("Calculator", "Calculator"))
        .unwrap();
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    let help = ask(&sender, "Calculator", "help").unwrap();
    let names: Vec<&String> = help.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        ["add", "divide", "multiply", "sqrt", "subtract", "sum"],
        "help hides itself"
    );
    assert_eq!(
        help["add"],
        json!({
            "description": "Adds two numbers.",
            "args": {
                "a": {"type": "number", "description": "the first number"},
                "b": {"type": "number", "description": "the second number"}
            },
            "returns": {"type": "number", "description": "a + b"}
        })
    );
    assert_eq!(help["sum"]["args"]["numbers"]["type"], "array");
    let custom = ask(&sender, "Receiver", "help").unwrap();
    assert_eq!(
        custom["custom"],
        json!({"description": "custom help", "args": {}})
    );
}

fn help_for_one_action(transport: &str) {
    let space = open_space(transport);
    space
        .add(&AgentSpec::new("Calculator", "Calculator"))
        .unwrap();
    let sender = driver(&space, "Sender");
    let help = sender
        .request(
            action("Calculator", "help", json!({"action_name": "sqrt"})),
            PATIENCE,
        )
        .unwrap();
    assert_eq!(
        help.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["sqrt"]
    );
    let none = sender
        .request(
            action("Calculator", "help", json!({"action_name": "nope"})),
            PATIENCE,
        )
        .unwrap();
    assert_eq!(none, json!({}));
}

fn callbacks_run_in_order(transport: &str) {
    let space = open_space(transport);
    let observer = driver(&space, "Observer");
    receiver(&space, "Receiver", json!({}));
    space
        .add(&AgentSpec::new("Recorder", "Recorder").with_args(json!({"observer": "Observer"})))
        .unwrap();
    let sender = driver(&space, "Sender");
    assert_eq!(ask(&sender, "Recorder", "work").unwrap(), 1);
    assert!(ask(&sender, "Recorder", "broken").is_err());
    sender
        .send(action(
            "Recorder",
            "poke",
            json!({"to": "Receiver", "action": "value"}),
        ))
        .unwrap();
    sender
        .send(action(
            "Recorder",
            "poke",
            json!({"to": "Receiver", "action": "fail"}),
        ))
        .unwrap();
    let expected = [
        "after_add",
        "before_action work",
        "after_action work value 1",
        "before_action broken",
        "after_action broken error ValueError: broken",
        "before_action poke",
        "after_action poke nothing",
        "before_action poke",
        "after_action poke nothing",
        "handle_action_value 42",
        "handle_action_error ValueError: Something went wrong",
    ];
    let said = |got: &[agency_sdk::Message]| -> Vec<String> {
        got.iter()
            .map(|m| {
                m.action.args["content"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    observer.wait_for(PATIENCE, |got| got.len() >= expected.len());
    assert_eq!(said(&observer.received()), expected);
    space.remove("Recorder").unwrap();
    observer.wait_for(PATIENCE, |got| got.len() > expected.len());
    assert_eq!(
        said(&observer.received()).last().map(String::as_str),
        Some("before_remove")
    );
}

fn id_validation(transport: &str) {
    let space = open_space(transport);
    for bad in [
        "",
        "*",
        "amq.queue",
        "__broadcast__",
        "a.#",
        "*.b",
        &"x".repeat(MAX_ID_BYTES + 1),
        "line\nbreak",
        "escape\u{1b}[2J",
        "c1\u{9b}",
    ] {
        let error = space
            .add_foreground(&AgentSpec::untyped(bad))
            .err()
            .unwrap();
        assert!(
            matches!(error, SpaceError::InvalidId { .. }),
            "{bad:?}: {error}"
        );
    }
    for good in ["a", "team.alice", "with space", "ünïcode"] {
        space.add_foreground(&AgentSpec::untyped(good)).unwrap();
    }
    // One rule on every transport: the longest id fits AMQP's 255-byte queue names as
    // `<id>-broadcast`. (Test spaces prefix their queue names, which leaves less room: this
    // one has the default names, and an id of its own.)
    let name = unique_name("longest");
    let longest = format!("{name}{}", "é".repeat((MAX_ID_BYTES - name.len()) / 2));
    let longest = format!("{longest}{}", "x".repeat(MAX_ID_BYTES - longest.len()));
    assert_eq!(longest.len(), MAX_ID_BYTES);
    let options = match plugin_of(transport) {
        "amqp" => serde_json::json!({
            "url": agency_tests::broker::broker().url(),
            "exchange": unique_name("agency-test-ids"),
            "queue_per": space_options(transport)["queue_per"],
        }),
        _ => serde_json::json!({}),
    };
    let unprefixed = plugins()
        .open_space(plugin_of(transport), &options)
        .unwrap();
    let agent = unprefixed
        .add_foreground(&AgentSpec::untyped(&longest))
        .unwrap();
    agent
        .send(action(&longest, "note", serde_json::json!({})))
        .unwrap();
    wait_for_received(&agent, |m| m.action.name == "note");
}

fn outgoing_messages_are_validated(transport: &str) {
    let space = open_space(transport);
    let sender = driver(&space, "Sender");
    let cases = [
        (json!({"to": "x"}), "missing field `action`"),
        (
            json!({"to": "x", "action": {"name": "a"}, "extra": 1}),
            "unknown field `extra`",
        ),
        (
            json!({"to": "x", "action": {"name": "a", "bogus": 1}}),
            "unknown field `bogus`",
        ),
        (json!({"to": "x", "action": {"name": 5}}), "invalid type"),
        (
            json!({"to": "x", "from": "Mallory", "action": {"name": "a"}}),
            "\"from\" must be the sender's id",
        ),
        (
            json!({"to": "#", "action": {"name": "a"}}),
            "invalid recipient",
        ),
        (json!(["not", "an", "object"]), "must be a JSON object"),
    ];
    for (message, expected) in cases {
        let error = sender.send(message.clone()).unwrap_err().to_string();
        assert!(error.contains(expected), "{message}: {error}");
    }
    assert!(sender.log().is_empty(), "nothing invalid was sent");
}

fn request_from_inside_an_action(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Asker", json!({}));
    receiver(&space, "Answerer", json!({}));
    let sender = driver(&space, "Sender");
    let asked = action("Asker", "ask", json!({"to": "Answerer", "action": "value"}));
    assert_eq!(sender.request(asked, PATIENCE).unwrap(), 42);
    let failing = action("Asker", "ask", json!({"to": "Answerer", "action": "fail"}));
    assert_eq!(
        sender.request(failing, PATIENCE).unwrap_err().to_string(),
        "ValueError: Something went wrong"
    );
}

fn one_agent_handles_messages_in_arrival_order(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    let ids: Vec<String> = (0..200)
        .map(|i| sender.send(action("Receiver", "add", json!({"a": i, "b": 0}))))
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(sender.wait_for(PATIENCE, |got| got.len() == 200));
    let replies = sender.received();
    let parents: Vec<String> = replies
        .iter()
        .map(|m| m.meta.parent_id.clone().unwrap())
        .collect();
    assert_eq!(parents, ids);
    let values: Vec<f64> = replies
        .iter()
        .map(|m| m.action.args["value"].as_f64().unwrap())
        .collect();
    assert_eq!(values, (0..200).map(f64::from).collect::<Vec<_>>());
}

fn parent_message_is_found(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    sender
        .send(action("Receiver", "say", json!({"content": "hi"})))
        .unwrap();
    let greeting = wait_for_received(&sender, |m| m.action.name == "say");
    let mut follow_up = action("Receiver", "parent", json!({}));
    follow_up["meta"] = json!({"parent_id": greeting.meta.id});
    let parent = sender.request(follow_up, PATIENCE).unwrap();
    assert_eq!(parent["meta"]["id"], greeting.meta.id);
    assert_eq!(parent["action"]["args"]["content"], "Hello, Sender!");
    assert_eq!(ask(&sender, "Receiver", "parent").unwrap(), Value::Null);
}

fn removed_agent_receives_nothing(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let sender = driver(&space, "Sender");
    space.remove("Receiver").unwrap();
    let error = sender
        .request(
            action("Receiver", "value", json!({})),
            Duration::from_millis(200),
        )
        .unwrap_err();
    // Its queues are gone with it (on amqp too): the message is undeliverable at once.
    assert_eq!(error.kind(), "UndeliverableError");
    assert_eq!(
        space.remove("Receiver").unwrap_err(),
        SpaceError::UnknownAgent("Receiver".into())
    );
    receiver(&space, "Receiver", json!({}));
    assert_eq!(
        ask(&sender, "Receiver", "value").unwrap(),
        42,
        "the id is free again"
    );
}

fn destroyed_space_refuses_work(transport: &str) {
    let space = open_space(transport);
    let sender = driver(&space, "Sender");
    space.destroy();
    assert_eq!(
        space
            .add(&AgentSpec::new("Receiver", "Receiver"))
            .unwrap_err(),
        SpaceError::Destroyed
    );
    let error = sender.send(action("Anyone", "say", json!({}))).unwrap_err();
    assert!(error.to_string().contains("destroyed"), "{error}");
    assert!(space.agent_ids().is_empty());
    space.destroy();
}

fn duplicate_id_is_refused(transport: &str) {
    let space = open_space(transport);
    receiver(&space, "Receiver", json!({}));
    let error = space
        .add(&AgentSpec::new("Calculator", "Receiver"))
        .unwrap_err();
    assert_eq!(error.to_string(), "Agent 'Receiver' already exists");
    assert!(space
        .add_foreground(&AgentSpec::untyped("Receiver"))
        .is_err());
    let sender = driver(&space, "Sender");
    assert_eq!(
        ask(&sender, "Receiver", "value").unwrap(),
        42,
        "the first one works"
    );
}

fn unknown_type_lists_known_types(transport: &str) {
    let space = open_space(transport);
    let error = space
        .add(&AgentSpec::new("Nope", "x"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown agent type \"Nope\""), "{error}");
    assert!(
        error.contains("Calculator") && error.contains("Receiver"),
        "{error}"
    );
    let error = space.add(&AgentSpec::untyped("y")).unwrap_err();
    assert_eq!(error, SpaceError::MissingType("y".into()));
}

/// A message to an id no agent holds is a dead letter: it comes back to its sender as an
/// `UndeliverableError` reply (from that id), so a request fails at once rather than at
/// its timeout, a send is answered like any message, an agent's own send reaches its
/// `handle_action_error`; and the space counts them.
fn message_to_unknown_agent_comes_back_as_an_error(transport: &str) {
    let space = open_space(transport);
    let sender = driver(&space, "Sender");
    let error = sender
        .request(
            action("Nobody", "value", json!({})),
            Duration::from_secs(3600),
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "UndeliverableError: no agent \"Nobody\" in the space"
    );
    let id = sender.send(action("Nobody", "say", json!({}))).unwrap();
    let reply = wait_for_received(&sender, |m| m.meta.parent_id.as_deref() == Some(&id));
    assert_eq!(reply.from, "Nobody");
    assert_eq!(reply.reply().unwrap().unwrap_err(), error);

    let observer = driver(&space, "Observer");
    space
        .add(&AgentSpec::new("Recorder", "Recorder").with_args(json!({"observer": "Observer"})))
        .unwrap();
    let poke = json!({"to": "Nobody", "action": "value"});
    sender.send(action("Recorder", "poke", poke)).unwrap();
    let told = "handle_action_error UndeliverableError: no agent \"Nobody\" in the space";
    wait_for_received(&observer, |m| m.action.args["content"] == told);
    assert_eq!(space.dead_letters(), 3);

    // Interleaved with messages that arrive, every dead letter comes back as itself (on
    // amqp, the broker's returns ride on whichever confirm comes next).
    receiver(&space, "Receiver", json!({}));
    let burst = driver(&space, "Burst");
    for _ in 0..100 {
        burst.send(action("Nobody", "say", json!({}))).unwrap();
        burst.send(action("Receiver", "ignore", json!({}))).unwrap();
    }
    burst.wait_for(PATIENCE, |got| got.len() >= 100);
    let errors = burst.received();
    assert_eq!(errors.len(), 100);
    assert!(
        errors
            .iter()
            .all(|m| m.from == "Nobody" && m.reply().unwrap().unwrap_err() == error),
        "{errors:#?}"
    );
    // The Receiver got its messages: it answers after them, and nothing else came back.
    assert_eq!(ask(&burst, "Receiver", "value").unwrap(), 42);
    assert_eq!(burst.received().len(), 101);
}

/// A request that closes a cycle (an agent waiting in a request is asked, through the
/// chain, to answer another) fails at once with the cycle named, not at its timeout (a
/// minute here, which would end it as a `TimeoutError`): through two agents, three, and
/// an agent asking itself. A chain without a cycle answers.
fn request_cycles_fail_at_once(transport: &str) {
    let space = open_space(transport);
    for id in ["A", "B", "C"] {
        receiver(&space, id, json!({}));
    }
    let asker = driver(&space, "Asker");
    let chain = |to: &str, path: &[&str]| {
        let message = action(to, "chain", json!({ "path": path }));
        asker.request(message, LOAD_PATIENCE)
    };
    assert_eq!(chain("A", &["B", "C"]).unwrap(), 42);
    assert_eq!(
        chain("A", &["B", "A"]).unwrap_err().to_string(),
        "DeadlockError: request cycle A -> B -> A (A is waiting for B)"
    );
    assert_eq!(
        chain("A", &["B", "C", "A"]).unwrap_err().to_string(),
        "DeadlockError: request cycle A -> B -> C -> A (A is waiting for B)"
    );
    assert_eq!(
        chain("A", &["A"]).unwrap_err().to_string(),
        "DeadlockError: request cycle A -> A (A is waiting for itself)"
    );
    assert_eq!(ask(&asker, "A", "value").unwrap(), 42, "A is free again");
}

/// A concurrent agent (`Parallel`, four messages at once, from the test plugin) runs its
/// messages side by side: four `meet(4)` all meet (each waits for the other three), and
/// eight `hold`s sent at once never make more than four inside. Its callbacks keep their
/// meaning (`after_add` once, `before_action`/`after_action` around every action) and
/// `help` describes it as any agent.
fn concurrent_agent_runs_messages_side_by_side(transport: &str) {
    let space = open_space(transport);
    space.add(&AgentSpec::new("Parallel", "P")).unwrap();
    let asker = driver(&space, "Asker");
    for _ in 0..4 {
        asker.send(action("P", "meet", json!({"n": 4}))).unwrap();
    }
    for _ in 0..8 {
        asker
            .send(action("P", "hold", json!({"seconds": 0.05})))
            .unwrap();
    }
    assert!(asker.wait_for(PATIENCE, |got| got.len() >= 12));
    let values: Vec<Value> = asker
        .received()
        .iter()
        .map(|m| m.reply().unwrap().unwrap())
        .collect();
    assert_eq!(
        values.iter().filter(|v| **v == json!(true)).count(),
        4,
        "{values:?}"
    );
    assert_eq!(
        values.iter().filter(|v| **v == "held").count(),
        8,
        "{values:?}"
    );
    assert_eq!(ask(&asker, "P", "peak").unwrap(), 4);
    let help = ask(&asker, "P", "help").unwrap();
    let mut actions: Vec<&String> = help.as_object().unwrap().keys().collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "callbacks",
            "chain",
            "hold",
            "meet",
            "peak",
            "ping",
            "value"
        ]
    );
    assert_eq!(
        ask(&asker, "P", "callbacks").unwrap(),
        json!({"after_add": 1, "before_action": 14, "after_action": 13})
    );
}

/// A request cycle through a concurrent agent answers: it handles the request that
/// closes the cycle on a free handle while another waits. Once all four of its handles
/// wait in one chain, the next request of the chain fails at once, as for any agent.
fn request_cycles_through_a_concurrent_agent_answer(transport: &str) {
    let space = open_space(transport);
    space.add(&AgentSpec::new("Parallel", "P")).unwrap();
    receiver(&space, "A", json!({}));
    let asker = driver(&space, "Asker");
    let chain = |to: &str, path: &[&str]| {
        let message = action(to, "chain", json!({ "path": path }));
        asker.request(message, LOAD_PATIENCE)
    };
    assert_eq!(chain("P", &["A", "P"]).unwrap(), 42);
    assert_eq!(chain("P", &["P"]).unwrap(), 42);
    assert_eq!(chain("P", &["P", "P", "P"]).unwrap(), 42);
    assert_eq!(
        chain("A", &["P", "A"]).unwrap_err().to_string(),
        "DeadlockError: request cycle A -> P -> A (A is waiting for P)"
    );
    assert_eq!(
        chain("P", &["P", "P", "P", "P"]).unwrap_err().to_string(),
        "DeadlockError: request cycle P -> P -> P -> P -> P (P is waiting for itself)"
    );
    assert_eq!(ask(&asker, "P", "value").unwrap(), 42, "P is free again");
}

/// An agent stuck in an action does not hold `remove` (or Ctrl-C) hostage.
#[test]
fn busy_agent_is_left_behind_after_the_stop_timeout() {
    let space = open_space("local");
    receiver(&space, "Sleeper", json!({}));
    let sender = driver(&space, "Sender");
    sender
        .send(action("Sleeper", "sleep", json!({"seconds": 3})))
        .unwrap();
    space.set_stop_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    space.remove("Sleeper").unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(space.agent_ids().iter().all(|id| id != "Sleeper"));
}

/// Runs `add` on a thread of its own; answers a flag set once it returned.
fn adding_in_the_background(add: impl FnOnce() + Send + 'static) -> Arc<AtomicBool> {
    let returned = Arc::new(AtomicBool::new(false));
    let flag = returned.clone();
    std::thread::spawn(move || {
        add();
        flag.store(true, Ordering::Release);
    });
    returned
}

/// A slow agent constructor holds up only its own `add`: another agent joins, and
/// another leaves, while it runs.
#[test]
fn a_slow_constructor_does_not_hold_up_other_adds_and_removes() {
    let space = Arc::new(open_space("local"));
    receiver(&space, "Leaving", json!({}));
    let joining = space.clone();
    let slow_returned = adding_in_the_background(move || {
        let spec = AgentSpec::new("Receiver", "Slow").with_args(json!({"start_delay": 3.0}));
        joining.add(&spec).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300)); // the slow constructor is running
    assert!(
        !space.agent_ids().contains(&"Slow".to_owned()),
        "not in the space yet"
    );
    assert!(matches!(
        space.add(&AgentSpec::new("Receiver", "Slow")),
        Err(SpaceError::DuplicateId(_))
    ));
    receiver(&space, "Quick", json!({}));
    space.remove("Leaving").unwrap();
    assert!(
        !slow_returned.load(Ordering::Acquire),
        "the quick add and the remove did not wait for the slow constructor"
    );
    assert_eq!(ask(&driver(&space, "Asker"), "Quick", "value").unwrap(), 42);
    while !slow_returned.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ask(&driver(&space, "Asker2"), "Slow", "value").unwrap(), 42);
}

/// A delivery waiting for room in a full mailbox (from a thread that is no agent's) does
/// not hold the local transport's lock: agents can still be added meanwhile.
#[test]
fn a_delivery_waiting_for_room_does_not_hold_up_adds() {
    let space = Arc::new(open_space("local"));
    receiver(&space, "Sleeper", json!({}));
    let flooder = driver(&space, "Flooder");
    flooder
        .send(action("Sleeper", "sleep", json!({"seconds": 3})))
        .unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let flood_done = adding_in_the_background(move || {
        for _ in 0..MAILBOX_LIMIT + 10 {
            flooder
                .send(action("Sleeper", "ignore", json!({})))
                .unwrap();
            counter.fetch_add(1, Ordering::Release);
        }
    });
    // Wait until the flood stalls at the full mailbox.
    let mut last = usize::MAX;
    while sent.load(Ordering::Acquire) != last {
        last = sent.load(Ordering::Acquire);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        last, MAILBOX_LIMIT,
        "the mailbox is full and the flood waits"
    );
    // (Holding the lock, the waiting flood once deadlocked the add: the sleeper's reply
    // needed the lock too.)
    let joining = space.clone();
    let added = adding_in_the_background(move || receiver(&joining, "Newcomer", json!({})));
    let deadline = std::time::Instant::now() + PATIENCE;
    while !added.load(Ordering::Acquire) {
        assert!(
            std::time::Instant::now() < deadline,
            "the add waited for the flood"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        sent.load(Ordering::Acquire),
        last,
        "the add did not wait for the sleeper to make room"
    );
    assert!(!flood_done.load(Ordering::Acquire));
}

/// Leaving the space's scope destroys it: every agent runs `before_remove`.
#[test]
fn dropping_the_space_removes_every_agent() {
    let space = open_space("local");
    let observer = driver(&space, "Observer");
    for id in ["First", "Second"] {
        let spec = AgentSpec::new("Recorder", id).with_args(json!({"observer": "Observer"}));
        space.add(&spec).unwrap();
    }
    drop(space);
    let goodbyes = observer
        .received()
        .iter()
        .filter(|m| m.action.args["content"] == "before_remove")
        .map(|m| m.from.clone())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(goodbyes, ["First".to_owned(), "Second".to_owned()].into());
    assert!(observer.send(action("First", "work", json!({}))).is_err());
}

/// Many requesters at once, many agents, broadcasts fanning out: every reply reaches the
/// request it answers.
#[test]
fn concurrent_requests_and_broadcast_fan_out() {
    let space = open_space("local");
    for n in 0..20 {
        receiver(&space, &format!("Receiver{n}"), json!({}));
    }
    let listeners: Vec<_> = (0..20)
        .map(|n| driver(&space, &format!("Listener{n}")))
        .collect();
    std::thread::scope(|scope| {
        for n in 0..8 {
            let space = &space;
            scope.spawn(move || {
                let me = driver(space, &format!("Requester{n}"));
                for i in 0..200 {
                    let to = format!("Receiver{}", (n + i) % 20);
                    let sum = me.request(action(&to, "add", json!({"a": n, "b": i})), PATIENCE);
                    assert_eq!(sum.unwrap(), f64::from(n + i));
                }
                me.send(action("*", "say", json!({"content": n}))).unwrap();
            });
        }
    });
    for listener in &listeners {
        assert!(
            listener.wait_for(PATIENCE, |got| got.len() == 8),
            "{}",
            listener.id()
        );
    }
}
