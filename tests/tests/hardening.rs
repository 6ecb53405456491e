//! What a hostile peer, a refused id, a closed pipe or a strange file can do: each test
//! here reproduces one way in which the host once hung, leaked, lost data or printed what
//! it should not, against real processes, the real broker, real pipes and real files.

use std::{
    io::{Read, Write},
    process::Stdio,
    time::{Duration, Instant},
};

use agency_tests::{
    broker::{connections_of, host_config},
    process::{agency, config, Host},
    unique_name, PATIENCE,
};

/// Waits up to `patience` for `child` to exit; kills it and fails if it does not.
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
        let mut losers = 0;
        for (own, host) in &mut hosts {
            // Agents start before the console attaches: once the console has an answer,
            // the refusal, if any, is on record.
            host.type_line(&format!("/{own}.value"));
            host.stdout.wait_for(&format!("{own}: 42"));
            host.type_line(&format!("/{shared}.value"));
            host.stdout.wait_for(&format!("{shared}: 42"));
            let log = host.stderr.contents();
            if log.contains(&format!("Agent '{shared}' already exists")) {
                losers += 1;
            }
            assert!(!log.contains("reconnecting"), "round {round}: {log}");
        }
        assert_eq!(losers, 1, "round {round}: exactly one process is refused");
        for (_, host) in hosts {
            host.finish();
        }
    }
}
