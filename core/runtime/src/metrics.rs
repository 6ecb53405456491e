//! What a space counts, for whoever shows it (`agency run --metrics`, `/stats`, the page).
//!
//! Invariant: **counting takes no lock and allocates nothing on a message's path**. An
//! agent counts its own messages in its endpoint (`AgentCounts`, relaxed atomics that
//! only the threads handling that agent's traffic touch), and the space keeps, per agent
//! type, what one agent's counts cannot hold: the durations of actions and requests
//! (histograms with fixed buckets), dead letters, permission verdicts, errors by kind
//! (off the message's path: an error already allocates its text), and the counts of the
//! type's agents that were removed. A [`Snapshot`] adds these up when someone asks, so
//! the reader pays in proportion to the agents, and the agents pay a few atomic adds.
//!
//! Counters never go down: a removed agent's counts move into its type's totals under
//! the space's members lock, which a snapshot also holds, and what it still counts while
//! it finishes its queue moves there when its endpoint is dropped.
//!
//! Labels stay few however many agents run: series are per agent type (the plugins'
//! manifests name a handful), errors per kind with at most [`MAX_ERROR_KINDS`] kinds a
//! type (the others counted as [`OTHER_KIND`]), and single agents only as many as the
//! reader asks for (the busiest, or those it names).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Mutex,
    },
    time::Duration,
};

use serde::Serialize;

/// The upper bounds, in seconds, of the duration histograms' buckets (and `+Inf`).
pub const BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
    1.0, 5.0,
];

/// The most error kinds counted apart for one agent type; more are [`OTHER_KIND`].
pub const MAX_ERROR_KINDS: usize = 16;

/// The kind errors are counted under once a type has [`MAX_ERROR_KINDS`] kinds.
pub const OTHER_KIND: &str = "other";

/// The type name untyped (foreground) agents, such as a console, are counted under.
pub const FOREGROUND_TYPE: &str = "foreground";

/// Durations in fixed buckets: one add for the bucket, one for the sum. Aligned to a
/// cache line: a type's action and request histograms are written by different threads.
#[derive(Default)]
#[repr(align(64))]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(BUCKETS.len() + 1);
        for (count, bound) in self
            .counts
            .iter()
            .zip(BUCKETS.iter().chain([&f64::INFINITY]))
        {
            total += count.load(Relaxed);
            buckets.push((*bound, total));
        }
        HistogramSnapshot {
            count: total,
            sum: self.sum_nanos.load(Relaxed) as f64 / 1e9,
            buckets,
        }
    }
}

/// Durations as Prometheus reads them: cumulative buckets, count and sum in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HistogramSnapshot {
    /// How many durations were observed.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
    /// `(upper bound in seconds, observations at most that long)`, ending with `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl HistogramSnapshot {
    /// The duration under which a fraction `q` (0 to 1) of the observations fell,
    /// interpolated inside its bucket as Prometheus's `histogram_quantile` does; `None`
    /// without observations.
    ///
    /// ```
    /// use agency_runtime::metrics::HistogramSnapshot;
    /// let h = HistogramSnapshot { count: 4, sum: 0.0, buckets: vec![(0.001, 2), (0.01, 4), (f64::INFINITY, 4)] };
    /// assert_eq!(h.quantile(0.5), Some(0.001));
    /// assert!((h.quantile(0.75).unwrap() - 0.0055).abs() < 1e-12);
    /// ```
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let (mut lower, mut below) = (0.0, 0);
        for &(bound, count) in &self.buckets {
            if count as f64 >= rank && count > below {
                if bound.is_infinite() {
                    return Some(lower);
                }
                let share = (rank - below as f64) / (count - below) as f64;
                return Some(lower + (bound - lower) * share);
            }
            (lower, below) = (bound, count);
        }
        Some(lower)
    }
}

