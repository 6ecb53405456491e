//! The `amqp` transport against the real RabbitMQ on 127.0.0.1:5672: faults on the line
//! and at the broker, spaces spanning several `agency` processes, a Python Agency agent in
//! the same space, bad bodies on the wire, and start-up errors. (The semantics suite runs
//! on `amqp` too, in `semantics.rs`.)

use std::time::Duration;

use agency_runtime::{AgentSpec, Space, MAILBOX_LIMIT};
use agency_sdk::transport::TransportError;
use agency_tests::{
    action, ask,
    broker::{
        broker, close_connections_to, connections_to, host_config, publish_raw,
        rabbitmqctl_in_vhost, ready_in_broker,
    },
    driver, plugins,
    process::{Host, START_PATIENCE},
    proxy::Proxy,
    python, space_options, unique_name, wait_for_received, with_options, BROKER_PATIENCE,
    SETTLE_PATIENCE,
};
use serde_json::{json, Value};

/// The length of the message streams the fault tests send.
const STREAM: u64 = 10_000;
/// How long a stream may take to arrive, reconnections included.
const STREAM_PATIENCE: Duration = Duration::from_secs(120);

/// Opens an `amqp` space with the test's own exchange and extra options.
///
/// `RUST_LOG=agency_runtime=debug` shows what the transport logs (reconnections).
fn open(options: &Value, extra: Value) -> Space {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    plugins()
        .open_space("amqp", &with_options(options, extra))
        .expect("amqp space opens")
}

/// Sends [`STREAM`] numbered messages from a `Sender` in `sending` to a `Receiver` in
/// `receiving`; `at_2000` runs once the receiver has 2,000 of them (half the stream still
/// to send), `at_6000` once it has 6,000. Checks each arrived exactly once, in order.
fn stream_survives(
    sending: &Space,
    receiving: &Space,
    at_2000: impl FnOnce(),
    at_6000: impl FnOnce(),
) {
    let receiver = driver(receiving, "Receiver");
    let sender = driver(sending, "Sender");
    let reach = |at_least: usize| {
        let arrived = receiver.wait_for(STREAM_PATIENCE, |received| received.len() >= at_least);
        assert!(
            arrived,
            "{at_least} messages never arrived: {} did",
            receiver.received().len()
        );
    };
    let send = |range: std::ops::Range<u64>| {
        for n in range {
            sender
                .send(action("Receiver", "count", json!({"n": n})))
                .expect("kept while disconnected");
        }
    };
    send(0..STREAM / 2);
    reach(2_000);
    at_2000();
    send(STREAM / 2..STREAM);
    sender.send(action("Receiver", "end", json!({}))).unwrap();
    reach(6_000);
    at_6000();
    let ended = receiver.wait_for(STREAM_PATIENCE, |received| {
        received.iter().any(|m| m.action.name == "end")
    });
    let received = receiver.received();
    assert!(
        ended,
        "the stream ended: {} messages arrived",
        received.len()
    );
    let numbers: Vec<u64> = received
        .iter()
        .filter(|m| m.action.name == "count")
        .map(|m| m.action.args["n"].as_u64().unwrap())
        .collect();
    let duplicates = numbers.len() as i64 - STREAM as i64;
    assert!(
        numbers == (0..STREAM).collect::<Vec<_>>(),
        "every message exactly once, in order: {} received ({duplicates:+} against {STREAM})",
        numbers.len()
    );
    assert_eq!(received.last().unwrap().action.name, "end");
}

