//! [`Space`]: agents joined through one transport, managed like Python Agency's spaces.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{atomic::Ordering, mpsc, Arc, Mutex, RwLock},
    time::Duration,
};

use agency_protocol::{
    boundary::{AgentCore, HostLink, TransportSpace},
    message::IntoOutgoing,
    spec::AgentTypeSpec,
    ActionError, Message,
};
use agency_sdk::{AgentType, Init};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    endpoint::{Endpoint, PermissionPrompt, SpaceCore, Work},
    mailbox::{mailbox_of, Mailbox},
    message_log::{MessageLog, Subscription},
    metrics::{AgentSnapshot, Snapshot, TypeCounters, TypeSnapshot, FOREGROUND_TYPE},
    scheduler::{self, Job, Task},
    tap::Tap,
    validate_id,
    worker::{Crew, Handler, Skipped, Worker},
    SpaceError,
};

/// A source of agents of one type: a plugin library or the host binary itself.
pub trait AgentFactory: Send + Sync {
    /// The type's description (name, actions, access policies), shared by its agents.
    fn spec(&self) -> &Arc<AgentTypeSpec>;
    /// Creates an agent; `host` is how it reaches the space. Answers its handles: one for
    /// an ordinary agent, [`AgentTypeSpec::handles`] for a concurrent one (one agent value
    /// behind all of them).
    fn create(
        &self,
        init: &Init,
        host: Arc<dyn HostLink>,
    ) -> Result<Vec<Box<dyn AgentCore>>, String>;
}

/// The agent types a space can create, by name.
#[derive(Clone, Default)]
pub struct Catalog {
    types: BTreeMap<String, Arc<dyn AgentFactory>>,
}

impl Catalog {
    /// A catalog of the agent types compiled into this binary (see `#[actions]`).
    pub fn builtin() -> Self {
        let mut catalog = Self::default();
        for kind in agency_sdk::agent_types() {
            let _ = catalog.insert(Arc::new(BuiltinType {
                kind,
                spec: Arc::new((kind.spec)()),
            }));
        }
        catalog
    }

    /// Adds a type; refuses a name already present.
    pub fn insert(&mut self, factory: Arc<dyn AgentFactory>) -> Result<(), SpaceError> {
        let name = factory.spec().name.clone();
        if self.types.contains_key(&name) {
            return Err(SpaceError::DuplicateType(name));
        }
        self.types.insert(name, factory);
        Ok(())
    }

    /// The type of this name, if present.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn AgentFactory>> {
        self.types.get(name)
    }

    /// The type names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }
}

struct BuiltinType {
    kind: &'static AgentType,
    spec: Arc<AgentTypeSpec>,
}

impl AgentFactory for BuiltinType {
    fn spec(&self) -> &Arc<AgentTypeSpec> {
        &self.spec
    }

    fn create(
        &self,
        init: &Init,
        host: Arc<dyn HostLink>,
    ) -> Result<Vec<Box<dyn AgentCore>>, String> {
        (self.kind.create)(init, self.spec.handles(), host).map_err(|e| e.to_string())
    }
}

/// Which agent to add, as written in `agency.toml`'s `[[agents]]`.
///
/// ```
/// use agency_runtime::AgentSpec;
/// let spec = AgentSpec::new("Calculator", "calc").ignoring_own_broadcasts();
/// assert!(!spec.receive_own_broadcasts);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// The agent type; optional only for foreground agents.
    #[serde(rename = "type", default)]
    pub type_name: Option<String>,
    /// The agent's id.
    pub id: String,
    /// The configuration handed to the agent's constructor.
    #[serde(default)]
    pub args: Value,
    /// Whether the agent receives its own broadcasts (default `true`, as in Agency).
    #[serde(default = "yes")]
    pub receive_own_broadcasts: bool,
    /// Whether the agent announces itself when it joins (default `false`): it broadcasts
    /// its `help` answer as a [`agency_sdk::message::ANNOUNCEMENT`], so that agents
    /// already in the space (an Assistant, Python Agency's demo agents) learn it.
    #[serde(default)]
    pub announce: bool,
    /// Whether a foreground agent keeps a log of its messages (default `true`).
    #[serde(skip, default = "yes")]
    pub keep_log: bool,
}

