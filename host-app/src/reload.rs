//! Keeping a running host in step with its plugins folder and its config file.
//!
//! `agency run` looks at both every [`POLL`]. A new library file is loaded once it has
//! stopped changing for one look (a file still being copied is left alone, and one that
//! is incomplete is refused until it changes again); agents of its types that the config
//! lists then start. A loaded library that changes on disk is reported: libraries are
//! never unloaded, so new code needs a restart. An edited config adds, restarts and
//! removes agents to match its `[[agents]]`; other edits need a restart.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime},
};

use agency_loader::Plugins;
use agency_runtime::{AgentSpec, Space, SpaceError};

use crate::config::Config;

/// How often the plugins folder and the config file are looked at.
pub const POLL: Duration = Duration::from_millis(250);

/// The agents the config asks for, and what became of each.
#[derive(Default)]
pub struct Roster {
    /// Agents started from the config, by id, with the entry they were started from.
    started: BTreeMap<String, AgentSpec>,
    /// Entries that could not start. Each is tried again only when it changes, or, when
    /// its type was unknown, once a plugin is added: an agent whose constructor keeps
    /// failing is reported once, not retried forever.
    failed: BTreeMap<String, (AgentSpec, bool)>,
}

impl Roster {
    /// Makes the space's agents match `wanted`: removes agents no longer listed, restarts
    /// changed ones and starts new ones. `types_added` retries entries whose type was
    /// unknown. With `announce`, says what it did on standard error.
    pub fn apply(
        &mut self,
        space: &Space,
        wanted: &[AgentSpec],
        types_added: bool,
        announce: bool,
    ) {
        let listed = |id: &str| wanted.iter().find(|spec| spec.id == id);
        let gone: Vec<String> = self
            .started
            .iter()
            .filter(|(id, spec)| listed(id) != Some(spec))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            self.started.remove(&id);
            match space.remove(&id) {
                Ok(()) if announce => report!("removed agent {id:?}"),
                Ok(()) => {}
                Err(error) => report!("error: cannot remove agent {id:?}: {error}"),
            }
        }
        self.failed.retain(|id, (spec, _)| listed(id) == Some(spec));
        for spec in wanted {
            if self.started.contains_key(&spec.id) {
                continue;
            }
            if let Some((_, unknown_type)) = self.failed.get(&spec.id) {
                if !(types_added && *unknown_type) {
                    continue;
                }
            }
            match space.add(spec) {
                Ok(()) => {
                    if announce {
                        let kind = spec.type_name.as_deref().unwrap_or_default();
                        report!("started agent {:?} ({kind})", spec.id);
                    }
                    self.failed.remove(&spec.id);
                    self.started.insert(spec.id.clone(), spec.clone());
                }
                Err(error) => {
                    let unknown_type = matches!(error, SpaceError::UnknownType { .. });
                    if !(unknown_type && self.failed.contains_key(&spec.id)) {
                        report!("error: cannot start agent {:?}: {error}", spec.id);
                    }
                    self.failed
                        .insert(spec.id.clone(), (spec.clone(), unknown_type));
                }
            }
        }
    }
}

/// What the reloader knows about the files it looks at.
pub struct Reloader {
    dir: PathBuf,
    config_path: PathBuf,
    config: Config,
    /// The stamp of each library file when it was last loaded, refused or reported.
    settled: HashMap<PathBuf, Stamp>,
    /// Files that changed at the last look: handled if they are the same at the next.
    changing: HashMap<PathBuf, Stamp>,
    config_stamp: Option<Stamp>,
}

/// Size and modification time: enough to tell that a file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: metadata.len(),
        modified: metadata.modified().ok(),
    })
}

impl Reloader {
    /// Starts from what `run` loaded: the files in `dir` now and the config read from
    /// `config_path` (which may not exist yet).
    pub fn new(dir: &Path, config_path: &Path, config: Config) -> Self {
        let settled = agency_loader::library_files(dir)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|file| stamp(&file).map(|s| (file, s)))
            .collect();
        Self {
            dir: dir.to_owned(),
            config_path: config_path.to_owned(),
            config,
            settled,
            changing: HashMap::new(),
            config_stamp: stamp(config_path),
        }
    }

    /// Looks every [`POLL`] until `stop` is set, applying what changed to `space`.
    pub fn run(
        mut self,
        space: &Space,
        mut plugins: Plugins,
        mut roster: Roster,
        stop: &AtomicBool,
    ) {
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(POLL);
            let types_added = self.look_at_plugins(&mut plugins);
            if types_added {
                space.set_catalog(plugins.catalog().clone());
            }
            let config_changed = self.look_at_config();
            if types_added || config_changed {
                roster.apply(space, &self.config.agents, types_added, true);
            }
        }
    }

    /// Loads library files that appeared or changed and have stopped changing; answers
    /// whether one loaded.
    fn look_at_plugins(&mut self, plugins: &mut Plugins) -> bool {
        let mut loaded = false;
        let files = match agency_loader::library_files(&self.dir) {
            Ok(files) => files,
            Err(_) => return false,
        };
        for file in files {
            let Some(now) = stamp(&file) else { continue };
            if self.settled.get(&file) == Some(&now) {
                continue;
            }
            if self.changing.insert(file.clone(), now) != Some(now) {
                continue;
            }
            self.changing.remove(&file);
            self.settled.insert(file.clone(), now);
            if plugins.is_loaded(&file) {
                report!(
                    "warning: {} changed, but a loaded library is never unloaded: restart agency to run its new code",
                    file.display()
                );
                continue;
            }
            match plugins.add_file(&file) {
                Ok(plugin) => {
                    let types: Vec<&str> = plugin
                        .manifest
                        .agent_types
                        .iter()
                        .map(|kind| kind.name.as_str())
                        .collect();
                    report!(
                        "added plugin {} (agent types: {})",
                        file.display(),
                        types.join(", ")
                    );
                    loaded = true;
                }
                Err(error) => report!("warning: plugin skipped: {error}"),
            }
        }
        loaded
    }

    /// Re-reads the config once it changed and stopped changing; answers whether its
    /// agents are to be applied.
    fn look_at_config(&mut self) -> bool {
        let now = stamp(&self.config_path);
        if now == self.config_stamp {
            self.changing.remove(&self.config_path);
            return false;
        }
        let Some(now) = now else {
            return false;
        };
        if self.changing.insert(self.config_path.clone(), now) != Some(now) {
            return false;
        }
        self.changing.remove(&self.config_path);
        self.config_stamp = Some(now);
        match Config::read(&self.config_path) {
            Ok(config) => {
                if !config.same_apart_from_agents(&self.config) {
                    report!(
                        "warning: {}: only [[agents]] changes take effect while running; restart agency for the rest",
                        self.config_path.display()
                    );
                }
                self.config = config;
                true
            }
            Err(error) => {
                report!("error: {error}; the running agents are unchanged");
                false
            }
        }
    }
}
