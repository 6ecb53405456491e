//! Private RabbitMQ nodes: one, or a cluster of several, started from the installed
//! `rabbitmq-server` with their own names, ports and data under a folder of `target/`,
//! shared by the test processes of one run and stopped once the last of them has ended.
//!
//! Each process that uses the nodes leaves a lease (its own pid and, when run by cargo,
//! cargo's); a reaper started with the nodes stops them all once no lease has been alive
//! for 10 s (`IDLE_SECONDS`). The folder is locked while a process checks the nodes and takes
//! its lease, so the reaper cannot stop them between the two.
//!
//! A cluster's nodes are joined to the first one with `rabbitmqctl join_cluster`. A node
//! can be killed (`kill -9` of its Erlang VM, as a crash or a lost machine) and started
//! again with its data, when it rejoins the cluster by itself.

use std::{
    net::{SocketAddr, TcpStream},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// How long private nodes outlive the last test process that used them.
const IDLE_SECONDS: u32 = 10;
/// How long a node may take to start (or a cluster to form).
const START_PATIENCE: Duration = Duration::from_secs(120);

/// Private nodes leased by this process (see the module docs).
pub struct Nodes {
    /// The nodes, the first one being the one the others joined.
    pub nodes: Vec<Node>,
    /// Their folder under `target/`.
    pub dir: PathBuf,
    /// The `rabbitmqctl` that manages them.
    pub ctl: PathBuf,
}

/// One private node.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its Erlang node name, `<folder>-<port>@localhost`.
    pub name: String,
    /// Its AMQP port on 127.0.0.1.
    pub port: u16,
    /// Its Erlang distribution port.
    dist_port: u16,
}

impl Nodes {
    /// Leases the `count` nodes kept in `target/<folder>` for this process, starting them
    /// (clustered, if more than one) and their reaper when they are not all running.
    pub fn lease(folder: &str, count: usize) -> Self {
        let dir = crate::target_dir().join(folder);
        std::fs::create_dir_all(dir.join("leases")).expect("the private nodes' folder");
        let lock = std::fs::File::create(dir.join("lock")).expect("the private nodes' lock");
        lock.lock().expect("lock the private nodes' folder");
        let bin = server_scripts();
        let ctl = bin.join("rabbitmqctl");
        let recorded = recorded(&dir);
        let running = recorded.len() == count && recorded.iter().all(|node| answers(node.port));
        let nodes = if running {
            recorded
        } else {
            // Whatever is left of an earlier set (a node killed by a test that then
            // failed) is stopped before a fresh set starts.
            for node in &recorded {
                kill(&dir, node);
            }
            start_all(&dir, &bin, folder, count)
        };
        let mut leases = vec![std::process::id()];
        leases.extend(cargo_parent());
        for pid in leases {
            std::fs::write(dir.join("leases").join(pid.to_string()), "").expect("lease");
        }
        drop(lock);
        Self { nodes, dir, ctl }
    }

    /// Kills node `index` as a crash would: `kill -9` of its Erlang VM.
    pub fn kill(&self, index: usize) {
        kill(&self.dir, &self.nodes[index]);
    }

    /// Starts node `index` again with its data (it rejoins its cluster by itself), and
    /// waits until it accepts connections.
    pub fn restart(&self, index: usize) {
        launch(&self.dir, &server_scripts(), &self.nodes[index]);
        wait_until_up(&self.dir, &self.nodes[index]);
    }

    /// `rabbitmqctl -n NODE ARGS` for node `index`.
    pub fn ctl(&self, index: usize, args: &[&str]) -> Command {
        let mut command = Command::new(&self.ctl);
        command.args(["-n", &self.nodes[index].name]).args(args);
        command
    }
}

