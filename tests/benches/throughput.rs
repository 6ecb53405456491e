//! Throughput and round trip of the `local` transport between two agents loaded from
//! plugin libraries, beside a raw reference measured in the same run: a tokio channel
//! carrying the same JSON text, encoded by the sender and decoded by the receiver. The
//! same agents are measured again while watched: a tap attached and drained on a thread
//! of its own, as `agency run --watch` does; and while the web page (`agency run --web`)
//! is open on its traffic view, read by a WebSocket client. And the same agents in a
//! space that counts nothing (`Space::without_metrics`): what counting costs. Then
//! contention: 16 agents sending to one, and 16 to 16, beside 16 tokio tasks doing the
//! same through channels.
//!
//! The binary uses mimalloc, as the `agency` binary does; the plugins keep the system
//! allocator, as third-party plugins would.
//!
//! Run with `cargo bench -p agency-tests`. Figures go to standard output, one table.
//! `cargo bench -p agency-tests --bench throughput -- one-way` (or `round-trips`)
//! measures that part alone, agency against its reference, in more rounds: a quick
//! before/after check of one change.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use agency_runtime::AgentSpec;
use agency_sdk::Message;
use agency_tests::figures::{percentile, print_table, Row};
use serde_json::{json, Value};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MESSAGES: u64 = 200_000;
const ROUND_TRIPS: u64 = 20_000;

/// Runs per contender, interleaved; the median throughput is reported, and round-trip
/// percentiles over the trips of all runs (this machine shares its 2 cores with other
/// services, so single runs vary: the first run after another contender's is often
/// twice as slow).
const ROUNDS: usize = 7;

fn main() {
    // `cargo bench` passes `--bench`; a focus is the one argument without dashes.
    match std::env::args().skip(1).find(|arg| !arg.starts_with('-')) {
        None => everything(),
        Some(part) => focused(&part),
    }
}

/// Rounds of a focused run: each is short, so more of them.
const FOCUSED_ROUNDS: usize = 15;

/// One part, agency against its reference, [`FOCUSED_ROUNDS`] interleaved rounds:
/// the medians, their ratio and the spread of each.
fn focused(part: &str) {
    let (space, driver) = bench_space(true);
    let spread = |runs: &[f64]| (percentile(runs, 0.0), percentile(runs, 1.0));
    match part {
        "one-way" => {
            let (mut agency, mut reference, mut decode_only) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..FOCUSED_ROUNDS {
                agency.push(agency_one_way(&driver));
                reference.push(reference_one_way(Encode::EachMessage));
                decode_only.push(reference_one_way(Encode::Beforehand));
            }
            let a = percentile(&agency, 0.5);
            println!(
                "one-way msg/s: agency {a:.0} (runs {:.0?})",
                spread(&agency)
            );
            for (name, runs) in [
                ("encode + decode", &reference),
                ("decode only", &decode_only),
            ] {
                let r = percentile(runs, 0.5);
                println!(
                    "  reference ({name}) {r:.0} (runs {:.0?}): {:.2}x",
                    spread(runs),
                    a / r
                );
            }
        }
        "round-trips" => {
            let (mut agency, mut reference) = (Vec::new(), Vec::new());
            for _ in 0..FOCUSED_ROUNDS {
                agency.extend(agency_round_trips(&driver));
                reference.extend(reference_round_trips());
            }
            for q in [0.5, 0.9, 0.99] {
                let (a, r) = (percentile(&agency, q), percentile(&reference, q));
                println!(
                    "round trip p{:.0} µs: agency {a:.2}, reference {r:.2}: {:.2}x",
                    q * 100.0,
                    a / r
                );
            }
        }
        other => panic!("no part {other:?} to measure alone: give one-way or round-trips"),
    }
    space.destroy();
}

