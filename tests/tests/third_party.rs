//! Third-party plugins as a user meets them: a crate made with `agency new-agent` outside
//! this workspace and built with its own `cargo build`, copied into the plugins folder of
//! a host that is already running; plugin files that are wrong in every way we know of;
//! files other users could change; and a storm of panics.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use agency_tests::{
    assert_lines, build_out_of_tree, foreign_library, library_name, plugins_dir,
    plugins_folder_with,
    process::{agency, config, finish, start, text, Host},
    scratch_dir,
};

/// How long a running host may take to notice a file or config change and act on it (it
/// looks every 250 ms, and a build may be loading the machine).
const RELOAD_PATIENCE: Duration = Duration::from_secs(20);

/// A new plugins folder holding the local transport and the test agents.
fn plugins_folder(name: &str) -> PathBuf {
    plugins_folder_with(name, &["agency_transport_local", "agency_test_agents"])
}

/// The library of a crate written by `agency new-agent Greeter` in a fresh folder and
/// built there, out of this workspace, against the SDK by path.
fn greeter_library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let dir = scratch_dir("template");
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/sdk");
        let output = agency(&["new-agent", "Greeter", "--dir"])
            .arg(&dir)
            .arg("--sdk")
            .arg(&sdk)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert!(text(&output.stdout).contains("created"));
        let crate_dir = dir.join("greeter");
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("crate-type = [\"cdylib\"]"), "{manifest}");
        assert!(manifest.contains("panic = \"unwind\""), "{manifest}");
        let source = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
        assert!(
            !source.contains("unsafe") && !source.contains("abi_stable"),
            "an author never writes unsafe nor names abi_stable:\n{source}"
        );
        build_out_of_tree(&crate_dir, &[])
    })
}

/// The test fixture written against the ABI crate directly, built with `feature` (or no
/// feature when empty).
fn raw_plugin(feature: &str) -> PathBuf {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/raw-plugin");
    let built = build_out_of_tree(&fixture, &[feature]);
    let name = if feature.is_empty() {
        "older_sdk"
    } else {
        feature
    };
    let copy = scratch_dir(name).join(library_name(name));
    std::fs::copy(built, &copy).unwrap();
    copy
}

/// The whole life of a third-party plugin in a running host: the config names its type
/// before it exists; the library arrives in two halves, as a slow copy would write it
/// (refused while incomplete, loaded once whole); its agent starts and answers; then
/// config edits add and remove agents, all without a restart. An agent whose
/// constructor panics is reported once, not retried at every change.
#[test]
fn a_plugin_built_out_of_tree_is_hot_added_and_config_edits_apply() {
    let greeter = std::fs::read(greeter_library()).unwrap();
    let plugins = plugins_folder("hot-plugins");
    let config_path = config("");
    let fragile = "[[agents]]\ntype = \"Fragile\"\nid = \"Fragile\"\nargs = { panic = true }\n";
    let agents = |ids: &[(&str, &str)]| {
        let mut text = fragile.to_owned();
        for (kind, id) in ids {
            text.push_str(&format!("\n[[agents]]\ntype = \"{kind}\"\nid = \"{id}\"\n"));
        }
        text
    };
    std::fs::write(
        &config_path,
        agents(&[("Receiver", "Old"), ("Greeter", "greeter")]),
    )
    .unwrap();
    let mut host = Host::start_in(&plugins, &config_path, &[]);
    host.stderr
        .wait_for("cannot start agent \"greeter\": unknown agent type \"Greeter\"");
    host.type_line("/Old.value");
    host.stdout.wait_for("Old: 42");

    let target = plugins.join(library_name("greeter"));
    let half = greeter.len() / 2;
    std::fs::write(&target, &greeter[..half]).unwrap();
    host.stderr.wait_for_count("truncated", 1, RELOAD_PATIENCE);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&target)
        .unwrap()
        .write_all(&greeter[half..])
        .unwrap();
    host.stderr
        .wait_for_count("started agent \"greeter\" (Greeter)", 1, RELOAD_PATIENCE);
    host.type_line("/greeter.greet name:\"Ada\"");
    host.stdout.wait_for("Hello, Ada! greeter here.");

    std::fs::write(
        &config_path,
        agents(&[("Greeter", "greeter"), ("Receiver", "New")]),
    )
    .unwrap();
    host.stderr
        .wait_for_count("started agent \"New\" (Receiver)", 1, RELOAD_PATIENCE);
    host.stderr.wait_for("removed agent \"Old\"");
    host.type_line("/New.value");
    host.stdout.wait_for("New: 42");
    host.type_line("hello everyone");
    host.stdout.wait_for("New: says: Hello");
    host.type_line("/greeter.greet name:\"Bob\"");
    host.stdout.wait_for("Hello, Bob! greeter here.");
    let stderr = host.stderr.contents();
    let stdout = host.finish();
    assert!(!stdout.contains("Old: says"), "Old was removed:\n{stdout}");
    assert_eq!(
        stderr.matches("cannot start agent \"Fragile\"").count(),
        1,
        "reported once:\n{stderr}"
    );
    assert!(!stderr.contains("removed agent \"greeter\""), "{stderr}");
}

