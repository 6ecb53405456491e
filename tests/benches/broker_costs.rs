//! What each broker object costs: RabbitMQ's memory and set-up rate per queue, binding,
//! consumer, channel and connection, the figures `docs/scaling.md` computes from.
//!
//! Each row creates `count` objects of one kind on the tests' broker (raw lapin, the
//! declarations pipelined on 16 channels, as the transport pipelines an agent's set-up),
//! then reads the broker node's memory (Erlang's total, `rabbitmqctl status`) after a
//! pause for its collector. The objects stay until the end, so each row's growth is its
//! own kind's. Figures: objects per second while created, and KiB of broker memory each.
//!
//! Run with `cargo bench -p agency-tests --bench broker_costs` (about a minute); add
//! `-- --cluster` to measure on node 1 of the tests' three-node cluster
//! (`agency_tests::cluster`), where every definition is written on the three nodes.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use agency_tests::{
    broker::{broker, rabbitmqctl},
    cluster::cluster,
};
use futures_util::future::try_join_all;
use lapin::{
    options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Connection, ConnectionProperties, ExchangeKind,
};
use serde_json::Value;

/// Channels the declarations of one row are spread over.
const CHANNELS: usize = 16;
/// Connections those channels are spread over.
const CONNECTIONS_USED: usize = 4;
/// Objects of the cheap kinds (queues, bindings, consumers) a row creates.
const MANY: usize = 5_000;
/// The broker's file-descriptor limit is low (927 on Debian's default): connections are
/// measured by the hundred.
const CONNECTIONS: usize = 200;
/// Channels on one connection (its `channel_max` is 2,047).
const CHANNELS_MEASURED: usize = 2_000;
/// Quorum queues measured (each a Raft member with its own log).
const QUORUM_QUEUES: usize = 100;
/// How long the broker is left to collect garbage before its memory is read.
const SETTLE: Duration = Duration::from_secs(3);

/// One row: what was made, how many, how fast, and its memory each.
struct Cost {
    what: &'static str,
    count: usize,
    per_second: f64,
    kib_each: f64,
}

/// Where the objects are made: its URL, and its `rabbitmqctl ARGS`.
struct Broker {
    url: String,
    ctl: fn(&[&str]) -> String,
}

fn main() {
    let target = if std::env::args().any(|arg| arg == "--cluster") {
        Broker {
            url: cluster().url(0),
            ctl: |args| cluster().ctl(args),
        }
    } else {
        Broker {
            url: broker().url(),
            ctl: rabbitmqctl,
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let costs = runtime.block_on(measure_all(&target));
    println!();
    println!(
        "{:<62} {:>7} {:>12} {:>10}",
        "broker object", "count", "made/s", "KiB each"
    );
    for cost in &costs {
        println!(
            "{:<62} {:>7} {:>12.0} {:>10.2}",
            cost.what, cost.count, cost.per_second, cost.kib_each
        );
    }
}

async fn measure_all(target: &Broker) -> Vec<Cost> {
    let connect = || Connection::connect(&target.url, ConnectionProperties::default());
    let connections = try_join_all((0..CONNECTIONS_USED).map(|_| connect()))
        .await
        .expect("the tests' broker");
    let channels =
        try_join_all((0..CHANNELS).map(|i| connections[i % CONNECTIONS_USED].create_channel()))
            .await
            .expect("channels");
    let exchange = "costs";
    channels[0]
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the exchange");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let transient = QueueDeclareOptions::default();
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    let mut expiring = FieldTable::default();
    expiring.insert("x-expires".into(), AMQPValue::LongUInt(600_000));
    let mut quorum = expiring.clone();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let declare = |prefix: &'static str, options: QueueDeclareOptions, arguments: &FieldTable| {
        let arguments = arguments.clone();
        let channels = &channels;
        move |i: usize| {
            let channel = channels[i % CHANNELS].clone();
            let arguments = arguments.clone();
            async move {
                channel
                    .queue_declare(format!("{prefix}{i}").as_str().into(), options, arguments)
                    .await
                    .map(drop)
            }
        }
    };
    let bind = |queue: &'static str| {
        let channels = &channels;
        move |i: usize| {
            let channel = channels[i % CHANNELS].clone();
            async move {
                channel
                    .queue_bind(
                        queue.into(),
                        exchange.into(),
                        format!("agent-{i}").as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
            }
        }
    };
    let mut costs = Vec::new();
    costs.push(
        row(
            target,
            "durable classic queue, x-expires (each agent has 2 today)",
            MANY,
            declare("durable-", durable, &expiring),
        )
        .await,
    );
    costs.push(
        row(
            target,
            "exclusive transient queue (Python's, and an id holder)",
            MANY,
            declare("exclusive-", exclusive, &FieldTable::default()),
        )
        .await,
    );
    channels[0]
        .queue_declare("durable-host".into(), durable, expiring.clone())
        .await
        .expect("a durable queue");
    costs.push(
        row(
            target,
            "binding of one durable queue",
            MANY,
            bind("durable-host"),
        )
        .await,
    );
    channels[0]
        .queue_declare("transient-host".into(), transient, expiring.clone())
        .await
        .expect("a transient queue");
    costs.push(
        row(
            target,
            "binding of one transient queue",
            MANY,
            bind("transient-host"),
        )
        .await,
    );
    // A consumer needs a queue: the durable ones of the first row, one consumer each.
    let consume = |i: usize| {
        let channel = channels[i % CHANNELS].clone();
        async move {
            channel
                .basic_consume(
                    format!("durable-{i}").as_str().into(),
                    format!("c{i}").as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map(drop)
        }
    };
    costs.push(row(target, "consumer", MANY, consume).await);
    let many_channels = connect().await.expect("a connection");
    let open_channel = |_| async { many_channels.create_channel().await.map(keep) };
    costs.push(row(target, "channel", CHANNELS_MEASURED, open_channel).await);
    let open_connection = |_| async { connect().await.map(keep) };
    costs.push(row(target, "connection", CONNECTIONS, open_connection).await);
    costs.push(
        row(
            target,
            "quorum queue, x-expires",
            QUORUM_QUEUES,
            declare("quorum-", durable, &quorum),
        )
        .await,
    );
    costs
}

/// Keeps what the broker made until the process ends (it is closed with the broker's
/// vhost, deleted when the process exits).
fn keep<T: Send + 'static>(object: T) {
    std::mem::forget(object);
}

/// Makes `count` objects with `make(i)`, all in flight at once, and measures them.
async fn row<F, Fut>(target: &Broker, what: &'static str, count: usize, make: F) -> Cost
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = lapin::Result<()>>,
{
    tokio::time::sleep(SETTLE).await;
    let before = broker_kib(target);
    let started = Instant::now();
    try_join_all((0..count).map(make))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let per_second = count as f64 / started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let kib_each = (broker_kib(target) - before) / count as f64;
    eprintln!("{what}: {count} at {per_second:.0}/s, {kib_each:.2} KiB each");
    Cost {
        what,
        count,
        per_second,
        kib_each,
    }
}

/// The memory of the broker node, in KiB (Erlang's total).
fn broker_kib(target: &Broker) -> f64 {
    let status = (target.ctl)(&["status", "--formatter", "json"]);
    let status: Value = serde_json::from_str(&status).expect("rabbitmqctl status as JSON");
    status["memory"]["total"]["erlang"]
        .as_f64()
        .expect("the broker's memory")
        / 1024.0
}