/// The whole bench: every table.
fn everything() {
    let (space, driver) = bench_space(true);
    let (uncounted, uncounted_driver) = bench_space(false);
    let mut floods: [Vec<f64>; 6] = Default::default();
    let mut trips: [Vec<f64>; 6] = Default::default();
    for round in 0..ROUNDS {
        // Counting and not, back to back, each first in every other round: what
        // counting costs, without the order between contenders in it.
        let mut pair = [(0, &driver), (5, &uncounted_driver)];
        if round % 2 == 1 {
            pair.reverse();
        }
        for (slot, driver) in pair {
            floods[slot].push(agency_one_way(driver));
        }
        for (slot, driver) in pair {
            trips[slot].extend(agency_round_trips(driver));
        }
        floods[1].push(watched(&space, || agency_one_way(&driver)));
        floods[2].push(with_page(&space, || agency_one_way(&driver)));
        floods[3].push(reference_one_way(Encode::EachMessage));
        floods[4].push(reference_one_way(Encode::Beforehand));
        trips[1].extend(watched(&space, || agency_round_trips(&driver)));
        trips[2].extend(with_page(&space, || agency_round_trips(&driver)));
        trips[3].extend(reference_round_trips());
        trips[4].extend(agency_round_trips_to(&driver, "P"));
    }
    eprintln!(
        "one-way runs, counting: {:.0?}; counting nothing: {:.0?}",
        floods[0], floods[5]
    );
    let [agency_flood, watched_flood, page_flood, reference_flood, decode_only_flood, uncounted_flood] =
        floods.map(|runs| percentile(&runs, 0.5));
    let [agency_trips, watched_trips, page_trips, reference_trips, concurrent_trips, uncounted_trips] =
        trips;
    uncounted.destroy();
    page_memory(&space);
    space.destroy();
    print_table(
        "local transport, 2 agents from .so files",
        &[
            Row::agency(agency_flood, &agency_trips),
            Row {
                name: "agency, watched (a tap drained on its own thread)",
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
                name: "agency, counting nothing (Space::without_metrics)",
                short: "agency, no metrics",
                one_way: uncounted_flood,
                trips: Some(&uncounted_trips),
            },
            Row {
                name: "reference: tokio channel, sender encodes, receiver decodes",
                short: "reference (encode + decode)",
                one_way: reference_flood,
                trips: Some(&reference_trips),
            },
            Row {
                name: "reference: tokio channel, receiver decodes only",
                short: "reference (decode only)",
                one_way: decode_only_flood,
                trips: None,
            },
        ],
    );
    println!(
        "round trip to a concurrent agent (Parallel, up to 4 messages at once): p50 {:.1} µs, p99 {:.1} µs (to an ordinary agent: {:.1}, {:.1})",
        percentile(&concurrent_trips, 0.5),
        percentile(&concurrent_trips, 0.99),
        percentile(&agency_trips, 0.5),
        percentile(&agency_trips, 0.99),
    );
    println!(
        "metrics on / off: one-way {:.3}x, round trip p50 {:.3}x (time: above 1 is slower)",
        agency_flood / uncounted_flood,
        percentile(&agency_trips, 0.5) / percentile(&uncounted_trips, 0.5),
    );
    for (name, trips) in [("agency", &agency_trips), ("reference", &reference_trips)] {
        println!(
            "round trip µs, {name}: p50 {:.1}, p90 {:.1}, p99 {:.1}, p99.9 {:.1}",
            percentile(trips, 0.5),
            percentile(trips, 0.9),
            percentile(trips, 0.99),
            percentile(trips, 0.999),
        );
    }
    many_senders();
}

/// How many agents send at once in the contention case.
const SENDERS: usize = 16;

