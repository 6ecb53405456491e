//! The `agency` binary end to end: real processes, real plugin files, piped and
//! interactive standard input.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use agency_tests::{
    assert_lines, library_name, plugins_dir, plugins_folder_with,
    process::{
        agency, agency_run, config, finish, finish_within, run_piped, spawn_piped, start, text,
        Screen, FINISH_PATIENCE,
    },
    scratch_dir, BROKER_PATIENCE, PATIENCE,
};

const DEMO_CONFIG: &str = r#"
[[agents]]
type = "Calculator"
id = "Calculator"

[[agents]]
type = "Chat"
id = "Chatty"

[[agents]]
type = "Host"
id = "Host"
"#;

/// `agency run` on the test plugins and the config at `config`, at a terminal: under a
/// pseudo-terminal that `script` makes, fed by the command's piped standard input. The
/// console's history goes to a file of the test's own.
fn demo_at_a_terminal(config: &Path) -> Command {
    at_a_terminal(
        config,
        &["--wait", "2"],
        &scratch_dir("history").join("history"),
    )
}

/// `agency run` on the test plugins with `config` and `extra` arguments, under a
/// pseudo-terminal, keeping its history in `history`.
fn at_a_terminal(config: &Path, extra: &[&str], history: &Path) -> Command {
    let command = format!(
        "{} run --plugins-dir {} --config {} {}",
        agency_tests::agency_binary().display(),
        plugins_dir().display(),
        config.display(),
        extra.join(" ")
    );
    let mut script = Command::new("script");
    script
        .args(["-qfec", &command, "/dev/null"])
        .env("RUST_LOG", "warn")
        .env("AGENCY_HISTORY", history);
    script
}

/// A console at a terminal, typed at key by key.
struct Terminal {
    child: std::process::Child,
    keys: std::process::ChildStdin,
    screen: Screen,
}

impl Terminal {
    fn start(config_text: &str, extra: &[&str], history: &Path) -> Self {
        let mut child = spawn_piped(&mut at_a_terminal(&config(config_text), extra, history));
        let screen = Screen::attach(&mut child);
        let keys = child.stdin.take().unwrap();
        screen.wait_for("/help for help");
        Self {
            child,
            keys,
            screen,
        }
    }

