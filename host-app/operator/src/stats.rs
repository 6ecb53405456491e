//! `/stats`: what a space counted ([`agency_runtime::metrics`]) as text, the same at the
//! console and on the page: a line per agent type, the busiest agents (or the one asked
//! for), the pool and the space's own counts. Ids and type names are shown escaped.

use agency_runtime::{
    metrics::{AgentSnapshot, HistogramSnapshot, Snapshot},
    printable, Space,
};

/// How many of the busiest agents `/stats` lists.
pub const BUSIEST: usize = 5;

/// The answer to `/stats` (`id` is `None`: every type, the busiest agents) or `/stats ID`
/// (that agent).
///
/// ```
/// # use agency_runtime::{AgentSpec, Catalog, Space};
/// # fn demo(space: &Space) {
/// let text = agency_operator::stats::answer(space, None);
/// assert!(text.starts_with("stats of the agents on this host"));
/// # }
/// ```
pub fn answer(space: &Space, id: Option<&str>) -> String {
    let Some(id) = id else {
        return render(&space.metrics(BUSIEST, &[]));
    };
    let snapshot = space.metrics(0, &[id]);
    match snapshot.agents.first() {
        Some(agent) => agent_line(agent),
        None => format!(
            "no agent {:?} on this host (/agents lists them)",
            printable(id)
        ),
    }
}

/// A snapshot as `/stats` shows it.
pub fn render(snapshot: &Snapshot) -> String {
    if snapshot.types.is_empty() {
        return "this space counts nothing (it was opened without metrics)".to_owned();
    }
    let mut lines = vec![
        "stats of the agents on this host, since they started:".to_owned(),
        format!(
            "  {:<16} {:>7} {:>9} {:>9} {:>9} {:>7} {:>8}  {}",
            "type", "agents", "received", "handled", "sent", "errors", "queued", "action p50 / p99"
        ),
    ];
    for kind in &snapshot.types {
        lines.push(format!(
            "  {:<16} {:>7} {:>9} {:>9} {:>9} {:>7} {:>8}  {}",
            printable(&kind.name),
            kind.agents,
            kind.counts.received,
            kind.counts.handled,
            kind.counts.sent,
            kind.counts.errors,
            kind.mailbox_sum,
            latency(&kind.action_seconds),
        ));
    }
    if !snapshot.agents.is_empty() {
        lines.push("busiest:".to_owned());
        lines.extend(snapshot.agents.iter().map(agent_line));
    }
    let pool = &snapshot.pool;
    lines.push(format!(
        "pool: {} threads ({} running), {} agents waiting for one; dead letters {}, request cycles refused {}",
        pool.threads, pool.running, pool.queued, snapshot.dead_letters, snapshot.cycles_refused
    ));
    lines.join("\n")
}

/// One agent's counts on a line.
fn agent_line(agent: &AgentSnapshot) -> String {
    let counts = &agent.counts;
    format!(
        "  {} ({}): received {}, handled {}, sent {}, errors {}, queued {}",
        printable(&agent.id),
        printable(&agent.type_name),
        counts.received,
        counts.handled,
        counts.sent,
        counts.errors,
        agent.queued
    )
}

/// `p50 / p99` of a duration histogram, or `-` without observations.
fn latency(histogram: &HistogramSnapshot) -> String {
    match (histogram.quantile(0.5), histogram.quantile(0.99)) {
        (Some(p50), Some(p99)) => format!("{} / {}", duration(p50), duration(p99)),
        _ => "-".to_owned(),
    }
}

/// Seconds in the unit that reads best: µs, ms or s.
fn duration(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.0} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agency_runtime::metrics::{Counts, TypeSnapshot};

    #[test]
    fn a_snapshot_reads_as_a_table_with_escaped_names() {
        let snapshot = Snapshot {
            types: vec![TypeSnapshot {
                name: "Calc\u{1b}[2J".into(),
                agents: 1,
                counts: Counts {
                    received: 3,
                    handled: 3,
                    sent: 3,
                    errors: 1,
                },
                action_seconds: HistogramSnapshot {
                    count: 2,
                    sum: 0.0,
                    buckets: vec![(0.000_1, 2), (f64::INFINITY, 2)],
                },
                ..TypeSnapshot::default()
            }],
            ..Snapshot::default()
        };
        let text = render(&snapshot);
        assert!(text.contains("Calc\\u{1b}[2J"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("50 µs / 99 µs"), "{text}");
        assert_eq!(duration(0.0123), "12.3 ms");
        assert_eq!(duration(2.0), "2.00 s");
        assert!(render(&Snapshot::default()).contains("counts nothing"));
    }
}