/// Rewriting a loaded library in place neither crashes the host (it runs a private copy)
/// nor reloads it: the host says a restart is needed.
#[test]
fn a_loaded_library_that_changes_is_reported_and_keeps_running() {
    let plugins = plugins_folder("changed-plugins");
    let config_path = config("[[agents]]\ntype = \"Receiver\"\nid = \"R\"\n");
    let mut host = Host::start_in(&plugins, &config_path, &[]);
    host.type_line("/R.value");
    host.stdout.wait_for("R: 42");
    let loaded = plugins.join(library_name("agency_test_agents"));
    let other =
        std::fs::read(plugins_dir().join(library_name("agency_plugin_calculator"))).unwrap();
    std::fs::write(&loaded, other).unwrap();
    host.stderr.wait_for_count(
        "changed, but a loaded library is never unloaded: restart agency to run its new code",
        1,
        RELOAD_PATIENCE,
    );
    host.type_line("/R.value");
    host.stdout.wait_for_count("R: 42", 2, RELOAD_PATIENCE);
    host.finish();
}

/// Every kind of bad file in one folder: each is refused with one line naming the file and
/// the problem, the good plugins load and answer, and `plugins check` says the same.
#[test]
fn bad_plugin_files_are_refused_one_line_each_and_the_good_ones_work() {
    let plugins = plugins_folder("refusals");
    let agents = std::fs::read(plugins.join(library_name("agency_test_agents"))).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = plugins.join(library_name(name));
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let cases = [
        (write("text", b"not a library"), "not a loadable shared library"),
        (write("truncated", &agents[..agents.len() / 3]), "truncated"),
        (write("m", &std::fs::read(foreign_library()).unwrap()), "not an Agency plugin"),
        (
            write("abi2", &std::fs::read(raw_plugin("abi2")).unwrap()),
            "built for Agency ABI 2 (with agency-sdk 2.0.0), but this host accepts ABI 1 only (agency-sdk 0.1.0): rebuild it against agency-sdk 0.1.0",
        ),
        (
            write("init_panics", &std::fs::read(raw_plugin("init_panics")).unwrap()),
            "its initialisation panicked",
        ),
        (
            write("greedy", &std::fs::read(raw_plugin("greedy")).unwrap()),
            "agent type \"Greedy\" declares a concurrency of 100000; this host runs at most 1024 messages of one agent at once",
        ),
        (
            write("zz_agents_again", &agents),
            "is already provided by",
        ),
    ];
    let output = finish(
        start(
            &plugins,
            "[[agents]]\ntype = \"Receiver\"\nid = \"R\"\n",
            &[],
        ),
        "/R.value\n",
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(stdout.contains("R: 42"), "{stdout}\n{stderr}");
    for (path, reason) in &cases {
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| {
                line.starts_with(&format!("warning: plugin skipped: {}:", path.display()))
            })
            .collect();
        assert_eq!(lines.len(), 1, "one line for {}:\n{stderr}", path.display());
        assert!(lines[0].contains(reason), "{}\n{stderr}", lines[0]);
        if path.ends_with(library_name("zz_agents_again")) {
            continue; // alone, it is a good plugin: the clash is with another file
        }
        let check = agency(&["plugins", "check"]).arg(path).output().unwrap();
        assert_eq!(check.status.code(), Some(1), "{}", path.display());
        let error = text(&check.stderr);
        let ours: Vec<&str> = error.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(ours.len(), 1, "{error}");
        assert!(ours[0].contains(reason), "{error}");
    }
}

/// `plugins check` on the AI agents' libraries, ordinary third-party plugins.
#[test]
fn plugins_check_describes_the_ai_agents() {
    let cases = [
        (
            "agency_plugin_chatty_ai",
            [
                "  agent type ChattyAI: ",
                "    say(content: string) -> string [permitted]",
                "    reset() -> number [permitted]",
            ],
        ),
        (
            "agency_plugin_assistant",
            [
                "  agent type Assistant: ",
                "    say(content: string) -> string [permitted]",
                "    tools() -> array [permitted]",
            ],
        ),
    ];
    for (library, expected) in cases {
        let output = agency(&["plugins", "check"])
            .arg(plugins_dir().join(library_name(library)))
            .output()
            .unwrap();
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
        assert_lines_start(&stdout, &expected);
    }
}

/// Asserts that a line of `output` starts with each of `expected`.
fn assert_lines_start(output: &str, expected: &[&str]) {
    for wanted in expected {
        assert!(
            output.lines().any(|line| line.starts_with(wanted)),
            "no line starting {wanted:?} in:\n{output}"
        );
    }
}