    fn type_keys(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
        // The editor reads keys as they come: a key typed with the next ones would be a paste.
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Waits for `text` on screen, ignoring the escape sequences of line editing.
    fn wait_for(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + BROKER_PATIENCE;
        loop {
            let screen = strip_escapes(&self.screen.contents());
            if screen.contains(text) {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{text:?} not on screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-D, and the exit code.
    fn end(mut self) -> Option<i32> {
        self.type_keys("\x04");
        self.child.wait().unwrap().code()
    }
}

/// `text` without CSI escape sequences (`ESC [ ... letter`) and carriage returns.
fn strip_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() || c == '~' {
                        break;
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// At a terminal, Tab completes agent ids, action names and argument names (learnt from
/// the agents' `help`), commands are kept in a history file across runs, and Ctrl-R and
/// the up arrow find them again.
#[test]
fn the_console_completes_and_remembers_commands() {
    let history = scratch_dir("editor-history").join("history");
    let mut console = Terminal::start(DEMO_CONFIG, &[], &history);
    console.type_keys("/Calc\t");
    console.type_keys("sq\t");
    console.type_keys("\t");
    console.type_keys("9\n");
    console.wait_for("/Calculator.sqrt x:9\nCalculator: 3.0");
    console.type_keys("/Calculator.add a:1 \t");
    console.type_keys("2\n");
    console.wait_for("/Calculator.add a:1 b:2\nCalculator: 3.0");
    assert_eq!(console.end(), Some(0));
    let kept = std::fs::read_to_string(&history).unwrap();
    assert!(
        kept.contains("/Calculator.sqrt x:9\n/Calculator.add a:1 b:2"),
        "{kept}"
    );
    // A new run finds them: Ctrl-R searches, the up arrow goes back.
    let mut console = Terminal::start(DEMO_CONFIG, &[], &history);
    console.type_keys("\x12sqrt");
    console.type_keys("\n");
    console.wait_for("/Calculator.sqrt x:9\nCalculator: 3.0");
    console.type_keys("\x1b[A");
    console.type_keys("\x1b[A");
    console.type_keys("\n");
    let screen = console.wait_for("/Calculator.add a:1 b:2\nCalculator: 3.0");
    assert!(!screen.contains("error"), "{screen}");
    assert_eq!(console.end(), Some(0));
}

/// What arrives while a line is being typed is printed above it, and the line is drawn
/// again below, unbroken.
#[test]
fn replies_are_printed_above_the_line_being_typed() {
    let agents = format!("{DEMO_CONFIG}\n[[agents]]\ntype = \"Receiver\"\nid = \"Q\"\n");
    let history = scratch_dir("editor-above").join("history");
    let mut console = Terminal::start(&agents, &["--wait", "0.2"], &history);
    console.type_keys("/Q.sleep seconds:1.5\n");
    console.wait_for("error: no reply from Q.sleep within 0.2 s");
    console.type_keys("/Calculator.multiply a:6");
    let screen = console.wait_for("Q: awake");
    let after = &screen[screen.rfind("Q: awake").unwrap()..];
    assert!(after.contains("User> /Calculator.multiply a:6"), "{screen}");
    console.type_keys(" b:7\n");
    console.wait_for("Calculator: 42.0");
    assert_eq!(
        console.end(),
        Some(1),
        "the unanswered command failed the run"
    );
}

/// A permission question that arrives while a command is being typed is announced, and
/// asked once that line ends: a "y" typed at the command prompt never answers it.
#[test]
fn a_question_that_arrives_while_typing_is_asked_after_the_line() {
    let history = scratch_dir("editor-question").join("history");
    let mut console = Terminal::start(DEMO_CONFIG, &[], &history);
    // A broadcast holds nothing back: the prompt is back at once, and then the question.
    console.type_keys("/*.list_files path:\"/\"\n");
    console.wait_for("permission wanted: User -> Host.list_files {\"path\":\"/\"} (broadcast). Press Enter to answer");
    console.type_keys("y\n");
    console.wait_for("not sent: \"y\" was typed before the question was asked; answer it now");
    console
        .wait_for("permission: allow User -> Host.list_files {\"path\":\"/\"} (broadcast)? [y/N] ");
    console.type_keys("n\n");
    let screen = console.wait_for("refused User -> Host.list_files");
    assert!(!screen.contains("allowed"), "{screen}");
    assert!(!screen.contains("Chatty heard User say: y"), "{screen}");
    console.type_keys("\x03");
    let exit = console.child.wait().unwrap();
    assert_eq!(exit.code(), Some(130), "Ctrl-C at the prompt");
}

#[test]
fn piped_commands_print_their_replies() {
    let input = "/Calculator.add a:1 b:2\n/Calculator.divide a:1 b:0\n/Calculator.help action_name:\"sqrt\"\n\
                 /Calculator.sum numbers:[1, 2.5]\n/Calculator.add a:\"x\" b:1\n/Nobody.anything\nhello\n/Calculator\n";
    let output = run_piped(DEMO_CONFIG, &[], input);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    // Two lines failed (one for nobody, one not understood): exit code 1, said on stderr;
    // answers, errors from agents included, are on stdout.
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_lines(
        &stderr,
        &[
            "error: no agent \"Nobody\" in the space",
            "error: expected /Agent.action key:value ..., got \"Calculator\"",
        ],
    );
    let expected = [
        "Calculator: 3.0",
        "Calculator: error: ZeroDivisionError: division by zero",
        "Calculator: 1 action",
        "  sqrt(x: number) -> number  The square root of a number; negative numbers are an error.",
        "Calculator: 3.5",
        "Calculator: error: TypeError: argument \"a\" of add() must be number, got string \"x\"",
        "Chatty: Hello, User! I am Chatty.",
    ];
    assert_lines(&stdout, &expected);
    let order: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Calculator: "))
        .collect();
    assert_eq!(order.len(), 5, "replies in command order: {order:#?}");
    assert!(order[0].ends_with("3.0") && order[3].ends_with("3.5"));
}

/// `--wait 0` holds no line back for its reply, and loses no reply: those on their way
/// when the input ends are still printed.
#[test]
fn wait_zero_holds_nothing_back_and_loses_no_reply() {
    let input = "/Calculator.add a:1 b:2\n/Calculator.sqrt x:16\nhello\n";
    let mut run = agency_run(plugins_dir(), &config(DEMO_CONFIG), &["--wait", "0"]);
    let output = finish(spawn_piped(&mut run), input);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_lines(
        &stdout,
        &[
            "Calculator: 3.0",
            "Calculator: 4.0",
            "Chatty: Hello, User! I am Chatty.",
        ],
    );
    assert!(!stderr.contains("error"), "{stderr}");
}

/// A command to an id no agent holds is answered at once, with the nearest id: the next
/// line is not held back for `--wait` (600 s here; the test allows 60).
#[test]
fn commands_to_unknown_agents_are_answered_at_once_with_a_suggestion() {
    let mut run = agency_run(plugins_dir(), &config(DEMO_CONFIG), &["--wait", "600"]);
    let input = "/calculator.add a:1 b:2\n/Calculator.add a:1 b:2\n";
    let output = finish_within(spawn_piped(&mut run), input, FINISH_PATIENCE);
    assert_lines(&text(&output.stdout), &["Calculator: 3.0"]);
    assert_lines(
        &text(&output.stderr),
        &["error: no agent \"calculator\" in the space (did you mean \"Calculator\"?)"],
    );
    assert_eq!(output.status.code(), Some(1));
}

/// The console's own commands: `/help`, `/agents` (with their types) and `/quit`, after
/// which nothing more is read.
#[test]
fn console_commands_list_agents_and_quit() {
    let input = "/help\n/agents\n/quit\n/Calculator.add a:1 b:2\n";
    let output = run_piped(DEMO_CONFIG, &[], input);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert_lines(
        &stdout,
        &[
            "console commands:",
            "  /quit                         leave (as do Ctrl-D and Ctrl-C)",
            "agents in this space, on this host:",
            "  Calculator (Calculator)",
            "  Chatty (Chat)",
            "  User (this console)",
        ],
    );
    assert!(
        !stdout.contains("Calculator: 3.0"),
        "read after /quit:\n{stdout}"
    );
}

/// At a terminal (a pseudo-terminal made by `script`), the console greets with the
/// agents that are here and shows errors in red, unless `NO_COLOR` is set; piped, it
/// never colours (the other tests check that no escape byte reaches a pipe).
#[test]
fn at_a_terminal_the_console_greets_and_colours_errors() {
    let config = config(DEMO_CONFIG);
    let run = |no_color: bool| {
        let mut script = demo_at_a_terminal(&config);
        if no_color {
            script.env("NO_COLOR", "1");
        }
        let child = spawn_piped(&mut script);
        let output = finish_within(
            child,
            "/Calculator.divide a:1 b:0\n/calculator.add a:1 b:2\n",
            FINISH_PATIENCE,
        );
        text(&output.stdout).replace('\r', "")
    };
    let coloured = run(false);
    assert!(
        coloured.contains(
            "you are User; agents here: Calculator (Calculator), Chatty (Chat), Host (Host). /help for help"
        ),
        "{coloured}"
    );
    assert!(
        coloured.contains("Calculator: \x1b[31merror: ZeroDivisionError: division by zero\x1b[0m"),
        "{coloured}"
    );
    assert!(
        coloured.contains("\x1b[31merror: no agent \"calculator\" in the space (did you mean \"Calculator\"?)\x1b[0m"),
        "{coloured}"
    );
    let plain = run(true);
    assert!(!plain.contains("\x1b[31m"), "{plain}");
    assert!(
        plain.contains("Calculator: error: ZeroDivisionError: division by zero"),
        "{plain}"
    );
}

#[test]
fn answers_to_a_last_broadcast_are_printed() {
    let output = run_piped(DEMO_CONFIG, &[], "hello everyone\n");
    assert_lines(
        &text(&output.stdout),
        &["Chatty: Hello, User! I am Chatty."],
    );
}

#[test]
fn piped_permission_answers_are_read_after_the_question() {
    let dir = scratch_dir("listing");
    std::fs::write(dir.join("visible.txt"), "x").unwrap();
    let input = format!(
        "/Host.list_files path:{:?}\ny\n/Host.read_file path:\"/etc/hostname\"\nn\n",
        dir.to_str().unwrap()
    );
    let output = run_piped(DEMO_CONFIG, &[], &input);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("permission: allow User -> Host.list_files"),
        "{stdout}"
    );
    assert!(stdout.contains("Host: [\"visible.txt\"]"), "{stdout}");
    assert!(
        stdout.contains("refused User -> Host.read_file"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Host: error: PermissionError: \"Host.read_file\" not permitted"),
        "{stdout}"
    );
}

/// A permission question names the agent whose action would run (a broadcast too); an
/// answer that is neither yes nor no asks again; an empty answer is the default, no.
#[test]
fn permission_questions_name_the_agent_and_ask_again_when_unsure() {
    let dir = scratch_dir("asking");
    std::fs::write(dir.join("visible.txt"), "x").unwrap();
    let dir = dir.to_str().unwrap();
    // (A broadcast holds back no line: in piped input, nothing is left to answer it.)
    let input = format!("/Host.list_files path:{dir:?}\nmaybe\ny\n/*.list_files path:{dir:?}\n");
    let output = run_piped(DEMO_CONFIG, &[], &input);
    let stdout = text(&output.stdout);
    let question = format!("permission: allow User -> Host.list_files {{\"path\":{dir:?}}}");
    assert_eq!(
        stdout.matches(&format!("{question}? [y/N] ")).count(),
        2,
        "{stdout}"
    );
    assert_lines(
        &stdout,
        &[
            &format!("{question}? [y/N] please answer y (yes) or n (no), not maybe"),
            "Host: [\"visible.txt\"]",
        ],
    );
    // Whether the broadcast's question came before the end of input or after it, it is
    // refused for want of an answer, naming the agent.
    let refused =
        format!("refused User -> Host.list_files {{\"path\":{dir:?}}} (broadcast): no input left");
    assert!(stdout.contains(&refused), "{stdout}");
    assert!(output.status.success(), "{stdout}");
}

/// At a terminal, what was typed before a permission question appeared is thrown away,
/// never taken as its answer (a pseudo-terminal made by `script`).
#[test]
fn typed_ahead_input_never_answers_a_permission_question() {
    let mut child = spawn_piped(&mut demo_at_a_terminal(&config(DEMO_CONFIG)));
    let screen = Screen::attach(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    screen.wait_for("/help for help");
    // The "y" is typed before the question exists.
    write!(stdin, "/Host.list_files path:\"/\"\ny\n").unwrap();
    stdin.flush().unwrap();
    screen.wait_for("permission: allow User -> Host.list_files {\"path\":\"/\"}? [y/N] ");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !screen.contents().contains("allowed"),
        "{}",
        screen.contents()
    );
    writeln!(stdin, "n").unwrap();
    screen.wait_for("refused User -> Host.list_files");
    drop(stdin);
    let _ = child.wait();
}

/// A question stays the last thing on screen: a reply that arrives while it waits for its
/// answer is printed on a line of its own, and the question is asked again below it.
#[test]
fn a_permission_question_stays_last_on_screen() {
    let agents = format!("{DEMO_CONFIG}\n[[agents]]\ntype = \"Receiver\"\nid = \"Q\"\n");
    let mut child = spawn_piped(&mut agency_run(
        plugins_dir(),
        &config(&agents),
        &["--wait", "0.2"],
    ));
    let screen = Screen::attach(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "/Q.sleep seconds:1\n/Host.list_files path:\"/\"").unwrap();
    let question = "permission: allow User -> Host.list_files {\"path\":\"/\"}? [y/N] ";
    screen.wait_for("Q: awake");
    let shown = screen.wait_for_count(question, 2, BROKER_PATIENCE);
    assert!(shown.ends_with(question), "{shown}");
    assert!(
        shown.contains(&format!("{question}\nQ: awake\n{question}")),
        "{shown}"
    );
    writeln!(stdin, "y").unwrap();
    screen.wait_for("Host: [");
    drop(stdin);
    let _ = child.wait();
}

/// A reply of several lines is framed: its first line beside the agent's name, each other
/// line behind a bar, and a closing line; long JSON is shown indented.
#[test]
fn multi_line_replies_are_framed() {
    let file = scratch_dir("framed").join("three-lines.txt");
    std::fs::write(&file, "first\nUser> not the console\nthird").unwrap();
    let input = format!(
        "/Host.read_file path:{:?}\ny\n/Host.run_command command:\"printf\" args:[\"{}\"]\ny\n",
        file.to_str().unwrap(),
        "x".repeat(100)
    );
    let stdout = text(&run_piped(DEMO_CONFIG, &[], &input).stdout);
    assert!(
        stdout.contains("Host: first\n  │ User> not the console\n  │ third\n  └─\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Host: {\n  │   \"status\": 0,\n  │   \"stderr\": \"\",\n"),
        "{stdout}"
    );
}

/// The Host agent's failures name the file or program and the kind Python would give.
#[test]
fn host_agent_errors_name_what_failed() {
    let missing = scratch_dir("host-errors").join("missing");
    let missing = missing.to_str().unwrap();
    let input = format!(
        "/Host.read_file path:{missing:?}\ny\n/Host.list_files path:{missing:?}\ny\n\
         /Host.run_command command:{missing:?}\ny\n"
    );
    let stdout = text(&run_piped(DEMO_CONFIG, &[], &input).stdout);
    for expected in [
        format!("Host: error: FileNotFoundError: cannot read {missing:?}: No such file"),
        format!("Host: error: FileNotFoundError: cannot list {missing:?}: No such file"),
        format!("Host: error: FileNotFoundError: cannot run {missing:?}: No such file"),
    ] {
        assert!(stdout.contains(&expected), "{expected}\n{stdout}");
    }
}

#[test]
fn interactive_session_asks_permission_and_stops_on_ctrl_c() {
    let mut child = start(plugins_dir(), DEMO_CONFIG, &[]);
    let screen = Screen::attach(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "/Host.run_command command:\"echo\" args:[\"from the host\"]"
    )
    .unwrap();
    screen.wait_for("? [y/N] ");
    writeln!(stdin, "yes").unwrap();
    screen.wait_for("from the host");
    writeln!(stdin, "/Calculator.multiply a:6 b:7").unwrap();
    screen.wait_for("Calculator: 42.0");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let screen = screen.wait_for("interrupted");
    assert_eq!(
        exit.code(),
        Some(130),
        "clean exit on Ctrl-C: {exit:?}\n{screen}"
    );
    drop(stdin);
}

/// A second Ctrl-C ends the process at once, without waiting for a busy agent to stop
/// (the space waits 10 s for it otherwise); the exit code is 130 either way.
#[test]
fn a_second_ctrl_c_forces_the_exit() {
    let mut child = start(
        plugins_dir(),
        "[[agents]]\ntype = \"Receiver\"\nid = \"R\"\n",
        &[],
    );
    let (screen, errors) = (
        Screen::attach(&mut child),
        Screen::capture(child.stderr.take().unwrap()),
    );
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "/R.value").unwrap();
    screen.wait_for("R: 42");
    writeln!(stdin, "/R.sleep seconds:30").unwrap();
    let interrupt = || {
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // The console is up (it answered); the agent falls asleep; then Ctrl-C twice.
    std::thread::sleep(Duration::from_millis(300));
    interrupt();
    screen.wait_for("interrupted");
    interrupt();
    errors.wait_for("interrupted again: exiting now");
    let deadline = std::time::Instant::now() + PATIENCE;
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after the second Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(130));
    drop(stdin);
}

/// A command nobody answers within `--wait` is reported on stderr at once, the next line
/// runs, and the exit code says a line failed.
#[test]
fn an_unanswered_command_fails_the_run() {
    let agents = "[[agents]]\ntype = \"Receiver\"\nid = \"R\"\n\
                  [[agents]]\ntype = \"Receiver\"\nid = \"Q\"\n";
    let mut run = agency_run(plugins_dir(), &config(agents), &["--wait", "0.5"]);
    let input = "/R.sleep seconds:3\n/Q.value\n";
    let output = finish_within(spawn_piped(&mut run), input, FINISH_PATIENCE);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_lines(&stdout, &["Q: 42"]);
    assert_lines(
        &stderr,
        &[
            "error: no reply from R.sleep within 0.5 s",
            "error: stopped waiting for 1 reply",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
}

/// `agency plugins` on a folder with no library says so and fails.
#[test]
fn plugins_command_on_an_empty_folder_says_so() {
    let dir = scratch_dir("no-plugins");
    let output = agency(&["plugins", "--plugins-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!("error: no plugin libraries (*.so) in {}\n", dir.display())
    );
}

#[test]
fn unknown_transport_is_an_error_naming_the_known_ones() {
    let output = run_piped(DEMO_CONFIG, &["--transport", "carrier-pigeon"], "");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr).trim(),
        "error: unknown transport \"carrier-pigeon\"; transports found: amqp, local"
    );
}

#[test]
fn transport_can_come_from_the_environment() {
    let config = config(DEMO_CONFIG);
    let output = agency_run(plugins_dir(), &config, &[])
        .env("AGENCY_TRANSPORT", "smoke-signals")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(text(&output.stderr).contains("unknown transport \"smoke-signals\""));
}

#[test]
fn bad_agents_in_the_config_are_reported_and_the_others_start() {
    let config_text = format!("{DEMO_CONFIG}\n[[agents]]\ntype = \"Nope\"\nid = \"Broken\"\n\n[[agents]]\ntype = \"Fragile\"\nid = \"Fragile\"\n");
    let output = run_piped(&config_text, &[], "/Calculator.add a:2 b:2\n");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("error: cannot start agent \"Broken\": unknown agent type \"Nope\""),
        "{stderr}"
    );
    assert!(stderr.contains("error: cannot start agent \"Fragile\": agent 'Fragile' of type Fragile could not be created: ValueError: cannot be built"), "{stderr}");
    assert!(text(&output.stdout).contains("Calculator: 4.0"));
}

#[test]
fn invalid_config_file_is_an_error() {
    let output = run_piped("[[agents]]\nkind = \"Calculator\"\n", &[], "");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("is not a valid agency config"),
        "{}",
        text(&output.stderr)
    );
}

/// A copy of the test plugins folder with one file that is not a library.
fn plugins_with_a_broken_file() -> PathBuf {
    let dir = scratch_dir("plugins-and-garbage");
    for entry in std::fs::read_dir(plugins_dir()).unwrap() {
        let path = entry.unwrap().path();
        agency_tests::link_or_copy(&path, &dir.join(path.file_name().unwrap()));
    }
    let broken = format!("libbroken{}", std::env::consts::DLL_SUFFIX);
    std::fs::write(dir.join(broken), "garbage").unwrap();
    dir
}

#[test]
fn a_broken_plugin_is_reported_and_the_space_runs() {
    let output = finish(
        start(&plugins_with_a_broken_file(), DEMO_CONFIG, &[]),
        "/Calculator.add a:1 b:1\n",
    );
    let stderr = text(&output.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning: plugin skipped:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        warning.contains("libbroken") && warning.contains("not a loadable shared library"),
        "{warning}"
    );
    assert_lines(&text(&output.stdout), &["Calculator: 2.0"]);
}

#[test]
fn plugins_command_lists_types_actions_and_refusals() {
    let dir = plugins_with_a_broken_file();
    let output = agency(&["plugins", "--plugins-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    // A refused file makes the listing fail, after it is printed whole.
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("error: 1 file was refused (see above)"));
    let expected = [
        "  transport local",
        "  agent type Calculator: Does arithmetic on numbers.",
        "    add(a: number, b: number) -> number [permitted]",
        "    run_command(command: string, args?: array) -> any [requested]",
        "    forbidden() -> string [denied]",
    ];
    assert_lines(&stdout, &expected);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("libbroken") && l.contains("not a loadable shared library")),
        "{stdout}"
    );
}

/// The plugin of the README (the SDK's `counter` example), built and loaded as a user
/// would: copied into a plugins folder next to the transport.
#[test]
fn readme_example_plugin_answers() {
    let library = agency_tests::cargo_build(&["build", "-p", "agency-sdk", "--example", "counter"])
        .libraries
        .into_iter()
        .find(|path| path.to_string_lossy().contains("counter"))
        .expect("cargo reported the counter library");
    let dir = plugins_folder_with("readme-plugins", &["agency_transport_local"]);
    agency_tests::link_or_copy(&library, &dir.join(library_name("counter")));
    let config = "[[agents]]\ntype = \"Counter\"\nid = \"counter\"\nargs = { start = 1.5 }\n";
    let input = "/counter.add amount:2\n/counter.reset\nn\n/counter.add amount:\"two\"\n";
    let output = finish(start(&dir, config, &[]), input);
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("counter: 3.5"),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("counter: error: PermissionError: \"counter.reset\" not permitted"),
        "{stdout}"
    );
    assert!(stdout.contains("counter: error: TypeError: argument \"amount\" of add() must be number, got string \"two\""), "{stdout}");
}

