//! Throughput and round trip of the `amqp` transport between agents in two host
//! processes, beside raw lapin measured in the same run against the same broker.
//!
//! - agency: this process hosts agent `A` (a `Bench` from the test plugins); an `agency`
//!   process started here hosts agent `B`. `A` floods `B` with `tick`s, then requests
//!   `B.count` (answered once every tick was handled), and requests `B.ping` one after
//!   the other.
//! - raw lapin: two connections (one per "host"), the same exchange and queue settings,
//!   the same message bytes and properties, publisher confirms pipelined 1,000 deep, a
//!   prefetch of 200 and one ack per delivery sent by a task of its own, as the
//!   transport does.
//!
//! - agency watched: the same, while the broker's firehose is on and an `agency watch`
//!   process reads a copy of every message (filtered to print nothing: the cost measured
//!   is the broker's copying and the watcher's reading, not a terminal's).
//!
//! - agency, page open: the same, while this process serves the web page and a WebSocket
//!   client reads its traffic view (what this host's agents send).
//!
//! Uses the tests' broker (`agency_tests::broker`: the local RabbitMQ, else a private node),
//! in a vhost of its own. Run with `cargo bench -p agency-tests --bench amqp`.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use agency_runtime::AgentSpec;
use agency_tests::{
    broker::{broker, rabbitmqctl_in_vhost},
    figures::{percentile, print_table, Row},
    page::OpenPage,
    process::{agency, config, Host},
    unique_name,
};
use futures_util::StreamExt;
use lapin::{
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MESSAGES: u64 = 50_000;
const ROUND_TRIPS: u64 = 3_000;
/// Runs per contender, interleaved; the median is reported.
const ROUNDS: usize = 5;
const IN_FLIGHT: usize = 1_000;
const PREFETCH: u16 = 200;

fn main() {
    let exchange = unique_name("agency-bench");
    let url = broker().url();
    let options = json!({"url": url, "exchange": exchange, "queue_prefix": format!("{exchange}.")});
    let space = std::sync::Arc::new(
        agency_tests::plugins()
            .open_space("amqp", &options)
            .expect("amqp space (is RabbitMQ running?)"),
    );
    space.add(&AgentSpec::new("Bench", "A")).unwrap();
    let mut peer = Host::start(
        &format!(
            "transport = \"amqp\"\nconsole_id = \"console\"\n\
             [transports.amqp]\nurl = \"{url}\"\nexchange = \"{exchange}\"\n\
             queue_prefix = \"{exchange}.\"\n\
             [[agents]]\ntype = \"Bench\"\nid = \"B\"\n"
        ),
        &[],
    );
    let driver = space.add_foreground(&AgentSpec::untyped("driver")).unwrap();
    let ask = |action: &str, count: u64| {
        let message =
            json!({"to": "A", "action": {"name": action, "args": {"to": "B", "count": count}}});
        driver.request(message, Duration::from_secs(600)).unwrap()
    };
    peer.type_line("/B.ping");
    peer.stdout.wait_for("B: 1");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let raw = runtime.block_on(Raw::connect(&exchange));
    // The watcher attaches while the firehose is on; between watched runs it is off.
    rabbitmqctl_in_vhost("trace_on", &[]);
    let watch_config = config(&format!(
        "transport = \"amqp\"\n[transports.amqp]\nurl = \"{url}\"\nexchange = \"{exchange}\"\n"
    ));
    let plugins = agency_tests::plugins_dir().to_str().unwrap().to_owned();
    let watcher = Host::running(&mut agency(&[
        "watch",
        "--plugins-dir",
        &plugins,
        "--config",
        watch_config.to_str().unwrap(),
        "--agent",
        "nobody",
    ]));
    watcher.stderr.wait_for("watching the space on amqp");
    rabbitmqctl_in_vhost("trace_off", &[]);
    let flood = || {
        let result = ask("flood", MESSAGES);
        assert_eq!(result["received"], MESSAGES);
        MESSAGES as f64 / result["seconds"].as_f64().unwrap()
    };
    let trips = || {
        ask("round_trips", ROUND_TRIPS / 10);
        serde_json::from_value::<Vec<f64>>(ask("round_trips", ROUND_TRIPS)).unwrap()
    };
    let with_page = |measure: &dyn Fn() -> f64| {
        let page = OpenPage::open(space.clone());
        let result = measure();
        eprintln!("page open: {:?}", page.close());
        result
    };
    let mut floods: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        floods[0].push(flood());
        rabbitmqctl_in_vhost("trace_on", &[]);
        floods[1].push(flood());
        rabbitmqctl_in_vhost("trace_off", &[]);
        floods[2].push(runtime.block_on(raw.one_way()));
        floods[3].push(with_page(&flood));
    }
    let agency_trips = trips();
    rabbitmqctl_in_vhost("trace_on", &[]);
    let watched_trips = trips();
    rabbitmqctl_in_vhost("trace_off", &[]);
    let raw_trips = runtime.block_on(raw.round_trips());
    let page_trips = {
        let page = OpenPage::open(space.clone());
        let result = trips();
        eprintln!("page open: {:?}", page.close());
        result
    };
    peer.finish();
    drop(watcher);
    space.destroy();

    let [agency_flood, watched_flood, raw_flood, page_flood] =
        [0, 1, 2, 3].map(|i| percentile(&floods[i], 0.5));
    print_table(
        "amqp transport, agents in 2 processes",
        &[
            Row::agency(agency_flood, &agency_trips),
            Row {
                name: "agency, watched (firehose on, `agency watch` reading)",
                short: "agency watched",
                one_way: watched_flood,
                trips: Some(&watched_trips),
            },
            Row {
                name: "agency, page open on the traffic view (WebSocket reader)",
                short: "agency, page open",
                one_way: page_flood,
                trips: Some(&page_trips),
            },
            Row {
                name: "reference: raw lapin, 2 connections, same bytes and acks",
                short: "raw lapin",
                one_way: raw_flood,
                trips: Some(&raw_trips),
            },
        ],
    );
    println!(
        "one-way runs (msg/s): agency {:?}, watched {:?}, raw lapin {:?}, page open {:?}",
        floods[0].iter().map(|r| r.round()).collect::<Vec<_>>(),
        floods[1].iter().map(|r| r.round()).collect::<Vec<_>>(),
        floods[2].iter().map(|r| r.round()).collect::<Vec<_>>(),
        floods[3].iter().map(|r| r.round()).collect::<Vec<_>>()
    );
}