/// Agents added from many threads at once (each add declares its queues outside the
/// transport's lock, so adds overlap) all join and answer, and fill exactly the
/// connections the broker's channel limit calls for (lowered to 6 channels here: 4 agents
/// a connection); after the broker closes them all, every agent comes back.
#[test]
fn agents_added_from_many_threads_at_once_all_join_and_answer() {
    let options = space_options("amqp");
    let exchange = options["exchange"].as_str().unwrap().to_owned();
    let url = format!("{}?channel_max=6", options["url"].as_str().unwrap());
    let space = open(&options, json!({ "url": url }));
    let ids: Vec<String> = (0..40).map(|n| format!("R{n}")).collect();
    std::thread::scope(|scope| {
        for chunk in ids.chunks(4) {
            let space = &space;
            scope.spawn(move || {
                for id in chunk {
                    space.add(&AgentSpec::new("Receiver", id)).unwrap();
                }
            });
        }
    });
    let asker = driver(&space, "Asker");
    let ask_all = || {
        for id in &ids {
            assert_eq!(ask(&asker, id, "value").unwrap(), 42, "{id}");
        }
    };
    ask_all();
    // 40 agents and the asker, 4 to a connection.
    assert_eq!(connections_to(&exchange), 11);
    close_connections_to(&exchange);
    let back = std::time::Instant::now();
    while connections_to(&exchange) < 11 && back.elapsed() < START_PATIENCE {
        std::thread::sleep(Duration::from_millis(100));
    }
    ask_all();
    assert_eq!(connections_to(&exchange), 11);
}

/// Agents added one after the other while the connection is cut three times under them
/// (a host starting while its broker goes away) are each added on the next connection:
/// none is refused, and all answer.
fn agents_added_across_cuts_all_join(transport: &str) {
    let options = space_options(transport);
    let line = Proxy::to_broker();
    let space = open(&options, json!({"url": line.amqp_url()}));
    let ids: Vec<String> = (0..60).map(|n| format!("R{n}")).collect();
    let added = std::sync::atomic::AtomicUsize::new(0);
    let (failures, cuts) = std::thread::scope(|scope| {
        let adding = scope.spawn(|| {
            let mut failures = Vec::new();
            for id in &ids {
                if let Err(error) = space.add(&AgentSpec::new("Receiver", id)) {
                    failures.push(format!("{id}: {error}"));
                }
                added.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            failures
        });
        let mut cuts = 0;
        for at in [10, 25, 40] {
            while added.load(std::sync::atomic::Ordering::Acquire) < at {
                std::thread::yield_now();
            }
            cuts += line.cut();
        }
        (adding.join().unwrap(), cuts)
    });
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        cuts >= 3,
        "the line was cut under the adds ({cuts} connections)"
    );
    let asker = driver(&space, "Asker");
    for id in &ids {
        assert_eq!(ask(&asker, id, "value").unwrap(), 42, "{id}");
    }
}

#[test]
fn agents_added_while_the_connection_is_cut_join_on_the_next_one() {
    agents_added_across_cuts_all_join("amqp");
}

#[test]
fn agents_added_to_a_host_queue_while_the_connection_is_cut_join_on_the_next_one() {
    agents_added_across_cuts_all_join("amqp-per-host");
}

#[test]
fn cutting_the_publisher_then_the_consumer_loses_and_duplicates_nothing() {
    let options = space_options("amqp");
    let (sender_line, receiver_line) = (Proxy::to_broker(), Proxy::to_broker());
    let receiving = open(&options, json!({"url": receiver_line.amqp_url()}));
    let sending = open(&options, json!({"url": sender_line.amqp_url()}));
    stream_survives(
        &sending,
        &receiving,
        || assert!(sender_line.cut() >= 1, "the publisher's connection was cut"),
        || {
            assert!(
                receiver_line.cut() >= 1,
                "the consumer's connection was cut"
            )
        },
    );
}

#[test]
fn a_broker_side_close_of_every_connection_is_survived() {
    let options = space_options("amqp");
    let receiving = open(&options, json!({}));
    let sending = open(&options, json!({}));
    let exchange = options["exchange"].as_str().unwrap().to_owned();
    let close_all = || close_connections_to(&exchange);
    stream_survives(&sending, &receiving, close_all, close_all);
}

/// The same two faults with the agents on host queues (`queue_per = "host"`): the host's
/// one consumer is restored with every agent's id and binding, and the stream still
/// arrives exactly once, in order.
#[test]
fn host_queues_lose_and_duplicate_nothing_across_cuts_and_closes() {
    let options = space_options("amqp-per-host");
    let receiver_line = Proxy::to_broker();
    let receiving = open(&options, json!({"url": receiver_line.amqp_url()}));
    let sending = open(&options, json!({}));
    let exchange = options["exchange"].as_str().unwrap().to_owned();
    stream_survives(
        &sending,
        &receiving,
        || {
            assert!(
                receiver_line.cut() >= 1,
                "the consumer's connection was cut"
            )
        },
        || close_connections_to(&exchange),
    );
}

