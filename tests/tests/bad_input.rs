//! Bad input of every kind gets a clear error, and the rest of the system keeps running.

use agency_loader::{OpenError, Plugins};
use agency_runtime::AgentSpec;
use std::sync::Arc;

use agency_sdk::transport::{Inbound, TransportError, TransportSpace};
use agency_tests::{
    action, ask, assert_nothing_else_received, driver, for_each_transport, foreign_library,
    library_name, library_path, open_space, open_space_with_wire, plugin_of, plugins_folder_with,
    scratch_dir, space_options, PATIENCE,
};
use serde_json::{json, Value};

for_each_transport!(
    malformed_bodies_are_dropped,
    wrong_argument_types_are_errors,
    panicking_action_is_an_error,
    panicking_callbacks_are_contained,
    failing_constructors_are_errors,
    duplicate_attach_is_refused_by_the_transport_too,
);

fn malformed_bodies_are_dropped(transport: &str) {
    let (space, wire) = open_space_with_wire(transport);
    space.add(&AgentSpec::new("Receiver", "Receiver")).unwrap();
    let sender = driver(&space, "Sender");
    let bodies = [
        "not json at all".to_owned(),
        "{\"truncated\": ".to_owned(),
        "[1, 2, 3]".to_owned(),
        json!({"meta": {"id": "1"}, "from": "Sender", "to": "Receiver"}).to_string(),
        json!({"meta": {"id": "2"}, "from": "Sender", "to": "Receiver", "action": {"name": "value"}, "extra": true}).to_string(),
        json!({"meta": {}, "from": "Sender", "to": "Receiver", "action": {"name": "value"}}).to_string(),
        json!({"meta": {"id": "3"}, "from": "Sender", "to": "Someone.else", "action": {"name": "value"}}).to_string(),
        json!({"meta": {"id": "4"}, "from": "Sender", "to": "Receiver", "action": {"name": "value", "args": [1]}}).to_string(),
    ];
    for body in &bodies {
        wire.publish("Receiver", body).unwrap();
    }
    assert_nothing_else_received(&sender, "Receiver");
}

fn wrong_argument_types_are_errors(transport: &str) {
    let space = open_space(transport);
    space
        .add(&AgentSpec::new("Calculator", "Calculator"))
        .unwrap();
    let sender = driver(&space, "Sender");
    let cases = [
        (
            json!({"a": "x", "b": 2}),
            "TypeError: argument \"a\" of add() must be number, got string \"x\"",
        ),
        (
            json!({"a": 1}),
            "TypeError: add() missing argument \"b\" (number)",
        ),
        (
            json!({"a": 1, "b": 2, "c": 3}),
            "TypeError: add() got an unexpected argument \"c\"",
        ),
        (
            json!({"a": [1], "b": 2}),
            "TypeError: argument \"a\" of add() must be number, got array",
        ),
    ];
    for (args, expected) in cases {
        let error = sender
            .request(action("Calculator", "add", args.clone()), PATIENCE)
            .unwrap_err();
        assert_eq!(error.to_string(), expected, "{args}");
    }
    // Of the right JSON type but wrong inside: serde's reason is kept.
    space.add(&AgentSpec::new("Receiver", "Receiver")).unwrap();
    let norm = |p: Value| {
        let message = action("Receiver", "norm", json!({ "p": p }));
        sender.request(message, PATIENCE)
    };
    assert_eq!(norm(json!({"x": 3, "y": 4})).unwrap(), 5.0);
    assert_eq!(
        norm(json!({"x": 3})).unwrap_err().to_string(),
        "TypeError: argument \"p\" of norm() is not a valid object: missing field `y`"
    );
    assert_eq!(
        norm(json!(3)).unwrap_err().to_string(),
        "TypeError: argument \"p\" of norm() must be object, got number 3"
    );
    let sum = action("Calculator", "sum", json!({"numbers": [1, "two"]}));
    assert_eq!(
        sender.request(sum, PATIENCE).unwrap_err().to_string(),
        "TypeError: argument \"numbers\" of sum() is not a valid array: invalid type: string \"two\", expected f64"
    );
    let divide = action("Calculator", "divide", json!({"a": 1, "b": 0}));
    assert_eq!(
        sender.request(divide, PATIENCE).unwrap_err().to_string(),
        "ZeroDivisionError: division by zero"
    );
    assert_eq!(
        sender
            .request(
                action("Calculator", "add", json!({"a": 1, "b": 2})),
                PATIENCE
            )
            .unwrap(),
        3.0
    );
}

/// A panic in `after_add`, `before_action` or `request_permission` is logged; the agent
/// keeps answering, and a permission that panicked is a refusal.
fn panicking_callbacks_are_contained(transport: &str) {
    let space = open_space(transport);
    space.add(&AgentSpec::new("Touchy", "Touchy")).unwrap();
    let sender = driver(&space, "Sender");
    assert_eq!(ask(&sender, "Touchy", "value").unwrap(), 42);
    let refused = ask(&sender, "Touchy", "guarded").unwrap_err();
    assert!(
        refused.to_string().starts_with("PermissionError"),
        "{refused}"
    );
    assert_eq!(ask(&sender, "Touchy", "value").unwrap(), 42);
    space.destroy();
}

fn panicking_action_is_an_error(transport: &str) {
    let space = open_space(transport);
    space.add(&AgentSpec::new("Receiver", "Receiver")).unwrap();
    space
        .add(&AgentSpec::new("Calculator", "Calculator"))
        .unwrap();
    let sender = driver(&space, "Sender");
    for _ in 0..3 {
        let error = ask(&sender, "Receiver", "explode").unwrap_err();
        assert_eq!(error.to_string(), "Panic: boom");
    }
    assert_eq!(
        ask(&sender, "Receiver", "value").unwrap(),
        42,
        "the agent carries on"
    );
    let sum = action("Calculator", "add", json!({"a": 1, "b": 1}));
    assert_eq!(
        sender.request(sum, PATIENCE).unwrap(),
        2.0,
        "other agents carry on"
    );
}

