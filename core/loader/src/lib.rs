//! # Agency plugin loader
//!
//! Finds plugin libraries in a folder, checks each one (may other users change it, is it a
//! shared library, is it an Agency plugin, was it built for an ABI this host accepts), and
//! turns what they provide into transports and agent types the runtime can use. A file
//! that cannot be used is reported with a one-line reason and skipped; the others still
//! load.
//!
//! A library is loaded from a private copy of the bytes that were checked and hashed (the
//! SHA-256 is logged), so replacing or rewriting the file later cannot crash the host, and
//! the hash names exactly the code that runs. Libraries are never unloaded.
//!
//! ```no_run
//! let plugins = agency_loader::Plugins::load_dir("plugins".as_ref())?;
//! for failure in plugins.failures() {
//!     eprintln!("skipped {failure}");
//! }
//! let space = plugins.open_space("local", &serde_json::json!({}))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod file;

use std::{
    collections::BTreeMap,
    ops::RangeInclusive,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModuleError};
use agency_abi::{PluginModRef, ABI_VERSION};
use agency_protocol::{
    boundary::{AgentCore, HostLink, LogRecord, TransportSpace},
    ffi::{export_host, ImportedAgent, ImportedTransport, NewAgent, Share},
    spec::{AgentTypeSpec, Manifest, PluginConfig, PluginMetrics, MAX_CONCURRENCY},
    ActionError,
};
use agency_runtime::{AgentFactory, Catalog, Space};
use agency_sdk::Init;
use serde_json::Value;

pub use file::{open_regular_file, read_regular_file};

/// The largest plugin library loaded, in bytes (512 MiB; a debug build of the `amqp`
/// transport is about 110 MB). A larger file is refused before it is read.
pub const MAX_PLUGIN_BYTES: u64 = 512 << 20;

/// The Agency ABI generations this host loads plugins of.
///
/// A plugin states the generation its SDK was built for; every SDK release of one major
/// version speaks the same generation (see ARCHITECTURE.md, "Plugin ABI").
pub const SUPPORTED_ABI: RangeInclusive<u32> = ABI_VERSION..=ABI_VERSION;

/// A plugin library that loaded, with what it provides.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// The SHA-256 of the bytes that were loaded, in hex.
    pub sha256: String,
    /// How long loading took: reading, checking and hashing the file, the private copy,
    /// loading it and initialising the plugin.
    pub load_time: std::time::Duration,
    /// What it says it provides.
    pub manifest: Manifest,
}

/// A file that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct PluginError {
    /// The file.
    pub path: PathBuf,
    /// A one-line reason a user can act on.
    pub reason: String,
}

/// An error opening a space from loaded plugins.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// No plugin provides this transport.
    #[error("unknown transport {name:?}; transports found: {known}")]
    UnknownTransport {
        /// The name asked for.
        name: String,
        /// The names available.
        known: String,
    },
    /// The transport refused to open.
    #[error("transport {name:?} could not open a space: {reason}")]
    Transport {
        /// The transport's name.
        name: String,
        /// What it said.
        reason: String,
    },
}

/// The plugins found in a folder (or loaded one by one).
#[derive(Default)]
pub struct Plugins {
    loaded: Vec<Plugin>,
    failures: Vec<PluginError>,
    catalog: Catalog,
    type_files: BTreeMap<String, PathBuf>,
    transports: BTreeMap<String, (PluginModRef, PathBuf)>,
    allow_writable: bool,
    counts: Arc<LoadCounts>,
    reports: Arc<Reports>,
}

/// The latest [`PluginMetrics`] each plugin reported (`agency_sdk::metrics`), by its
/// file's name, readable from other threads (the metrics) while plugins report.
#[derive(Debug, Default)]
pub struct Reports(Mutex<BTreeMap<String, PluginMetrics>>);