/// Logs and panics inside a plugin reach the host's log, naming the plugin file.
#[test]
fn plugin_logs_appear_in_the_host_output() {
    let config = "[[agents]]\ntype = \"Receiver\"\nid = \"Receiver\"\n";
    let output = run_piped(config, &[], "/Receiver.explode\n/Receiver.value\n");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(stdout.contains("Receiver: error: Panic: boom"), "{stdout}");
    assert!(
        stdout.contains("Receiver: 42"),
        "the agent carries on: {stdout}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("panic: boom"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("libagency_test_agents"), "{line}");
    assert!(
        line.contains("tests/agents/src/lib.rs"),
        "with the panic's location: {line}"
    );
}

/// `log` and `tracing` records inside a plugin reach the host's log; `#[action(name)]`
/// renames an action.
#[test]
fn plugin_log_records_reach_the_host() {
    let config = "[[agents]]\ntype = \"Receiver\"\nid = \"Receiver\"\n";
    let output = run_piped(
        config,
        &[],
        "/Receiver.log text:\"hello logs\"\n/Receiver.write_logs\n",
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let logged = |needle: &str| {
        stderr
            .lines()
            .any(|l| l.contains(needle) && l.contains("libagency_test_agents"))
    };
    assert!(logged("via log: hello logs"), "{stderr}");
    assert!(logged("via tracing text=hello logs"), "{stderr}");
    assert!(
        stdout.contains("AttributeError: \"write_logs\" not found on \"Receiver\""),
        "{stdout}"
    );
}

/// Without `--plugins-dir`, `./plugins` is used when it holds libraries; the config comes
/// from `./agency.toml`.
#[test]
fn plugins_and_config_default_to_the_current_folder() {
    let dir = scratch_dir("working-folder");
    std::fs::create_dir(dir.join("plugins")).unwrap();
    for entry in std::fs::read_dir(plugins_dir()).unwrap() {
        let path = entry.unwrap().path();
        agency_tests::link_or_copy(&path, &dir.join("plugins").join(path.file_name().unwrap()));
    }
    std::fs::write(dir.join("agency.toml"), DEMO_CONFIG).unwrap();
    let mut run = agency(&["run", "--wait", "2"]);
    run.env_remove("AGENCY_PLUGINS_DIR").current_dir(&dir);
    let output = finish(spawn_piped(&mut run), "/Calculator.add a:2 b:3\n");
    assert_lines(&text(&output.stdout), &["Calculator: 5.0"]);
}
