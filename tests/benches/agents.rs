//! Many agents in one process: N Calculator agents from the plugin library, one `add`
//! request to each, beside kameo actors doing the same in the same run.
//!
//! - **agency local / amqp**: a space opened from the real transport plugin (amqp: the
//!   local RabbitMQ), N agents of the `Calculator` plugin type added one by one (on amqp
//!   from 32 threads at once, each add waiting for its broker round trips), then a
//!   foreground agent sends every agent one `add` request and waits for all N replies.
//! - **reference: kameo**: N kameo actors on a tokio runtime with one worker a core; each
//!   gets the same JSON request text, decodes it, answers the sum as JSON text, which the
//!   asker decodes, as an agent's reply is.
//!
//! Figures: the time to start the N agents, the time until every reply arrived, the
//! growth of the resident memory divided by N (each contender runs in a fresh process, so
//! nothing else was measured before it), the process's threads at the end, and on amqp
//! the growth of the broker's memory per agent once they started (with classic queues,
//! and with quorum queues, on the tests' broker).
//!
//! The binary uses mimalloc, as the `agency` binary does. Run with
//! `cargo bench -p agency-tests --bench agents`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use agency_runtime::AgentSpec;
use agency_tests::{broker::rabbitmqctl, plugins, space_options};
use kameo::{
    actor::Spawn,
    message::{Context, Message},
    Actor,
};
use serde_json::{json, Value};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How many threads add the agents on `amqp`, with classic queues.
const AMQP_ADDERS: usize = 32;
/// The same with quorum queues, whose declarations the broker takes much more slowly.
const QUORUM_ADDERS: usize = 4;

/// Each run: the contender and its number of agents.
const RUNS: [(&str, usize); 13] = [
    ("local", 1_000),
    ("kameo", 1_000),
    ("local", 10_000),
    ("kameo", 10_000),
    ("local", 100_000),
    ("kameo", 100_000),
    ("amqp", 1_000),
    ("amqp", 10_000),
    // More stall the tests' broker (docs/scaling.md).
    ("amqp-quorum", 100),
    ("amqp-per-host", 1_000),
    ("amqp-per-host", 10_000),
    ("amqp-per-host-quorum", 10_000),
    ("amqp-per-host", 100_000),
];

/// What one run measured.
struct Figures {
    started: Duration,
    answered: Duration,
    /// Resident memory growth per agent once started, before any request.
    kib_started: f64,
    /// The same once each agent answered its request.
    kib_per_agent: f64,
    threads: usize,
    /// On amqp, the broker's memory growth per agent once started (Erlang's total).
    broker_kib_per_agent: Option<f64>,
}