/// `plugins check` on a good file: kind, name, versions, types, actions and schemas.
#[test]
fn plugins_check_describes_a_good_plugin() {
    let output = agency(&["plugins", "check"])
        .arg(plugins_dir().join(library_name("agency_test_agents")))
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    for expected in [
        "kind: agent plugin",
        "name: agency-test-agents 0.1.0",
        "versions: agency ABI 1 (this host accepts 1..=1), built with agency-sdk 0.1.0",
        "  agent type Receiver: ",
        "    add(a: number, b: number) -> number [permitted]",
        "  agent type Parallel: Handles up to four messages at once (a concurrent agent, as in Python Agency).",
        "    concurrent: up to 4 messages at once",
        "      a: {\"$schema\"",
        "ok: this host can load it",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    assert!(stdout
        .lines()
        .any(|l| l.starts_with("sha256: ") && l.len() == 8 + 64));
}

/// A plugin from an older SDK of the same major version, whose manifest lacks the fields
/// added since, still loads.
#[test]
fn a_plugin_from_an_older_sdk_still_loads() {
    let output = agency(&["plugins", "check"])
        .arg(raw_plugin(""))
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains(
            "versions: agency ABI 1 (this host accepts 1..=1), built with agency-sdk 0.0.9"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("ok: this host can load it"), "{stdout}");
}

/// An agent of an older SDK runs: the callbacks its plugin does not know (all but
/// `action`, refused with the text older SDKs used) are taken as not implemented, with no
/// warning; its actions and the host's `help` answer.
#[test]
fn an_agent_from_an_older_sdk_runs_without_the_callbacks_it_lacks() {
    let plugins = plugins_folder("older-sdk-agent");
    std::fs::copy(raw_plugin(""), plugins.join(library_name("older_sdk"))).unwrap();
    let host = start(&plugins, "[[agents]]\ntype = \"Old\"\nid = \"Old\"\n", &[]);
    let output = finish(host, "/Old.hello\n/Old.help\n");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert_lines(
        &stdout,
        &["Old: old", "Old: 1 action", "  hello()  Answers \"old\"."],
    );
    assert!(!stderr.contains("WARN"), "{stderr}");
}

/// A plugin file or folder other users could write is refused, unless allowed, and then
/// with a warning; every loaded library is logged with its SHA-256.
#[test]
fn plugins_other_users_can_write_are_refused_unless_allowed() {
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;
    let plugins = plugins_folder("writable");
    let agents = plugins.join(library_name("agency_test_agents"));
    std::fs::set_permissions(&agents, std::fs::Permissions::from_mode(0o646)).unwrap();
    let config_text = "[[agents]]\ntype = \"Receiver\"\nid = \"R\"\n";

    let refused = finish(start(&plugins, config_text, &[]), "");
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: plugin skipped: {}: this file is writable by other users (mode 646)",
            agents.display()
        )) && stderr.contains("chmod go-w")
            && stderr.contains("--allow-writable-plugins"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot start agent \"R\": unknown agent type"),
        "{stderr}"
    );

    let mut allowed = start(&plugins, config_text, &["--allow-writable-plugins"]);
    allowed
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"/R.value\n")
        .unwrap();
    let output = finish(allowed, "");
    let stderr = text(&output.stderr);
    assert!(text(&output.stdout).contains("R: 42"), "{stderr}");
    assert!(
        stderr.contains("although other users can write to it (mode 646)"),
        "{stderr}"
    );

    std::fs::set_permissions(&agents, std::fs::Permissions::from_mode(0o644)).unwrap();
    let logged = agency(&["plugins", "--plugins-dir"])
        .arg(&plugins)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = text(&logged.stderr);
    for plugin in ["agency_transport_local", "agency_test_agents"] {
        let path = plugins.join(library_name(plugin));
        let sha = sha2::Sha256::digest(std::fs::read(&path).unwrap());
        let hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            stderr.contains(&format!("loaded plugin {} (sha256 {hex}", path.display())),
            "{stderr}"
        );
    }

    std::fs::set_permissions(&plugins, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = finish(start(&plugins, config_text, &[]), "");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("this plugins folder is writable by other users (mode 777)"),
        "{}",
        text(&output.stderr)
    );
}

/// 10,000 requests to an action that panics: each is answered with an error, the host's
/// memory stays flat, and the agents keep answering.
#[test]
fn a_panic_storm_is_answered_and_leaks_nothing() {
    let mut host = Host::start(
        "[[agents]]\ntype = \"Receiver\"\nid = \"R\"\n\n[[agents]]\ntype = \"Receiver\"\nid = \"Other\"\n",
        &[],
    );
    let storm = |host: &mut Host, count: usize| {
        for _ in 0..count {
            host.type_line("/R.explode");
        }
    };
    let answer = "R: error: Panic: boom";
    storm(&mut host, 1_000);
    host.stdout
        .wait_for_count(answer, 1_000, Duration::from_secs(300));
    let warm = host.resident_kib();
    storm(&mut host, 9_000);
    host.stdout
        .wait_for_count(answer, 10_000, Duration::from_secs(600));
    let after = host.resident_kib();
    eprintln!("host resident memory: {warm} KiB after 1,000 panics, {after} KiB after 10,000");
    assert!(
        after < warm + 8 * 1024,
        "memory grew from {warm} KiB to {after} KiB over 9,000 panics"
    );
    host.type_line("/Other.value");
    host.stdout.wait_for("Other: 42");
    host.type_line("/R.value");
    let stdout = host.finish();
    assert!(stdout.contains("R: 42"), "{stdout}");
    assert_eq!(stdout.matches(answer).count(), 10_000);
}