impl Reports {
    /// Each plugin's latest report, by file name.
    pub fn latest(&self) -> Vec<(String, PluginMetrics)> {
        let reports = self.0.lock().unwrap();
        reports
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// How many libraries a [`Plugins`] loaded and refused so far, readable from other
/// threads (the metrics) while it loads more.
#[derive(Debug, Default)]
pub struct LoadCounts {
    /// Libraries loaded.
    pub loaded: AtomicU64,
    /// Libraries refused.
    pub refused: AtomicU64,
}

impl Plugins {
    /// Starts from the agent types built into this binary, with no plugins.
    pub fn new() -> Self {
        Self {
            catalog: Catalog::builtin(),
            ..Self::default()
        }
    }

    /// Loads files and folders that other users can write too, with a warning, instead
    /// of refusing them (see [`Plugins::add_file`]).
    pub fn allow_writable(mut self, allow: bool) -> Self {
        self.allow_writable = allow;
        self
    }

    /// Loads every shared library in `dir` (not recursively), in name order.
    pub fn load_dir(dir: &Path) -> Result<Self, PluginError> {
        let mut plugins = Self::new();
        plugins.add_dir(dir)?;
        Ok(plugins)
    }

    /// Loads every shared library in `dir` not loaded yet; fails if the folder cannot be
    /// read, or other users can write to it (unless [`Plugins::allow_writable`]).
    pub fn add_dir(&mut self, dir: &Path) -> Result<(), PluginError> {
        let fail = |reason: String| PluginError {
            path: dir.to_owned(),
            reason,
        };
        let files = library_files(dir).map_err(fail)?;
        let metadata = std::fs::metadata(dir).map_err(|e| fail(format!("cannot be read: {e}")))?;
        self.check_owner_only(dir, &metadata, "plugins folder")
            .map_err(fail)?;
        for file in files {
            if !self.is_loaded(&file) {
                let _ = self.add_file(&file);
            }
        }
        Ok(())
    }

    /// The counts of libraries loaded and refused, kept up to date as it loads more.
    pub fn counts(&self) -> Arc<LoadCounts> {
        self.counts.clone()
    }

    /// What the plugins report about themselves, kept up to date as they report.
    pub fn reports(&self) -> Arc<Reports> {
        self.reports.clone()
    }

    /// The latest report of the plugin that provides transport `name`, if it made one.
    pub fn transport_report(&self, name: &str) -> Option<PluginMetrics> {
        let (_, path) = self.transports.get(name)?;
        let file = path.file_name()?.to_string_lossy();
        let reports = self.reports.0.lock().unwrap();
        reports.get(file.as_ref()).cloned()
    }

    /// Whether the library at `path` is loaded.
    pub fn is_loaded(&self, path: &Path) -> bool {
        self.loaded.iter().any(|plugin| plugin.path == path)
    }

    /// Loads one library; on failure records it in [`Plugins::failures`] and returns it.
    ///
    /// Refused: a file other users can write (unless [`Plugins::allow_writable`]), a file
    /// that is not a complete shared library, a library that is not an Agency plugin or
    /// was built for an ABI outside [`SUPPORTED_ABI`], a plugin whose initialisation
    /// fails or panics, and one providing an agent type or transport already provided.
    pub fn add_file(&mut self, path: &Path) -> Result<&Plugin, PluginError> {
        let result = self.try_add(path);
        let count = match &result {
            Ok(()) => &self.counts.loaded,
            Err(_) => &self.counts.refused,
        };
        count.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = &result {
            tracing::debug!("refused {error}");
            self.failures.push(error.clone());
        }
        result.map(|()| self.loaded.last().expect("just added"))
    }

    /// Refuses `path` (with `metadata`) if users other than its owner may write it, or
    /// warns when allowed.
    fn check_owner_only(
        &self,
        path: &Path,
        metadata: &std::fs::Metadata,
        what: &str,
    ) -> Result<(), String> {
        match writable_by_others(metadata) {
            None => Ok(()),
            Some(mode) if self.allow_writable => {
                tracing::warn!(
                    "loading from {} although other users can write to it (mode {mode:o})",
                    path.display()
                );
                Ok(())
            }
            Some(mode) => Err(format!(
                "this {what} is writable by other users (mode {mode:o}), so they could change the code agency runs: run `chmod go-w {}`, or pass --allow-writable-plugins to load it anyway",
                path.display()
            )),
        }
    }

    fn try_add(&mut self, path: &Path) -> Result<(), PluginError> {
        let fail = |reason: String| PluginError {
            path: path.to_owned(),
            reason,
        };
        let started = std::time::Instant::now();
        let (file, metadata) = open_regular_file(path, MAX_PLUGIN_BYTES).map_err(fail)?;
        self.check_owner_only(path, &metadata, "file")
            .map_err(fail)?;
        let (module, manifest, sha256) =
            open_library(path, file, metadata.len(), &self.reports).map_err(fail)?;
        for kind in &manifest.agent_types {
            if kind.concurrency.is_some_and(|k| k > MAX_CONCURRENCY) {
                return Err(fail(format!(
                    "agent type {:?} declares a concurrency of {}; this host runs at most {MAX_CONCURRENCY} messages of one agent at once: lower it in #[actions(concurrency = ...)] and rebuild the plugin",
                    kind.name,
                    kind.concurrency.unwrap_or_default(),
                )));
            }
            if let Some(first) = self.type_files.get(&kind.name) {
                return Err(fail(format!(
                    "agent type {:?} is already provided by {}",
                    kind.name,
                    first.display()
                )));
            }
        }
        for name in &manifest.transports {
            if let Some((_, first)) = self.transports.get(name) {
                return Err(fail(format!(
                    "transport {name:?} is already provided by {}",
                    first.display()
                )));
            }
        }
        for kind in &manifest.agent_types {
            self.catalog
                .insert(Arc::new(PluginAgentType {
                    module,
                    spec: Arc::new(kind.clone()),
                }))
                .map_err(|reason| fail(format!("{reason} (once by this host binary)")))?;
            self.type_files.insert(kind.name.clone(), path.to_owned());
        }
        for name in &manifest.transports {
            self.transports
                .insert(name.clone(), (module, path.to_owned()));
        }
        let load_time = started.elapsed();
        tracing::info!(
            "loaded plugin {} (sha256 {sha256}, {} {}, agency-sdk {}, in {:.1} ms)",
            path.display(),
            manifest.name,
            manifest.version,
            manifest.sdk_version,
            load_time.as_secs_f64() * 1e3
        );
        self.loaded.push(Plugin {
            path: path.to_owned(),
            sha256,
            load_time,
            manifest,
        });
        Ok(())
    }

    /// The libraries that loaded.
    pub fn loaded(&self) -> &[Plugin] {
        &self.loaded
    }

    /// The files that could not be used.
    pub fn failures(&self) -> &[PluginError] {
        &self.failures
    }

    /// Every agent type available: built into this binary or from plugins.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The names of the transports found.
    pub fn transport_names(&self) -> Vec<&str> {
        self.transports.keys().map(String::as_str).collect()
    }

    /// Opens a space on transport `name` with its JSON configuration.
    pub fn open_transport(
        &self,
        name: &str,
        config: &serde_json::Value,
    ) -> Result<Box<dyn TransportSpace>, OpenError> {
        let (module, _) = self
            .transports
            .get(name)
            .ok_or_else(|| OpenError::UnknownTransport {
                name: name.into(),
                known: match self.transport_names().join(", ") {
                    known if known.is_empty() => "none (is the plugins folder right?)".into(),
                    known => known,
                },
            })?;
        let transport = (module.open_transport())(name.into(), config.to_string().as_str().into())
            .into_result()
            .map_err(|reason| OpenError::Transport {
                name: name.into(),
                reason: reason.into_string(),
            })?;
        Ok(Box::new(ImportedTransport(transport)))
    }

    /// Opens a [`Space`] on transport `name`, able to create every agent type available.
    pub fn open_space(&self, name: &str, config: &serde_json::Value) -> Result<Space, OpenError> {
        Ok(Space::open(
            self.open_transport(name, config)?,
            self.catalog.clone(),
        ))
    }
}

/// The entries of `dir` whose names look like shared libraries on this platform, sorted,
/// whatever they are: one that is not a regular file is refused with its reason when
/// loaded, never skipped without a word.
pub fn library_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read the plugins folder: {e}"))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| is_library_name(path))
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a file name looks like a shared library on this platform.
fn is_library_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.ends_with(std::env::consts::DLL_SUFFIX))
}

