//! One space on a three-node RabbitMQ cluster ([`agency_tests::cluster`]): hosts spread
//! over the nodes, a node killed under them (`kill -9`, as a crash), quorum queues that
//! keep what they hold, the killed node started again, and a Python Agency agent on the
//! cluster. The tests that kill nodes run one at a time.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use agency_runtime::{AgentSpec, Space, MAILBOX_LIMIT};
use agency_tests::{
    action,
    cluster::{cluster, Cluster, NODES},
    driver, plugins,
    process::Host,
    python, unique_name, with_options, BROKER_PATIENCE,
};
use serde_json::{json, Value};

/// How long the agent of the quorum test sleeps while its backlog builds up in the broker.
const PAUSE: Duration = Duration::from_secs(20);

/// How long a request may wait for its answer, a node's loss included.
const REQUEST_PATIENCE: Duration = Duration::from_secs(60);

/// How long a backlog may take to be worked through after its queue's leader died.
const RECOVERY_PATIENCE: Duration = Duration::from_secs(240);

/// Shows the spaces' logs (the transport's reconnections) if the test fails; `RUST_LOG`
/// chooses them, `info` by default.
fn show_logs_on_failure() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Options for a space on the cluster's nodes `nodes`, on `exchange`, with `extra` keys.
fn options(exchange: &str, nodes: &[usize], extra: Value) -> Value {
    let urls: Vec<String> = nodes.iter().map(|&i| cluster().url(i)).collect();
    with_options(&json!({"urls": urls, "exchange": exchange}), extra)
}

/// `agency.toml` for a host on every node of the cluster, on `exchange`, with quorum
/// queues and one agent `(type, id)`.
fn host_config(exchange: &str, agent: (&str, &str)) -> String {
    let urls: Vec<String> = cluster().urls().iter().map(|u| format!("{u:?}")).collect();
    format!(
        "transport = \"amqp\"\nconsole_id = \"console-{exchange}\"\n[transports.amqp]\n\
         urls = [{}]\nexchange = \"{exchange}\"\nqueue_type = \"quorum\"\n\
         [[agents]]\ntype = \"{}\"\nid = \"{}\"\n",
        urls.join(", "),
        agent.0,
        agent.1
    )
}

/// The node a host's log says it connected to last (`connected` or `reconnected to the
/// AMQP broker`, with the broker's address).
fn node_in_log(log: &str, event: &str) -> Option<usize> {
    log.lines()
        .rfind(|line| line.contains(event))
        .and_then(|line| cluster().index_of(line))
}

/// Two hosts on different nodes, 4 senders on one making 10,000 requests in all to an
/// agent on the other (a real `agency` process, quorum queues). Once 2,000 are answered,
/// the node the answering host is connected to is killed: the host moves to another
/// node, every request is answered, and each sender's requests reach the agent exactly
/// once, in order. Then the killed node starts again and rejoins, and the space (the
/// requesting host never left its nodes) goes on as if nothing happened.
#[test]
fn a_host_moves_to_another_node_when_its_node_dies_and_no_request_is_lost() {
    const SENDERS: u64 = 4;
    const REQUESTS: u64 = 10_000;
    let cluster = cluster();
    let _one_at_a_time = cluster.exclusive();
    cluster.heal();
    let exchange = unique_name("agency-cluster");
    let counter = format!("counter-{exchange}");
    let mut answering = Host::start_logging(
        &host_config(&exchange, ("Sequence", &counter)),
        "warn,agency_transport_amqp=info",
        &[],
    );
    let connected = "connected to the AMQP broker";
    answering.stderr.wait_for(connected);
    // Started (its console attached too) before its node may die: a host whose broker
    // goes away while it starts refuses to start, which is not what this test is about.
    answering.wait_until_started();
    let doomed = node_in_log(&answering.stderr.contents(), connected).expect("its node");
    let others: Vec<usize> = (0..NODES).filter(|&i| i != doomed).collect();
    let space = plugins()
        .open_space(
            "amqp",
            &options(&exchange, &others, json!({"queue_type": "quorum"})),
        )
        .expect("the requesting host's space opens");

    let answered = Mutex::new(Vec::<Instant>::new());
    let mut killed_at = None;
    std::thread::scope(|scope| {
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let sender = driver(&space, &format!("sender{s}"));
                let (answered, counter) = (&answered, &counter);
                scope.spawn(move || {
                    for n in 0..REQUESTS / SENDERS {
                        let request = action(counter, "next", json!({ "n": n }));
                        let value = sender
                            .request(request, REQUEST_PATIENCE)
                            .unwrap_or_else(|e| panic!("sender{s}'s request {n}: {e}"));
                        assert_eq!(value, n);
                        answered.lock().unwrap().push(Instant::now());
                    }
                })
            })
            .collect();
        while answered.lock().unwrap().len() < 2_000 {
            std::thread::sleep(Duration::from_millis(5));
        }
        cluster.kill(doomed);
        killed_at = Some(Instant::now());
        for sender in senders {
            sender.join().expect("every request answered");
        }
    });
    let killed_at = killed_at.unwrap();
    let first_after = answered
        .lock()
        .unwrap()
        .iter()
        .copied()
        .find(|&at| at > killed_at)
        .expect("answers after the kill");
    eprintln!(
        "cluster: from the kill of {} to the first answer after it: {:?}",
        cluster.name(doomed),
        first_after - killed_at
    );
    let log = answering.stderr.contents();
    let now_on = node_in_log(&log, "reconnected to the AMQP broker")
        .unwrap_or_else(|| panic!("the answering host reconnected:\n{log}"));
    assert_ne!(now_on, doomed, "{log}");

    let tally_of = |asker: &agency_runtime::Foreground| {
        asker
            .request(action(&counter, "tally", json!({})), REQUEST_PATIENCE)
            .unwrap()
    };
    let asker = driver(&space, "asker");
    let tally = tally_of(&asker);
    assert_eq!(tally["answered"], REQUESTS, "{tally}");
    assert_eq!(tally["distinct"], REQUESTS, "{tally}");
    assert_eq!(tally["out_of_order"], json!([]), "{tally}");

    // The killed node comes back and rejoins: the space goes on, none of it reconnects.
    cluster.restart(doomed);
    let sender = driver(&space, "late-sender");
    for n in 0..100 {
        let request = action(&counter, "next", json!({ "n": n }));
        assert_eq!(sender.request(request, REQUEST_PATIENCE).unwrap(), n);
    }
    let tally = tally_of(&asker);
    assert_eq!(tally["answered"], REQUESTS + 100, "{tally}");
    assert_eq!(tally["out_of_order"], json!([]), "{tally}");
    let log = answering.stderr.contents();
    assert_eq!(
        log.matches("lost the connection").count(),
        1,
        "one loss only, the kill's:\n{log}"
    );
    answering.finish();
}

