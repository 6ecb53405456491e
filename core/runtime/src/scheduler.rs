//! The pool that runs agents: a few threads for any number of agents.
//!
//! An agent with work is *scheduled*: put on the run queue, taken by one pool thread,
//! which handles up to a batch of its messages, then puts it back at the end of the
//! queue if more wait and other agents are queued (so a busy agent does not starve the
//! others; with nobody queued it keeps its thread for another batch), or leaves it idle.
//! An agent's `Task` moves `IDLE -> QUEUED -> RUNNING` and back by compare-and-swap; a
//! delivery to a running agent marks it `NOTIFIED`, and it is queued again when its turn
//! ends. Invariant: **an agent never runs on two threads at once, and no delivery is
//! missed.** An idle agent costs its task, its mailbox and its state: no thread. A
//! request that wakes an agent may keep it, queued, to run its turn on the requester's
//! own thread instead of the queue's (module `direct`).
//!
//! Actions are synchronous and may block. The pool keeps as many threads *running* as
//! there are cores. A thread that waits (for a reply in `ctx.request`, for a permission
//! answer) says so (`blocking`) and counts as not running meanwhile; if an agent then
//! waits for a thread and none is idle, one more is started. A thread that blocks
//! without saying so (a slow system call in an action) is noticed by the watchdog when
//! it has handled no message for [`WATCHDOG_AFTER`], and compensated the same way. The
//! number of threads is bounded ([`set_max_threads`], `AGENCY_MAX_THREADS`, default
//! [`DEFAULT_MAX_THREADS`]); reaching the bound is logged. Threads beyond the cores
//! retire once the others run again, or after [`IDLE_RETIRE`] without work.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::SeqCst},
        Arc, Condvar, Mutex, OnceLock,
    },
    time::Duration,
};

use crate::{
    direct::{Speeds, MAX_DEPTH},
    metrics::PoolSnapshot,
};

/// The default bound on the pool's threads.
pub const DEFAULT_MAX_THREADS: usize = 512;
/// How long a thread may go without finishing a message before the watchdog takes it
/// for blocked.
pub const WATCHDOG_AFTER: Duration = Duration::from_millis(10);
/// How long a thread beyond the cores stays without work before it ends.
pub const IDLE_RETIRE: Duration = Duration::from_secs(5);
/// The stack of a pool thread: room for a few agents' turns nested by hand-offs (see
/// [`crate::direct`]). Only the pages used take memory.
const POOL_STACK: usize = 8 << 20;
/// How many messages an agent handles in one turn before others get theirs.
const BATCH: usize = 64;

const IDLE: u8 = 0;
const QUEUED: u8 = 1;
const RUNNING: u8 = 2;
const NOTIFIED: u8 = 3;
const DONE: u8 = 4;

/// What an agent's turn ended with.
pub(crate) enum Turn {
    /// Nothing more to do for now.
    Idle,
    /// More work waits: the agent goes back to the end of the queue.
    More,
    /// The agent is finished: its job is dropped.
    Done,
}

/// What a task runs, one turn at a time.
pub(crate) trait Job: Send {
    /// Handles some of the work waiting: at most `budget` messages; notes in `speeds`
    /// how quickly it answered requests, if it handles them one at a time (see
    /// [`crate::direct`]).
    fn turn(&mut self, budget: usize, speeds: &Speeds) -> Turn;
}

/// An agent's place in the pool.
pub(crate) struct Task {
    state: AtomicU8,
    job: Mutex<Option<Box<dyn Job>>>,
    /// How quickly the agent handles each action (see [`crate::direct`]).
    speeds: Speeds,
}

