//! `agency run --metrics`: a real Prometheus server scrapes a real host while the console
//! sends known traffic, and its HTTP API must answer the counts that traffic makes; the
//! endpoint shows the transport's own figures, refuses other sites and never shows a
//! secret.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use agency_tests::{
    broker,
    process::{Host, START_PATIENCE},
    prometheus::{get, http, Prometheus},
};

/// A Calculator, a Host (whose actions ask permission) and the console.
const SPACE: &str = "console_id = \"User\"\n\
    [[agents]]\ntype = \"Calculator\"\nid = \"Calculator\"\n\
    [[agents]]\ntype = \"Host\"\nid = \"Host\"\n";

/// The address a host printed for its metrics (`metrics: http://ADDR/metrics`).
fn metrics_addr(host: &Host) -> SocketAddr {
    let printed = host.stderr.wait_for_count("/metrics\n", 1, START_PATIENCE);
    let line = printed
        .lines()
        .find_map(|line| line.strip_prefix("metrics: http://"))
        .expect("the metrics line");
    line.trim_end_matches("/metrics").parse().unwrap()
}

/// The first line of `/metrics` that starts with `wanted`, once there is one.
fn metrics_line(addr: SocketAddr, wanted: &str) -> String {
    wait_for_line(addr, wanted, |_| true)
}

/// The first line of `/metrics` that starts with `wanted`, once `good` holds for it (a
/// plugin reports every second).
fn wait_for_line(addr: SocketAddr, wanted: &str, good: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let (_, body) = get(addr, "/metrics");
        if let Some(line) = body.lines().find(|line| line.starts_with(wanted)) {
            if good(line) {
                return line.to_owned();
            }
        }
        assert!(
            started.elapsed() < START_PATIENCE,
            "no {wanted} line as wanted in:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn prometheus_scrapes_the_counts_of_known_traffic() {
    let mut host = Host::start(SPACE, &["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&host);
    host.wait_until_started();
    let prometheus = Prometheus::scraping(&[addr]);
    prometheus.value_when("up", |up| up == 1.0);

    // 30 additions over about 3 s (so that a rate has samples to work on), 2 unknown
    // actions, and two permission questions: one allowed, one refused.
    for n in 0..30 {
        host.type_line(&format!("/Calculator.add a:{n} b:1"));
        host.stdout
            .wait_for_count("Calculator: ", n + 1, START_PATIENCE);
        std::thread::sleep(Duration::from_millis(100));
    }
    host.type_line("/Calculator.nothing");
    host.type_line("/Calculator.nothing");
    host.stdout
        .wait_for_count("AttributeError", 2, START_PATIENCE);
    for answer in ["y", "n"] {
        host.type_line("/Host.list_files path:\"/\"");
        host.stdout.wait_for_count(
            "permission: allow User -> Host.list_files",
            1,
            START_PATIENCE,
        );
        host.type_line(answer);
        host.stdout.wait_for_count(
            if answer == "y" { "allowed" } else { "refused" },
            1,
            START_PATIENCE,
        );
    }

    let calculator = |metric: &str| format!("{metric}{{type=\"Calculator\"}}");
    let exactly = |n: f64| move |value: f64| value == n;
    prometheus.value_when(&calculator("agency_messages_handled_total"), exactly(32.0));
    prometheus.value_when(
        &calculator("agency_action_duration_seconds_count"),
        exactly(30.0),
    );
    prometheus.value_when(
        "agency_errors_total{type=\"Calculator\",kind=\"AttributeError\"}",
        exactly(2.0),
    );
    prometheus.value_when(&calculator("agency_agents"), exactly(1.0));
    prometheus.value_when(
        "agency_permission_questions_total{type=\"Host\"}",
        exactly(2.0),
    );
    prometheus.value_when(
        "agency_permissions_allowed_total{type=\"Host\"}",
        exactly(1.0),
    );
    prometheus.value_when(
        "agency_permissions_refused_total{type=\"Host\"}",
        exactly(1.0),
    );
    prometheus.value_when("agency_messages_sent_total{type=\"foreground\"}", |sent| {
        sent >= 34.0
    });
    prometheus.value_when(
        "agency_agent_messages_handled_total{agent=\"Calculator\",type=\"Calculator\"}",
        exactly(32.0),
    );
    prometheus.value_when("agency_build_info{transport=\"local\"}", exactly(1.0));
    prometheus.value_when("agency_plugins_loaded_total", |n| n >= 2.0);
    prometheus.value_when("agency_process_resident_memory_bytes", |n| n > 1e6);
    // The additions took 3 s or more: their rate over the last minute is positive and
    // at most what was sent.
    let rate = prometheus.value_when(
        &format!("rate({}[1m])", calculator("agency_messages_handled_total")),
        |rate| rate > 0.0,
    );
    assert!(rate * 60.0 <= 32.0 * 1.5, "rate {rate}/s for 32 messages");
    host.finish();
}

#[test]
fn the_metrics_refuse_other_sites_and_show_no_secret() {
    let config = broker::host_config(
        "agency-metrics-secrets",
        "User",
        &[("Calculator", "Calculator")],
    );
    let password = broker::broker().url();
    let mut host = Host::start(&config, &["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&host);
    host.wait_until_started();

    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("agency_build_info{"), "{body}");
    assert!(body.contains("transport=\"amqp\""), "{body}");
    let secret = password.split('@').next().unwrap();
    assert!(!body.contains(secret), "the broker's URL is shown:\n{body}");
    assert!(!body.contains("amqp://"), "{body}");

    // The transport's own figures, and after the broker closes its connections, one
    // reconnection more.
    let line = |wanted: &str| metrics_line(addr, wanted);
    assert!(line("agency_plugin_info{").contains("broker=\"127.0.0.1:"));
    assert!(line("agency_amqp_connected{").ends_with(" 1"));
    assert!(line("agency_amqp_reconnects_total{").ends_with(" 0"));
    broker::close_connections_of(host.pid());
    wait_for_line(addr, "agency_amqp_reconnects_total{", |line| {
        line.ends_with(" 1")
    });
    wait_for_line(addr, "agency_amqp_connected{", |line| line.ends_with(" 1"));

    let refused =
        |headers: &str| http(addr, &format!("GET /metrics HTTP/1.0\r\n{headers}\r\n\r\n")).0;
    assert_eq!(refused(&format!("Host: {addr}")), 200);
    assert_eq!(refused("Host: evil.example"), 421, "a DNS-rebinding name");
    assert_eq!(
        refused(&format!("Host: {addr}\r\nOrigin: http://evil.example")),
        403
    );
    assert_eq!(
        refused(&format!("Host: {addr}\r\nSec-Fetch-Site: cross-site")),
        403
    );
    host.finish();

    // Not on another address without saying so.
    let public = Host::start(SPACE, &["--metrics", "0.0.0.0:0"]);
    let said = public.stderr.wait_for("--metrics-public");
    assert!(said.contains("not a loopback address"), "{said}");
    public.finish_with_code(1);
}
