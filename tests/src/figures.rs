//! Benchmark figures: percentiles and the table every benchmark prints, the contender
//! first and each reference after it, then the contender's ratio to each reference.

/// The `q` quantile (0.5 = median) of `samples`.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// One line of a table: messages per second one way, and round trips in µs if measured.
pub struct Row<'a> {
    /// What was measured, in full.
    pub name: &'a str,
    /// A short name for the ratio lines.
    pub short: &'a str,
    /// Messages per second.
    pub one_way: f64,
    /// Each round trip, in microseconds.
    pub trips: Option<&'a [f64]>,
}

impl<'a> Row<'a> {
    /// The contender's row, named `agency`.
    pub fn agency(one_way: f64, trips: &'a [f64]) -> Self {
        Self {
            name: "agency",
            short: "agency",
            one_way,
            trips: Some(trips),
        }
    }
}

/// Prints `rows` under `title`; the first row is the contender.
pub fn print_table(title: &str, rows: &[Row]) {
    let quantiles = |row: &Row| row.trips.map(|t| (percentile(t, 0.5), percentile(t, 0.99)));
    println!();
    println!(
        "{title:<58} {:>14} {:>11} {:>11}",
        "one-way msg/s", "rtt p50 µs", "rtt p99 µs"
    );
    for row in rows {
        match quantiles(row) {
            Some((p50, p99)) => println!(
                "{:<58} {:>14.0} {p50:>11.1} {p99:>11.1}",
                row.name, row.one_way
            ),
            None => println!(
                "{:<58} {:>14.0} {:>11} {:>11}",
                row.name, row.one_way, "-", "-"
            ),
        }
    }
    let contender = &rows[0];
    for reference in &rows[1..] {
        let ratio = format!("{} / {}", contender.short, reference.short);
        let flow = contender.one_way / reference.one_way;
        match (quantiles(contender), quantiles(reference)) {
            (Some((a50, a99)), Some((r50, r99))) => println!(
                "{ratio:<58} {flow:>13.2}x {:>10.2}x {:>10.2}x",
                a50 / r50,
                a99 / r99
            ),
            _ => println!("{ratio:<58} {flow:>13.2}x"),
        }
    }
}
