//! `agency`: loads transport and agent plugins from a folder and runs a space.
//!
//! - `agency run` opens a space on the chosen transport, starts the agents listed in the
//!   config file and attaches a console agent to standard input and output.
//!   While it runs, it loads plugin files added to the folder and applies edits of the
//!   config's `[[agents]]` (see `reload`).
//! - `agency watch` prints every message of a space shared through a broker as it flows
//!   (see `traffic`); `agency run --watch` does it inside one host.
//! - `agency plugins` lists what each plugin file provides, or why it cannot be used;
//!   `agency plugins check FILE` diagnoses one file.
//! - `agency new-agent NAME` writes a new agent plugin crate to start from.

#[macro_use]
mod terminal;
mod config;
mod console;
mod editor;
mod events;
mod exit;
mod inspect;
mod reload;
mod template;
mod threads;
mod traffic;

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use agency_loader::Plugins;
use agency_operator::{Permissions, Session};
use agency_runtime::AgentSpec;
use clap::{Args, Parser, Subcommand};
use config::Config;
use tracing_subscriber::EnvFilter;

/// Messages are allocated on one agent's thread and freed on another's; mimalloc handles
/// that pattern far better than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "agency",
    version,
    about = "Run a space of agents loaded from plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log more: -v shows what is loaded (info), -vv debug, -vvv trace; `RUST_LOG`, if
    /// set, decides instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Open a space, start the configured agents, and talk to them from the console.
    Run {
        #[command(flatten)]
        space: SpaceArgs,
        /// How long to wait for a reply, and for replies in flight once input ends, in
        /// seconds (0 to 1000000000).
        #[arg(long, default_value = "5", value_parser = parse_wait)]
        wait: Duration,
        /// Print every message the space's agents send, as in `agency watch` (`/watch` at
        /// the console does it too).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        web: WebArgs,
        #[command(flatten)]
        metrics: MetricsArgs,
    },
    /// Print every message of a space on a broker as it flows (amqp; read-only, needs the
    /// broker's firehose: `rabbitmqctl trace_on -p VHOST`). A `local` space lives inside
    /// one process: use `agency run --watch` there.
    Watch {
        #[command(flatten)]
        space: SpaceArgs,
        /// Only messages from or to this agent (repeatable).
        #[arg(long = "agent", value_name = "ID")]
        agents: Vec<String>,
        /// Only messages of this action, and the replies to them (repeatable).
        #[arg(long = "action", value_name = "NAME")]
        actions: Vec<String>,
        /// One JSON object per line, for programs.
        #[arg(long)]
        json: bool,
    },
    /// List the plugins in a folder: their transports, agent types and actions.
    Plugins {
        /// Where plugin libraries are [default: ./plugins, else `plugins` beside the binary].
        #[arg(long, env = "AGENCY_PLUGINS_DIR")]
        plugins_dir: Option<PathBuf>,
        /// Load plugin files and folders that other users can write to (with a warning).
        #[arg(long, global = true)]
        allow_writable_plugins: bool,
        #[command(subcommand)]
        check: Option<PluginsCommand>,
    },
    /// Write a new agent plugin crate, with one action, ready to build.
    NewAgent {
        /// The agent type's name, in CamelCase (e.g. `Greeter`); the crate is its
        /// snake_case form.
        name: String,
        /// Where to create the crate's folder [default: the current folder].
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The agency-sdk crate to depend on by path [default: the SDK this binary was
        /// built from, if its source is still there, else agency-sdk from crates.io].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

/// Where a space comes from: its transport, plugins and config.
#[derive(Args)]
struct SpaceArgs {
    /// The transport to use [default: the config's, else `local`].
    #[arg(long, env = "AGENCY_TRANSPORT")]
    transport: Option<String>,
    /// Where plugin libraries are [default: ./plugins, else `plugins` beside the binary,
    /// whichever holds libraries].
    #[arg(long, env = "AGENCY_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// The config file [default: ./agency.toml if it exists].
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Load plugin files and folders that other users can write to (with a warning).
    #[arg(long)]
    allow_writable_plugins: bool,
}

/// The web page beside the console.
#[derive(Args)]
struct WebArgs {
    /// Also serve the web page (chat, agents, traffic, permission questions) on this
    /// address; the URL to open, with its access token, is printed at start.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = agency_web::DEFAULT_ADDR)]
    web: Option<std::net::SocketAddr>,
    /// Allow `--web` on an address other than loopback (other machines can then reach
    /// the page; the token still guards it).
    #[arg(long, requires = "web")]
    web_public: bool,
}

/// The Prometheus endpoint.
#[derive(Args)]
struct MetricsArgs {
    /// Serve what the space counts (messages, errors, durations, mailboxes, the pool,
    /// the process) for Prometheus at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = agency_web::metrics::DEFAULT_ADDR)]
    metrics: Option<std::net::SocketAddr>,
    /// Allow `--metrics` on an address other than loopback (other machines can then read
    /// the counts, and the ids of the busiest agents, without a token).
    #[arg(long, requires = "metrics")]
    metrics_public: bool,
    /// Also give these agents series of their own, beside the busiest ones
    /// (comma-separated ids).
    #[arg(long, value_name = "IDS", value_delimiter = ',', requires = "metrics")]
    metrics_agents: Vec<String>,
}

/// What [`SpaceArgs`] name, read and loaded.
struct Setup {
    config: Config,
    config_path: PathBuf,
    plugins_dir: PathBuf,
    plugins: Plugins,
    transport: String,
}

impl SpaceArgs {
    /// Reads the config (`./agency.toml` may be missing), loads the plugins (reporting
    /// the files refused) and picks the transport.
    fn load(self) -> Result<Setup, String> {
        let config_path = self.config.unwrap_or_else(|| PathBuf::from("agency.toml"));
        let config = match Config::read(&config_path) {
            Err(_) if !config_path.exists() && config_path == Path::new("agency.toml") => {
                Config::default()
            }
            read => read?,
        };
        let plugins_dir = self.plugins_dir.unwrap_or_else(default_plugins_dir);
        let plugins = load_plugins(Some(plugins_dir.clone()), self.allow_writable_plugins)?;
        for failure in plugins.failures() {
            report!("warning: plugin skipped: {failure}");
        }
        let transport = self
            .transport
            .or_else(|| config.transport.clone())
            .unwrap_or_else(|| "local".into());
        Ok(Setup {
            config,
            config_path,
            plugins_dir,
            plugins,
            transport,
        })
    }
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Diagnose one plugin file: what it is and provides, or why it cannot be used.
    Check {
        /// The library file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = ["warn", "info", "debug", "trace"][usize::from(cli.verbose.min(3))];
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let done = |result: Result<(), String>| result.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Run {
            space,
            wait,
            watch,
            web,
            metrics,
        } => space
            .load()
            .and_then(|setup| run(setup, wait, watch, web, metrics))
            .map(console::Outcome::exit_code),
        Command::Watch {
            space,
            agents,
            actions,
            json,
        } => space.load().and_then(|setup| {
            let lines = traffic::Watch::new(traffic::Filter { agents, actions }, json);
            watch(setup, lines)
        }),
        Command::Plugins {
            plugins_dir,
            allow_writable_plugins,
            check: None,
        } => list_plugins(plugins_dir, allow_writable_plugins),
        Command::Plugins {
            allow_writable_plugins,
            check: Some(PluginsCommand::Check { file }),
            ..
        } => done(inspect::check(&file, allow_writable_plugins).map(|text| show(&text))),
        Command::NewAgent { name, dir, sdk } => {
            done(template::new_agent(&name, &dir, sdk.as_deref()))
        }
    };
    result.unwrap_or_else(|error| {
        report!("error: {error}");
        ExitCode::FAILURE
    })
}

/// `agency plugins`: lists what the folder's plugins provide; fails if a file was refused
/// or there is nothing to list.
fn list_plugins(dir: Option<PathBuf>, allow_writable: bool) -> Result<ExitCode, String> {
    let dir = dir.unwrap_or_else(default_plugins_dir);
    let plugins = load_plugins(Some(dir.clone()), allow_writable)?;
    if plugins.loaded().is_empty() && plugins.failures().is_empty() {
        return Err(format!(
            "no plugin libraries (*{}) in {}",
            std::env::consts::DLL_SUFFIX,
            dir.display()
        ));
    }
    show(&inspect::list(&plugins));
    let refused = plugins.failures().len();
    if refused == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    report!(
        "error: {refused} file{} refused (see above)",
        if refused == 1 { " was" } else { "s were" }
    );
    Ok(ExitCode::FAILURE)
}

/// Prints what a command answers; a reader that stopped reading (`| head`) is no error.
fn show(text: &str) {
    let _ = terminal::print(text);
}

/// The longest `--wait`, in seconds (about 31 years).
const MAX_WAIT_SECS: f64 = 1e9;

/// `--wait`: a number of seconds from 0 to [`MAX_WAIT_SECS`].
fn parse_wait(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(seconds) if (0.0..=MAX_WAIT_SECS).contains(&seconds) => {
            Ok(Duration::from_secs_f64(seconds))
        }
        _ => Err(format!(
            "expected a number of seconds from 0 to {MAX_WAIT_SECS:.0}, got {text:?}"
        )),
    }
}

/// `agency watch`: prints a copy of every message published in the space, until Ctrl-C
/// or the end of the output.
fn watch(setup: Setup, mut lines: traffic::Watch) -> Result<ExitCode, String> {
    let Setup {
        config,
        plugins,
        transport,
        ..
    } = setup;
    let mut options = config.transport_options(&transport);
    options["watch"] = true.into();
    let space = plugins
        .open_transport(&transport, &options)
        .map_err(|e| e.to_string())?;
    let (copies, received) = std::sync::mpsc::sync_channel(1024);
    let watcher = format!("agency-watch-{}", std::process::id());
    space
        .attach(&watcher, std::sync::Arc::new(traffic::Copies(copies)))
        .map_err(|e| e.to_string())?;
    let interrupted = std::sync::Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    if let Err(error) = ctrlc::set_handler(move || flag.store(true, Ordering::Release)) {
        tracing::warn!(%error, "Ctrl-C will end the watch without a clean shutdown");
    }
    // Where the transport says it is (the broker of a cluster it connected to).
    let place = plugins
        .transport_report(&transport)
        .and_then(|report| report.info.get("broker").cloned())
        .map(|broker| format!(" (broker {})", agency_runtime::printable(&broker)))
        .unwrap_or_default();
    report!("watching the space on {transport}{place}; Ctrl-C stops, /stats counts by agent");
    let asked = stats_requests();
    while !interrupted.load(Ordering::Acquire) {
        if asked.try_recv().is_ok() && terminal::print(&format!("{}\n", lines.stats())).is_err() {
            break;
        }
        let body = match received.recv_timeout(Duration::from_millis(100)) {
            Ok(body) => body,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let copy = agency_runtime::tap::Traffic::Sent(body);
        if let Some(line) = lines.line(&copy) {
            // A reader that stopped reading (`| head`) ends the watch quietly.
            if terminal::print(&format!("{line}\n")).is_err() {
                break;
            }
        }
    }
    space.detach(&watcher);
    space.close();
    Ok(if interrupted.load(Ordering::Acquire) {
        exit::interrupted()
    } else {
        ExitCode::SUCCESS
    })
}

/// Lines `/stats` typed on standard input while `agency watch` runs, read on a thread of
/// their own (other lines are ignored; the end of input ends nothing).
fn stats_requests() -> std::sync::mpsc::Receiver<()> {
    let (asked, requests) = std::sync::mpsc::channel();
    let reader = std::thread::Builder::new()
        .name("watch input".into())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { return };
                if line.trim() == "/stats" && asked.send(()).is_err() {
                    return;
                }
            }
        });
    if let Err(error) = reader {
        tracing::warn!(%error, "/stats cannot be read during this watch");
    }
    requests
}