/// Contention: 16 agents flood one agent, then 16 agents flood one each, beside a tokio
/// channel with 16 sending tasks (into one receiver, then into one each); medians of
/// interleaved runs, each [`MESSAGES`] messages in all.
fn many_senders() {
    let space = agency_tests::open_space("local");
    for n in 0..SENDERS {
        space
            .add(&AgentSpec::new("Bench", &format!("S{n}")))
            .unwrap();
        space
            .add(&AgentSpec::new("Bench", &format!("R{n}")))
            .unwrap();
    }
    let driver = space.add_foreground(&AgentSpec::untyped("many")).unwrap();
    let mut runs: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        runs[0].push(agency_many(&driver, |_| "R0".to_owned()));
        runs[1].push(reference_many(false));
        runs[2].push(agency_many(&driver, |n| format!("R{n}")));
        runs[3].push(reference_many(true));
    }
    let [to_one, reference_to_one, to_each, reference_to_each] =
        runs.map(|runs| percentile(&runs, 0.5));
    space.destroy();
    println!(
        "{SENDERS} senders to 1: agency {to_one:.0} msg/s, reference {reference_to_one:.0} ({:.2}x); \
         {SENDERS} to {SENDERS}: agency {to_each:.0}, reference {reference_to_each:.0} ({:.2}x)",
        to_one / reference_to_one,
        to_each / reference_to_each,
    );
}

/// Agents `S0..S15` each flood `target(n)` with their share of [`MESSAGES`] at once;
/// messages per second until every target counted every tick.
fn agency_many(
    driver: &agency_runtime::Foreground,
    target: impl Fn(usize) -> String + Sync,
) -> f64 {
    let share = MESSAGES / SENDERS as u64;
    let started = Instant::now();
    let counted: u64 = std::thread::scope(|scope| {
        let floods: Vec<_> = (0..SENDERS)
            .map(|n| {
                let (driver, to) = (driver.clone(), target(n));
                scope.spawn(move || {
                    let flood = json!({"to": format!("S{n}"), "action": {"name": "flood", "args": {"to": to, "count": share}}});
                    let answer = driver.request(flood, Duration::from_secs(300)).unwrap();
                    answer["received"].as_u64().unwrap()
                })
            })
            .collect();
        floods.into_iter().map(|f| f.join().unwrap()).sum()
    });
    // A target's count answers what arrived until then: the rest arrived after.
    let rest: u64 = (0..SENDERS)
        .map(target)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|to| {
            let count = json!({"to": to, "action": {"name": "count", "args": {}}});
            driver
                .request(count, Duration::from_secs(60))
                .unwrap()
                .as_u64()
                .unwrap()
        })
        .sum();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(counted + rest, share * SENDERS as u64);
    (share * SENDERS as u64) as f64 / seconds
}

/// 16 tasks send their share of [`MESSAGES`] JSON bodies (encoded as they go) through
/// unbounded tokio channels: all into one receiver, or (`each`) one receiver each, which
/// decodes them; messages per second until every body was decoded.
fn reference_many(each: bool) -> f64 {
    let share = MESSAGES / SENDERS as u64;
    runtime().block_on(async move {
        let receivers = if each { SENDERS } else { 1 };
        let (senders, receiving): (Vec<_>, Vec<_>) = (0..receivers)
            .map(|_| tokio::sync::mpsc::unbounded_channel::<String>())
            .unzip();
        let started = Instant::now();
        let decoders: Vec<_> = receiving
            .into_iter()
            .map(|mut rx| {
                tokio::spawn(async move {
                    let mut count = 0u64;
                    while let Some(body) = rx.recv().await {
                        let message: Message = serde_json::from_str(&body).unwrap();
                        count += u64::from(message.action.name == "tick");
                    }
                    count
                })
            })
            .collect();
        let sending: Vec<_> = (0..SENDERS)
            .map(|n| {
                let tx = senders[n % receivers].clone();
                tokio::spawn(async move {
                    for k in 0..share {
                        tx.send(tick_body(k)).unwrap();
                    }
                })
            })
            .collect();
        drop(senders);
        for task in sending {
            task.await.unwrap();
        }
        let mut decoded = 0;
        for decoder in decoders {
            decoded += decoder.await.unwrap();
        }
        assert_eq!(decoded, share * SENDERS as u64);
        decoded as f64 / started.elapsed().as_secs_f64()
    })
}