fn failing_constructors_are_errors(transport: &str) {
    let space = open_space(transport);
    let failed = space
        .add(&AgentSpec::new("Fragile", "Fragile"))
        .unwrap_err();
    assert_eq!(
        failed.to_string(),
        "agent 'Fragile' of type Fragile could not be created: ValueError: cannot be built"
    );
    let panicked = space
        .add(&AgentSpec::new("Fragile", "Fragile").with_args(json!({"panic": true})))
        .unwrap_err();
    assert!(
        panicked
            .to_string()
            .ends_with("Panic: constructor panicked on purpose"),
        "{panicked}"
    );
    let bad_args = space
        .add(&AgentSpec::new("Fragile", "Fragile").with_args(json!({"panic": "yes"})))
        .unwrap_err();
    assert!(
        bad_args
            .to_string()
            .contains("invalid args for agent \"Fragile\""),
        "{bad_args}"
    );
    assert!(space.agent_ids().is_empty(), "no half-added agent");
    space.add(&AgentSpec::new("Receiver", "Fragile")).unwrap();
    let sender = driver(&space, "Sender");
    assert_eq!(
        ask(&sender, "Fragile", "value").unwrap(),
        42,
        "the id was not taken"
    );
}

#[test]
fn unknown_transport_lists_the_known_ones() {
    let error = agency_tests::plugins()
        .open_space("carrier-pigeon", &json!({}))
        .err()
        .unwrap();
    assert!(matches!(error, OpenError::UnknownTransport { .. }));
    assert_eq!(
        error.to_string(),
        "unknown transport \"carrier-pigeon\"; transports found: amqp, local"
    );
}

#[test]
fn transport_refuses_bad_options() {
    let error = agency_tests::plugins()
        .open_space("local", &json!(["not", "options"]))
        .err()
        .unwrap();
    assert_eq!(error.to_string(), "transport \"local\" could not open a space: local transport configuration must be a JSON object");
}

/// The transport itself refuses an id attached twice: the space refuses first, but a
/// transport must hold the rule on its own (another space, another process).
fn duplicate_attach_is_refused_by_the_transport_too(transport: &str) {
    struct Nowhere;
    impl Inbound for Nowhere {
        fn deliver(&self, _body: &str) {}
    }
    let transport = agency_tests::plugins()
        .open_transport(plugin_of(transport), &space_options(transport))
        .unwrap();
    transport.attach("Twice", Arc::new(Nowhere)).unwrap();
    let error = transport.attach("Twice", Arc::new(Nowhere)).unwrap_err();
    assert!(
        matches!(&error, TransportError::DuplicateId { id, .. } if id == "Twice"),
        "{error}"
    );
    assert!(error
        .to_string()
        .starts_with("Agent 'Twice' already exists"));
    transport.detach("Twice");
    transport.attach("Twice", Arc::new(Nowhere)).unwrap();
    transport.close();
}

/// Files that are not usable plugins are refused one by one, with a reason, while the
/// good plugins in the same folder load.
#[test]
fn bad_plugin_files_are_refused_and_the_rest_load() {
    let dir = plugins_folder_with("bad-plugins", &["agency_plugin_calculator"]);
    let good = library_path("agency_plugin_calculator");
    std::fs::write(dir.join(library_name("text")), "this is not a library").unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(
        dir.join(library_name("truncated")),
        &bytes[..bytes.len() / 3],
    )
    .unwrap();
    std::fs::write(dir.join(library_name("empty")), b"").unwrap();
    std::fs::write(dir.join("notes.txt"), "ignored: not a library name").unwrap();

    let plugins = Plugins::load_dir(&dir).unwrap();
    let loaded: Vec<_> = plugins
        .loaded()
        .iter()
        .map(|p| p.path.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(loaded, [good.file_name().unwrap()]);
    let reasons: Vec<String> = plugins.failures().iter().map(ToString::to_string).collect();
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    for reason in &reasons {
        assert!(reason.contains("not a loadable shared library"), "{reason}");
        assert_eq!(reason.lines().count(), 1, "one line: {reason}");
    }
    assert!(plugins.catalog().get("Calculator").is_some());
    assert!(Plugins::load_dir(&dir.join("missing"))
        .err()
        .unwrap()
        .to_string()
        .contains("cannot read the plugins folder"));
}

/// A shared library that is not an Agency plugin, and two plugins providing the same
/// agent type.
#[test]
fn foreign_libraries_and_duplicate_types_are_refused() {
    let dir = scratch_dir("foreign-plugins");
    let good = library_path("agency_plugin_calculator");
    agency_tests::link_or_copy(&good, &dir.join(library_name("a_calculator")));
    agency_tests::link_or_copy(&good, &dir.join(library_name("b_calculator_copy")));
    std::fs::copy(foreign_library(), dir.join(library_name("m"))).unwrap();
    let plugins = Plugins::load_dir(&dir).unwrap();
    assert_eq!(plugins.loaded().len(), 1);
    let reasons: Vec<String> = plugins.failures().iter().map(ToString::to_string).collect();
    assert!(
        reasons.iter().any(|r| r.contains("b_calculator_copy")
            && r.contains("agent type \"Calculator\" is already provided by")
            && r.contains("a_calculator")),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains(&library_name("m")) && r.contains("not an Agency plugin")),
        "{reasons:#?}"
    );
}