impl Task {
    /// A task without its job yet: deliveries meanwhile are remembered, and the first
    /// turn comes once [`Task::start`] gives it the job.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: AtomicU8::new(RUNNING),
            job: Mutex::new(None),
            speeds: Speeds::default(),
        })
    }

    /// Gives the task its job and schedules its first turn.
    pub fn start(self: &Arc<Self>, job: Box<dyn Job>) {
        *self.job.lock().unwrap() = Some(job);
        self.state.store(QUEUED, SeqCst);
        pool().push(self.clone());
    }

    /// Work arrived: schedules the task unless it is queued already (a request leaving
    /// this thread may keep it, see [`crate::direct`]); a running task is told to look
    /// again when its turn ends.
    pub fn notify(self: &Arc<Self>) {
        let mut state = self.state.load(SeqCst);
        loop {
            let next = match state {
                IDLE => QUEUED,
                RUNNING => NOTIFIED,
                _ => return,
            };
            match self.state.compare_exchange(state, next, SeqCst, SeqCst) {
                Ok(_) if next == QUEUED => {
                    if !keep(self) {
                        pool().push(self.clone());
                    }
                    return;
                }
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }

    /// One turn, on a pool thread; more turns at once while the agent has more work and
    /// no other agent waits for a thread (handing it to the queue would only move it to
    /// another thread, and wake one).
    fn run(self: Arc<Self>) {
        let turn = loop {
            let turn = self.turn(BATCH);
            if !matches!(turn, Turn::More) || pool().queued.load(SeqCst) > 0 {
                break turn;
            }
        };
        self.end_turn(turn);
    }

    /// One turn of one message, on the thread of a request that woke the task (it was
    /// queued, kept by the request: see [`crate::direct`]).
    fn run_once(self: Arc<Self>) {
        let turn = self.turn(1);
        self.end_turn(turn);
    }

    /// Runs the job for up to `budget` messages.
    fn turn(&self, budget: usize) -> Turn {
        self.state.store(RUNNING, SeqCst);
        let mut job = self.job.lock().unwrap();
        match job.as_mut() {
            None => Turn::Idle,
            Some(job) => {
                { std::panic::catch_unwind(AssertUnwindSafe(|| job.turn(budget, &self.speeds))) }
                    .unwrap_or_else(|_| {
                        tracing::error!("an agent's turn panicked; the agent is stopped");
                        Turn::Done
                    })
            }
        }
    }

    /// Queues the task again, leaves it idle or drops its job, as its turn ended.
    fn end_turn(self: Arc<Self>, turn: Turn) {
        match turn {
            Turn::More => {
                self.state.store(QUEUED, SeqCst);
                pool().push(self);
            }
            Turn::Idle => {
                if self
                    .state
                    .compare_exchange(RUNNING, IDLE, SeqCst, SeqCst)
                    .is_err()
                {
                    // Notified during the turn.
                    self.state.store(QUEUED, SeqCst);
                    pool().push(self);
                }
            }
            Turn::Done => {
                self.state.store(DONE, SeqCst);
                let job = self.job.lock().unwrap().take();
                drop(job);
            }
        }
    }
}

/// What a thread keeps of the tasks its publishing wakes (see [`crate::direct`]).
enum Keeping {
    /// Nothing: woken tasks go to the pool's queue.
    Off,
    /// The first task woken is kept.
    Open,
    /// This task was woken and kept.
    Kept(Arc<Task>),
}

thread_local! {
    static KEEPING: RefCell<Keeping> = const { RefCell::new(Keeping::Off) };
    /// How many handed-off turns this thread is inside.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Runs `publish` (a request leaving), keeping the first agent it wakes for a hand-off,
/// on a pool thread not yet [`MAX_DEPTH`] turns deep.
pub(crate) fn keeping_woken<R>(publish: impl FnOnce() -> R) -> (R, Next) {
    if DEPTH.get() >= MAX_DEPTH || !on_pool_thread() {
        return (publish(), Next(None));
    }
    let before = KEEPING.replace(Keeping::Open);
    let result = publish();
    let kept = match KEEPING.replace(before) {
        Keeping::Kept(task) => Some(task),
        Keeping::Off | Keeping::Open => None,
    };
    (result, Next(kept))
}

/// Keeps `task`, just woken (now queued), if this thread keeps the first task woken;
/// answers whether it did (else the caller queues it).
fn keep(task: &Arc<Task>) -> bool {
    KEEPING.with_borrow_mut(|keeping| match keeping {
        Keeping::Open => {
            *keeping = Keeping::Kept(task.clone());
            true
        }
        Keeping::Off | Keeping::Kept(_) => false,
    })
}

/// An agent woken by a request, kept to take its turn on the requester's thread.
///
/// Invariant: **a kept task is queued and owned by one `Next`**, which runs its turn or,
/// dropped, puts it on the pool's queue: it is neither lost nor run twice.
pub(crate) struct Next(Option<Arc<Task>>);

impl Next {
    /// Runs the agent's turn here, for one message, if `may` says so given how quickly
    /// it handles each action (see [`crate::direct::may_hand_off`]); otherwise queues it.
    pub fn run_if(mut self, may: impl FnOnce(&Speeds) -> bool) {
        let Some(task) = self.0.take_if(|task| may(&task.speeds)) else {
            return;
        };
        DEPTH.set(DEPTH.get() + 1);
        task.run_once();
        DEPTH.set(DEPTH.get() - 1);
    }
}

impl Drop for Next {
    /// Queues the agent, not run here.
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            pool().push(task);
        }
    }
}

