//! The RabbitMQ broker the `amqp` tests use, found or started once per test process, and a
//! virtual host of the process's own on it; configs for `agency` processes on it, raw
//! publishing as any client could, and questions to `rabbitmqctl`.
//!
//! Which broker ([`broker`]), in order:
//! 1. `AGENCY_TEST_AMQP_URL`, if set: that broker and the vhost its URL names, as given.
//! 2. The node on `127.0.0.1:5672`, if it answers and `rabbitmqctl` may manage it.
//! 3. A private node under `target/rabbitmq` ([`crate::nodes`]), shared by the test
//!    processes of one run and stopped about 10 s after the last one ends.
//!
//! In cases 2 and 3 the process works in a vhost of its own, `agency-test-<pid>`, made on
//! first use and deleted by a small watcher once the process has exited (however it ends):
//! two runs on one broker never share a queue name, and agents on other vhosts are never
//! touched. The choice is told in one line on standard error.

use std::{
    io::Write,
    path::PathBuf,
    process::{ChildStdin, Command, Stdio},
    sync::OnceLock,
};

use crate::nodes::{answers, detached, Nodes};
use lapin::{
    options::BasicPublishOptions, types::ShortString, uri::AMQPUri, BasicProperties, Connection,
    ConnectionProperties,
};

/// The broker of this test process, found or started on first use (see the module docs).
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(Broker::find)
}

/// A RabbitMQ broker and the vhost this test process works in.
pub struct Broker {
    host: String,
    port: u16,
    username: String,
    password: String,
    vhost: String,
    /// The `rabbitmqctl` that manages the broker's node, and the node's name if not the
    /// default one.
    ctl: PathBuf,
    node: Option<String>,
    /// Deletes the vhost when this end of its standard input closes (at process exit).
    _vhost_watcher: Option<ChildStdin>,
}

impl Broker {
    /// The broker on a private node of `nodes`, with a fresh vhost `vhost` for guest.
    pub(crate) fn on_private_node(nodes: &Nodes, index: usize, vhost: &str) -> Self {
        let node = &nodes.nodes[index];
        Self::with_vhost(node.port, nodes.ctl.clone(), Some(node.name.clone()), vhost)
            .unwrap_or_else(|| {
                panic!(
                    "cannot make vhost {vhost} on the private node {}",
                    node.name
                )
            })
    }

    fn find() -> Self {
        if let Ok(url) = std::env::var("AGENCY_TEST_AMQP_URL") {
            let uri: AMQPUri = url
                .parse()
                .unwrap_or_else(|e| panic!("AGENCY_TEST_AMQP_URL is not an AMQP URL: {e}"));
            let broker = Self {
                host: uri.authority.host,
                port: uri.authority.port,
                username: uri.authority.userinfo.username,
                password: uri.authority.userinfo.password,
                vhost: uri.vhost,
                ctl: "rabbitmqctl".into(),
                node: None,
                _vhost_watcher: None,
            };
            tell(&format!(
                "RabbitMQ from AGENCY_TEST_AMQP_URL: {}:{}, vhost {:?}",
                broker.host, broker.port, broker.vhost
            ));
            return broker;
        }
        let vhost = format!("agency-test-{}", std::process::id());
        if answers(5672) {
            if let Some(broker) = Self::with_vhost(5672, "rabbitmqctl".into(), None, &vhost) {
                tell(&format!("RabbitMQ on 127.0.0.1:5672, vhost {vhost}"));
                return broker;
            }
            tell("RabbitMQ on 127.0.0.1:5672 answers but rabbitmqctl cannot manage it");
        }
        let private = Nodes::lease("rabbitmq", 1);
        let node = &private.nodes[0];
        let broker = Self::on_private_node(&private, 0, &vhost);
        tell(&format!(
            "RabbitMQ: private node {} on 127.0.0.1:{} (data in {}; it stops when the tests \
             end), vhost {vhost}",
            node.name,
            node.port,
            private.dir.display()
        ));
        broker
    }