impl Figures {
    /// The figures of a run of `n` agents, checking that the answers (agent `i` was
    /// asked `i + 1`) add up; `before` is the resident memory before the agents, in KiB.
    fn of_run(
        n: usize,
        started: Duration,
        kib_started: f64,
        answered: Duration,
        sum: f64,
        before: u64,
    ) -> Self {
        assert_eq!(
            sum,
            (n * (n + 1) / 2) as f64,
            "every agent answered its sum"
        );
        Figures {
            started,
            answered,
            kib_started,
            kib_per_agent: kib_per_agent(before, n),
            threads: threads(),
            broker_kib_per_agent: None,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--one") {
        let n = args[at + 2].parse().expect("a number of agents");
        let figures = match args[at + 1].as_str() {
            "kameo" => kameo_run(n),
            transport => agency_run(transport, n),
        };
        println!(
            "figures {} {} {} {} {} {}",
            figures.started.as_secs_f64(),
            figures.answered.as_secs_f64(),
            figures.kib_started,
            figures.kib_per_agent,
            figures.threads,
            figures.broker_kib_per_agent.unwrap_or(f64::NAN),
        );
        // The space is left to the process's end: tearing down N agents is not measured.
        std::process::exit(0);
    }
    println!();
    println!(
        "{:<28} {:>8} {:>9} {:>11} {:>17} {:>17} {:>8} {:>17}",
        "many agents, one request each",
        "agents",
        "start s",
        "answered s",
        "KiB/agent started",
        "KiB/agent answered",
        "threads",
        "broker KiB/agent"
    );
    for (contender, n) in RUNS {
        let figures = in_fresh_process(contender, n);
        let name = match contender {
            "kameo" => "reference: kameo actors",
            "local" => "agency local",
            "amqp" => "agency amqp (classic)",
            "amqp-quorum" => "agency amqp (quorum)",
            "amqp-per-host" => "agency amqp (host queue)",
            _ => "agency amqp (host queue, quorum)",
        };
        let broker = figures
            .broker_kib_per_agent
            .map_or("-".to_owned(), |kib| format!("{kib:.2}"));
        println!(
            "{name:<28} {n:>8} {:>9.3} {:>11.3} {:>17.2} {:>17.2} {:>8} {broker:>17}",
            figures.started.as_secs_f64(),
            figures.answered.as_secs_f64(),
            figures.kib_started,
            figures.kib_per_agent,
            figures.threads
        );
    }
}

/// Runs this benchmark again as `--one CONTENDER N` and reads its figures.
fn in_fresh_process(contender: &str, n: usize) -> Figures {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--one", contender, &n.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("figures "))
        .unwrap_or_else(|| {
            panic!(
                "{contender} with {n} agents gave no figures:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let fields: Vec<f64> = line.split(' ').map(|f| f.parse().unwrap()).collect();
    Figures {
        started: Duration::from_secs_f64(fields[0]),
        answered: Duration::from_secs_f64(fields[1]),
        kib_started: fields[2],
        kib_per_agent: fields[3],
        threads: fields[4] as usize,
        broker_kib_per_agent: Some(fields[5]).filter(|kib| !kib.is_nan()),
    }
}

/// N Calculator agents on `contender` (`local`; `amqp`, or `amqp-quorum`: quorum queues;
/// `amqp-per-host` or `amqp-per-host-quorum`: one queue for all, `queue_per = "host"`),
/// one `add` request each.
fn agency_run(contender: &str, n: usize) -> Figures {
    let transport = if contender == "local" {
        "local"
    } else {
        "amqp"
    };
    let per_host = contender.starts_with("amqp-per-host");
    let mut options = space_options(if per_host { "amqp-per-host" } else { transport });
    if contender.ends_with("quorum") {
        options["queue_type"] = "quorum".into();
    }
    let space = plugins().open_space(transport, &options).unwrap();
    let broker_before = (transport == "amqp").then(broker_kib);
    // The asker keeps no log: its memory would be counted as the agents'.
    let me = space
        .add_foreground(&AgentSpec::untyped("me").without_log())
        .unwrap();
    let replies = me.subscribe();
    let before = resident_kib();
    let started = Instant::now();
    let ids: Vec<String> = (0..n).map(|i| format!("calc-{i}")).collect();
    // An amqp add waits for broker round trips: the agents are added from many threads.
    let adders = match contender {
        "amqp" | "amqp-per-host" | "amqp-per-host-quorum" => AMQP_ADDERS,
        "amqp-quorum" => QUORUM_ADDERS,
        _ => 1,
    };
    std::thread::scope(|scope| {
        for chunk in ids.chunks(n.div_ceil(adders)) {
            let space = &space;
            scope.spawn(move || {
                for id in chunk {
                    space.add(&AgentSpec::new("Calculator", id)).unwrap();
                }
            });
        }
    });
    let started = started.elapsed();
    let kib_started = kib_per_agent(before, n);
    let broker_kib_per_agent = broker_before.map(|before| (broker_kib() - before) / n as f64);
    let answering = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        me.send(json!({"to": id, "action": {"name": "add", "args": {"a": i, "b": 1}}}))
            .unwrap();
    }
    let mut sum = 0.0;
    for _ in 0..n {
        let reply = replies
            .recv_timeout(Duration::from_secs(300))
            .expect("every agent answers");
        sum += reply.reply().unwrap().unwrap().as_f64().unwrap();
    }
    Figures {
        broker_kib_per_agent,
        ..Figures::of_run(n, started, kib_started, answering.elapsed(), sum, before)
    }
}

/// The memory of the tests' broker node, in KiB (Erlang's own total, from `rabbitmqctl
/// status`).
fn broker_kib() -> f64 {
    let status = rabbitmqctl(&["status", "--formatter", "json"]);
    let status: Value = serde_json::from_str(&status).expect("rabbitmqctl status as JSON");
    status["memory"]["total"]["erlang"]
        .as_f64()
        .expect("the broker's memory")
        / 1024.0
}

/// A kameo actor answering `add` requests given as message JSON text.
#[derive(Actor)]
struct Calculator {
    id: String,
}

/// A request: the whole message as JSON text, as an agent receives it.
struct Request(String);

impl Message<Request> for Calculator {
    type Reply = String;

    async fn handle(&mut self, request: Request, _: &mut Context<Self, String>) -> String {
        let message: Value = serde_json::from_str(&request.0).unwrap();
        let args = &message["action"]["args"];
        let sum = args["a"].as_f64().unwrap() + args["b"].as_f64().unwrap();
        json!({"meta": {"parent_id": message["meta"]["id"]}, "from": self.id,
            "to": message["from"], "action": {"name": "[response]", "args": {"value": sum}}})
        .to_string()
    }
}

/// N kameo actors, one request each, on one tokio worker a core.
fn kameo_run(n: usize) -> Figures {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let before = resident_kib();
    runtime.block_on(async {
        let started = Instant::now();
        let actors: Vec<_> = (0..n)
            .map(|i| {
                Calculator::spawn(Calculator {
                    id: format!("calc-{i}"),
                })
            })
            .collect();
        let started = started.elapsed();
        let kib_started = kib_per_agent(before, n);
        let answering = Instant::now();
        let asks = actors.iter().enumerate().map(|(i, actor)| {
            let request = json!({"meta": {"id": i.to_string()}, "from": "me",
                "to": format!("calc-{i}"), "action": {"name": "add", "args": {"a": i, "b": 1}}});
            async move { actor.ask(Request(request.to_string())).await }
        });
        let replies = futures_util::future::join_all(asks).await;
        let sum: f64 = replies
            .into_iter()
            .map(|reply| {
                let reply: Value = serde_json::from_str(&reply.unwrap()).unwrap();
                reply["action"]["args"]["value"].as_f64().unwrap()
            })
            .sum();
        Figures::of_run(n, started, kib_started, answering.elapsed(), sum, before)
    })
}

/// A line of this process's `/proc/self/status`, as a number.
fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// The growth of the resident memory since `before` KiB, per agent of `n`.
fn kib_per_agent(before: u64, n: usize) -> f64 {
    resident_kib().saturating_sub(before) as f64 / n as f64
}

/// This process's resident memory, in KiB (Linux).
fn resident_kib() -> u64 {
    status_field("VmRSS:")
}

/// This process's threads (Linux).
fn threads() -> usize {
    status_field("Threads:") as usize
}
