//! Real `agency` processes for end-to-end tests: start one on a config, feed its console,
//! and watch what it prints.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{agency_binary, scratch_dir, PATIENCE};

/// Writes `text` to a fresh `agency.toml`; answers its path.
pub fn config(text: &str) -> PathBuf {
    let path = scratch_dir("config").join("agency.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `agency ARGS`, with no transport from the environment and warnings logged.
pub fn agency(args: &[&str]) -> Command {
    let mut command = Command::new(agency_binary());
    command
        .args(args)
        .env_remove("AGENCY_TRANSPORT")
        .env("RUST_LOG", "warn");
    command
}

/// Starts `agency run` on a plugins folder and a config, with piped standard streams.
pub fn start(plugins: &Path, config_text: &str, extra: &[&str]) -> Child {
    start_with_config(plugins, &config(config_text), extra)
}

/// `agency run` on the plugins folder `plugins` and the config file at `config`, then
/// `extra` arguments.
pub fn agency_run(plugins: &Path, config: &Path, extra: &[&str]) -> Command {
    let (plugins, config) = (plugins.to_str().unwrap(), config.to_str().unwrap());
    let mut args = vec!["run", "--plugins-dir", plugins, "--config", config];
    args.extend_from_slice(extra);
    agency(&args)
}

/// Starts `agency run` on a plugins folder and the config file at `config`.
pub fn start_with_config(plugins: &Path, config: &Path, extra: &[&str]) -> Child {
    start_logging(plugins, config, "warn", extra)
}

/// Starts `agency run` on a plugins folder and the config file at `config`, with the log
/// filter `rust_log` and piped standard streams, waiting 2 s for replies unless `extra`
/// says otherwise (the arguments in [`Host::start_logging`]'s order).
pub fn start_logging(plugins: &Path, config: &Path, rust_log: &str, extra: &[&str]) -> Child {
    let mut args = if extra.contains(&"--wait") {
        vec![]
    } else {
        vec!["--wait", "2"]
    };
    args.extend_from_slice(extra);
    spawn_piped(agency_run(plugins, config, &args).env("RUST_LOG", rust_log))
}

/// How long a process may take to start, on a machine busy with the other tests.
pub const START_PATIENCE: Duration = Duration::from_secs(60);

/// How long a child fed by [`finish`] may run before the test fails and kills it.
pub const FINISH_PATIENCE: Duration = Duration::from_secs(120);

/// Starts `command` with piped standard streams.
pub fn spawn_piped(command: &mut Command) -> Child {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Writes `input` (text, or any bytes) to the child, closes its input and waits for it,
/// reading its output meanwhile; a child still running after `patience` is killed and the
/// test fails.
pub fn finish_within(mut child: Child, input: impl AsRef<[u8]>, patience: Duration) -> Output {
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_ref()).unwrap();
    drop(stdin);
    let (done, exited) = std::sync::mpsc::channel::<()>();
    let pid = child.id().to_string();
    let watchdog = std::thread::spawn(move || {
        let overdue = exited.recv_timeout(patience).is_err();
        if overdue {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        overdue
    });
    let output = child.wait_with_output().unwrap();
    let _ = done.send(());
    assert!(
        !watchdog.join().unwrap(),
        "the process did not exit within {patience:?}; output:\n{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// [`finish_within`] [`FINISH_PATIENCE`].
pub fn finish(child: Child, input: &str) -> Output {
    finish_within(child, input, FINISH_PATIENCE)
}

/// `agency run` with the test plugins, `config_text` and `extra` arguments, fed `input`
/// on a pipe: its output once it ended.
pub fn run_piped(config_text: &str, extra: &[&str], input: &str) -> Output {
    finish(start(crate::plugins_dir(), config_text, extra), input)
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Collects a child's output as it comes, to wait for a prompt that has no newline.
#[derive(Clone)]
pub struct Screen(Arc<Mutex<String>>);

impl Screen {
    /// Collects the child's standard output.
    pub fn attach(child: &mut Child) -> Self {
        Self::capture(child.stdout.take().unwrap())
    }

    /// Collects everything `stream` yields, on a thread of its own.
    pub fn capture(mut stream: impl Read + Send + 'static) -> Self {
        let shared = Arc::new(Mutex::new(String::new()));
        let sink = shared.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buffer) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Screen(shared)
    }

    /// Everything collected so far.
    pub fn contents(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Waits (up to [`PATIENCE`]) until the output contains `wanted`; answers it all.
    /// While the process has shown nothing yet it may still be starting, so the wait is
    /// then up to [`START_PATIENCE`]: two processes loading ~250 MB of freshly built
    /// debug plugins beside other tests took up to 12 s to print their first line.
    pub fn wait_for(&self, wanted: &str) -> String {
        let starting = self.0.lock().unwrap().is_empty();
        let patience = if starting { START_PATIENCE } else { PATIENCE };
        self.wait_for_count(wanted, 1, patience)
    }

    /// Waits (up to `patience`) until the output contains `wanted` `times` times;
    /// answers it all.
    pub fn wait_for_count(&self, wanted: &str, times: usize, patience: Duration) -> String {
        let deadline = Instant::now() + patience;
        loop {
            let screen = self.contents();
            let seen = screen.matches(wanted).count();
            if seen >= times {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "saw {wanted:?} {seen} times, not {times}, on screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The resident memory of process `pid`, in KiB (Linux: `VmRSS` in `/proc/PID/status`).
pub fn resident_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// The process's resident anonymous memory (its heap: no mapped files), in KiB (Linux).
pub fn anonymous_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "RssAnon:")
}

/// A figure in KiB from `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A running `agency` process with its console input open and its output collected.
pub struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    /// What it printed on standard output.
    pub stdout: Screen,
    /// What it logged on standard error.
    pub stderr: Screen,
}

impl Host {
    /// Starts `agency run` with the test plugins and `config_text`.
    pub fn start(config_text: &str, extra: &[&str]) -> Self {
        Self::wrap(start(crate::plugins_dir(), config_text, extra))
    }

    /// Starts `command` (an `agency` command line) with its streams piped.
    pub fn running(command: &mut Command) -> Self {
        Self::wrap(spawn_piped(command))
    }

    /// Starts `agency run` with the test plugins, `config_text`, the log filter
    /// `rust_log` and `extra` arguments.
    pub fn start_logging(config_text: &str, rust_log: &str, extra: &[&str]) -> Self {
        let config = config(config_text);
        Self::wrap(start_logging(
            crate::plugins_dir(),
            &config,
            rust_log,
            extra,
        ))
    }

    /// Starts `agency run` on the plugins folder `plugins` and the config file `config`.
    pub fn start_in(plugins: &Path, config: &Path, extra: &[&str]) -> Self {
        Self::wrap(start_with_config(plugins, config, extra))
    }

    fn wrap(mut child: Child) -> Self {
        let stdin = child.stdin.take();
        let stdout = Screen::attach(&mut child);
        let stderr = Screen::capture(child.stderr.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident memory, in KiB (Linux).
    pub fn resident_kib(&self) -> u64 {
        resident_kib(self.child.id()).expect("the host process is running (VmRSS)")
    }

    /// The process's resident anonymous memory (no mapped files), in KiB (Linux).
    pub fn anonymous_kib(&self) -> u64 {
        anonymous_kib(self.child.id()).expect("the host process is running (RssAnon)")
    }

    /// Types one line at the console.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("console input open");
        writeln!(stdin, "{line}").unwrap();
    }

    /// Waits (up to [`START_PATIENCE`]) until the host's agents are in the space and its
    /// console reads: asks the console for `/agents` and waits for the answer.
    pub fn wait_until_started(&mut self) {
        self.type_line("/agents");
        self.stdout
            .wait_for_count("agents in this space", 1, START_PATIENCE);
    }

    /// Ends the console input and waits for a clean exit; answers the output.
    pub fn finish(self) -> String {
        self.finish_with_code(0)
    }

    /// Ends the console input and waits for the process to exit with `code` (1 when
    /// console lines failed); answers the output.
    pub fn finish_with_code(mut self, code: i32) -> String {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let stdout = self.stdout.contents();
        assert_eq!(
            status.code(),
            Some(code),
            "{status:?}\n{stdout}\n{}",
            self.stderr.contents()
        );
        stdout
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "did not exit within")]
    fn a_child_that_outlives_its_patience_fails_the_test() {
        let child = spawn_piped(Command::new("sleep").arg("30"));
        finish_within(child, "", Duration::from_millis(200));
    }
}