/// A pool thread as the watchdog sees it.
#[derive(Default)]
struct Slot {
    /// Messages finished (and turns begun): the watchdog looks for no change.
    progress: AtomicU64,
    /// The progress the watchdog saw last.
    seen: AtomicU64,
    /// In a turn.
    busy: AtomicBool,
    /// Waiting (said so, or taken for it by the watchdog): not counted as running.
    blocked: AtomicBool,
    /// Ended: the watchdog forgets it.
    ended: AtomicBool,
}

thread_local! {
    static SLOT: RefCell<Option<Arc<Slot>>> = const { RefCell::new(None) };
}

struct Pool {
    queue: Mutex<VecDeque<Arc<Task>>>,
    /// How many tasks are queued: threads looking for work spin on this, not the lock.
    queued: AtomicUsize,
    wake: Condvar,
    /// Threads looking for work before they sleep: one of them takes the next task, so
    /// nobody needs waking.
    searching: AtomicUsize,
    /// Threads waiting for work.
    sleeping: AtomicUsize,
    /// Threads alive.
    threads: AtomicUsize,
    /// Threads alive and not blocked.
    running: AtomicUsize,
    /// How many threads run at once: one a core.
    target: usize,
    max: AtomicUsize,
    bound_said: AtomicBool,
    /// Threads started beyond one a core, because others waited.
    compensations: AtomicU64,
    slots: Mutex<Vec<Arc<Slot>>>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let max = std::env::var("AGENCY_MAX_THREADS")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(DEFAULT_MAX_THREADS);
        std::thread::Builder::new()
            .name("agency watchdog".into())
            .spawn(watchdog)
            .expect("the system can start a thread");
        Pool {
            queue: Mutex::default(),
            queued: AtomicUsize::new(0),
            wake: Condvar::new(),
            searching: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            target: std::thread::available_parallelism().map_or(2, usize::from),
            max: AtomicUsize::new(max),
            bound_said: AtomicBool::new(false),
            compensations: AtomicU64::new(0),
            slots: Mutex::default(),
        }
    })
}

/// Sets the most threads the pool may have (at least 1). Threads beyond it are started
/// only to replace ones that wait; reaching it is logged once.
pub fn set_max_threads(max: usize) {
    pool().max.store(max.max(1), SeqCst);
}

/// How many threads the pool has now.
pub fn pool_threads() -> usize {
    pool().threads.load(SeqCst)
}

/// The pool's threads and queue now, and the threads it ever started beyond one a core.
pub fn stats() -> PoolSnapshot {
    let pool = pool();
    let load = |n: &AtomicUsize| n.load(SeqCst) as u64;
    PoolSnapshot {
        threads: load(&pool.threads),
        running: load(&pool.running),
        queued: load(&pool.queued),
        compensations: pool.compensations.load(SeqCst),
    }
}

impl Pool {
    fn push(&self, task: Arc<Task>) {
        self.queue.lock().unwrap().push_back(task);
        self.queued.fetch_add(1, SeqCst);
        self.ensure_runner();
    }

    /// Takes the first queued task, if any.
    fn pop(&self, queue: &mut VecDeque<Arc<Task>>) -> Option<Arc<Task>> {
        let task = queue.pop_front()?;
        self.queued.fetch_sub(1, SeqCst);
        Some(task)
    }

    /// Makes sure someone takes queued work: a thread looking for work will; else wakes
    /// a sleeping thread, or starts one if fewer than one a core are running.
    fn ensure_runner(&self) {
        if self.searching.load(SeqCst) > 0 {
            return;
        }
        if self.sleeping.load(SeqCst) > 0 {
            self.wake.notify_one();
            return;
        }
        if self.running.load(SeqCst) >= self.target || self.queued.load(SeqCst) == 0 {
            return;
        }
        if self.threads.load(SeqCst) >= self.max.load(SeqCst) {
            if !self.bound_said.swap(true, SeqCst) {
                tracing::warn!(
                    max = self.max.load(SeqCst),
                    "every agent thread is busy or waiting and the pool is at its bound; agents wait for one (raise AGENCY_MAX_THREADS)"
                );
            }
            return;
        }
        if self.threads.fetch_add(1, SeqCst) >= self.target {
            self.compensations.fetch_add(1, SeqCst);
        }
        self.running.fetch_add(1, SeqCst);
        let started = std::thread::Builder::new()
            .name("agency agents".into())
            .stack_size(POOL_STACK)
            .spawn(pool_thread);
        if started.is_err() {
            self.threads.fetch_sub(1, SeqCst);
            self.running.fetch_sub(1, SeqCst);
            tracing::error!("cannot start another agent thread");
        }
    }

