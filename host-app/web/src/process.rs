//! The host process as the metrics show it: resident memory, threads, start time, read
//! from `/proc` (Linux); elsewhere they read 0.

/// The process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Process {
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Threads.
    pub threads: u64,
    /// When it started, in seconds since the Unix epoch.
    pub start_time: u64,
}

/// Clock ticks a second in `/proc`'s times (`USER_HZ`, 100 on every Linux ABI).
const TICKS: u64 = 100;

impl Process {
    /// The calling process now.
    pub fn now() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|value| value.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Self {
            resident_bytes: field("VmRSS:") * 1024,
            threads: field("Threads:"),
            start_time: start_time().unwrap_or(0),
        }
    }
}

/// The boot time plus the process's start in ticks after boot (field 22 of
/// `/proc/self/stat`, counted after the command name, which may hold spaces).
fn start_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + ticks / TICKS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read() {
        let process = Process::now();
        assert!(process.resident_bytes > 1 << 20, "{process:?}");
        assert!(process.threads >= 1, "{process:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            process.start_time <= now && process.start_time + 3600 > now,
            "{process:?}"
        );
    }
}