/// The permission bits of a file or folder if users other than its owner may write it.
#[cfg(unix)]
fn writable_by_others(metadata: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode();
    (mode & 0o022 != 0).then_some(mode & 0o7777)
}

/// Other platforms: permissions are not checked.
#[cfg(not(unix))]
fn writable_by_others(_metadata: &std::fs::Metadata) -> Option<u32> {
    None
}

/// Checks, loads and initialises the plugin library open as `file` (`length` bytes);
/// answers its root module, manifest and the SHA-256 of its bytes.
///
/// The first bytes are checked for a known object file format before the rest is read.
/// What the plugin reports of itself goes to `reports`.
fn open_library(
    path: &Path,
    mut file: std::fs::File,
    length: u64,
    reports: &Arc<Reports>,
) -> Result<(PluginModRef, Manifest, String), String> {
    use std::io::Read;
    let mut head = Vec::new();
    (&mut file)
        .take(64)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot be read: {e}"))?;
    object::FileKind::parse(&head[..])
        .map_err(|e| format!("not a loadable shared library: {e}"))?;
    let mut bytes = head;
    bytes.extend(file::read_all(file, length, MAX_PLUGIN_BYTES)?);
    check_file(&bytes)?;
    let sha256 = sha256_hex(&bytes);
    let header = load_private_copy(path, &bytes, &sha256)?;
    let module = header
        .init_root_module::<PluginModRef>()
        .map_err(|e| summarize(&e))?;
    let config = PluginConfig {
        max_log_level: tracing::level_filters::LevelFilter::current().to_string(),
    };
    let source = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let host = export_host(Arc::new(PluginLog {
        source,
        reports: reports.clone(),
    }));
    let text = (module.init())(
        host,
        serde_json::to_string(&config)
            .unwrap_or_default()
            .as_str()
            .into(),
    )
    .into_result()
    .map_err(|e| format!("its initialisation failed: {e}"))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("its manifest is unreadable: {e}"))?;
    if !SUPPORTED_ABI.contains(&manifest.abi_version) {
        let accepted = match (SUPPORTED_ABI.start(), SUPPORTED_ABI.end()) {
            (first, last) if first == last => format!("ABI {first} only"),
            (first, last) => format!("ABI {first} to {last}"),
        };
        return Err(format!(
            "built for Agency ABI {} (with agency-sdk {}), but this host accepts {accepted} (agency-sdk {}): rebuild it against agency-sdk {}, or run it with an agency host that accepts ABI {}",
            manifest.abi_version,
            manifest.sdk_version,
            agency_sdk::SDK_VERSION,
            agency_sdk::SDK_VERSION,
            manifest.abi_version,
        ));
    }
    Ok((module, manifest, sha256))
}

