//! Python Agency (PyPI `agency` 1.6.3) for the tests of a mixed Rust/Python space: a
//! virtual environment made on first use, and the agent of `tests/python/py_agent.py`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use crate::{broker::broker, process::Screen};

/// A Python interpreter with Python Agency 1.6.3 installed: a virtual environment in
/// `target/python-agency`, made on first use (`python3 -m venv`, then pip from PyPI).
pub fn python_agency() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-agency");
        let python = venv.join("bin/python");
        let installed = || {
            Command::new(&python)
                .args(["-c", "import agency.spaces.amqp_space"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !installed() {
            let steps: [(&Path, Vec<&str>); 2] = [
                (
                    Path::new("python3"),
                    vec!["-m", "venv", venv.to_str().unwrap()],
                ),
                (
                    &python,
                    vec!["-m", "pip", "install", "--quiet", "agency==1.6.3"],
                ),
            ];
            for (program, args) in steps {
                let output = Command::new(program)
                    .args(&args)
                    .output()
                    .unwrap_or_else(|e| {
                        panic!("this test needs Python 3 with venv and pip: {program:?}: {e}")
                    });
                assert!(
                    output.status.success(),
                    "{program:?} {args:?} failed (is PyPI reachable?):\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        assert!(
            installed(),
            "Python Agency did not install into {}",
            venv.display()
        );
        python
    })
}

/// Starts the Python agent `id` (`tests/python/py_agent.py`: actions `shout`, `ask`,
/// `send_nowhere`) on `exchange` of the tests' broker; returns once it is in the space,
/// with what it logs. Closing its standard input ends it.
pub fn start_agent(exchange: &str, id: &str) -> (Child, Screen) {
    start_agent_on(broker().python_env(), exchange, id)
}

/// As [`start_agent`], on the broker that `env` (Python Agency's `AMQP_*` variables)
/// names.
pub fn start_agent_on(
    env: impl IntoIterator<Item = (&'static str, String)>,
    exchange: &str,
    id: &str,
) -> (Child, Screen) {
    let mut python = Command::new(python_agency())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/py_agent.py"))
        .args([exchange, id])
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Screen::attach(&mut python);
    let err = Screen::capture(python.stderr.take().unwrap());
    out.wait_for_count("ready", 1, Duration::from_secs(30));
    (python, err)
}