/// `agency run`: the space, its agents and the console, until the console ends.
fn run(
    setup: Setup,
    wait: Duration,
    watch: bool,
    web: WebArgs,
    metrics: MetricsArgs,
) -> Result<console::Outcome, String> {
    let Setup {
        config,
        config_path,
        plugins_dir,
        plugins,
        transport,
    } = setup;
    let space = Arc::new(
        plugins
            .open_space(&transport, &config.transport_options(&transport))
            .map_err(|e| e.to_string())?,
    );
    let permissions = Permissions::install(&space);
    let mut roster = reload::Roster::default();
    roster.apply(&space, &config.agents, false, false);
    let console_id = config.console_id.as_deref().unwrap_or("User");
    let me = space
        .add_foreground(
            &AgentSpec::untyped(console_id)
                .ignoring_own_broadcasts()
                .without_log(),
        )
        .map_err(|e| format!("cannot attach the console as {console_id:?}: {e}"))?;
    let page = match web.web {
        Some(addr) => {
            let options = agency_web::Options {
                addr,
                public: web.web_public,
                id: format!("{console_id}-web"),
                wait,
                health: Some(metrics_source(&space, &plugins, &transport, &[])),
            };
            let page = agency_web::WebUi::start(space.clone(), permissions.clone(), options)
                .inspect_err(|_| space.destroy())?;
            if web.web_public {
                report!(
                    "warning: the web page is served on {}, reachable from other machines; \
                     anyone with its URL can act as {console_id}-web",
                    page.addr()
                );
            }
            report!("web page: {}", page.url());
            Some(page)
        }
        None => None,
    };
    let exporter = match metrics.metrics {
        Some(addr) => Some(
            serve_metrics(&space, &plugins, &transport, addr, metrics)
                .inspect_err(|_| space.destroy())?,
        ),
        None => None,
    };
    let reloader = reload::Reloader::new(&plugins_dir, &config_path, config);
    let stop = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("plugin watcher".into())
            .spawn_scoped(scope, || {
                threads::guarded("plugin watcher", || {
                    reloader.run(&space, plugins, roster, &stop)
                })
            })
            .expect("the system can start a thread");
        // Whatever ends the console (end of input, Ctrl-C, a closed output: quietly, as
        // `rg | head` does), the space is destroyed cleanly after it.
        let outcome = threads::guarded("console", || {
            let session = Session::new(space.clone(), me, permissions.clone(), console::CONSOLE);
            console::run(session, wait, watch)
        });
        stop.store(true, Ordering::Release);
        outcome
    });
    drop(exporter);
    drop(page);
    space.destroy();
    Ok(outcome)
}