    /// The broker on `127.0.0.1:port` managed by `ctl` (on `node`), with a fresh vhost
    /// `vhost` for guest; `None` if `rabbitmqctl` cannot make it.
    fn with_vhost(port: u16, ctl: PathBuf, node: Option<String>, vhost: &str) -> Option<Self> {
        let mut broker = Self {
            host: "127.0.0.1".into(),
            port,
            username: "guest".into(),
            password: "guest".into(),
            vhost: vhost.into(),
            ctl,
            node,
            _vhost_watcher: None,
        };
        broker.try_ctl(&["add_vhost", vhost])?;
        broker.try_ctl(&["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])?;
        let delete = broker.ctl_command(&["delete_vhost", vhost]);
        let mut watcher = detached(r#"read _ignored; exec "$@" >/dev/null 2>&1"#)
            .arg(delete.get_program())
            .args(delete.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        broker._vhost_watcher = watcher.stdin.take();
        watcher.wait().ok()?;
        Some(broker)
    }

    /// `amqp://user:password@host:port/vhost`, the URL of this process's vhost.
    pub fn url(&self) -> String {
        self.url_via(&self.address())
    }

    /// The URL of this process's vhost reached through `address` (`host:port`), such as a
    /// [`Proxy`](crate::proxy::Proxy) in front of the broker.
    pub fn url_via(&self, address: &str) -> String {
        format!(
            "amqp://{}:{}@{address}/{}",
            self.username,
            self.password,
            percent_encoded(&self.vhost)
        )
    }

    /// Where the broker listens: `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The vhost this process works in.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// The variables Python Agency's `AMQPSpace` reads, naming this broker and vhost.
    pub fn python_env(&self) -> [(&'static str, String); 5] {
        [
            ("AMQP_HOST", self.host.clone()),
            ("AMQP_PORT", self.port.to_string()),
            ("AMQP_USERNAME", self.username.clone()),
            ("AMQP_PASSWORD", self.password.clone()),
            ("AMQP_VHOST", self.vhost.clone()),
        ]
    }

    fn ctl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.ctl);
        if let Some(node) = &self.node {
            command.args(["-n", node]);
        }
        command.args(args);
        command
    }

    fn try_ctl(&self, args: &[&str]) -> Option<String> {
        let output = self.ctl_command(args).stdin(Stdio::null()).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Says which broker the tests use, on standard error, past the test harness's capture.
pub(crate) fn tell(line: &str) {
    let _ = writeln!(std::io::stderr(), "agency tests: {line}");
}

/// `text` with every byte but letters, digits, `-`, `.`, `_` and `~` percent-encoded, as
/// a vhost in an AMQP URL or a query in an HTTP one.
pub(crate) fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02x}"),
        })
        .collect()
}

/// `agency.toml` for a host on this process's broker and vhost, on `exchange`, with a
/// console and agents `(type, id)`.
pub fn host_config(exchange: &str, console: &str, agents: &[(&str, &str)]) -> String {
    let mut text = format!(
        "transport = \"amqp\"\nconsole_id = \"{console}\"\n[transports.amqp]\nurl = \"{}\"\n\
         exchange = \"{exchange}\"\n",
        broker().url()
    );
    for (kind, id) in agents {
        text += &format!("[[agents]]\ntype = \"{kind}\"\nid = \"{id}\"\n");
    }
    text
}

/// Publishes raw bodies straight to a queue through the default exchange, as any client
/// on the broker could, each with the `message_id` given beside it (if any).
pub fn publish_raw(queue: &str, bodies: &[(Vec<u8>, Option<&str>)]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connection = Connection::connect(&broker().url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        for (body, message_id) in bodies {
            let mut properties = BasicProperties::default().with_content_type("text/plain".into());
            if let Some(id) = message_id {
                properties = properties.with_message_id(ShortString::from(*id));
            }
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body,
                    properties,
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let _ = connection.close(200, "done".into()).await;
    });
}

/// `rabbitmqctl ARGS` on the broker's node: its standard output; panics if it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = broker()
        .ctl_command(args)
        .stdin(Stdio::null())
        .output()
        .expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `rabbitmqctl COMMAND -p <this process's vhost> ARGS`.
pub fn rabbitmqctl_in_vhost(command: &str, args: &[&str]) -> String {
    let mut all = vec![command, "-p", broker().vhost()];
    all.extend(args);
    rabbitmqctl(&all)
}

/// How many messages of `queue` the broker holds ready (not yet delivered); `None` if
/// there is no such queue.
pub fn ready_in_broker(queue: &str) -> Option<u64> {
    let listing = rabbitmqctl_in_vhost(
        "list_queues",
        &["-q", "--no-table-headers", "name", "messages_ready"],
    );
    queue_column(&listing, queue)?.parse().ok()
}

/// In the output of `rabbitmqctl list_queues -q --no-table-headers name COLUMN`, the
/// column of `queue`'s line.
pub fn queue_column<'a>(listing: &'a str, queue: &str) -> Option<&'a str> {
    listing.lines().find_map(|line| {
        let (name, value) = line.split_once('\t')?;
        (name == queue).then_some(value.trim())
    })
}

/// The broker's ids of the connections the process `pid` holds (our connections are
/// named `agency (pid N) EXCHANGE`).
fn connection_ids_of(pid: u32) -> Vec<String> {
    connection_ids_named(&format!("agency (pid {pid}) "))
}

/// Closes, from the broker's side, every connection of this process to `exchange`'s
/// space (other tests' connections, in this vhost too, are left alone).
pub fn close_connections_to(exchange: &str) {
    for id in connection_ids_to(exchange) {
        rabbitmqctl(&["close_connection", &id, "agency test: forced close"]);
    }
}

/// How many connections this process holds to the space on `exchange`.
pub fn connections_to(exchange: &str) -> usize {
    connection_ids_to(exchange).len()
}

/// The broker's ids of this process's connections to the space on `exchange` (the
/// transport names them `agency (pid N) EXCHANGE`).
fn connection_ids_to(exchange: &str) -> Vec<String> {
    connection_ids_named(&format!("agency (pid {}) {exchange}\"", std::process::id()))
}

/// The broker's ids of the connections whose properties contain `name`.
fn connection_ids_named(name: &str) -> Vec<String> {
    rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "client_properties",
    ])
    .lines()
    .filter(|line| line.contains(name))
    .filter_map(|line| line.split('\t').next().map(str::to_owned))
    .collect()
}

/// How many connections the process `pid` holds to the broker.
pub fn connections_of(pid: u32) -> usize {
    connection_ids_of(pid).len()
}

/// Closes every connection of the process `pid` from the broker's side (other tests'
/// connections are left alone).
pub fn close_connections_of(pid: u32) {
    for id in connection_ids_of(pid) {
        rabbitmqctl(&["close_connection", &id, "agency test: forced close"]);
    }
}