/// One agent's own counts, kept in its endpoint. The threads that run the agent write
/// them; a delivery on the sender's thread does not (see `Endpoint::deliver`), and they
/// have a cache line of their own, apart from the endpoint's fields a delivery reads: a
/// message's path shares no line between the sending and the receiving thread.
#[derive(Default)]
#[repr(align(64))]
pub(crate) struct AgentCounts {
    pub received: AtomicU64,
    pub handled: AtomicU64,
    pub sent: AtomicU64,
    pub errors: AtomicU64,
}

impl AgentCounts {
    fn load(&self) -> Counts {
        Counts {
            received: self.received.load(Relaxed),
            handled: self.handled.load(Relaxed),
            sent: self.sent.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }

    /// Answers the counts and starts again from zero.
    fn take(&self) -> Counts {
        Counts {
            received: self.received.swap(0, Relaxed),
            handled: self.handled.swap(0, Relaxed),
            sent: self.sent.swap(0, Relaxed),
            errors: self.errors.swap(0, Relaxed),
        }
    }
}

/// Message counts of an agent or of an agent type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Messages delivered to it and accepted (replies included; not the malformed nor
    /// those addressed to another agent).
    pub received: u64,
    /// Messages its worker finished (an action, `help`, a reply, a refusal).
    pub handled: u64,
    /// Messages it sent (replies included).
    pub sent: u64,
    /// `[error]` replies it sent (an action's error, an unknown action, a refusal).
    pub errors: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.received += other.received;
        self.handled += other.handled;
        self.sent += other.sent;
        self.errors += other.errors;
    }
}

/// What the space counts for one agent type beyond its agents' own counts.
#[derive(Default)]
pub(crate) struct TypeCounters {
    /// The counts of its agents already removed.
    retired: Mutex<Counts>,
    pub action: Histogram,
    pub request: Histogram,
    pub request_timeouts: AtomicU64,
    pub dead_letters: AtomicU64,
    pub permission_asked: AtomicU64,
    pub permission_allowed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl TypeCounters {
    /// Counts an `[error]` reply of kind `kind`.
    pub fn error(&self, kind: &str) {
        let mut errors = self.errors.lock().unwrap();
        if let Some(count) = errors.get_mut(kind) {
            *count += 1;
        } else if errors.len() < MAX_ERROR_KINDS {
            errors.insert(kind.to_owned(), 1);
        } else {
            *errors.entry(OTHER_KIND.to_owned()).or_default() += 1;
        }
    }

    /// Moves an agent's counts into the type's totals (see the module docs).
    pub fn retire(&self, counts: &AgentCounts) {
        self.retired.lock().unwrap().add(counts.take());
    }
}

/// Counts of one agent type in one space, its removed agents included.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TypeSnapshot {
    /// The type's name ([`FOREGROUND_TYPE`] for untyped agents).
    pub name: String,
    /// Its agents in the space now.
    pub agents: u64,
    /// Messages, summed over its agents.
    pub counts: Counts,
    /// `[error]` replies by kind.
    pub errors: BTreeMap<String, u64>,
    /// How long its actions ran.
    pub action_seconds: HistogramSnapshot,
    /// How long its requests waited for their replies (answered or not).
    pub request_seconds: HistogramSnapshot,
    /// Its requests that got no reply in time.
    pub request_timeouts: u64,
    /// Its messages that no agent could receive.
    pub dead_letters: u64,
    /// `requested` actions it was asked to run, and of these, how many were allowed.
    pub permission_asked: u64,
    /// See `permission_asked`.
    pub permission_allowed: u64,
    /// Messages queued for its agents, in all, and at most for one of them.
    pub mailbox_sum: u64,
    /// See `mailbox_sum`.
    pub mailbox_max: u64,
}

impl TypeSnapshot {
    pub(crate) fn new(name: &str, counters: &TypeCounters) -> Self {
        Self {
            name: name.to_owned(),
            counts: *counters.retired.lock().unwrap(),
            errors: counters.errors.lock().unwrap().clone(),
            action_seconds: counters.action.snapshot(),
            request_seconds: counters.request.snapshot(),
            request_timeouts: counters.request_timeouts.load(Relaxed),
            dead_letters: counters.dead_letters.load(Relaxed),
            permission_asked: counters.permission_asked.load(Relaxed),
            permission_allowed: counters.permission_allowed.load(Relaxed),
            ..Self::default()
        }
    }

