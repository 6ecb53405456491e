//! The test harness: builds the real plugin libraries and the `agency` binary with cargo,
//! gathers the libraries in a plugins folder, and opens spaces from them, so every test
//! exercises the same code paths a user's host does.
//!
//! Semantics tests are written once as `fn name(transport: &str)` and instantiated for
//! every transport with [`for_each_transport!`].

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

pub mod broker;
pub mod browser;
pub mod chat_server;
pub mod cluster;
pub mod figures;
pub mod group;
pub mod models;
pub mod nodes;
pub mod page;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod python;

use agency_loader::Plugins;
use agency_runtime::{AgentSpec, Foreground, Space};
use agency_sdk::transport::{Inbound, TransportError, TransportSpace};
use serde_json::Value;

/// The packages built as plugin libraries for the tests.
const PLUGIN_PACKAGES: &[&str] = &[
    "agency-transport-local",
    "agency-transport-amqp",
    "agency-test-agents",
    "agency-plugin-calculator",
    "agency-plugin-chat",
    "agency-plugin-host",
    "agency-plugin-chatty-ai",
    "agency-plugin-assistant",
];

/// How long tests wait for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// How long a test waits for what crosses the broker, another process or a Python agent
/// (a reply, a line on a screen), on a loaded 2-core machine.
pub const BROKER_PATIENCE: Duration = Duration::from_secs(30);

/// How long a test waits for a whole load to be handled: hundreds to thousands of
/// messages, a cycle of requests, a burst after a fault.
pub const LOAD_PATIENCE: Duration = Duration::from_secs(120);

/// How long the broker's own figures (a queue's ready count, a queue expiring) may take
/// to settle.
pub const SETTLE_PATIENCE: Duration = Duration::from_secs(30);

/// What one `cargo build` of the plugins and the binary produced.
struct Built {
    plugins_dir: PathBuf,
    agency: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut args = vec!["build", "-p", "agency"];
        for package in PLUGIN_PACKAGES {
            args.extend(["-p", package]);
        }
        // `AGENCY_PLUGINS_PROFILE=profiling`: plugins with symbols, for `perf`.
        let profile = std::env::var("AGENCY_PLUGINS_PROFILE").ok();
        match &profile {
            Some(profile) => args.extend(["--profile", profile]),
            None if !cfg!(debug_assertions) => args.push("--release"),
            None => {}
        }
        let built = cargo_build(&args);
        let plugins_dir = scratch_dir("plugins");
        for library in &built.libraries {
            let _ = std::fs::remove_file(plugins_dir.join(library.file_name().unwrap()));
            link_or_copy(library, &plugins_dir.join(library.file_name().unwrap()));
        }
        Built {
            plugins_dir,
            agency: built.executable.expect("cargo reported the agency binary"),
        }
    })
}

/// What a `cargo build` produced.
pub struct Artifacts {
    /// The dynamic libraries (`cdylib` targets) built.
    pub libraries: Vec<PathBuf>,
    /// The last executable built, if any.
    pub executable: Option<PathBuf>,
}

