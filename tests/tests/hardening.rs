//! What a hostile peer, a refused id, a closed pipe or a strange file can do: each test
//! here reproduces one way in which the host once hung, leaked, lost data or printed what
//! it should not, against real processes, the real broker, real pipes and real files.

use std::{
    io::{Read, Write},
    process::Stdio,
    time::{Duration, Instant},
};

use agency_tests::{
    assert_lines,
    broker::{
        broker, close_connections_of, connections_of, host_config, publish_raw,
        rabbitmqctl_in_vhost, ready_in_broker,
    },
    plugins_dir,
    process::{
        agency, agency_run, config, finish_within, spawn_piped, start, text, Host, Screen,
        FINISH_PATIENCE,
    },
    scratch_dir, unique_name, LOAD_PATIENCE, PATIENCE, SETTLE_PATIENCE,
};

/// Runs `command` with no input, waiting up to `patience` for it to exit (killing it and
/// failing if it does not); answers its output.
fn output_within(command: &mut std::process::Command, patience: Duration) -> std::process::Output {
    let child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish_within(child, "", patience)
}

/// Waits up to `patience` for `child` to exit while its input stays open (so that what
/// ends it is not the end of its input, unlike [`finish_within`]); kills it and fails if
/// it does not.
fn exits_within(child: &mut std::process::Child, patience: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the process did not exit within {patience:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Item 1: the broker's refusal of a duplicate consumer closes one channel, not the
/// connection. The refusing process keeps its other agents and its console, the process
/// holding the id keeps reaching them, and no reconnection loop starts.
#[test]
fn a_refused_duplicate_id_leaves_the_rest_of_the_process_working() {
    let exchange = unique_name("agency-test-dup");
    let id = |name: &str| format!("{name}-{exchange}");
    let (calc, other) = (id("calc"), id("other"));
    let mut first = Host::start(
        &host_config(&exchange, &id("one"), &[("Receiver", &calc)]),
        &[],
    );
    first.type_line(&format!("/{calc}.value"));
    first.stdout.wait_for(&format!("{calc}: 42"));
    let mut second = Host::start(
        &host_config(
            &exchange,
            &id("two"),
            &[("Receiver", &other), ("Receiver", &calc)],
        ),
        &[],
    );
    second
        .stderr
        .wait_for(&format!("Agent '{calc}' already exists"));
    second.type_line(&format!("/{other}.value"));
    second.stdout.wait_for(&format!("{other}: 42"));
    second.type_line(&format!("/{calc}.value"));
    second.stdout.wait_for(&format!("{calc}: 42"));
    first.type_line(&format!("/{other}.value"));
    first.stdout.wait_for(&format!("{other}: 42"));
    assert_eq!(connections_of(second.pid()), 1, "one connection per space");
    let log = second.stderr.contents();
    assert!(!log.contains("reconnecting"), "{log}");
    second.finish();
    first.finish();
}

/// Item 1: two processes started at once claiming one id: exactly one wins, every time,
/// and the loser's other agent and console keep working.
#[test]
fn of_two_processes_started_at_once_with_one_id_exactly_one_wins() {
    for round in 0..20 {
        let exchange = unique_name("agency-test-race");
        let shared = format!("shared-{exchange}");
        let mut hosts: Vec<(String, Host)> = ["a", "b"]
            .iter()
            .map(|name| {
                let own = format!("{name}-{exchange}");
                let config = host_config(
                    &exchange,
                    &format!("console-{name}-{exchange}"),
                    &[("Receiver", &own), ("Receiver", &shared)],
                );
                (own, Host::start(&config, &[]))
            })
            .collect();
        for (own, host) in &mut hosts {
            host.type_line(&format!("/{own}.value"));
            host.stdout.wait_for(&format!("{own}: 42"));
            host.type_line(&format!("/{shared}.value"));
            host.stdout.wait_for(&format!("{shared}: 42"));
        }
        // Agents start before the console attaches: once the console has an answer, the
        // refusal, if any, has been written. The threads that collect each process's
        // error output may still lag behind its console's, so the refusal is waited for.
        // (Both refused would leave `shared` unanswered above.)
        let refusal = format!("Agent '{shared}' already exists");
        let deadline = Instant::now() + PATIENCE;
        let (losers, logs) = loop {
            let logs: Vec<String> = hosts
                .iter()
                .map(|(_, host)| host.stderr.contents())
                .collect();
            let losers = logs.iter().filter(|log| log.contains(&refusal)).count();
            if losers > 0 || Instant::now() > deadline {
                break (losers, logs.concat());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(!logs.contains("reconnecting"), "round {round}: {logs}");
        assert_eq!(
            losers, 1,
            "round {round}: exactly one process is refused; their logs:\n{logs}"
        );
        for (_, host) in hosts {
            host.finish();
        }
    }
}

/// A config with one `Receiver` agent with id `R`, on the local transport.
const ONE_RECEIVER: &str = "[[agents]]\ntype = \"Receiver\"\nid = \"R\"\n";

/// Item 3: ids, action names, arguments and values from another process reach the
/// terminal escaped: no escape sequence, no carriage return, no forged line, and the
/// permission question shows exactly what would run.
#[test]
fn remote_text_reaches_the_terminal_escaped() {
    let exchange = unique_name("agency-test-escape");
    let (console, host) = (format!("User-{exchange}"), format!("Host-{exchange}"));
    let mut operator = Host::start(&host_config(&exchange, &console, &[("Host", &host)]), &[]);
    operator.type_line(&format!("/{host}.help"));
    operator.stdout.wait_for(&format!("{host}: "));
    let forged_from = "\u{1b}[2K\rpermission: allow User -> Host.list_files {}? [y/N] \u{1b}[8m";
    let request = serde_json::json!({
        "meta": {"id": "forged-1"}, "from": forged_from, "to": host,
        "action": {"name": "run_command", "args": {"command": "touch /tmp/x\u{9b}31m", "args": []}},
    });
    let to_console = serde_json::json!({
        "meta": {"id": "forged-2"}, "from": "peer\nforged: a line of its own", "to": console,
        "action": {"name": "\u{1b}[2Jwipe", "args": {"k": "v\u{7f}"}},
    });
    let answer = serde_json::json!({
        "meta": {"id": "forged-3"}, "from": "peer", "to": console,
        "action": {"name": "[response]", "args": {"value": "one\nforged: two\r\u{1b}[1A"}},
    });
    publish_raw(&host, &[(request.to_string().into_bytes(), None)]);
    let screen = operator.stdout.wait_for(&format!("-> {host}.run_command"));
    assert!(screen.contains(&format!(
        "permission: allow \\u{{1b}}[2K\\u{{d}}permission: allow User -> Host.list_files {{}}? [y/N] \\u{{1b}}[8m -> {host}.run_command {{\"args\":[],\"command\":\"touch /tmp/x\\u{{9b}}31m\"}}? [y/N] "
    )), "the question shows the real action, escaped:\n{screen}");
    operator.type_line("n");
    operator.stdout.wait_for("refused ");
    publish_raw(
        &console,
        &[
            (to_console.to_string().into_bytes(), None),
            (answer.to_string().into_bytes(), None),
        ],
    );
    operator.stdout.wait_for("forged: two");
    let stdout = operator.finish();
    for raw in ['\u{1b}', '\r', '\u{9b}', '\u{7f}'] {
        assert!(
            !stdout.contains(raw),
            "{raw:?} reached the terminal:\n{stdout}"
        );
    }
    assert!(
        !stdout.lines().any(|line| line.starts_with("forged:")),
        "a remote line passed for the console's own:\n{stdout}"
    );
    assert_lines(
        &stdout,
        &[
            "peer\\u{a}forged: a line of its own: -> \\u{1b}[2Jwipe {\"k\":\"v\\u{7f}\"}",
            "peer: one",
            "  │ forged: two\\u{d}\\u{1b}[1A",
            "  └─",
        ],
    );
}

/// Item 4: a console whose output is closed ends cleanly and at once (as `rg | head`
/// does), without a panic.
#[test]
fn a_closed_output_ends_the_host_cleanly() {
    let mut child = start(plugins_dir(), ONE_RECEIVER, &[]);
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"/R.add a:1 b:1\n/R.add a:2 b:2\n")
        .unwrap();
    let status = exits_within(&mut child, FINISH_PATIENCE);
    drop(stdin);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Item 5: out-of-range durations are refused with a clear line, never a panic; a wait
/// longer than any deadline waits, and does not panic either.
#[test]
fn out_of_range_durations_are_refused_or_mean_forever() {
    let config = config(ONE_RECEIVER);
    let run = |wait: &str, input: &str| {
        let run = &mut agency_run(plugins_dir(), &config, &[&format!("--wait={wait}")]);
        finish_within(spawn_piped(run), input, FINISH_PATIENCE)
    };
    for wait in ["1e19", "-1", "NaN", "inf", "soon"] {
        let output = run(wait, "");
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "--wait {wait}");
        assert!(
            stderr.contains(&format!(
                "expected a number of seconds from 0 to 1000000000, got \"{wait}\""
            )),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let output = run("1e9", "/R.value\n");
    assert!(text(&output.stdout).contains("R: 42"));
    let space = agency_tests::open_space("local");
    let me = agency_tests::driver(&space, "me");
    me.send(agency_tests::action("me", "note", serde_json::json!({})))
        .unwrap();
    assert!(me.wait_for(Duration::MAX, |received| !received.is_empty()));
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Item 6: every entry of the plugins folder named like a library that is not one is
/// named with its reason, in one line, without blocking or reading gigabytes; the good
/// plugin next to them loads.
#[test]
fn strange_files_in_the_plugins_folder_are_each_named_and_refused() {
    let dir = scratch_dir("strange-plugins");
    let good = agency_tests::library_path("agency_test_agents");
    agency_tests::link_or_copy(&good, &dir.join(good.file_name().unwrap()));
    mkfifo(&dir.join("fifo.so"));
    std::fs::create_dir(dir.join("folder.so")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.so")).unwrap();
    std::os::unix::fs::symlink(dir.join("loop.so"), dir.join("loop.so")).unwrap();
    std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("dangling.so")).unwrap();
    let big = std::fs::File::create(dir.join("big.so")).unwrap();
    big.set_len(3 << 30).unwrap();
    let expected = [
        ("fifo.so", "is a FIFO (named pipe), not a regular file"),
        ("folder.so", "is a directory, not a regular file"),
        ("zero.so", "is a character device, not a regular file"),
        ("loop.so", "never reaches a file (a loop)"),
        ("dangling.so", "which does not exist"),
        (
            "big.so",
            "is 3221225472 bytes, over the limit of 536870912 bytes",
        ),
    ];
    let started = Instant::now();
    let listing = &mut agency(&["plugins", "--plugins-dir", dir.to_str().unwrap()]);
    let stdout = text(&output_within(listing, FINISH_PATIENCE).stdout);
    for (name, reason) in expected {
        let lines: Vec<&str> = stdout.lines().filter(|l| l.contains(name)).collect();
        assert_eq!(lines.len(), 1, "one line for {name}:\n{stdout}");
        assert!(lines[0].contains(reason), "{name}: {}", lines[0]);
    }
    assert!(stdout.contains("agent type Receiver"), "{stdout}");
    for (name, reason) in expected {
        let check = &mut agency(&["plugins", "check", dir.join(name).to_str().unwrap()]);
        let output = output_within(check, FINISH_PATIENCE);
        let stderr = text(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(reason),
            "{name}: {stderr}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// Item 7: a line of input that is not UTF-8 is reported and skipped; the lines after it
/// still run.
#[test]
fn a_line_that_is_not_utf8_is_reported_and_the_session_goes_on() {
    let child = start(plugins_dir(), ONE_RECEIVER, &[]);
    let input = b"/R.add a:1 b:1\n\xff\xfe bad\n/R.add a:2 b:2\n";
    let output = finish_within(child, input, FINISH_PATIENCE);
    assert_lines(&text(&output.stdout), &["R: 2.0", "R: 4.0"]);
    assert_lines(
        &text(&output.stderr),
        &["error: input line 2 is not UTF-8 text (invalid utf-8 sequence of 1 bytes from index 0); skipped"],
    );
    assert_eq!(output.status.code(), Some(1));
}

/// Item 8: a console whose output nobody reads does not pull the broker's backlog into
/// memory: its agent is bounded like every other, the broker keeps the rest, and
/// everything is printed once the output is read again.
#[test]
fn a_console_that_does_not_keep_up_leaves_the_backlog_at_the_broker() {
    let exchange = unique_name("agency-test-slow-console");
    let console = format!("console-{exchange}");
    let mut child = start(plugins_dir(), &host_config(&exchange, &console, &[]), &[]);
    let stderr = Screen::capture(child.stderr.take().unwrap());
    let space = open_amqp(&exchange);
    let sender = agency_tests::driver(&space, "Sender");
    // Wait for the console's queue, then flood it.
    let deadline = Instant::now() + PATIENCE;
    while ready_in_broker(&console).is_none() {
        assert!(Instant::now() < deadline, "{}", stderr.contents());
        std::thread::sleep(Duration::from_millis(50));
    }
    let count = 30_000;
    for n in 0..count {
        sender
            .send(agency_tests::action(
                &console,
                "note",
                serde_json::json!({"n": n}),
            ))
            .unwrap();
    }
    // The broker's count settles at the backlog (0 if the process took everything).
    let mut ready = ready_in_broker(&console).unwrap_or(0);
    let deadline = Instant::now() + SETTLE_PATIENCE;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = ready_in_broker(&console).unwrap_or(0);
        if (now == ready && now > 0) || Instant::now() > deadline {
            break;
        }
        ready = now;
    }
    assert!(
        ready >= 10_000,
        "the broker keeps what the console cannot print yet: {ready} ready"
    );
    let stdout = Screen::attach(&mut child);
    stdout.wait_for_count("Sender: -> note", count, LOAD_PATIENCE);
    assert!(stdout
        .contents()
        .contains(&format!("{{\"n\":{}}}", count - 1)));
    let _ = child.kill();
    let _ = child.wait();
}

/// Item 9: a config path that is a FIFO, a device or a huge file is refused at once in
/// one clear line.
#[test]
fn a_config_that_is_not_a_small_regular_file_is_refused() {
    let dir = scratch_dir("strange-config");
    mkfifo(&dir.join("fifo.toml"));
    let huge = dir.join("huge.toml");
    std::fs::write(&huge, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
    let cases = [
        (
            dir.join("fifo.toml"),
            "is a FIFO (named pipe), not a regular file",
        ),
        (
            "/dev/zero".into(),
            "is a character device, not a regular file",
        ),
        (huge, "over the limit of 1048576 bytes"),
        (dir.join("missing.toml"), "No such file or directory"),
    ];
    for (path, reason) in cases {
        let run = &mut agency_run(plugins_dir(), &path, &[]);
        let output = output_within(run, FINISH_PATIENCE);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{path:?}");
        let line = format!("error: config {}: ", path.display());
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&line) && l.contains(reason)),
            "{path:?}: {stderr}"
        );
    }
}

/// An `agency` process on the amqp transport, on an exchange of its own named after
/// `prefix`, logging with `rust_log`, started with `extra` arguments, with one `Receiver`
/// that has answered; and the Receiver's id (its queue's name too).
fn receiver_host(prefix: &str, rust_log: &str, extra: &[&str]) -> (Host, String) {
    let exchange = unique_name(prefix);
    let receiver = format!("R-{exchange}");
    let console = format!("console-{exchange}");
    let config = host_config(&exchange, &console, &[("Receiver", &receiver)]);
    let mut host = Host::start_logging(&config, rust_log, extra);
    host.type_line(&format!("/{receiver}.value"));
    host.stdout.wait_for(&format!("{receiver}: 42"));
    (host, receiver)
}

/// A space on the amqp transport on `exchange` (default queue names).
fn open_amqp(exchange: &str) -> agency_runtime::Space {
    agency_tests::plugins()
        .open_space(
            "amqp",
            &serde_json::json!({"url": broker().url(), "exchange": exchange}),
        )
        .expect("amqp space opens")
}

/// Item 2 and plugin log targets: with lapin's most verbose log on (which prints the
/// frames it sends, the login frame too), the password appears in no form; the lines
/// keep lapin's own target, so `RUST_LOG=lapin=trace` selects them.
#[test]
fn the_most_verbose_log_shows_lapin_by_its_target_and_never_the_password() {
    let exchange = unique_name("agency-test-trace");
    let console = format!("console-{exchange}");
    let config = config(&host_config(&exchange, &console, &[]));
    let output = agency_run(plugins_dir(), &config, &[])
        .env("RUST_LOG", "warn,lapin=trace")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let login = stderr
        .lines()
        .find(|line| line.contains("StartOk") && line.contains("response"))
        .unwrap_or_else(|| panic!("lapin's login frame is logged at trace:\n{stderr}"));
    assert!(login.contains("lapin::"), "under lapin's target: {login}");
    assert!(login.contains("source=libagency_transport_amqp"), "{login}");
    // The password is "guest" (so is the user name, hidden with it).
    for form in ["guest", "103, 117, 101, 115, 116"] {
        assert!(!stderr.contains(form), "{form:?} in the log");
    }
    assert!(login.contains("***"), "{login}");
}

/// Rough edge: a queue deleted on the broker (the consumer cancelled under a live
/// channel) is declared and consumed again at once, and said so.
#[test]
fn a_queue_deleted_on_the_broker_is_declared_and_consumed_again() {
    let (mut host, receiver) = receiver_host(
        "agency-test-deleted",
        "warn,agency_transport_amqp=info",
        &[],
    );
    rabbitmqctl_in_vhost("delete_queue", &[&receiver]);
    let log = host.stderr.wait_for("subscribing again");
    let line = log
        .lines()
        .find(|l| l.contains("subscribing again"))
        .unwrap();
    assert!(
        line.contains("agency_transport_amqp"),
        "under the plugin's own target: {line}"
    );
    host.stderr.wait_for("subscribed again");
    host.type_line(&format!("/{receiver}.add a:1 b:2"));
    host.stdout.wait_for(&format!("{receiver}: 3.0"));
    host.finish();
}

/// Rough edge: a message forged with another message's `message_id` does not make the
/// real one a "copy"; a true copy (same id, same body) is still dropped.
#[test]
fn a_forged_message_id_does_not_suppress_the_real_message() {
    let options = agency_tests::space_options("amqp");
    let space = agency_tests::plugins()
        .open_space("amqp", &options)
        .expect("amqp space opens");
    let target = agency_tests::driver(&space, "Target");
    let queue = format!("{}Target", options["queue_prefix"].as_str().unwrap());
    let note = |from: &str, n: u64| {
        serde_json::json!({"meta": {"id": format!("{from}-{n}")}, "from": from, "to": "Target",
            "action": {"name": "note", "args": {"n": n}}})
        .to_string()
        .into_bytes()
    };
    publish_raw(
        &queue,
        &[
            (note("mallory", 1), Some("seen-id")),
            (note("alice", 2), Some("seen-id")),
            (note("alice", 2), Some("seen-id")),
            (note("alice", 3), Some("other-id")),
        ],
    );
    agency_tests::wait_for_received(&target, |m| m.action.args["n"] == 3);
    let numbers: Vec<u64> = target
        .received()
        .iter()
        .map(|m| m.action.args["n"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3], "the real message arrived once");
}

/// Rough edge: ten thousand garbage bodies are counted, and only a handful of warnings
/// say so (each with the count so far), not megabytes of identical lines.
#[test]
fn a_flood_of_garbage_writes_a_handful_of_warnings() {
    // The answer comes after the garbage: on a machine busy with other tests, that can
    // take longer than the console's usual 2 s wait.
    let (mut host, receiver) = receiver_host("agency-test-garbage", "warn", &["--wait", "60"]);
    let garbage: Vec<(Vec<u8>, Option<&str>)> =
        (0..10_000).map(|_| (b"not json".to_vec(), None)).collect();
    publish_raw(&receiver, &garbage);
    // The agent handles its queue in order: once this is answered, the garbage was seen.
    host.type_line(&format!("/{receiver}.add a:2 b:2"));
    host.stdout
        .wait_for_count(&format!("{receiver}: 4.0"), 1, LOAD_PATIENCE);
    let log = host.stderr.wait_for("count=10000");
    let warnings = log
        .lines()
        .filter(|l| l.contains("dropped a message"))
        .count();
    assert_eq!(
        warnings, 13,
        "the first ten, then the 100th, 1,000th, 10,000th:\n{log}"
    );
    host.finish();
}

/// Rough edge: a process holds more agents than the broker allows channels on one
/// connection: it opens more connections (here the limit is lowered to 6 channels, so 4
/// agents a connection), and all of them come back after the broker closes every one.
#[test]
fn agents_beyond_the_brokers_channel_limit_get_more_connections() {
    let exchange = unique_name("agency-test-channels");
    let ids: Vec<String> = (0..20).map(|n| format!("R{n}-{exchange}")).collect();
    let agents: Vec<(&str, &str)> = ids.iter().map(|id| ("Receiver", id.as_str())).collect();
    let url = broker().url();
    let config = host_config(&exchange, &format!("console-{exchange}"), &agents)
        .replace(&url, &format!("{url}?channel_max=6"));
    let mut host = Host::start_logging(&config, "warn,agency_transport_amqp=info", &[]);
    let ask_all = |host: &mut Host, round: usize| {
        for id in &ids {
            host.type_line(&format!("/{id}.value"));
        }
        for id in &ids {
            // Generous: 20 agents on 6 connections start in a debug build on a busy machine.
            host.stdout
                .wait_for_count(&format!("{id}: 42"), round, LOAD_PATIENCE);
        }
    };
    ask_all(&mut host, 1);
    // 20 agents and the console, 4 to a connection.
    assert_eq!(connections_of(host.pid()), 6, "{}", host.stderr.contents());
    close_connections_of(host.pid());
    host.stderr.wait_for("reconnected to the AMQP broker");
    ask_all(&mut host, 2);
    assert_eq!(connections_of(host.pid()), 6, "{}", host.stderr.contents());
    host.finish();
}