    /// Adds one of its agents now in the space.
    pub(crate) fn add_agent(&mut self, counts: &AgentCounts, queued: usize) {
        self.agents += 1;
        self.counts.add(counts.load());
        self.mailbox_sum += queued as u64;
        self.mailbox_max = self.mailbox_max.max(queued as u64);
    }
}

/// One agent's counts, for the agents a reader asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSnapshot {
    /// The agent's id.
    pub id: String,
    /// Its type ([`FOREGROUND_TYPE`] for an untyped agent).
    pub type_name: String,
    /// Its messages.
    pub counts: Counts,
    /// Messages queued for it now.
    pub queued: u64,
}

impl AgentSnapshot {
    pub(crate) fn new(id: &str, type_name: &str, counts: &AgentCounts, queued: usize) -> Self {
        Self {
            id: id.to_owned(),
            type_name: type_name.to_owned(),
            counts: counts.load(),
            queued: queued as u64,
        }
    }
}

/// The agents' pool (see [`crate::scheduler`]), process-wide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolSnapshot {
    /// Threads alive.
    pub threads: u64,
    /// Threads alive and not waiting in a request or a permission question.
    pub running: u64,
    /// Agents queued for a thread.
    pub queued: u64,
    /// Threads started because others waited (blocking compensations).
    pub compensations: u64,
}

/// A space's counts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Per agent type, sorted by name.
    pub types: Vec<TypeSnapshot>,
    /// The agents asked for (the busiest, those named), busiest first.
    pub agents: Vec<AgentSnapshot>,
    /// The agents' pool.
    pub pool: PoolSnapshot,
    /// Requests answered at once with a `DeadlockError` (they closed a cycle).
    pub cycles_refused: u64,
    /// Messages of this space's agents that no agent could receive.
    pub dead_letters: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_into_cumulative_buckets() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(5));
        histogram.observe(Duration::from_micros(700));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 3);
        assert!((snapshot.sum - 60.000_705).abs() < 1e-9, "{}", snapshot.sum);
        assert_eq!(snapshot.buckets[0], (0.000_01, 1));
        assert_eq!(snapshot.buckets[5], (0.000_5, 1));
        assert_eq!(snapshot.buckets[6], (0.001, 2));
        assert_eq!(snapshot.buckets[BUCKETS.len() - 1], (5.0, 2));
        assert_eq!(snapshot.buckets[BUCKETS.len()], (f64::INFINITY, 3));
        assert_eq!(snapshot.quantile(1.0), Some(5.0));
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
    }

    #[test]
    fn error_kinds_are_bounded() {
        let counters = TypeCounters::default();
        for n in 0..MAX_ERROR_KINDS + 5 {
            counters.error(&format!("Kind{n}Error"));
        }
        counters.error("Kind0Error");
        let errors = counters.errors.lock().unwrap().clone();
        assert_eq!(errors.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(errors["Kind0Error"], 2);
        assert_eq!(errors[OTHER_KIND], 5);
    }

    #[test]
    fn retiring_moves_counts_and_never_loses_them() {
        let (counters, agent) = (TypeCounters::default(), AgentCounts::default());
        agent.handled.fetch_add(3, Relaxed);
        counters.retire(&agent);
        agent.handled.fetch_add(1, Relaxed);
        let mut snapshot = TypeSnapshot::new("T", &counters);
        assert_eq!(snapshot.counts.handled, 3);
        snapshot.add_agent(&agent, 7);
        assert_eq!((snapshot.counts.handled, snapshot.mailbox_max), (4, 7));
        counters.retire(&agent);
        assert_eq!(TypeSnapshot::new("T", &counters).counts.handled, 4);
    }
}
