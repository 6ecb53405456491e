//! A real Prometheus server (Debian's `prometheus`, which `.ci/run` installs) for the
//! metrics tests: started on a free loopback port with a config that scrapes the given
//! targets every [`SCRAPE_EVERY`], its data in a fresh folder under `target/`, in a
//! process [`Group`] of its own, so it never outlives its test; asked through its HTTP
//! API (`/api/v1/query`).

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{broker::percent_encoded, browser::find_program, group::Group};

/// How often the test Prometheus scrapes its targets.
pub const SCRAPE_EVERY: Duration = Duration::from_secs(1);

/// How long Prometheus may take to start, or to see a value a scrape brings.
pub const PROMETHEUS_PATIENCE: Duration = Duration::from_secs(30);

/// One series of a query's answer: its labels and its value.
pub type Sample = (BTreeMap<String, String>, f64);

/// A Prometheus server scraping some targets; stopped (its whole group) when dropped.
pub struct Prometheus {
    addr: SocketAddr,
    _group: Group,
    data: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `http://TARGET/metrics` for each target, and waits until
    /// it is ready.
    pub fn scraping(targets: &[SocketAddr]) -> Self {
        let program = find_program("prometheus", "apt-get install prometheus");
        let data = crate::scratch_dir(&format!("prometheus-{}", std::process::id()));
        let every = format!("{}s", SCRAPE_EVERY.as_secs());
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: {every}\n  evaluation_interval: {every}\n\
             scrape_configs:\n  - job_name: agency\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(data.join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let group = Group::spawn(
            Command::new(program)
                .arg(format!(
                    "--config.file={}",
                    data.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    data.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(data.join("prometheus.log")).unwrap()),
        )
        .expect("prometheus starts");
        let prometheus = Self {
            addr,
            _group: group,
            data,
        };
        let started = Instant::now();
        while get(addr, "/-/ready").0 != 200 {
            assert!(
                started.elapsed() < PROMETHEUS_PATIENCE,
                "Prometheus is not ready after {PROMETHEUS_PATIENCE:?}: {}",
                prometheus.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// What Prometheus logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("prometheus.log")).unwrap_or_default()
    }

    /// The series an instant query answers now.
    pub fn query(&self, expression: &str) -> Vec<Sample> {
        let (status, body) = get(
            self.addr,
            &format!("/api/v1/query?query={}", percent_encoded(expression)),
        );
        let answer: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{e}: Prometheus answered {status}: {body}"));
        assert_eq!(answer["status"], "success", "{expression}: {answer}");
        answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|series| {
                let labels = series["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                let value = series["value"][1].as_str().and_then(|v| v.parse().ok());
                (labels, value.unwrap_or(f64::NAN))
            })
            .collect()
    }

    /// The one value `expression` answers, once `wanted` holds for it (scrapes take a
    /// while); fails after [`PROMETHEUS_PATIENCE`] showing the last answer.
    pub fn value_when(&self, expression: &str, wanted: impl Fn(f64) -> bool) -> f64 {
        let started = Instant::now();
        loop {
            let answer = self.query(expression);
            if let [(_, value)] = answer[..] {
                if wanted(value) {
                    return value;
                }
            }
            assert!(
                started.elapsed() < PROMETHEUS_PATIENCE,
                "{expression} answered {answer:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A GET over plain HTTP/1.0: the status and the body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n"),
    )
}

/// Sends a raw request and answers the status and the body (0 if nothing answered).
pub fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let mut answer = String::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_string(&mut answer).is_err()
    {
        return (0, answer);
    }
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_owned())
}