/// On host queues, an id is held against every other process: another host queue, an
/// agent with queues of its own, either way; it is free again once removed. The host's
/// agents share one durable queue (bound once per id and once for broadcasts, and gone
/// once the space closes), and a broadcast reaches each of them once.
#[test]
fn a_host_queue_holds_its_ids_and_hands_each_agent_a_broadcast_once() {
    struct Nowhere;
    impl agency_sdk::transport::Inbound for Nowhere {
        fn deliver(&self, _body: &str) {}
    }
    let sink = || std::sync::Arc::new(Nowhere);
    let per_host = space_options("amqp-per-host");
    let per_agent = with_options(&per_host, json!({"queue_per": "agent"}));
    let transport = |options: &Value| plugins().open_transport("amqp", options).unwrap();
    let (first, second, own) = (
        transport(&per_host),
        transport(&per_host),
        transport(&per_agent),
    );
    first.attach("X", sink()).unwrap();
    for other in [&second, &own] {
        let error = other.attach("X", sink()).unwrap_err();
        assert!(
            matches!(&error, TransportError::DuplicateId { id, .. } if id == "X"),
            "{error}"
        );
    }
    own.attach("Y", sink()).unwrap();
    let error = first.attach("Y", sink()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("Agent 'Y' already exists: another process holds its queue"),
        "{error}"
    );
    first.detach("X");
    second.attach("X", sink()).unwrap();
    for space in [first, second, own] {
        space.close();
    }

    let per_host = space_options("amqp-per-host");
    let space = open(&per_host, json!({}));
    let ids: Vec<String> = (0..20).map(|n| format!("A{n}")).collect();
    let agents: Vec<_> = ids.iter().map(|id| driver(&space, id)).collect();
    let prefix = per_host["queue_prefix"].as_str().unwrap();
    let durable = || {
        let listing = rabbitmqctl_in_vhost(
            "list_queues",
            &["-q", "--no-table-headers", "name", "durable"],
        );
        listing
            .lines()
            .filter(|line| line.starts_with(prefix) && line.ends_with("\ttrue"))
            .map(|line| line.split('\t').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let queues = durable();
    assert_eq!(
        queues.len(),
        1,
        "one durable queue for the host: {queues:?}"
    );
    let bindings = rabbitmqctl_in_vhost(
        "list_bindings",
        &[
            "-q",
            "--no-table-headers",
            "destination_name",
            "routing_key",
        ],
    );
    let keys: Vec<&str> = bindings
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("{}\t", queues[0])))
        .filter(|key| *key != queues[0]) // the default exchange's binding
        .collect();
    assert_eq!(keys.len(), ids.len() + 1, "{keys:?}");
    assert!(
        keys.contains(&"__broadcast__") && keys.contains(&"A7"),
        "{keys:?}"
    );
    // A copy would be in the host queue before the next broadcast: one note each.
    agents[0].send(action("*", "note", json!({}))).unwrap();
    agents[0].send(action("*", "end", json!({}))).unwrap();
    for agent in &agents {
        wait_for_received(agent, |m| m.action.name == "end");
        let received = agent.received();
        let notes = received.iter().filter(|m| m.action.name == "note");
        assert_eq!(notes.count(), 1, "{received:#?}");
    }
    drop(agents);
    space.destroy();
    assert_eq!(
        durable(),
        Vec::<String>::new(),
        "the host queue goes with the space"
    );
}

