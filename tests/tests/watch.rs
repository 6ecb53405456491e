//! Watching a space: `agency watch` beside the processes of an amqp space (copies from
//! the broker's firehose), and `agency run --watch` inside one host on `local`.

use std::process::Command;

use agency_tests::{
    broker::{broker, host_config, rabbitmqctl_in_vhost},
    plugins_dir,
    process::{agency, config, run_piped, text, Host, START_PATIENCE},
    unique_name,
};
use serde_json::Value;

/// `agency watch` with the test plugins and `config_text`, plus `extra` arguments.
fn watcher(config_text: &str, extra: &[&str]) -> Host {
    let config = config(config_text);
    let mut args = vec![
        "watch",
        "--plugins-dir",
        plugins_dir().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend(extra);
    Host::running(&mut agency(&args))
}

/// Ctrl-C: a watch ends cleanly, with 130.
fn interrupt(host: &Host) {
    let status = Command::new("kill")
        .args(["-INT", &host.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The short id a watch line shows for `meta.id`, read off a line `#abcdef12  from -> to`.
fn short_id_of(line: &str) -> &str {
    let start = line.find('#').expect("a message id") + 1;
    &line[start..start + 8]
}

#[test]
fn agency_watch_sees_a_request_and_its_reply_between_two_other_processes() {
    let exchange = unique_name("agency-test-watch");
    let id = |name: &str| format!("{name}-{exchange}");
    let (alice, bob, calc) = (id("alice"), id("bob"), id("calc"));
    let watch_config = host_config(&exchange, "unused", &[]);

    // Without the broker's firehose, the watch says how to turn it on.
    rabbitmqctl_in_vhost("trace_off", &[]);
    let refused = watcher(&watch_config, &[]);
    let vhost = agency_tests::broker::broker().vhost().to_owned();
    refused.stderr.wait_for_count(
        &format!("`rabbitmqctl trace_on -p {vhost}`"),
        1,
        START_PATIENCE,
    );
    refused.finish_with_code(1);

    rabbitmqctl_in_vhost("trace_on", &[]);
    let mut all = watcher(&watch_config, &[]);
    let json = watcher(&watch_config, &["--json", "--action", "add"]);
    // The header names the broker watched from (one node of a cluster).
    let header = format!(
        "watching the space on amqp (broker {}); Ctrl-C stops, /stats counts by agent",
        broker().address()
    );
    for watch in [&all, &json] {
        watch.stderr.wait_for_count(&header, 1, START_PATIENCE);
    }
    let mut a = Host::start(
        &host_config(&exchange, &alice, &[("Calculator", &calc)]),
        &[],
    );
    let mut b = Host::start(&host_config(&exchange, &bob, &[]), &[]);
    a.wait_until_started();
    b.wait_until_started();
    b.type_line(&format!("/{calc}.add a:2 b:3"));
    b.stdout.wait_for(&format!("{calc}: 5.0"));
    // Dead letters are still reported to their sender while a watch runs.
    b.type_line(&format!("/nobody-{exchange}.add a:1 b:1"));
    b.stderr.wait_for(&format!(
        "error: no agent \"nobody-{exchange}\" in the space"
    ));
    b.type_line("hello all");

    let seen = all
        .stdout
        .wait_for(&format!("{bob} -> *  say {{\"content\":\"hello all\"}}"));
    let request = seen
        .lines()
        .find(|line| line.contains(&format!("{bob} -> {calc}  add {{\"a\":2,\"b\":3}}")))
        .unwrap_or_else(|| panic!("no request:\n{seen}"));
    let reply = seen
        .lines()
        .find(|line| line.contains(&format!("{calc} -> {bob}  [response] 5.0  (re #")))
        .unwrap_or_else(|| panic!("no reply:\n{seen}"));
    assert!(
        reply.contains(&format!("(re #{}, ", short_id_of(request))),
        "the reply names its request:\n{seen}"
    );
    assert!(
        seen.contains(&format!("{bob} -> nobody-{exchange}  add")),
        "the dead letter is seen too:\n{seen}"
    );
    // Asked, the watch counts what it saw by agent: the calculator got the addition
    // and answered it.
    all.type_line("/stats");
    all.stdout.wait_for("messages watched, by agent");
    let stats = all.stdout.wait_for(&format!("  {calc} "));
    let row = stats
        .lines()
        .find(|line| line.trim_start().starts_with(&format!("{calc} ")))
        .unwrap_or_else(|| panic!("no row for {calc}:\n{stats}"));
    assert_eq!(
        row.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["1", "1", "0", "0"],
        "sent, received, errors, undeliverable: {row}"
    );

    let lines = json.stdout.wait_for("[response]");
    let messages: Vec<Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(messages.iter().all(|m| m["kind"] == "sent"), "{lines}");
    let names: Vec<&str> = messages
        .iter()
        .map(|m| m["message"]["action"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "[response]", "add"], "{lines}");

    for watch in [all, json] {
        interrupt(&watch);
        watch.finish_with_code(130);
    }
    rabbitmqctl_in_vhost("trace_off", &[]);
    a.finish();
    b.finish_with_code(1);
}

#[test]
fn agency_run_watch_shows_the_traffic_of_a_local_host() {
    let demo = "[[agents]]\ntype = \"Calculator\"\nid = \"Calculator\"\n";
    let output = run_piped(demo, &["--watch"], "/Calculator.add a:1 b:2\n/nobody.x\n");
    let stdout = text(&output.stdout);
    let request = stdout
        .lines()
        .find(|line| line.ends_with("User -> Calculator  add {\"a\":1,\"b\":2}"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let reply = format!(
        "Calculator -> User  [response] 3.0  (re #{}, ",
        short_id_of(request)
    );
    assert!(stdout.contains(&reply), "{stdout}");
    assert!(
        stdout.contains("User -> nobody  x {}  (undeliverable: no agent holds \"nobody\")"),
        "{stdout}"
    );
    assert!(stdout.contains("Calculator: 3.0"), "{stdout}");

    // Another process cannot watch a local space: it is told where to look instead.
    let refused = watcher(demo, &[]);
    refused
        .stderr
        .wait_for("with `agency run --watch` or `/watch` at its console");
    refused.finish_with_code(1);
}
