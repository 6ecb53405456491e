//! How long the host takes to load each plugin library, beside a raw `dlopen` of the same
//! file measured in the same run.
//!
//! - **agency**: `agency plugins check FILE`, run in a fresh process each time, reports
//!   the loader's own time for the file: open and check it, read and hash it (SHA-256),
//!   write the private copy, load that, and initialise the plugin (its manifest).
//! - **reference: dlopen**: the same bytes copied to a fresh path (not timed), then
//!   `libloading::Library::new` on it, in this process: the floor the system loader sets.
//!
//! Run with `cargo bench -p agency-tests --bench load`.

use std::{path::Path, time::Instant};

use agency_tests::{figures::percentile, plugins_dir, process::agency, scratch_dir};

/// Loads per plugin and contender; the median is reported.
const ROUNDS: usize = 9;

fn main() {
    let mut libraries: Vec<_> = std::fs::read_dir(plugins_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    libraries.sort();
    let copies = scratch_dir("load-bench");
    println!();
    println!(
        "{:<36} {:>10} {:>12} {:>12} {:>8}",
        "plugin library (release)", "bytes", "agency ms", "dlopen ms", "ratio"
    );
    for (n, library) in libraries.iter().enumerate() {
        let agency_ms: Vec<f64> = (0..ROUNDS).map(|_| agency_load_ms(library)).collect();
        let dlopen_ms: Vec<f64> = (0..ROUNDS)
            .map(|round| dlopen_ms(library, &copies.join(format!("{n}-{round}.so"))))
            .collect();
        let (agency, dlopen) = (percentile(&agency_ms, 0.5), percentile(&dlopen_ms, 0.5));
        println!(
            "{:<36} {:>10} {agency:>12.2} {dlopen:>12.2} {:>7.1}x",
            library.file_name().unwrap().to_string_lossy(),
            std::fs::metadata(library).unwrap().len(),
            agency / dlopen
        );
    }
}

/// The load time `agency plugins check` reports for `library`, in milliseconds.
fn agency_load_ms(library: &Path) -> f64 {
    let output = agency(&["plugins", "check", library.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("load time: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no load time from plugins check:\n{stdout}"))
}

/// Copies `library` to `copy` (not timed) and times `dlopen` of the copy, in
/// milliseconds. The library stays loaded: unloading Rust libraries is not safe.
fn dlopen_ms(library: &Path, copy: &Path) -> f64 {
    std::fs::copy(library, copy).unwrap();
    let started = Instant::now();
    let loaded = unsafe { libloading::Library::new(copy) }.unwrap();
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    std::mem::forget(loaded);
    elapsed
}