#[test]
fn messages_sent_while_disconnected_are_kept_up_to_the_bound_then_delivered() {
    let options = space_options("amqp");
    let line = Proxy::to_broker();
    let receiving = open(&options, json!({}));
    let sending = open(
        &options,
        json!({"url": line.amqp_url(), "outbox_capacity": 50}),
    );
    let receiver = driver(&receiving, "Receiver");
    let sender = driver(&sending, "Sender");
    line.set_down(true);
    let kept: Vec<String> = (0..50)
        .map(|n| {
            sender
                .send(action("Receiver", "count", json!({"n": n})))
                .unwrap()
        })
        .collect();
    let error = sender
        .send(action("Receiver", "count", json!({"n": 50})))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the amqp outbox is full: 50 messages")
            && error.to_string().contains("(reconnecting)"),
        "{error}"
    );
    line.set_down(false);
    assert!(
        receiver.wait_for(STREAM_PATIENCE, |received| received.len() == 50),
        "the 50 kept messages arrive after reconnection"
    );
    let ids: Vec<String> = receiver.received().into_iter().map(|m| m.meta.id).collect();
    assert_eq!(ids, kept);
}

/// Two `agency` processes on one exchange form one space. Queue names are the default
/// (Python Agency's), so the ids are unique to this run.
#[test]
fn two_host_processes_form_one_space() {
    let exchange = unique_name("agency-test-hosts");
    let id = |name: &str| format!("{name}-{exchange}");
    let (alice, bob, calc, chat_a, chat_b) =
        (id("alice"), id("bob"), id("calc"), id("chatA"), id("chatB"));
    let mut a = Host::start(
        &host_config(
            &exchange,
            &alice,
            &[("Calculator", &calc), ("Chat", &chat_a)],
        ),
        &[],
    );
    a.type_line(&format!("/{calc}.add a:0 b:0"));
    a.stdout.wait_for(&format!("{calc}: 0.0"));
    let mut b = Host::start(&host_config(&exchange, &bob, &[("Chat", &chat_b)]), &[]);
    b.type_line(&format!("/{calc}.add a:2 b:3"));
    b.stdout.wait_for(&format!("{calc}: 5.0"));
    a.type_line(&format!("/{chat_b}.say content:\"hi\""));
    a.stdout
        .wait_for(&format!("{chat_b}: Hello, {alice}! I am {chat_b}."));
    b.type_line("hello all");
    for chat in [&chat_a, &chat_b] {
        b.stdout
            .wait_for(&format!("{chat}: Hello, {bob}! I am {chat}."));
    }

    // A third process that takes an id the first one holds is refused; the first goes on.
    let c = Host::start(
        &host_config(&exchange, &id("carol"), &[("Chat", &chat_a)]),
        &[],
    );
    c.stderr.wait_for(&format!(
        "Agent '{chat_a}' already exists: another process consumes its queue \"{chat_a}\""
    ));
    drop(c);
    b.type_line(&format!("/{chat_a}.say content:\"hey\""));
    b.stdout
        .wait_for(&format!("{chat_a}: Hello, {bob}! I am {chat_a}."));
    let logs = [a.stderr.clone(), b.stderr.clone()];
    a.finish();
    b.finish();
    for log in logs {
        let log = log.contents();
        assert!(!log.contains("ERROR"), "a clean exit logs no error:\n{log}");
    }
}

#[test]
fn bad_bodies_on_the_wire_are_logged_and_dropped() {
    let exchange = unique_name("agency-test-wire");
    let config = host_config(&exchange, "console", &[("Receiver", "Receiver")]).replace(
        "[[agents]]",
        &format!("queue_prefix = \"{exchange}.\"\nmax_message_bytes = 4096\n[[agents]]"),
    );
    let mut host = Host::start(&config, &[]);
    host.type_line("/Receiver.value");
    host.stdout.wait_for("Receiver: 42");
    let schema_violation =
        json!({"meta": {"id": "1"}, "from": "x", "to": "Receiver", "action": {"name": 7}});
    publish_raw(
        &format!("{exchange}.Receiver"),
        &[
            (b"not json".to_vec(), None),
            (schema_violation.to_string().into_bytes(), None),
            (vec![b' '; 5000], None),
            (vec![0xff, 0xfe, b'{'], None),
        ],
    );
    host.stderr
        .wait_for("body of 5000 bytes exceeds max_message_bytes (4096)");
    host.stderr.wait_for("body is not UTF-8 text");
    host.stderr
        .wait_for("invalid message: expected ident at line 1 column 2");
    host.stderr
        .wait_for("invalid type: integer `7`, expected a string");
    let options = json!({"url": broker().url(), "exchange": exchange, "queue_prefix": format!("{exchange}.")});
    let space = open(&options, json!({}));
    let asker = driver(&space, "Asker");
    // A new space's first request declares and binds its queues on the way: on a machine
    // the whole suite loads, that may take longer than PATIENCE.
    let answer = asker.request(action("Receiver", "value", json!({})), START_PATIENCE);
    assert_eq!(answer.unwrap(), 42, "still working");
    host.finish();
}

