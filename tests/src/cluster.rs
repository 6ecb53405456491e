//! A three-node RabbitMQ cluster for the tests that need one (`tests/cluster.rs`): private
//! nodes under `target/rabbitmq-cluster` ([`crate::nodes`]), started on first use, joined
//! into one cluster, shared by the test processes of one run and stopped after the last.
//!
//! The process works in a vhost of its own on the cluster (vhosts are cluster-wide), as on
//! the single broker ([`crate::broker`]). Tests kill nodes and start them again: a test
//! that needs every node calls [`Cluster::heal`] first.

use std::{
    process::Stdio,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use crate::{
    broker::{queue_column, tell, Broker},
    nodes::{answers, Nodes},
};

/// How many nodes the cluster has: the fewest for a quorum queue to outlive one.
pub const NODES: usize = 3;

/// The cluster of this test process, started or found on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let nodes = Nodes::lease("rabbitmq-cluster", NODES);
        let vhost = format!("agency-test-{}", std::process::id());
        let broker = Broker::on_private_node(&nodes, 0, &vhost);
        tell(&format!(
            "RabbitMQ cluster: {} on 127.0.0.1 ports {} (data in {}; it stops when the \
             tests end), vhost {vhost}",
            nodes
                .nodes
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            nodes
                .nodes
                .iter()
                .map(|n| n.port.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            nodes.dir.display(),
        ));
        Cluster {
            nodes,
            broker,
            faults: Mutex::new(()),
        }
    })
}

/// Three clustered RabbitMQ nodes, and this process's vhost on them.
pub struct Cluster {
    nodes: Nodes,
    /// The vhost, reached through the first node.
    broker: Broker,
    faults: Mutex<()>,
}

impl Cluster {
    /// Serialises the tests that kill nodes: the guard is held for the whole test.
    pub fn exclusive(&self) -> std::sync::MutexGuard<'_, ()> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The URL of this process's vhost through node `index`.
    pub fn url(&self, index: usize) -> String {
        self.broker.url_via(&self.address(index))
    }

    /// The URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        (0..NODES).map(|i| self.url(i)).collect()
    }

    /// Where node `index` listens: `127.0.0.1:port`.
    pub fn address(&self, index: usize) -> String {
        format!("127.0.0.1:{}", self.nodes.nodes[index].port)
    }

    /// The Erlang name of node `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.nodes.nodes[index].name
    }

    /// The index of the node whose AMQP port `url` names.
    pub fn index_of(&self, url: &str) -> Option<usize> {
        (0..NODES).find(|&i| url.contains(&self.address(i)))
    }

    /// The variables Python Agency's `AMQPSpace` reads, naming node `index`.
    pub fn python_env(&self, index: usize) -> [(&'static str, String); 5] {
        let mut env = self.broker.python_env();
        env[1].1 = self.nodes.nodes[index].port.to_string();
        env
    }

    /// The vhost this process works in.
    pub fn vhost(&self) -> &str {
        self.broker.vhost()
    }

    /// Kills node `index` with `kill -9` of its Erlang VM, as a crash would.
    pub fn kill(&self, index: usize) {
        self.nodes.kill(index);
    }

    /// Starts node `index` again and waits until the cluster counts it as running.
    pub fn restart(&self, index: usize) {
        self.nodes.restart(index);
        self.wait_until_running(index);
    }

    /// Starts again every node that is down (a test that failed halfway may have left one
    /// killed).
    pub fn heal(&self) {
        for index in 0..NODES {
            if !answers(self.nodes.nodes[index].port) {
                self.restart(index);
            }
        }
    }

    /// `rabbitmqctl ARGS` on a running node: its standard output; panics if it fails.
    pub fn ctl(&self, args: &[&str]) -> String {
        let running = (0..NODES)
            .find(|&i| answers(self.nodes.nodes[i].port))
            .expect("a running node");
        let output = self
            .nodes
            .ctl(running, args)
            .stdin(Stdio::null())
            .output()
            .expect("rabbitmqctl runs");
        assert!(output.status.success(), "rabbitmqctl {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `rabbitmqctl list_queues` of this process's vhost: each queue's name and `column`,
    /// a line each, tab-separated.
    fn list_queues(&self, column: &str) -> String {
        let vhost = self.vhost();
        let args = [
            "list_queues",
            "-p",
            vhost,
            "-q",
            "--no-table-headers",
            "name",
            column,
        ];
        self.ctl(&args)
    }

    /// `queue`'s value of `column` in `rabbitmqctl list_queues` of this process's vhost.
    pub fn queue_info(&self, queue: &str, column: &str) -> Option<String> {
        queue_column(&self.list_queues(column), queue).map(str::to_owned)
    }

    /// The queues of this process's vhost whose names start with `prefix`, each with how
    /// many messages it holds ready.
    pub fn queues(&self, prefix: &str) -> Vec<(String, u64)> {
        self.list_queues("messages_ready")
            .lines()
            .filter_map(|line| {
                let (name, ready) = line.split_once('\t')?;
                let ready = ready.trim().parse().unwrap_or(0);
                name.starts_with(prefix).then(|| (name.to_owned(), ready))
            })
            .collect()
    }

    /// The node of each connection this process holds to the space on `exchange` (the
    /// transport names them `agency (pid N) EXCHANGE`), by the port it goes to.
    pub fn nodes_of(&self, exchange: &str) -> Vec<usize> {
        let name = format!("agency (pid {}) {exchange}\"", std::process::id());
        let args = [
            "list_connections",
            "-p",
            self.vhost(),
            "-q",
            "--no-table-headers",
            "port",
            "client_properties",
        ];
        self.ctl(&args)
            .lines()
            .filter(|line| line.contains(&name))
            .filter_map(|line| {
                let port = line.split('\t').next()?;
                (0..NODES).find(|&i| self.nodes.nodes[i].port.to_string() == port)
            })
            .collect()
    }

    /// The node that holds the leader of the quorum queue `queue` (in this vhost).
    pub fn leader_of(&self, queue: &str) -> Option<usize> {
        let leader = self.queue_info(queue, "leader")?;
        (0..NODES).find(|&i| self.name(i) == leader)
    }

    /// Waits until the cluster counts node `index` among its running nodes.
    fn wait_until_running(&self, index: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let name = self.name(index).to_owned();
        loop {
            let status = self.ctl(&["cluster_status", "--formatter", "json"]);
            let running = serde_json::from_str::<serde_json::Value>(&status)
                .ok()
                .and_then(|s| s["running_nodes"].as_array().cloned())
                .unwrap_or_default();
            if running.iter().any(|n| n == name.as_str()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {name} did not rejoin the cluster: {status}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