    /// The next task, spinning briefly and then sleeping; `None` when this thread should
    /// end (idle too long while there are more threads than cores).
    ///
    /// While it spins the thread counts as searching, and pushes wake nobody. It stops
    /// searching before it looks at the queue under the lock one last time and sleeps, so
    /// a push either finds it searching (and it sees the task under the lock) or finds
    /// it not searching (and wakes a sleeper).
    fn next(&self) -> Option<Arc<Task>> {
        self.searching.fetch_add(1, SeqCst);
        for round in 0..SPIN_ROUNDS {
            if self.queued.load(SeqCst) > 0 {
                if let Some(task) = self.pop(&mut self.queue.lock().unwrap()) {
                    self.searching.fetch_sub(1, SeqCst);
                    if self.queued.load(SeqCst) > 0 {
                        // More waits: another thread takes it.
                        self.ensure_runner();
                    }
                    return Some(task);
                }
            }
            if round < SPIN_ROUNDS / 2 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.searching.fetch_sub(1, SeqCst);
        let mut queue = self.queue.lock().unwrap();
        loop {
            if let Some(task) = self.pop(&mut queue) {
                return Some(task);
            }
            self.sleeping.fetch_add(1, SeqCst);
            let (guard, waited) = self.wake.wait_timeout(queue, IDLE_RETIRE).unwrap();
            self.sleeping.fetch_sub(1, SeqCst);
            queue = guard;
            if waited.timed_out() && queue.is_empty() && self.retire_one() {
                return None;
            }
        }
    }

    /// Ends this thread's count if there are more running threads than cores.
    fn retire_one(&self) -> bool {
        let mut running = self.running.load(SeqCst);
        while running > self.target {
            match self
                .running
                .compare_exchange(running, running - 1, SeqCst, SeqCst)
            {
                Ok(_) => {
                    self.threads.fetch_sub(1, SeqCst);
                    return true;
                }
                Err(actual) => running = actual,
            }
        }
        false
    }
}

/// Polls of the queue before a thread without work sleeps (about 20-50 µs): the next
/// message usually comes sooner, and waking a sleeping thread costs more.
const SPIN_ROUNDS: u32 = 256;

fn pool_thread() {
    let slot = Arc::new(Slot::default());
    pool().slots.lock().unwrap().push(slot.clone());
    SLOT.with(|s| *s.borrow_mut() = Some(slot.clone()));
    let pool = pool();
    while let Some(task) = pool.next() {
        slot.progress.fetch_add(1, SeqCst);
        slot.busy.store(true, SeqCst);
        task.run();
        slot.busy.store(false, SeqCst);
        if slot.blocked.swap(false, SeqCst) {
            // The watchdog counted this thread out while its turn took long.
            pool.running.fetch_add(1, SeqCst);
        }
        if pool.retire_one() {
            break;
        }
    }
    slot.ended.store(true, SeqCst);
}

/// Runs `wait` (something that blocks: waiting for a reply, a person's answer); on a
/// pool thread, the pool counts the thread out meanwhile and starts another if agents
/// would otherwise wait.
pub(crate) fn blocking<T>(wait: impl FnOnce() -> T) -> T {
    let Some(slot) = SLOT.with(|s| s.borrow().clone()) else {
        return wait();
    };
    let pool = pool();
    if !slot.blocked.swap(true, SeqCst) {
        pool.running.fetch_sub(1, SeqCst);
        pool.ensure_runner();
    }
    let result = wait();
    if slot.blocked.swap(false, SeqCst) {
        pool.running.fetch_add(1, SeqCst);
    }
    result
}

/// Whether the calling thread is one of the pool's (it runs agents, so it drains
/// mailboxes: see [`crate::mailbox`]).
pub(crate) fn on_pool_thread() -> bool {
    SLOT.with(|s| s.borrow().is_some())
}

/// Tells the watchdog that this thread finished a message.
pub(crate) fn progressed() {
    SLOT.with(|s| {
        if let Some(slot) = s.borrow().as_ref() {
            slot.progress.fetch_add(1, SeqCst);
        }
    });
}

/// Every [`WATCHDOG_AFTER`], counts out the threads that made no progress in a turn
/// since the last look, and has them replaced if agents wait.
fn watchdog() {
    loop {
        std::thread::sleep(WATCHDOG_AFTER);
        let pool = pool();
        let mut stuck = false;
        pool.slots.lock().unwrap().retain(|slot| {
            if slot.ended.load(SeqCst) {
                return false;
            }
            let progress = slot.progress.load(SeqCst);
            let unchanged = slot.seen.swap(progress, SeqCst) == progress;
            if unchanged && slot.busy.load(SeqCst) && !slot.blocked.swap(true, SeqCst) {
                pool.running.fetch_sub(1, SeqCst);
                stuck = true;
            }
            true
        });
        if stuck {
            pool.ensure_runner();
        }
    }
}