#[test]
fn start_up_errors_name_what_failed_and_never_the_password() {
    let options = space_options("amqp");
    // The broker's address comes from the parts, not from the test's URL.
    let mut parts = options.clone();
    parts.as_object_mut().unwrap().remove("url");
    let error = |extra: Value| {
        plugins()
            .open_space("amqp", &with_options(&parts, extra))
            .err()
            .expect("refused")
            .to_string()
    };
    let wrong_scheme = error(json!({"url": "http://guest:hunter2@localhost/"}));
    assert!(
        wrong_scheme.contains("invalid AMQP URL \"http://guest:***@localhost/\""),
        "{wrong_scheme}"
    );
    let refused = error(json!({"password": "hunter2"}));
    assert!(
        refused.contains("cannot connect to the AMQP broker at amqp://guest@localhost:5672/%2f"),
        "{refused}"
    );
    let unreachable = error(json!({"port": 1}));
    assert!(
        unreachable.contains("cannot connect to the AMQP broker at amqp://guest@localhost:1/%2f"),
        "{unreachable}"
    );
    for message in [wrong_scheme, refused, unreachable] {
        assert!(!message.contains("hunter2"), "{message}");
    }
    // The space of another test with the same exchange still works meanwhile.
    let space = open(&options, json!({}));
    space.add(&AgentSpec::new("Receiver", "Receiver")).unwrap();
    assert_eq!(
        ask(&driver(&space, "Asker"), "Receiver", "value").unwrap(),
        42
    );
}

#[test]
fn a_slow_agent_leaves_the_backlog_in_the_broker() {
    let options = space_options("amqp");
    let receiving = open(&options, json!({}));
    receiving.add(&AgentSpec::new("Receiver", "Slow")).unwrap();
    let sending = open(&options, json!({}));
    let sender = driver(&sending, "Sender");
    sender
        .send(action("Slow", "sleep", json!({"seconds": 15})))
        .unwrap();
    let extra = 3_000;
    for _ in 0..MAILBOX_LIMIT + extra {
        sender.send(action("Slow", "ignore", json!({}))).unwrap();
    }
    // While the agent sleeps, the broker's ready count settles: at the backlog the mailbox
    // bound leaves there, or at 0 if the consumer took everything into memory.
    let queue = format!("{}Slow", options["queue_prefix"].as_str().unwrap());
    let deadline = std::time::Instant::now() + SETTLE_PATIENCE;
    let mut ready = ready_in_broker(&queue).unwrap_or(0);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = ready_in_broker(&queue).unwrap_or(0);
        if (now == ready && now > 0) || std::time::Instant::now() > deadline {
            break;
        }
        ready = now;
    }
    assert!(
        ready >= 2_000,
        "beyond {MAILBOX_LIMIT} queued in the agent (and the prefetch), the broker keeps the \
         backlog: {ready} ready"
    );
    let asked = sender.request(action("Slow", "value", json!({})), STREAM_PATIENCE);
    assert_eq!(
        asked.unwrap(),
        42,
        "everything is handled once the agent is back"
    );
}