/// Loads `bytes` (the contents of `path`) from a fresh private file, removed again once
/// loaded: what runs is what was checked and hashed, and the original may be rewritten
/// while the host runs (rewriting a mapped library in place would crash the host).
fn load_private_copy(
    path: &Path,
    bytes: &[u8],
    sha256: &str,
) -> Result<&'static abi_stable::library::LibHeader, String> {
    use std::io::Write;
    let name = path
        .file_name()
        .map_or_else(|| "plugin".into(), |n| n.to_string_lossy().into_owned());
    let copy = std::env::temp_dir().join(format!(
        "agency-{}-{}-{name}",
        std::process::id(),
        &sha256[..16]
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o700);
    let written = options
        .open(&copy)
        .and_then(|mut file| file.write_all(bytes));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&copy);
        return Err(format!(
            "cannot make a private copy at {} to load: {error}",
            copy.display()
        ));
    }
    let header = lib_header_from_path(&copy).map_err(|e| summarize(&e));
    let _ = std::fs::remove_file(&copy);
    header
}

/// The SHA-256 of `bytes` in lowercase hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Refuses files the system loader would choke on: not an object file of a known format,
/// or truncated (a segment reaching past the end of the file, which would crash the host
/// with SIGBUS when the loader touches it).
fn check_file(data: &[u8]) -> Result<(), String> {
    use object::{Object, ObjectSegment};
    let file = object::File::parse(data).map_err(|e| match object::FileKind::parse(data) {
        Ok(kind) => format!(
            "not a loadable shared library: truncated or corrupt ({kind:?}, {} bytes: {e})",
            data.len()
        ),
        Err(_) => format!("not a loadable shared library: {e}"),
    })?;
    let length = data.len() as u64;
    for segment in file.segments() {
        let (offset, size) = segment.file_range();
        if offset.saturating_add(size) > length {
            return Err(format!(
                "not a loadable shared library: truncated ({length} bytes, but a segment ends at byte {})",
                offset.saturating_add(size)
            ));
        }
    }
    Ok(())
}