fn yes() -> bool {
    true
}

impl AgentSpec {
    /// An agent of `type_name` with id `id`, no args.
    pub fn new(type_name: &str, id: &str) -> Self {
        Self {
            type_name: Some(type_name.into()),
            ..Self::untyped(id)
        }
    }

    /// A foreground agent with no actions: the calling program drives it.
    pub fn untyped(id: &str) -> Self {
        Self {
            type_name: None,
            id: id.into(),
            args: Value::Null,
            receive_own_broadcasts: true,
            announce: false,
            keep_log: true,
        }
    }

    /// The same, with constructor args.
    pub fn with_args(mut self, args: Value) -> Self {
        self.args = args;
        self
    }

    /// The same, not receiving its own broadcasts.
    pub fn ignoring_own_broadcasts(mut self) -> Self {
        self.receive_own_broadcasts = false;
        self
    }

    /// The same, announcing itself when it joins (see [`AgentSpec::announce`]).
    pub fn announcing(mut self) -> Self {
        self.announce = true;
        self
    }

    /// The same, for a foreground agent that keeps no log of its messages, so that its
    /// memory stays flat however long it runs: [`Foreground::log`], `received` and
    /// `wait_for` see nothing, [`Foreground::subscribe`] works. The console uses it.
    pub fn without_log(mut self) -> Self {
        self.keep_log = false;
        self
    }
}

/// Agents in one space, connected through one transport.
///
/// Dropping a space destroys it, like leaving Python Agency's `with` block.
///
/// ```no_run
/// # use agency_runtime::{AgentSpec, Catalog, Space};
/// # fn demo(transport: Box<dyn agency_protocol::boundary::TransportSpace>) -> Result<(), Box<dyn std::error::Error>> {
/// let space = Space::open(transport, Catalog::builtin());
/// space.add(&AgentSpec::new("Calculator", "calc"))?;
/// let me = space.add_foreground(&AgentSpec::untyped("me"))?;
/// let sum = me.request(
///     serde_json::json!({"to": "calc", "action": {"name": "add", "args": {"a": 1, "b": 2}}}),
///     std::time::Duration::from_secs(3),
/// )?;
/// assert_eq!(sum, 3.0);
/// space.destroy();
/// # Ok(()) }
/// ```
pub struct Space {
    core: Arc<SpaceCore>,
    catalog: RwLock<Catalog>,
    members: Mutex<HashMap<String, Member>>,
    stop_timeout: RwLock<Duration>,
    /// Each agent type's counters, if this space counts (see [`crate::metrics`]).
    metrics: Option<Mutex<HashMap<String, Arc<TypeCounters>>>>,
}

/// An agent of this space as the space sees it.
enum Member {
    /// Being created and attached: its id is taken, but it is not in the space yet.
    Joining,
    /// In the space.
    Joined(Joined),
}

struct Joined {
    type_name: Option<String>,
    endpoint: Arc<Endpoint>,
    worker: Option<WorkerHandle>,
}

impl Joined {
    /// Messages queued for the agent's worker.
    fn queued(&self) -> usize {
        self.worker.as_ref().map_or(0, |worker| worker.queue.len())
    }

    fn type_label(&self) -> &str {
        self.type_name.as_deref().unwrap_or(FOREGROUND_TYPE)
    }
}

struct WorkerHandle {
    queue: Mailbox<Work>,
    /// Disconnects when the worker ends, however it ends.
    ended: mpsc::Receiver<()>,
}