fn body(from: &str, to: &str, action: &str, n: u64) -> String {
    json!({"meta": {"id": format!("00000000-0000-4000-8000-{n:012}")}, "from": from, "to": to,
           "action": {"name": action, "args": {"n": n}}})
    .to_string()
}

/// Two raw lapin "hosts" on the benchmark's exchange, each consuming one queue.
struct Raw {
    exchange: String,
    a: Channel,
    b: Channel,
    queues: [String; 2],
    _connections: [Connection; 2],
}

impl Raw {
    async fn connect(exchange: &str) -> Self {
        let url = broker().url();
        let connect = || Connection::connect(&url, ConnectionProperties::default());
        let (first, second) = (connect().await.unwrap(), connect().await.unwrap());
        let (a, b) = (
            first.create_channel().await.unwrap(),
            second.create_channel().await.unwrap(),
        );
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongUInt(600_000));
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        a.exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
        let queues = [format!("{exchange}.raw-A"), format!("{exchange}.raw-B")];
        for (channel, queue, key) in [(&a, &queues[0], "raw-A"), (&b, &queues[1], "raw-B")] {
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            channel
                .queue_declare(queue.as_str().into(), durable, arguments.clone())
                .await
                .unwrap();
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            channel
                .basic_qos(PREFETCH, BasicQosOptions::default())
                .await
                .unwrap();
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .unwrap();
        }
        Self {
            exchange: exchange.into(),
            a,
            b,
            queues,
            _connections: [first, second],
        }
    }

    async fn consume(channel: &Channel, queue: &str) -> lapin::Consumer {
        channel
            .basic_consume(
                queue.into(),
                "bench".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap()
    }

    /// `A` publishes [`MESSAGES`] ticks to `B`'s queue; messages per second until `B`
    /// has received and acknowledged them all.
    async fn one_way(&self) -> f64 {
        let mut consumer = Self::consume(&self.b, &self.queues[1]).await;
        let received = tokio::spawn(async move {
            for _ in 0..MESSAGES {
                let delivery = consumer.next().await.unwrap().unwrap();
                // Acknowledged by a task of its own, as the transport does.
                tokio::spawn(async move {
                    delivery.ack(BasicAckOptions::default()).await.unwrap();
                });
            }
            consumer
        });
        let started = Instant::now();
        let mut confirms = VecDeque::new();
        for n in 0..MESSAGES {
            let text = body("A", "raw-B", "tick", n);
            confirms.push_back(publish(&self.a, &self.exchange, "raw-B", &text, n).await);
            if confirms.len() >= IN_FLIGHT {
                confirms.pop_front().unwrap().await.unwrap();
            }
        }
        let consumer = received.await.unwrap();
        let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
        for confirm in confirms {
            confirm.await.unwrap();
        }
        self.b
            .basic_cancel(consumer.tag(), Default::default())
            .await
            .unwrap();
        rate
    }

    /// `A` publishes a ping to `B` and waits for `B`'s reply, one after the other; each
    /// round trip in microseconds. Confirms are awaited off the measured path, as the
    /// transport's publisher does.
    async fn round_trips(&self) -> Vec<f64> {
        let mut pings = Self::consume(&self.b, &self.queues[1]).await;
        let mut replies = Self::consume(&self.a, &self.queues[0]).await;
        let responder = {
            let (exchange, channel) = (self.exchange.clone(), self.b.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while let Some(Ok(delivery)) = pings.next().await {
                    delivery.ack(BasicAckOptions::default()).await.unwrap();
                    let text = body("raw-B", "raw-A", "[response]", n);
                    let confirm = publish(&channel, &exchange, "raw-A", &text, n).await;
                    tokio::spawn(confirm);
                    n += 1;
                }
            })
        };
        let mut trips = Vec::new();
        let warm_up = ROUND_TRIPS / 10;
        for n in 0..ROUND_TRIPS + warm_up {
            let started = Instant::now();
            let text = body("raw-A", "raw-B", "ping", n);
            let confirm = publish(&self.a, &self.exchange, "raw-B", &text, n).await;
            tokio::spawn(confirm);
            let reply = replies.next().await.unwrap().unwrap();
            reply.ack(BasicAckOptions::default()).await.unwrap();
            trips.push(started.elapsed().as_secs_f64() * 1e6);
        }
        responder.abort();
        trips.split_off(warm_up as usize)
    }
}

/// Publishes `text` as the transport does: its bytes with Python Agency's properties.
async fn publish(
    channel: &Channel,
    exchange: &str,
    key: &str,
    text: &str,
    n: u64,
) -> lapin::PublisherConfirm {
    let properties = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_message_id(format!("0123456789abcdef0123456789abcdef.{n}").into());
    channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            text.as_bytes(),
            properties,
        )
        .await
        .unwrap()
}