/// Runs `measure` while a tap is attached to `space` and drained on a thread of its
/// own, as `agency run --watch` does; says how many copies the watcher saw and missed.
fn watched<T>(space: &agency_runtime::Space, measure: impl FnOnce() -> T) -> T {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut tap = space.tap(10_000);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stop = &stop;
        let watcher = scope.spawn(move || {
            let mut seen = 0u64;
            while !stop.load(Ordering::Acquire) {
                if tap.next_within(Duration::from_millis(10)).is_ok() {
                    seen += 1;
                }
            }
            (seen, tap.skipped())
        });
        let result = measure();
        stop.store(true, Ordering::Release);
        let (seen, skipped) = watcher.join().unwrap();
        eprintln!("watched run: the watcher saw {seen} copies, {skipped} skipped");
        result
    })
}

/// Runs `measure` while the web page serves `space` and a WebSocket client reads its
/// traffic view; says what the client saw.
fn with_page<T>(space: &Arc<agency_runtime::Space>, measure: impl FnOnce() -> T) -> T {
    let page = agency_tests::page::OpenPage::open(space.clone());
    let result = measure();
    let seen = page.close();
    eprintln!("page open: {seen:?}");
    result
}

/// How long each steady load lasts, and its rate.
const STEADY: Duration = Duration::from_secs(15);
const STEADY_RATE: u64 = 10_000;