/// The nodes the folder records as started, `name port dist_port` a line.
fn recorded(dir: &Path) -> Vec<Node> {
    let text = std::fs::read_to_string(dir.join("nodes")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            Some(Node {
                name: words.next()?.to_owned(),
                port: words.next()?.parse().ok()?,
                dist_port: words.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Starts `count` fresh nodes with their data in `dir`, clusters them, and starts their
/// reaper.
fn start_all(dir: &Path, bin: &Path, folder: &str, count: usize) -> Vec<Node> {
    let _ = std::fs::remove_file(dir.join("nodes"));
    // Earlier sets' folders (named by their ports).
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().parse::<u16>().is_ok() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let nodes: Vec<Node> = (0..count)
        .map(|_| {
            let [port, dist_port] = [free_port(), free_port()];
            Node {
                name: format!("{folder}-{port}@localhost"),
                port,
                dist_port,
            }
        })
        .collect();
    for node in &nodes {
        let data = node_dir(dir, node);
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("a private node's folder");
        launch(dir, bin, node);
    }
    for node in &nodes {
        wait_until_up(dir, node);
    }
    let ctl = bin.join("rabbitmqctl");
    for node in &nodes[1..] {
        for args in [
            vec!["stop_app"],
            vec!["join_cluster", &nodes[0].name],
            vec!["start_app"],
        ] {
            let output = Command::new(&ctl)
                .args(["-n", &node.name])
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .expect("rabbitmqctl runs");
            assert!(
                output.status.success(),
                "rabbitmqctl -n {} {args:?} failed: {}",
                node.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let lines: String = nodes
        .iter()
        .map(|n| format!("{} {} {}\n", n.name, n.port, n.dist_port))
        .collect();
    std::fs::write(dir.join("nodes"), lines).expect("the private nodes' record");
    start_reaper(dir, &ctl, &nodes);
    nodes
}

/// The folder of a node's configuration, data and log.
fn node_dir(dir: &Path, node: &Node) -> PathBuf {
    dir.join(node.port.to_string())
}

/// Starts the node's server in the background, detached from this process.
fn launch(dir: &Path, bin: &Path, node: &Node) {
    let data = node_dir(dir, node);
    let file = |name: &str, text: &str| {
        let path = data.join(name);
        std::fs::write(&path, text).expect("a private node's files");
        path
    };
    let config = file(
        "rabbitmq.conf",
        &format!("listeners.tcp.1 = 127.0.0.1:{}\n", node.port),
    );
    let env_file = file("rabbitmq-env.conf", "");
    let plugins = file("enabled_plugins", "[].\n");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.join("server.log"))
        .expect("server.log");
    let server = bin.join("rabbitmq-server");
    detached(r#"exec "$@""#)
        .arg(&server)
        .env("RABBITMQ_NODENAME", &node.name)
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_DIST_PORT", node.dist_port.to_string())
        .env("RABBITMQ_CONFIG_FILE", config)
        .env("RABBITMQ_CONF_ENV_FILE", env_file)
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", plugins)
        .env("RABBITMQ_MNESIA_BASE", data.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", &data)
        .env("RABBITMQ_PID_FILE", data.join("pid"))
        .env(
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
            "-kernel inet_dist_use_interface {127,0,0,1}",
        )
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("server.log"))
        .stderr(log)
        .status()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
}

/// Waits until the node accepts AMQP connections.
fn wait_until_up(dir: &Path, node: &Node) {
    let deadline = Instant::now() + START_PATIENCE;
    while !answers(node.port) {
        assert!(
            Instant::now() < deadline,
            "the private RabbitMQ node {} did not start within {START_PATIENCE:?}; see {}",
            node.name,
            node_dir(dir, node).join("server.log").display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `kill -9` of the node's Erlang VM, and waits until its port is closed.
fn kill(dir: &Path, node: &Node) {
    let pid = std::fs::read_to_string(node_dir(dir, node).join("pid")).unwrap_or_default();
    let Ok(pid) = pid.trim().parse::<i32>() else {
        return;
    };
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + START_PATIENCE;
    while answers(node.port) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The folder of RabbitMQ's own scripts, which run as the current user (Debian's
/// `/usr/sbin` wrappers switch to the `rabbitmq` user); panics saying what to install if
/// there is none.
fn server_scripts() -> PathBuf {
    let debian = Path::new("/usr/lib/rabbitmq/bin");
    if debian.join("rabbitmq-server").exists() {
        return debian.to_owned();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("rabbitmq-server").exists())
        .unwrap_or_else(|| {
            panic!(
                "the amqp tests need RabbitMQ: no broker on 127.0.0.1:5672 could be managed \
                 with rabbitmqctl, and rabbitmq-server is not installed to start one \
                 (Debian/Ubuntu: sudo apt-get install rabbitmq-server); or set \
                 AGENCY_TEST_AMQP_URL to the URL of a broker and vhost to use"
            )
        })
}

/// The pid of cargo, when cargo runs this test process: the nodes are kept while it runs.
fn cargo_parent() -> Option<u32> {
    let parent = std::os::unix::process::parent_id();
    let name = std::fs::read_to_string(format!("/proc/{parent}/comm")).ok()?;
    name.starts_with("cargo").then_some(parent)
}

/// A free TCP port on 127.0.0.1 (free now; the node takes it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Whether something accepts connections on `127.0.0.1:port`.
pub fn answers(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
}

/// Starts the reaper of `nodes`: every 2 s it drops the leases of processes that have
/// ended; once none has been alive for [`IDLE_SECONDS`], it takes the folder's lock,
/// looks once more, and stops every node (a node already killed is killed again by its
/// pid file, in case it was started again).
fn start_reaper(dir: &Path, ctl: &Path, nodes: &[Node]) {
    const REAPER: &str = r#"
dir=$1 ctl=$2 idle_limit=$3 idle=0
shift 3
alive() {
    found=1
    for lease in "$dir"/leases/*; do
        [ -e "$lease" ] || continue
        if kill -0 "${lease##*/}" 2>/dev/null; then found=0; else rm -f "$lease"; fi
    done
    return $found
}
while :; do
    sleep 2
    if alive; then idle=0; continue; fi
    idle=$((idle + 2))
    [ "$idle" -ge "$idle_limit" ] || continue
    exec 9>>"$dir/lock"
    flock 9
    if alive; then exec 9>&-; idle=0; continue; fi
    rm -f "$dir/nodes"
    for node in "$@"; do
        "$ctl" -n "$node" stop >/dev/null 2>&1 &
    done
    wait
    exit 0
done
"#;
    detached(REAPER)
        .arg(dir)
        .arg(ctl)
        .arg(IDLE_SECONDS.to_string())
        .args(nodes.iter().map(|n| &n.name))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the private nodes' reaper");
}

/// A `sh` that runs `script` (with the command's arguments as `$1`...) in the background
/// and returns at once: the script is then neither this process's child (no zombie
/// remains) nor in its process group (Ctrl-C at the terminal does not reach it), and it
/// outlives this process. Its standard input is the command's.
pub fn detached(script: &str) -> Command {
    let mut sh = Command::new("sh");
    // Without job control, a background list's standard input would be /dev/null: it is
    // passed on as descriptor 3 instead.
    sh.arg("-c")
        .arg(format!("exec 3<&0; (exec <&3 3<&-; {script}) &"))
        .arg("agency-tests")
        .process_group(0);
    sh
}