/// What the host counts, read anew at each call: the space (with the busiest agents and
/// those `named`), the plugin files, and what the plugins reported.
fn metrics_source(
    space: &Arc<agency_runtime::Space>,
    plugins: &Plugins,
    transport: &str,
    named: &[String],
) -> agency_web::metrics::Source {
    let (space, counts, reports) = (space.clone(), plugins.counts(), plugins.reports());
    let (transport, named) = (transport.to_owned(), named.to_vec());
    Arc::new(move || {
        let named: Vec<&str> = named.iter().map(String::as_str).collect();
        agency_web::metrics::Exposition {
            space: space.metrics(agency_web::metrics::BUSIEST, &named),
            plugins_loaded: counts.loaded.load(Ordering::Relaxed),
            plugins_refused: counts.refused.load(Ordering::Relaxed),
            transport: transport.clone(),
            plugins: reports.latest(),
        }
    })
}

/// Serves the space's metrics for Prometheus (`--metrics`).
fn serve_metrics(
    space: &Arc<agency_runtime::Space>,
    plugins: &Plugins,
    transport: &str,
    addr: std::net::SocketAddr,
    args: MetricsArgs,
) -> Result<agency_web::metrics::MetricsServer, String> {
    let source = metrics_source(space, plugins, transport, &args.metrics_agents);
    let server =
        agency_web::metrics::MetricsServer::start(addr, args.metrics_public, move || source())?;
    if args.metrics_public {
        report!(
            "warning: the metrics are served on {}, reachable from other machines without a token",
            server.addr()
        );
    }
    report!("metrics: http://{}/metrics", server.addr());
    Ok(server)
}

/// Loads the plugins folder; files that cannot be used are in `failures()`.
fn load_plugins(dir: Option<PathBuf>, allow_writable: bool) -> Result<Plugins, String> {
    let dir = dir.unwrap_or_else(default_plugins_dir);
    let mut plugins = Plugins::new().allow_writable(allow_writable);
    plugins.add_dir(&dir).map_err(|e| e.to_string())?;
    Ok(plugins)
}

/// The first of `./plugins` and `plugins` beside the binary that holds a library file,
/// else `./plugins`.
fn default_plugins_dir() -> PathBuf {
    let local = PathBuf::from("plugins");
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("plugins")));
    let holds_libraries = |dir: &PathBuf| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.filter_map(Result::ok).any(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .ends_with(std::env::consts::DLL_SUFFIX)
            })
        })
    };
    [Some(local.clone()), beside_binary]
        .into_iter()
        .flatten()
        .find(holds_libraries)
        .unwrap_or(local)
}