/// A queue that refuses publishes while it is full (a `reject-publish` overflow policy at
/// its `max-length`) gets every message sent to it once its agent works through the
/// backlog: the refused ones go again, on a new channel, after a pause. None is lost and
/// none arrives twice.
#[test]
fn messages_a_full_queue_refused_arrive_once_it_has_room() {
    const LIMIT: u64 = 100;
    let options = space_options("amqp");
    let queue = format!("{}Counter", options["queue_prefix"].as_str().unwrap());
    let policy = unique_name("agency-test-reject-publish");
    let pattern = format!("^{}$", queue.replace('.', "\\."));
    let definition = json!({"max-length": LIMIT, "overflow": "reject-publish"}).to_string();
    let apply = ["--apply-to", "queues", &policy, &pattern, &definition];
    rabbitmqctl_in_vhost("set_policy", &apply);
    let receiving = open(&options, json!({}));
    receiving
        .add(&AgentSpec::new("Sequence", "Counter"))
        .unwrap();
    let sending = open(&options, json!({}));
    let sender = driver(&sending, "Sender");
    sender
        .send(action("Counter", "pause", json!({"seconds": 10})))
        .unwrap();
    // More than the agent's mailbox, its consumer's prefetch (200) and the queue hold: the
    // broker refuses the rest while the agent sleeps.
    let messages = MAILBOX_LIMIT as u64 + 200 + LIMIT + 2_000;
    for n in 0..messages {
        sender
            .send(action("Counter", "next", json!({ "n": n })))
            .unwrap();
    }
    let deadline = std::time::Instant::now() + SETTLE_PATIENCE;
    while ready_in_broker(&queue) != Some(LIMIT) {
        assert!(
            std::time::Instant::now() < deadline,
            "the queue fills up to its limit: {:?} ready",
            ready_in_broker(&queue)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A refused message may come after the tally, which the broker took meanwhile: asked
    // again until every one is counted.
    let deadline = std::time::Instant::now() + STREAM_PATIENCE;
    let tally = loop {
        let tally = sender
            .request(action("Counter", "tally", json!({})), STREAM_PATIENCE)
            .unwrap();
        if tally["answered"] == messages || std::time::Instant::now() > deadline {
            break tally;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    rabbitmqctl_in_vhost("clear_policy", &[&policy]);
    assert_eq!(tally["answered"], messages, "{tally}");
    assert_eq!(tally["distinct"], messages, "none twice: {tally}");
}

/// A Rust agent and a Python Agency agent on one exchange message each other: the
/// console (Rust) requests the Python agent's action, and the Python agent requests a Rust
/// agent's action from inside its own.
#[test]
fn rust_and_python_agency_agents_share_one_space() {
    python_and_rust_share_a_space("agent");
}

/// The same with the Rust agents on one host queue (`queue_per = "host"`): the wire is
/// unchanged, and an id a Python agent holds is refused to a Rust agent.
#[test]
fn rust_agents_on_a_host_queue_and_python_agency_agents_share_one_space() {
    python_and_rust_share_a_space("host");
}

fn python_and_rust_share_a_space(queue_per: &str) {
    let exchange = unique_name("agency-test-python");
    let (py, rust) = (format!("py-{exchange}"), format!("rust-{exchange}"));
    let (mut python, python_err) = python::start_agent(&exchange, &py);
    let config = |console: &str, agents: &[(&str, &str)]| {
        host_config(&exchange, console, agents).replace(
            "[transports.amqp]\n",
            &format!("[transports.amqp]\nqueue_per = \"{queue_per}\"\n"),
        )
    };
    // Queue names are per vhost: ids unique to the test.
    let console = format!("console-{exchange}");
    let mut host = Host::start(&config(&console, &[("Receiver", &rust)]), &[]);
    host.type_line(&format!("/{py}.shout text:\"hello from rust\""));
    host.stdout.wait_for(&format!("{py}: HELLO FROM RUST"));
    host.type_line(&format!("/{py}.ask to:\"{rust}\""));
    host.stdout
        .wait_for_count(&format!("{py}: 42"), 1, BROKER_PATIENCE);
    // Python Agency publishes without `mandatory`: its message to nobody is dropped by the
    // broker, as Python Agency expects, and nothing comes back to it. A Rust agent's
    // message to nobody comes back as an error.
    host.type_line(&format!("/{py}.send_nowhere to:\"nobody-{exchange}\""));
    host.stdout.wait_for(&format!("{py}: sent"));
    host.type_line(&format!("/nobody-{exchange}.anything"));
    host.stderr.wait_for(&format!(
        "error: no agent \"nobody-{exchange}\" in the space"
    ));
    // (lapin's own warning about every returned message is not shown by default.)
    assert!(!host.stderr.contents().contains("returned us"));
    // A Rust host that would take the Python agent's id is refused it.
    let taker = Host::start(
        &config(&format!("taker-{exchange}"), &[("Receiver", &py)]),
        &[],
    );
    taker
        .stderr
        .wait_for(&format!("Agent '{py}' already exists"));
    drop(taker);
    host.type_line(&format!("/{py}.shout text:\"still here\""));
    let stdout = host.stdout.wait_for(&format!("{py}: STILL HERE"));
    drop(python.stdin.take());
    let status = python.wait().unwrap();
    assert!(status.success(), "{stdout}\n{}", python_err.contents());
    host.finish_with_code(1);
}

/// Quorum queues against the real broker (one node holds a quorum queue too): what the
/// transport relies on still holds. An id held by a process is refused to another (the
/// consumers are exclusive), the queues are quorum queues that expire once nobody
/// consumes them (`x-expires`), and a queue made with another `queue_type` is refused
/// with a message that says what to do.
#[test]
fn quorum_queues_refuse_a_taken_id_and_expire_unused() {
    struct Nowhere;
    impl agency_sdk::transport::Inbound for Nowhere {
        fn deliver(&self, _body: &str) {}
    }
    let sink = || std::sync::Arc::new(Nowhere);
    let options = with_options(
        &space_options("amqp"),
        json!({"queue_type": "quorum", "queue_expires_secs": 2}),
    );
    let prefix = options["queue_prefix"].as_str().unwrap().to_owned();
    let transport = || plugins().open_transport("amqp", &options).unwrap();
    let (first, second) = (transport(), transport());
    first.attach("Q", sink()).unwrap();
    let error = second.attach("Q", sink()).unwrap_err();
    assert!(
        matches!(&error, TransportError::DuplicateId { id, .. } if id == "Q"),
        "{error}"
    );
    let types = || {
        agency_tests::broker::rabbitmqctl_in_vhost(
            "list_queues",
            &["-q", "--no-table-headers", "name", "type"],
        )
    };
    for queue in [format!("{prefix}Q"), format!("{prefix}Q-broadcast")] {
        assert!(types().contains(&format!("{queue}\tquorum")), "{}", types());
    }
    // Closed without removing the agent (its process went away): the queues outlive it
    // for `queue_expires_secs`, then go.
    first.close();
    let expiring = std::time::Instant::now();
    while types().contains(&format!("{prefix}Q\t")) {
        assert!(
            expiring.elapsed() < SETTLE_PATIENCE,
            "the unused queues expire: {}",
            types()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // A classic queue left by an agent of another configuration.
    let classic = plugins()
        .open_transport(
            "amqp",
            &with_options(&options, json!({"queue_type": "classic"})),
        )
        .unwrap();
    classic.attach("C", sink()).unwrap();
    classic.close();
    let error = second.attach("C", sink()).unwrap_err().to_string();
    assert!(
        error.contains("its queues exist with other settings")
            && error.contains("x-queue-type")
            && error.contains("rabbitmqctl delete_queue"),
        "{error}"
    );
    second.attach("Q", sink()).unwrap();
    second.close();
}

/// Of several brokers, the space connects to one that answers; when none does, the error
/// names each (never a password).
#[test]
fn of_several_brokers_one_that_answers_is_used() {
    let options = space_options("amqp");
    let good = options["url"].as_str().unwrap().to_owned();
    let dead = good.replace(&broker().address(), "127.0.0.1:1");
    // The first broker tried is picked at random: several spaces try both orders.
    for _ in 0..4 {
        let space = open(&options, json!({"url": null, "urls": [dead, good]}));
        space.add(&AgentSpec::new("Receiver", "Receiver")).unwrap();
        assert_eq!(
            ask(&driver(&space, "Asker"), "Receiver", "value").unwrap(),
            42
        );
    }
    let error = plugins()
        .open_space(
            "amqp",
            &with_options(
                &options,
                json!({"url": null, "urls": [dead, dead.replace(":1/", ":2/")]}),
            ),
        )
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("cannot connect to the AMQP broker at amqp://guest@127.0.0.1:1/")
            && error.contains("cannot connect to the AMQP broker at amqp://guest@127.0.0.1:2/")
            && !error.contains("guest:guest"),
        "{error}"
    );
}
