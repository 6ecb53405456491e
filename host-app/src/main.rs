//! `agency`: loads transport and agent plugins from a folder and runs a space.
//!
//! - `agency run` opens a space on the chosen transport, starts the agents listed in the
//!   config file and attaches a console agent to standard input and output.
//! - `agency plugins` lists what each plugin file provides, or why it cannot be used.

mod command;
mod config;
mod console;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use agency_loader::Plugins;
use agency_runtime::AgentSpec;
use clap::{Parser, Subcommand};
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
}

#[derive(Subcommand)]
enum Command {
    /// Open a space, start the configured agents, and talk to them from the console.
    Run {
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
        /// How long to wait for replies in flight once input ends, in seconds.
        #[arg(long, default_value_t = 5.0)]
        wait: f64,
    },
    /// List the plugins in a folder: their transports, agent types and actions.
    Plugins {
        /// Where plugin libraries are [default: ./plugins, else `plugins` beside the binary].
        #[arg(long, env = "AGENCY_PLUGINS_DIR")]
        plugins_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Run {
            transport,
            plugins_dir,
            config,
            wait,
        } => run(transport, plugins_dir, config, wait),
        Command::Plugins { plugins_dir } => list_plugins(plugins_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(
    transport: Option<String>,
    plugins_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    wait: f64,
) -> Result<(), String> {
    let config = match config {
        Some(path) => Config::read(&path)?,
        None if Path::new("agency.toml").exists() => Config::read(Path::new("agency.toml"))?,
        None => Config::default(),
    };
    let plugins = load_plugins(plugins_dir)?;
    for failure in plugins.failures() {
        eprintln!("warning: plugin skipped: {failure}");
    }
    let transport = transport
        .or_else(|| config.transport.clone())
        .unwrap_or_else(|| "local".into());
    let space = plugins
        .open_space(&transport, &config.transport_options(&transport))
        .map_err(|e| e.to_string())?;
    for agent in &config.agents {
        if let Err(error) = space.add(agent) {
            eprintln!("error: cannot start agent {:?}: {error}", agent.id);
        }
    }
    let console_id = config.console_id.as_deref().unwrap_or("User");
    let me = space
        .add_foreground(&AgentSpec::untyped(console_id).ignoring_own_broadcasts())
        .map_err(|e| format!("cannot attach the console as {console_id:?}: {e}"))?;
    let wait = Duration::try_from_secs_f64(wait).map_err(|e| format!("--wait: {e}"))?;
    console::run(&space, me, wait);
    space.destroy();
    Ok(())
}

fn list_plugins(plugins_dir: Option<PathBuf>) -> Result<(), String> {
    let plugins = load_plugins(plugins_dir)?;
    for plugin in plugins.loaded() {
        let manifest = &plugin.manifest;
        println!(
            "{} (abi {}, sdk {})",
            plugin.path.display(),
            manifest.abi_version,
            manifest.sdk_version
        );
        for name in &manifest.transports {
            println!("  transport {name}");
        }
        for kind in &manifest.agent_types {
            println!("  agent type {}: {}", kind.name, kind.description);
            for action in &kind.actions {
                let args: Vec<String> = action
                    .args
                    .iter()
                    .map(|arg| {
                        format!(
                            "{}{}: {}",
                            arg.name,
                            if arg.optional { "?" } else { "" },
                            arg.doc.json_type
                        )
                    })
                    .collect();
                let returns = action
                    .returns
                    .as_ref()
                    .map(|r| format!(" -> {}", r.json_type))
                    .unwrap_or_default();
                let access = serde_json::to_value(action.access).unwrap_or_default();
                println!(
                    "    {}({}){returns} [{}]",
                    action.name,
                    args.join(", "),
                    access.as_str().unwrap_or("")
                );
            }
        }
    }
    for failure in plugins.failures() {
        println!("{failure} (not loaded)");
    }
    Ok(())
}

/// Loads the plugins folder; files that cannot be used are in `failures()`.
fn load_plugins(dir: Option<PathBuf>) -> Result<Plugins, String> {
    let dir = dir.unwrap_or_else(default_plugins_dir);
    Plugins::load_dir(&dir).map_err(|e| e.to_string())
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