/// Sends `tick`s to B at [`STEADY_RATE`] for [`STEADY`], first with no page, then with
/// the page open on the traffic view, and prints the process's resident memory along the
/// way: with the page open it should stay as flat as without.
fn page_memory(space: &Arc<agency_runtime::Space>) {
    // A driver that keeps no message log (a logging one would grow by every message).
    let driver = space
        .add_foreground(&AgentSpec::untyped("steady").without_log())
        .unwrap();
    let steady = || {
        let start = Instant::now();
        let mut sent = 0u64;
        let mut samples = Vec::new();
        while start.elapsed() < STEADY {
            let due = (start.elapsed().as_secs_f64() * STEADY_RATE as f64) as u64;
            while sent < due {
                let tick = json!({"to": "B", "action": {"name": "tick", "args": {"n": sent}}});
                driver.send(tick).unwrap();
                sent += 1;
            }
            if samples.len() < (start.elapsed().as_secs() / 5) as usize + 1 {
                samples.push(format!(
                    "{:.0} s: {} KiB",
                    start.elapsed().as_secs_f64(),
                    resident_kib()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        samples.push(format!("end: {} KiB", resident_kib()));
        (sent, samples.join(", "))
    };
    let (sent, closed) = steady();
    println!(
        "{STEADY_RATE} msg/s for {} s, no page ({sent} sent): RSS {closed}",
        STEADY.as_secs()
    );
    let page = agency_tests::page::OpenPage::open(space.clone());
    let (sent, open) = steady();
    let seen = page.close();
    println!(
        "{STEADY_RATE} msg/s for {} s, page open ({sent} sent; shown {}, skipped {}): RSS {open}",
        STEADY.as_secs(),
        seen.shown,
        seen.skipped
    );
}

/// This process's resident memory, in KiB.
fn resident_kib() -> u64 {
    agency_tests::process::resident_kib(std::process::id()).unwrap_or(0)
}

/// When the reference sender encodes its messages.
#[derive(Clone, Copy, PartialEq)]
enum Encode {
    /// As it sends each one, as an agent does.
    EachMessage,
    /// All of them before the clock starts: the channel and the decoding alone.
    Beforehand,
}

/// A and B (`Bench`), P (`Parallel`) and a driver, in a space that counts (see
/// `agency_runtime::metrics`) or not.
fn bench_space(counting: bool) -> (Arc<agency_runtime::Space>, agency_runtime::Foreground) {
    let space = agency_tests::open_space("local");
    let space = Arc::new(if counting {
        space
    } else {
        space.without_metrics()
    });
    space.add(&AgentSpec::new("Bench", "A")).unwrap();
    space.add(&AgentSpec::new("Bench", "B")).unwrap();
    space.add(&AgentSpec::new("Parallel", "P")).unwrap();
    let driver = space.add_foreground(&AgentSpec::untyped("driver")).unwrap();
    (space, driver)
}

/// Agent A floods agent B with `tick` messages; messages per second until B has seen all.
fn agency_one_way(driver: &agency_runtime::Foreground) -> f64 {
    let flood = |count: u64| {
        let message =
            json!({"to": "A", "action": {"name": "flood", "args": {"to": "B", "count": count}}});
        driver.request(message, Duration::from_secs(300)).unwrap()
    };
    flood(MESSAGES / 10);
    let result = flood(MESSAGES);
    assert_eq!(result["received"], MESSAGES);
    MESSAGES as f64 / result["seconds"].as_f64().unwrap()
}

/// Agent A requests `ping` from agent B, one request after the other.
fn agency_round_trips(driver: &agency_runtime::Foreground) -> Vec<f64> {
    agency_round_trips_to(driver, "B")
}

/// Agent A requests `ping` from agent `to`, one request after the other.
fn agency_round_trips_to(driver: &agency_runtime::Foreground, to: &str) -> Vec<f64> {
    let trips = |count: u64| -> Vec<f64> {
        let message = json!({"to": "A", "action": {"name": "round_trips", "args": {"to": to, "count": count}}});
        serde_json::from_value(driver.request(message, Duration::from_secs(300)).unwrap()).unwrap()
    };
    trips(ROUND_TRIPS / 10);
    trips(ROUND_TRIPS)
}

fn tick_body(n: u64) -> String {
    json!({"meta": {"id": uuid_like(n)}, "from": "A", "to": "B", "action": {"name": "tick", "args": {"n": n}}}).to_string()
}

fn uuid_like(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The same JSON bodies through an unbounded tokio channel, decoded by the receiver.
fn reference_one_way(encode: Encode) -> f64 {
    let mut encoded: Vec<String> = match encode {
        Encode::Beforehand => (0..MESSAGES).map(tick_body).collect(),
        Encode::EachMessage => Vec::new(),
    };
    runtime().block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let started = Instant::now();
        let receiver = tokio::spawn(async move {
            let mut count = 0u64;
            while let Some(body) = rx.recv().await {
                let message: Message = serde_json::from_str(&body).unwrap();
                count += u64::from(message.action.name == "tick");
                if count == MESSAGES {
                    break;
                }
            }
            count
        });
        if encode == Encode::Beforehand {
            encoded.drain(..).for_each(|body| tx.send(body).unwrap());
        } else {
            (0..MESSAGES).for_each(|n| tx.send(tick_body(n)).unwrap());
        }
        assert_eq!(receiver.await.unwrap(), MESSAGES);
        MESSAGES as f64 / started.elapsed().as_secs_f64()
    })
}

/// A request and its response as JSON text through two tokio channels, both decoded.
fn reference_round_trips() -> Vec<f64> {
    runtime().block_on(async {
        let (request_tx, mut request_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let (reply_tx, mut reply_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(body) = request_rx.recv().await {
                let request: Message = serde_json::from_str(&body).unwrap();
                let reply = json!({
                    "meta": {"id": uuid_like(0), "parent_id": request.meta.id},
                    "from": "B", "to": request.from,
                    "action": {"name": "[response]", "args": {"value": 1}}
                });
                reply_tx.send(reply.to_string()).unwrap();
            }
        });
        let mut trips = Vec::new();
        for n in 0..ROUND_TRIPS + ROUND_TRIPS / 10 {
            let started = Instant::now();
            let body = json!({"meta": {"id": uuid_like(n)}, "from": "A", "to": "B", "action": {"name": "ping"}});
            request_tx.send(body.to_string()).unwrap();
            let reply: Message = serde_json::from_str(&reply_rx.recv().await.unwrap()).unwrap();
            assert_eq!(reply.action.args["value"], Value::from(1));
            trips.push(started.elapsed().as_secs_f64() * 1e6);
        }
        trips.split_off((ROUND_TRIPS / 10) as usize)
    })
}