/// Messages wait in an agent's quorum queue (the agent is busy, its mailbox full) when
/// the node holding the queue's leader is killed: every one reaches the agent exactly
/// once. Both hosts are on that node (the leader is on the node of the host that declared
/// the queue, the receiving one; the sending one is opened until it lands there too), so
/// both move, and each publishes on a new connection to a queue whose leader is being
/// elected (RabbitMQ refuses such publishes; the transport publishes them again on a new
/// channel). The messages the receiving consumer held, up to `prefetch`, may come after
/// later ones, as README says; the test prints how many did.
#[test]
fn a_quorum_queue_keeps_its_messages_when_its_leader_dies() {
    leader_dies_under_a_backlog("agent");
}

/// The same with the agents on quorum host queues (`queue_per = "host"`): the backlog
/// waits in the receiving host's one queue.
#[test]
fn a_quorum_host_queue_keeps_its_messages_when_its_leader_dies() {
    leader_dies_under_a_backlog("host");
}

fn leader_dies_under_a_backlog(queue_per: &str) {
    show_logs_on_failure();
    let messages = MAILBOX_LIMIT as u64 + 3_000;
    let cluster = cluster();
    let _one_at_a_time = cluster.exclusive();
    cluster.heal();
    let exchange = unique_name("agency-cluster");
    let all: Vec<usize> = (0..NODES).collect();
    let quorum = json!({
        "queue_type": "quorum",
        "queue_prefix": format!("{exchange}."),
        "queue_per": queue_per,
    });
    let open = || {
        plugins()
            .open_space("amqp", &options(&exchange, &all, quorum.clone()))
            .expect("space opens")
    };
    let receiving = open();
    receiving
        .add(&AgentSpec::new("Sequence", "Counter"))
        .unwrap();
    let [node] = cluster.nodes_of(&exchange)[..] else {
        panic!("one connection: {:?}", cluster.nodes_of(&exchange));
    };
    let sending = same_node(cluster, &exchange, node, open);
    let sender = driver(&sending, "Sender");
    sender
        .send(action(
            "Counter",
            "pause",
            json!({"seconds": PAUSE.as_secs_f64()}),
        ))
        .unwrap();
    for n in 0..messages {
        sender
            .send(action("Counter", "next", json!({ "n": n })))
            .unwrap();
    }
    // The queue the backlog waits in: the agent's own, or its host's.
    let prefix = format!("{exchange}.");
    let waiting = Instant::now();
    let queue = loop {
        let backlog = cluster
            .queues(&prefix)
            .into_iter()
            .find(|(_, ready)| *ready >= 2_000);
        if let Some((queue, _)) = backlog {
            break queue;
        }
        assert!(
            waiting.elapsed() < PAUSE,
            "messages wait in a queue: {:?}",
            cluster.queues(&prefix)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    if queue_per == "agent" {
        assert_eq!(queue, format!("{exchange}.Counter"));
    }
    let leader = cluster.leader_of(&queue).expect("the queue's leader");
    assert_eq!(leader, node, "the leader is on its declaring host's node");
    cluster.kill(leader);
    // The tally waits behind the backlog, which a loaded machine works through slowly
    // after the election: a tally not answered in time is asked again, until every
    // message is counted or RECOVERY_PATIENCE has passed (a lost message fails below).
    let killed = Instant::now();
    let tally = loop {
        let asked = sender.request(action("Counter", "tally", json!({})), REQUEST_PATIENCE);
        let late = killed.elapsed() > RECOVERY_PATIENCE;
        match asked {
            Ok(tally) if tally["answered"] == messages || late => break tally,
            Err(error) if late => panic!("no tally within {RECOVERY_PATIENCE:?}: {error}"),
            Ok(_) => std::thread::sleep(Duration::from_millis(500)),
            Err(error) => eprintln!("cluster: {error}; asking again"),
        }
    };
    assert_eq!(tally["answered"], messages, "{tally}");
    assert_eq!(tally["distinct"], messages, "none twice: {tally}");
    let out_of_order = tally["out_of_order"].as_array().unwrap();
    eprintln!(
        "cluster: {} jumps in the order after the leader's node died: {out_of_order:?}",
        out_of_order.len()
    );
    let new_leader = cluster.leader_of(&queue).expect("a new leader");
    assert_ne!(new_leader, leader);
    cluster.restart(leader);
}

/// A space opened with `open` until its connection goes to `node`, where this process
/// holds one connection to `exchange` already (a space starts on a node picked at random:
/// 30 tries miss it once in 190,000 runs).
fn same_node(cluster: &Cluster, exchange: &str, node: usize, open: impl Fn() -> Space) -> Space {
    for _ in 0..30 {
        let space = open();
        let nodes = cluster.nodes_of(exchange);
        if nodes.iter().filter(|&&n| n == node).count() == 2 {
            return space;
        }
    }
    panic!("no space opened on node {node} in 30 tries");
}

/// A Python Agency agent connected to one node and a Rust host on all three (classic
/// queues, the default) talk to each other.
#[test]
fn a_python_agency_agent_on_the_cluster_talks_to_rust_agents() {
    let cluster = cluster();
    let exchange = unique_name("agency-cluster-python");
    let (py, rust) = (format!("py-{exchange}"), format!("rust-{exchange}"));
    let (mut python, python_err) = python::start_agent_on(cluster.python_env(1), &exchange, &py);
    let config =
        host_config(&exchange, ("Receiver", &rust)).replace("queue_type = \"quorum\"\n", "");
    let mut host = Host::start(&config, &[]);
    host.type_line(&format!("/{py}.shout text:\"hello cluster\""));
    host.stdout.wait_for(&format!("{py}: HELLO CLUSTER"));
    host.type_line(&format!("/{py}.ask to:\"{rust}\""));
    host.stdout
        .wait_for_count(&format!("{py}: 42"), 1, BROKER_PATIENCE);
    drop(python.stdin.take());
    let status = python.wait().unwrap();
    assert!(status.success(), "{}", python_err.contents());
    host.finish();
}

/// Classic queues (the default, Python Agency's) live on one node. When the node of a
/// host's queues dies, that host's agents are out of the space until it is back: what
/// is sent to them meanwhile is refused to its sender (a dead letter), and once the node
/// rejoins, the host restores them and they answer again.
#[test]
fn with_classic_queues_a_host_waits_for_the_node_of_its_queues() {
    let cluster = cluster();
    let _one_at_a_time = cluster.exclusive();
    cluster.heal();
    let exchange = unique_name("agency-cluster");
    let counter = format!("counter-{exchange}");
    let config =
        host_config(&exchange, ("Sequence", &counter)).replace("queue_type = \"quorum\"\n", "");
    let mut answering = Host::start_logging(&config, "warn,agency_transport_amqp=info", &[]);
    let connected = "connected to the AMQP broker";
    answering.stderr.wait_for(connected);
    // Started before its node dies (see the test above).
    answering.wait_until_started();
    let doomed = node_in_log(&answering.stderr.contents(), connected).expect("its node");
    let others: Vec<usize> = (0..NODES).filter(|&i| i != doomed).collect();
    let space = plugins()
        .open_space("amqp", &options(&exchange, &others, json!({})))
        .expect("the requesting host's space opens");
    let sender = driver(&space, "sender");
    let next = |n: u64, patience: Duration| {
        sender.request(action(&counter, "next", json!({ "n": n })), patience)
    };
    assert_eq!(next(0, REQUEST_PATIENCE).unwrap(), 0);
    cluster.kill(doomed);
    let during = next(1, REQUEST_PATIENCE).unwrap_err();
    assert!(
        during.is(agency_sdk::Kind::Undeliverable),
        "a dead letter at once: {during:?}"
    );
    answering.stderr.wait_for("is down or inaccessible");
    cluster.restart(doomed);
    assert_eq!(next(1, REQUEST_PATIENCE).unwrap(), 1);
    answering.stderr.wait_for("reconnected to the AMQP broker");
    answering.finish();
}