/// Runs `cargo ARGS --message-format=json-render-diagnostics` and collects what it built;
/// panics with cargo's output if the build fails.
pub fn cargo_build(args: &[&str]) -> Artifacts {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut built = Artifacts {
        libraries: Vec::new(),
        executable: None,
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(artifact) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if artifact["reason"] != "compiler-artifact" {
            continue;
        }
        // An example built as a library has kind `example`: its crate types tell.
        let crate_types = artifact["target"]["crate_types"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if crate_types.iter().any(|k| k == "cdylib") {
            built.libraries.extend(
                artifact["filenames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(PathBuf::from),
            );
        }
        if let Some(executable) = artifact["executable"].as_str() {
            built.executable = Some(PathBuf::from(executable));
        }
    }
    built
}

/// Builds the crate at `crate_dir`, which is not part of this workspace, with its own
/// `cargo build` into its own target folder (`target/out-of-tree`, shared by such
/// crates so their dependencies build once); answers its dynamic library.
///
/// The crate gets a copy of the workspace's `Cargo.lock`, so that it builds with the
/// dependency versions already downloaded.
pub fn build_out_of_tree(crate_dir: &Path, features: &[&str]) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::copy(workspace.join("Cargo.lock"), crate_dir.join("Cargo.lock"))
        .expect("copy Cargo.lock");
    let manifest = crate_dir.join("Cargo.toml");
    let target = target_dir().join("out-of-tree");
    let features = features.join(",");
    let built = cargo_build(&[
        "build",
        "--manifest-path",
        manifest.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
        "--features",
        &features,
    ]);
    let [library] = &built.libraries[..] else {
        panic!(
            "expected one library from {}: {:?}",
            crate_dir.display(),
            built.libraries
        );
    };
    library.clone()
}

/// A fresh folder in `target/tmp`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = target_dir().join("tmp").join(unique_name(name));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Cargo's target folder, found from the test binary's path (`target/<profile>/deps`),
/// else the system's temporary folder.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .map_or_else(std::env::temp_dir, Path::to_owned)
}

/// Hard-links `from` to `to` (cheap), or copies it where linking is impossible.
pub fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).expect("copy plugin");
    }
}

/// The folder holding every plugin library the tests use, built fresh.
pub fn plugins_dir() -> &'static Path {
    &built().plugins_dir
}

/// The file name of library `name` on this platform: `lib<name>.so` on Linux.
pub fn library_name(name: &str) -> String {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    format!("{prefix}{name}{suffix}")
}

/// The path of the plugin library `name` (a crate name, `agency_test_agents`) in
/// [`plugins_dir`].
pub fn library_path(name: &str) -> PathBuf {
    plugins_dir().join(library_name(name))
}

/// A fresh folder named after `name`, holding copies of the plugin libraries `names`
/// (crate names) of [`plugins_dir`]: copies, not links, so that a test may change their
/// permissions or contents without touching every other test's.
pub fn plugins_folder_with(name: &str, names: &[&str]) -> PathBuf {
    let dir = scratch_dir(name);
    for plugin in names {
        std::fs::copy(library_path(plugin), dir.join(library_name(plugin))).expect("copy plugin");
    }
    dir
}

/// The system's `libm`: a real shared library that is no Agency plugin.
pub fn foreign_library() -> &'static Path {
    [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .into_iter()
    .map(Path::new)
    .find(|p| p.exists())
    .expect("this test needs the system's libm.so.6 as a foreign shared library")
}

/// `options` (a JSON object) with the keys of `extra` added or replaced.
pub fn with_options(options: &Value, extra: Value) -> Value {
    let mut merged = options.clone();
    if let (Some(merged), Value::Object(extra)) = (merged.as_object_mut(), extra) {
        merged.extend(extra);
    }
    merged
}

/// The path of the built `agency` binary.
pub fn agency_binary() -> &'static Path {
    &built().agency
}

/// The plugins loaded from [`plugins_dir`], once per test process.
pub fn plugins() -> &'static Plugins {
    static PLUGINS: OnceLock<Plugins> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        let plugins = Plugins::load_dir(plugins_dir()).expect("plugins folder");
        assert!(
            plugins.failures().is_empty(),
            "plugins failed to load: {:?}",
            plugins.failures()
        );
        plugins
    })
}

/// Opens a space on `transport` (a [`plugin_of`] variant) from the real plugin libraries.
pub fn open_space(transport: &str) -> Space {
    plugins()
        .open_space(plugin_of(transport), &space_options(transport))
        .expect("space opens")
}

/// The transport plugin of a variant the suites run on: `local`, `amqp`, or
/// `amqp-per-host` (`amqp` with `queue_per = "host"`).
pub fn plugin_of(variant: &str) -> &str {
    variant.strip_suffix("-per-host").unwrap_or(variant)
}