/// One line a user can act on, from abi_stable's (sometimes very long) load errors.
fn summarize(error: &LibraryError) -> String {
    match error {
        LibraryError::OpenError { err, .. } => format!("not a loadable shared library: {err}"),
        LibraryError::GetSymbolError { .. } => {
            "a shared library, but not an Agency plugin (no abi_stable root module; was it built with agency_sdk::export_plugin!()?)".into()
        }
        LibraryError::IncompatibleVersionNumber { expected_version, actual_version, .. } => format!(
            "built against agency-abi {actual_version}, this host needs a version compatible with {expected_version}: rebuild it against a matching agency-sdk"
        ),
        LibraryError::RootModule { err: RootModuleError::Unwound, .. } => {
            "its initialisation panicked (the panic message, if any, is printed above)".into()
        }
        LibraryError::RootModule { err, .. } => format!("its initialisation failed: {}", first_line(&err.to_string())),
        LibraryError::AbiInstability(details) => {
            let details = details.to_string();
            let errors: Vec<&str> = details.lines().map(str::trim).filter(|l| l.starts_with("Error:")).take(2).collect();
            format!("its ABI does not match this host's ({}): rebuild it against a matching agency-sdk", errors.join("; "))
        }
        LibraryError::InvalidAbiHeader(header) => {
            format!("built with an incompatible abi_stable (header {header:?}): rebuild it against a matching agency-sdk")
        }
        other => first_line(&other.to_string()),
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .to_owned()
}

/// An agent type provided by a plugin library.
struct PluginAgentType {
    module: PluginModRef,
    spec: Arc<AgentTypeSpec>,
}

impl AgentFactory for PluginAgentType {
    fn spec(&self) -> &Arc<AgentTypeSpec> {
        &self.spec
    }

    /// Asks the plugin once per handle; a concurrent agent's handles share a key, so the
    /// plugin makes one agent behind all of them (see `agency_protocol::ffi::NewAgent`).
    fn create(
        &self,
        init: &Init,
        host: Arc<dyn HostLink>,
    ) -> Result<Vec<Box<dyn AgentCore>>, String> {
        static KEYS: AtomicU64 = AtomicU64::new(0);
        let handles = self.spec.handles();
        let init = NewAgent {
            id: init.id.clone(),
            args: init.args.clone(),
            share: (handles > 1).then(|| Share {
                key: KEYS.fetch_add(1, Ordering::Relaxed),
                handles: handles as u32,
            }),
        };
        let init = serde_json::to_string(&init).map_err(|e| e.to_string())?;
        (0..handles)
            .map(|_| {
                let agent = (self.module.new_agent())(
                    self.spec.name.as_str().into(),
                    init.as_str().into(),
                    export_host(host.clone()),
                )
                .into_result()
                .map_err(|e| e.into_string())?;
                Ok(Box::new(ImportedAgent(agent)) as Box<dyn AgentCore>)
            })
            .collect()
    }
}

/// The host services a plugin gets at load time: log forwarding and its metrics.
struct PluginLog {
    source: String,
    reports: Arc<Reports>,
}

impl HostLink for PluginLog {
    fn send(&self, _message: &str) -> Result<String, ActionError> {
        Err(ActionError::unsupported("send"))
    }

    fn request(&self, _message: Value, _timeout_secs: f64) -> Result<Value, ActionError> {
        Err(ActionError::unsupported("request"))
    }

    fn ask_permission(&self, _message: &str) -> Result<bool, ActionError> {
        Err(ActionError::unsupported("ask_permission"))
    }

    fn sent_message(&self, _id: &str) -> Result<Option<String>, ActionError> {
        Err(ActionError::unsupported("sent_message"))
    }

    fn log(&self, record: &LogRecord) -> Result<(), ActionError> {
        agency_runtime::emit_log(&self.source, record);
        Ok(())
    }

    fn report_metrics(&self, metrics: &PluginMetrics) -> Result<(), ActionError> {
        let mut reports = self.reports.0.lock().unwrap();
        reports.insert(self.source.clone(), metrics.clone());
        Ok(())
    }
}