/// How long `remove` and `destroy` wait for an agent to finish its queued messages and
/// `before_remove` by default.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Space {
    /// Opens a space over an open transport, able to create the agent types in `catalog`.
    pub fn open(transport: Box<dyn TransportSpace>, catalog: Catalog) -> Self {
        let core = SpaceCore {
            transport,
            destroyed: Default::default(),
            permission_prompt: RwLock::new(None),
            dead_letters: Default::default(),
            cycles_refused: Default::default(),
            taps: Default::default(),
        };
        Self {
            core: Arc::new(core),
            catalog: RwLock::new(catalog),
            members: Mutex::default(),
            stop_timeout: RwLock::new(DEFAULT_STOP_TIMEOUT),
            metrics: Some(Mutex::default()),
        }
    }

    /// This space without counting (see [`Space::metrics`]): its agents' messages skip
    /// even the few atomic adds. For measuring what counting costs.
    pub fn without_metrics(mut self) -> Self {
        self.metrics = None;
        self
    }

    /// What this space counted (see [`crate::metrics`]), with the counts of its
    /// `busiest` agents (by messages handled) and of those in `named`; empty if it was
    /// opened [`Space::without_metrics`].
    ///
    /// ```
    /// # use agency_runtime::{AgentSpec, Catalog, Space};
    /// # fn demo(transport: Box<dyn agency_protocol::boundary::TransportSpace>) -> Result<(), Box<dyn std::error::Error>> {
    /// let space = Space::open(transport, Catalog::builtin());
    /// let me = space.add_foreground(&AgentSpec::untyped("me"))?;
    /// me.send(serde_json::json!({"to": "*", "action": {"name": "say", "args": {}}}))?;
    /// let snapshot = space.metrics(10, &[]);
    /// assert_eq!(snapshot.agents[0].counts.sent, 1);
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self, busiest: usize, named: &[&str]) -> Snapshot {
        let mut snapshot = Snapshot {
            pool: scheduler::stats(),
            cycles_refused: self.core.cycles_refused.load(Ordering::Relaxed),
            dead_letters: self.dead_letters(),
            ..Snapshot::default()
        };
        let Some(registry) = &self.metrics else {
            return snapshot;
        };
        let members = self.members.lock().unwrap();
        let mut types: BTreeMap<String, TypeSnapshot> = registry
            .lock()
            .unwrap()
            .iter()
            .map(|(name, counters)| (name.clone(), TypeSnapshot::new(name, counters)))
            .collect();
        let mut agents: Vec<(&String, &Joined)> = members
            .iter()
            .filter_map(|(id, member)| match member {
                Member::Joined(joined) => Some((id, joined)),
                Member::Joining => None,
            })
            .collect();
        for (_, joined) in &agents {
            if let Some(kind) = types.get_mut(joined.type_label()) {
                kind.add_agent(&joined.endpoint.counts, joined.queued());
            }
        }
        let handled = |joined: &Joined| joined.endpoint.counts.handled.load(Ordering::Relaxed);
        agents.sort_by(|(a, x), (b, y)| handled(y).cmp(&handled(x)).then(a.cmp(b)));
        let (top, rest) = agents.split_at(busiest.min(agents.len()));
        let picked = top
            .iter()
            .chain(rest.iter().filter(|(id, _)| named.contains(&id.as_str())));
        snapshot.agents = picked
            .map(|(id, joined)| {
                let counts = &joined.endpoint.counts;
                AgentSnapshot::new(id, joined.type_label(), counts, joined.queued())
            })
            .collect();
        snapshot.types = types.into_values().collect();
        snapshot
    }

    /// The agent types this space can create.
    pub fn catalog(&self) -> Catalog {
        self.catalog.read().unwrap().clone()
    }

    /// Replaces the agent types this space can create, for instance with a plugin loaded
    /// while the space runs. Agents already in the space are not affected.
    pub fn set_catalog(&self, catalog: Catalog) {
        *self.catalog.write().unwrap() = catalog;
    }

    /// Sets who decides `requested` actions for agents that do not decide themselves: it
    /// is given the id of the agent whose action it is, and the message.
    pub fn set_permission_prompt(
        &self,
        prompt: impl Fn(&str, &Message) -> bool + Send + Sync + 'static,
    ) {
        *self.core.permission_prompt.write().unwrap() = Some(Arc::new(prompt) as PermissionPrompt);
    }

    /// Adds an agent that runs in the background, on the pool of agent threads (see
    /// [`crate::scheduler`]).
    pub fn add(&self, spec: &AgentSpec) -> Result<(), SpaceError> {
        if spec.type_name.is_none() {
            return Err(SpaceError::MissingType(spec.id.clone()));
        }
        self.join(spec, false).map(drop)
    }

    /// Adds an agent and returns a handle to drive it directly: send, request, read its
    /// log. With a type, its actions also run in the background as for [`Space::add`].
    pub fn add_foreground(&self, spec: &AgentSpec) -> Result<Foreground, SpaceError> {
        self.join(spec, true)
            .map(|endpoint| Foreground { endpoint })
    }

    /// Adds an agent. The members lock is held only to reserve the id: the agent's
    /// constructor (plugin code) and the transport's `attach` (broker round trips) run
    /// without it, so a slow one never holds up other adds and removes.
    fn join(&self, spec: &AgentSpec, foreground: bool) -> Result<Arc<Endpoint>, SpaceError> {
        let id = spec.id.clone();
        validate_id(&id).map_err(|reason| SpaceError::InvalidId {
            id: id.clone(),
            reason,
        })?;
        {
            let mut members = self.members.lock().unwrap();
            if self.core.destroyed.load(Ordering::Acquire) {
                return Err(SpaceError::Destroyed);
            }
            if members.contains_key(&id) {
                return Err(SpaceError::DuplicateId(id));
            }
            members.insert(id.clone(), Member::Joining);
        }
        let created = self.create(spec, foreground);
        let mut members = self.members.lock().unwrap();
        let reserved = matches!(members.get(&id), Some(Member::Joining));
        match created {
            Ok((endpoint, worker)) if reserved => {
                let joined = Joined {
                    type_name: spec.type_name.clone(),
                    endpoint: endpoint.clone(),
                    worker,
                };
                members.insert(id, Member::Joined(joined));
                Ok(endpoint)
            }
            Ok((_, worker)) => {
                // The space was destroyed meanwhile: this agent leaves again.
                drop(members);
                self.stop(&id, worker);
                Err(SpaceError::Destroyed)
            }
            Err(error) => {
                if reserved {
                    members.remove(&id);
                }
                Err(error)
            }
        }
    }

    /// Creates the agent of `spec`, attaches it to the transport and starts its worker.
    fn create(
        &self,
        spec: &AgentSpec,
        foreground: bool,
    ) -> Result<(Arc<Endpoint>, Option<WorkerHandle>), SpaceError> {
        let id = spec.id.clone();
        let announce_on_join = spec.announce;
        let factory = match &spec.type_name {
            None => None,
            Some(name) => {
                let catalog = self.catalog.read().unwrap();
                Some(
                    catalog
                        .get(name)
                        .cloned()
                        .ok_or_else(|| SpaceError::UnknownType {
                            name: name.clone(),
                            known: catalog.names().collect::<Vec<_>>().join(", "),
                        })?,
                )
            }
        };
        let metrics = self.metrics.as_ref().map(|registry| {
            let name = spec.type_name.as_deref().unwrap_or(FOREGROUND_TYPE);
            let mut registry = registry.lock().unwrap();
            match registry.get(name) {
                Some(counters) => counters.clone(),
                None => registry.entry(name.to_owned()).or_default().clone(),
            }
        });
        let task = factory.as_ref().map(|_| Task::new());
        let (queue_tx, queue_rx) = mailbox_of(task.clone());
        let endpoint = Arc::new(Endpoint::new(
            id.clone(),
            spec.receive_own_broadcasts,
            self.core.clone(),
            factory.as_ref().map(|_| queue_tx.clone()),
            factory.as_ref().map_or(1, |f| f.spec().handles()),
            foreground.then(|| MessageLog::new(spec.keep_log)),
            metrics,
        ));
        let worker = match factory {
            None => None,
            Some(factory) => {
                let init = Init {
                    id: id.clone(),
                    args: spec.args.clone(),
                };
                let created = factory.create(&init, endpoint.clone()).and_then(|handles| {
                    if handles.is_empty() {
                        return Err("the agent type made no agent".to_owned());
                    }
                    Ok(handles)
                });
                let handles = created.map_err(|reason| SpaceError::Create {
                    id: id.clone(),
                    type_name: factory.spec().name.clone(),
                    reason,
                })?;
                Some((handles, factory.spec().clone()))
            }
        };
        self.core
            .transport
            .attach(&id, endpoint.clone())
            .map_err(|reason| SpaceError::Attach {
                id: id.clone(),
                reason,
            })?;
        let worker = worker.zip(task).map(|((handles, spec), task)| {
            let (ended_tx, ended) = mpsc::channel::<()>();
            let mut handlers: Vec<Handler> = handles
                .into_iter()
                .map(|agent| Handler {
                    endpoint: endpoint.clone(),
                    agent,
                    spec: spec.clone(),
                    announce: announce_on_join,
                    skipped: Skipped::default(),
                })
                .collect();
            let job: Box<dyn Job> = match handlers.len() {
                1 => Box::new(Worker {
                    handler: handlers.remove(0),
                    mailbox: queue_rx,
                    started: false,
                    _ended: ended_tx,
                }),
                handles => Box::new(Crew {
                    task: task.clone(),
                    mailbox: queue_rx,
                    free: Arc::new(Mutex::new(handlers)),
                    handles,
                    started: false,
                    stopping: false,
                    _ended: ended_tx,
                }),
            };
            task.start(job);
            WorkerHandle {
                queue: queue_tx,
                ended,
            }
        });
        Ok((endpoint, worker))
    }

    /// Removes an agent: it stops receiving, finishes the messages already queued, runs
    /// `before_remove`, and its worker ends (waited for up to the stop timeout).
    /// An agent still being added is not in the space yet: removing it is an error.
    pub fn remove(&self, id: &str) -> Result<(), SpaceError> {
        let worker = {
            let mut members = self.members.lock().unwrap();
            match members.remove(id) {
                Some(Member::Joined(joined)) => {
                    joined.endpoint.retire();
                    joined.worker
                }
                Some(Member::Joining) => {
                    members.insert(id.into(), Member::Joining);
                    return Err(SpaceError::UnknownAgent(id.into()));
                }
                None => return Err(SpaceError::UnknownAgent(id.into())),
            }
        };
        self.stop(id, worker);
        Ok(())
    }

    fn stop(&self, id: &str, worker: Option<WorkerHandle>) {
        self.core.transport.detach(id);
        let Some(worker) = worker else { return };
        worker.queue.put_now(Work::Stop);
        let timeout = *self.stop_timeout.read().unwrap();
        if let Err(mpsc::RecvTimeoutError::Timeout) = worker.ended.recv_timeout(timeout) {
            tracing::warn!(
                agent = id,
                "agent did not stop within {timeout:?} (an action still running?); leaving it to finish detached"
            );
        }
    }

    /// Sets how long `remove` and `destroy` wait for each agent to finish the messages it
    /// has queued and its `before_remove` (default [`DEFAULT_STOP_TIMEOUT`]). An agent still
    /// busy after that is left running detached from the space, with a warning.
    pub fn set_stop_timeout(&self, timeout: Duration) {
        *self.stop_timeout.write().unwrap() = timeout;
    }

    /// How many messages this space's agents sent that no agent could receive (each was
    /// answered to its sender with an `UndeliverableError`).
    pub fn dead_letters(&self) -> u64 {
        self.core.dead_letters.load(Ordering::Relaxed)
    }

    /// Attaches a [`Tap`]: a copy of every message this space's agents send from now on,
    /// and of each that came back undeliverable, in a queue of `capacity` copies. A tap
    /// never slows the space: a copy that finds the queue full is dropped and counted.
    ///
    /// ```no_run
    /// # use agency_runtime::{tap::Traffic, AgentSpec, Catalog, Space};
    /// # fn demo(transport: Box<dyn agency_protocol::boundary::TransportSpace>) -> Result<(), Box<dyn std::error::Error>> {
    /// let space = Space::open(transport, Catalog::builtin());
    /// let mut tap = space.tap(1000);
    /// let me = space.add_foreground(&AgentSpec::untyped("me"))?;
    /// me.send(serde_json::json!({"to": "*", "action": {"name": "say", "args": {}}}))?;
    /// if let Ok(Traffic::Sent(body)) = tap.next_within(std::time::Duration::from_secs(5)) {
    ///     println!("sent: {body}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn tap(&self, capacity: usize) -> Tap {
        self.core.taps.attach(capacity)
    }

    /// The ids of the agents in this space (on this host), sorted.
    pub fn agent_ids(&self) -> Vec<String> {
        self.agents().into_iter().map(|(id, _)| id).collect()
    }

    /// The agents in this space (on this host), sorted by id, each with its type (none for
    /// an untyped foreground agent, such as a console).
    pub fn agents(&self) -> Vec<(String, Option<String>)> {
        let mut agents: Vec<_> = self
            .members
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(id, member)| match member {
                Member::Joined(joined) => Some((id.clone(), joined.type_name.clone())),
                Member::Joining => None,
            })
            .collect();
        agents.sort();
        agents
    }

    /// Removes every agent and releases the transport. Later calls do nothing.
    ///
    /// Agents with a worker stop first, so what their `before_remove` sends still reaches
    /// the foreground agents.
    pub fn destroy(&self) {
        // An agent still joining finds its reservation gone and leaves by itself.
        let mut members: Vec<(String, Option<WorkerHandle>)> = self
            .members
            .lock()
            .unwrap()
            .drain()
            .filter_map(|(id, member)| match member {
                Member::Joined(joined) => {
                    joined.endpoint.retire();
                    Some((id, joined.worker))
                }
                Member::Joining => None,
            })
            .collect();
        if self.core.destroyed.load(Ordering::Acquire) {
            return;
        }
        members.sort_by_key(|(_, worker)| worker.is_none());
        for (id, worker) in members {
            self.stop(&id, worker);
        }
        self.core.destroyed.store(true, Ordering::Release);
        self.core.transport.close();
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// A handle to an agent the calling program drives directly.
#[derive(Clone)]
pub struct Foreground {
    pub(crate) endpoint: Arc<Endpoint>,
}

impl Foreground {
    /// The agent's id.
    pub fn id(&self) -> &str {
        &self.endpoint.id
    }

    /// Sends a message (`from` and `meta.id` are filled in); answers its id.
    pub fn send(&self, message: impl IntoOutgoing) -> Result<String, ActionError> {
        self.endpoint.send(message.into_outgoing()?)
    }

    /// Sends a message and waits up to `timeout` for the value of its `[response]`; an
    /// `[error]` reply or the timeout (kind `TimeoutError`) is an error.
    pub fn request(
        &self,
        message: impl IntoOutgoing,
        timeout: Duration,
    ) -> Result<Value, ActionError> {
        self.endpoint.request(message.into_outgoing()?, timeout)
    }

    /// Every message this agent sent and received so far, in order (Agency's message log).
    pub fn log(&self) -> Vec<Message> {
        self.endpoint.log().map(|log| log.all()).unwrap_or_default()
    }

    /// The messages this agent received so far, in order.
    pub fn received(&self) -> Vec<Message> {
        self.endpoint
            .log()
            .map(|log| log.received())
            .unwrap_or_default()
    }

    /// Waits until `done(received messages)` holds, up to `timeout`; answers whether it
    /// held.
    pub fn wait_for(&self, timeout: Duration, done: impl FnMut(&[Message]) -> bool) -> bool {
        self.endpoint
            .log()
            .is_some_and(|log| log.wait_until(timeout, done))
    }

    /// The messages this agent receives from now on (bounded: see [`Subscription`]).
    pub fn subscribe(&self) -> Subscription {
        self.endpoint
            .log()
            .map(MessageLog::subscribe)
            .expect("a foreground agent has a message log")
    }
}