/// The options that give a test a space of its own: on `amqp`, the test process's
/// [`broker`](broker::broker) and vhost, a fresh exchange and queue names prefixed with it
/// (queues are per vhost, so equal agent ids in two tests of one process would collide).
pub fn space_options(transport: &str) -> Value {
    match transport {
        "amqp" | "amqp-per-host" => {
            let name = unique_name("agency-test");
            let queue_per = if transport == "amqp" { "agent" } else { "host" };
            serde_json::json!({
                "url": broker::broker().url(),
                "exchange": name,
                "queue_prefix": format!("{name}."),
                "queue_per": queue_per,
            })
        }
        _ => serde_json::json!({}),
    }
}

/// A name no other test (in this process or another) uses: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Opens a space and keeps a second handle on its transport, to publish raw bodies that
/// no agent could send (malformed JSON, schema violations).
pub fn open_space_with_wire(transport: &str) -> (Space, Wire) {
    let transport: Arc<dyn TransportSpace> = Arc::from(
        plugins()
            .open_transport(plugin_of(transport), &space_options(transport))
            .expect("transport opens"),
    );
    let space = Space::open(
        Box::new(Wire(transport.clone())),
        plugins().catalog().clone(),
    );
    (space, Wire(transport))
}

/// A shared handle on a space's transport.
pub struct Wire(Arc<dyn TransportSpace>);

impl TransportSpace for Wire {
    fn attach(&self, agent_id: &str, sink: Arc<dyn Inbound>) -> Result<(), TransportError> {
        self.0.attach(agent_id, sink)
    }
    fn detach(&self, agent_id: &str) {
        self.0.detach(agent_id)
    }
    fn publish(&self, to: &str, body: &str) -> Result<(), TransportError> {
        self.0.publish(to, body)
    }
    fn close(&self) {
        self.0.close()
    }
}

/// Adds an untyped foreground agent with `id`.
pub fn driver(space: &Space, id: &str) -> Foreground {
    space
        .add_foreground(&AgentSpec::untyped(id))
        .expect("foreground agent")
}

/// Waits until `agent` has received a message matching `wanted`; returns it.
pub fn wait_for_received(
    agent: &Foreground,
    wanted: impl Fn(&agency_sdk::Message) -> bool,
) -> agency_sdk::Message {
    let mut found = None;
    agent.wait_for(PATIENCE, |received| {
        found = received.iter().find(|m| wanted(m)).cloned();
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "{} never received the expected message; log: {:#?}",
            agent.id(),
            agent.log()
        )
    })
}

/// `{"to": to, "action": {"name": name, "args": args}}`
pub fn action(to: &str, name: &str, args: Value) -> Value {
    serde_json::json!({"to": to, "action": {"name": name, "args": args}})
}

/// Requests action `name`, without arguments, from agent `to`.
pub fn ask(agent: &Foreground, to: &str, name: &str) -> Result<Value, agency_sdk::ActionError> {
    agent.request(action(to, name, serde_json::json!({})), PATIENCE)
}

/// Asserts that `sender` received nothing so far but the reply to a request it makes now
/// to `receiver`'s `value` action. An agent handles messages in arrival order, so
/// anything sent to `receiver` before would have been answered by then.
pub fn assert_nothing_else_received(sender: &Foreground, receiver: &str) {
    assert_eq!(ask(sender, receiver, "value").unwrap(), 42);
    let received = sender.received();
    assert_eq!(received.len(), 1, "only the value reply: {received:#?}");
}

/// Asserts that every one of `expected` is a whole line of `output`.
pub fn assert_lines(output: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            output.lines().any(|l| l == *line),
            "missing {line:?} in:\n{output}"
        );
    }
}

/// Instantiates `fn name(transport: &str)` tests once per transport, in a module per
/// transport variant: `local::name`, `amqp::name`, `amqp_per_host::name`.
#[macro_export]
macro_rules! for_each_transport {
    ($($test:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $test() { super::$test("local") } )*
        }
        mod amqp {
            $( #[test] fn $test() { super::$test("amqp") } )*
        }
        mod amqp_per_host {
            $( #[test] fn $test() { super::$test("amqp-per-host") } )*
        }
    };
}
