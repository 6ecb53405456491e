//! The console: a foreground agent driven by lines from standard input.
//!
//! Lines become messages (see [`agency_operator::command`]); replies and messages
//! arriving for the console's agent are printed; `requested` actions that ask the space's
//! permission prompt are put to the user as a y/n question, answered by the next line (or
//! on the web page, if one is open: the first answer wins, see
//! [`agency_operator::permissions`]). After a command to one agent the console reads no
//! further line until its reply (or a permission question) arrives, or `wait` passes, so
//! piped input behaves as if typed by a person watching (`wait` 0: lines are not held
//! back). At the end of input it waits (up to `wait`, at
//! least a moment) for the replies still in flight, and until nothing more arrives for a
//! moment, so answers to a last broadcast are printed too.
//!
//! What other processes sent is shown through [`crate::terminal`] (escaped). The console
//! reads a bounded queue of events: when its output is not read (a full pipe, a paused
//! terminal), messages wait in its agent's bounded subscription and then at the broker,
//! never in this process's memory. A closed output ends it quietly; a line of input that
//! is not UTF-8 is reported and skipped.
//!
//! Answers (values, and errors agents reply) go to standard output. The console's own
//! errors go to standard error and make the exit code 1 ([`Outcome::exit_code`]): a line
//! not understood or not sent, a message for an agent nobody holds (with the nearest id
//! as a suggestion), a command not answered within `wait`. Ctrl-C ends with 130; a second
//! Ctrl-C exits at once, without waiting for busy agents.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io::{BufRead, IsTerminal},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender},
        Arc,
    },
    time::{Duration, Instant},
};

use agency_operator::{
    command::{self, help_lines, Command, STATS_HELP, SYNTAX_HELP},
    permissions::{verdict, Listener, Notice, Permissions, Question},
    suggest::did_you_mean,
};
use agency_protocol::{message::BROADCAST, ActionError, Kind, Message};
use agency_runtime::HELP;
use agency_runtime::{Foreground, Space};
use serde_json::Value;

use crate::{
    editor::{self, Ask, SharedKnown},
    events::{Event, Reading},
    terminal::{self, block, inline, red, Stream},
    threads, traffic,
};

/// How the console ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The input ended (and the replies awaited arrived, or `wait` passed).
    InputEnded,
    /// The input ended, and this many lines failed: not understood, not sent, for an
    /// agent nobody holds, or not answered within `wait`.
    Failed(usize),
    /// Ctrl-C.
    Interrupted,
    /// Nobody reads the console's output any more (a closed pipe).
    OutputClosed,
}

impl Outcome {
    /// The process's exit code: 0, 1 when lines failed, 130 (128 + SIGINT) on Ctrl-C.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Self::InputEnded | Self::OutputClosed => ExitCode::SUCCESS,
            Self::Failed(_) => ExitCode::FAILURE,
            Self::Interrupted => crate::exit::interrupted(),
        }
    }
}

/// How many events may wait for the console loop. Beyond that, incoming messages wait
/// in the console agent's subscription (bounded too), and then at the broker.
const EVENTS_BOUND: usize = 64;

/// Runs the console until the end of input (plus `wait` for replies), Ctrl-C, or the end
/// of its output.
pub fn run(
    space: &Space,
    me: Foreground,
    permissions: &Permissions,
    wait: Duration,
    watch: bool,
) -> Outcome {
    // This thread drains the console's subscription (through the event queue): what it
    // sends to its own agent must not wait for room there.
    agency_runtime::never_wait_here();
    let (events, queue) = mpsc::sync_channel(EVENTS_BOUND);
    let (ready, next_line) = mpsc::channel();
    let interrupted = Arc::new(AtomicBool::new(false));
    let known = SharedKnown::default();
    let editing = {
        let (events, interrupted) = (events.clone(), interrupted.clone());
        let prompt = format!("{}> ", inline(me.id()));
        editor::start(
            prompt,
            known.clone(),
            next_line,
            events.clone(),
            move || interrupt(&interrupted, &events),
        )
    };
    let editing = match editing {
        Ok(()) => true,
        Err(next_line) => {
            read_stdin(events.clone(), next_line);
            false
        }
    };
    forward_incoming(&me, events.clone());
    forward_questions(permissions.listen(), events.clone());
    let events_for_taps = events.clone();
    let flag = interrupted.clone();
    if let Err(error) = ctrlc::set_handler(move || interrupt(&flag, &events)) {
        tracing::warn!(%error, "Ctrl-C will end the process without a clean shutdown");
    }
    let mut console = Console {
        space,
        me,
        awaiting: HashMap::new(),
        quitting: false,
        prompts: VecDeque::new(),
        permissions: permissions.clone(),
        stale_answer: false,
        blocking: None,
        failures: 0,
        prompt_on_screen: false,
        ready,
        reader_busy: false,
        editing,
        known,
        quiet: HashSet::new(),
        events: events_for_taps,
        watching: None,
        wait,
        interrupted,
        output_closed: false,
    };
    if std::io::stdin().is_terminal() {
        console.say_banner();
    }
    if editing {
        console.learn_agents();
    }
    if watch {
        console.watch();
    }
    console.next_line();
    console.run(queue)
}

/// Ctrl-C: sets `interrupted` and wakes the console, which then ends. A second Ctrl-C
/// does not wait for a clean shutdown (an action still running): it exits at once.
fn interrupt(interrupted: &AtomicBool, events: &SyncSender<Event>) {
    if interrupted.swap(true, Ordering::AcqRel) {
        report!("interrupted again: exiting now");
        std::process::exit(130);
    }
    // The queue may be full: the flag is seen at the next event; the event only wakes.
    let _ = events.try_send(Event::Interrupt);
}

/// After the input ends, how long the console keeps listening once nothing is awaited
/// and nothing arrives: answers to a last broadcast still get printed.
const QUIET: Duration = Duration::from_millis(300);

/// The console's state once its input has ended.
struct Ending {
    /// When to stop waiting for replies still awaited.
    give_up: Instant,
    /// When the last message arrived (or the input ended).
    last_heard: Instant,
}

struct Console<'a> {
    space: &'a Space,
    me: Foreground,
    /// Ids of sent messages whose reply has not arrived yet.
    awaiting: HashMap<String, String>,
    /// Set by `/quit`: the console ends as at the end of its input.
    quitting: bool,
    /// Permission questions waiting for a y/n line; the first one is on screen.
    prompts: VecDeque<Arc<Question>>,
    /// Where questions are answered (shared with the web page, if one is open).
    permissions: Permissions,
    /// Whether the question being answered was decided elsewhere: the next line, if it
    /// reads as an answer, is dropped instead of sent.
    stale_answer: bool,
    /// Whether the first question is the last thing printed (the cursor after it).
    prompt_on_screen: bool,
    /// The command whose reply holds back the next line: its id, until when, and what
    /// it asked (`Agent.action`).
    blocking: Option<(String, Instant, String)>,
    /// How many lines failed (see [`Outcome::Failed`]).
    failures: usize,
    /// Lets the reader go on to the next line, saying what it is for.
    ready: Sender<Ask>,
    /// Whether the reader was let go on and has not read its line yet.
    reader_busy: bool,
    /// Whether lines are read by the line editor (at a terminal): a question is then its
    /// prompt, and everything printed appears above the line being typed.
    editing: bool,
    /// What completion knows of the agents, learnt from the space and `help` answers.
    known: SharedKnown,
    /// Ids of the `help` requests the console sent to learn actions: their replies fill
    /// `known` and are not printed.
    quiet: HashSet<String>,
    /// Where the console's events go, for a tap's copies.
    events: SyncSender<Event>,
    /// While the console shows the traffic (`/watch`): how it renders it, and the switch
    /// that stops its tap.
    watching: Option<(traffic::Watch, Arc<AtomicBool>)>,
    /// How long to wait for a reply.
    wait: Duration,
    /// Set by Ctrl-C.
    interrupted: Arc<AtomicBool>,
    /// Set once writing to standard output failed.
    output_closed: bool,
}

/// `wait` from now, or as far as an instant goes.
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(u32::MAX.into()))
}

impl Console<'_> {
    fn run(mut self, queue: Receiver<Event>) -> Outcome {
        let mut ending: Option<Ending> = None;
        loop {
            if self.output_closed {
                return Outcome::OutputClosed;
            }
            if self.interrupted.load(Ordering::Acquire) {
                self.say("interrupted");
                return Outcome::Interrupted;
            }
            if let Some(end) = &ending {
                let now = Instant::now();
                if self.awaiting.is_empty() && now >= end.last_heard + QUIET {
                    return self.ended();
                }
                if now >= end.give_up && !self.awaiting.is_empty() {
                    let count = self.awaiting.len();
                    self.fail(&format!(
                        "error: stopped waiting for {count} repl{}",
                        plural(count)
                    ));
                    return self.ended();
                }
            }
            let deadline = match &ending {
                Some(end) if self.awaiting.is_empty() => Some(end.last_heard + QUIET),
                Some(end) => Some(end.give_up),
                None => self.blocking.as_ref().map(|(_, until, _)| *until),
            };
            let event = match deadline {
                None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(deadline) => {
                    queue.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                }
            };
            let event = match event {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => {
                    if let Some((_, _, asked)) = &self.blocking {
                        let error =
                            format!("error: no reply from {asked} within {}", seconds(self.wait));
                        self.fail(&error);
                    }
                    self.unblock();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return self.ended(),
            };
            match event {
                Event::Line(line, reading) => {
                    self.reader_busy = false;
                    self.on_line(&line, reading);
                    if self.quitting {
                        ending.get_or_insert_with(|| self.begin_ending());
                    }
                }
                Event::BadLine(number, reason) => {
                    self.reader_busy = false;
                    self.fail(&format!(
                        "error: input line {number} is not UTF-8 text ({reason}); skipped"
                    ));
                    if self.prompts.is_empty() {
                        self.next_line();
                    } else {
                        // Not a "yes": the question is refused, as for any other answer.
                        self.on_line("", Reading::Any);
                    }
                }
                Event::EndOfInput => {
                    ending.get_or_insert_with(|| self.begin_ending());
                }
                Event::Incoming(message) => {
                    if let Some(end) = &mut ending {
                        end.last_heard = Instant::now();
                    }
                    self.on_incoming(&message);
                }
                Event::Permission(Notice::Asked(question)) => {
                    if ending.is_some() {
                        self.refuse(&question, "no input left to ask permission");
                    } else {
                        self.prompts.push_back(question);
                        if self.prompts.len() == 1 {
                            self.ask();
                        }
                    }
                }
                Event::Permission(Notice::Decided { id, allowed, by }) => {
                    self.decided_elsewhere(id, allowed, &by);
                }
                Event::Traffic(copy) => {
                    if let Some(line) = self.watching.as_mut().and_then(|(w, _)| w.line(&copy)) {
                        self.say(&line);
                    }
                }
                Event::TrafficSkipped(count) => {
                    if self.watching.is_some() {
                        self.say(&format!(
                            "(watch: {count} message{} not shown so far: the console fell behind)",
                            if count == 1 { "" } else { "s" }
                        ));
                    }
                }
                // Seen through the flag at the top of the loop.
                Event::Interrupt => {}
            }
        }
    }

    /// Prints one line; notes when nobody reads the output any more. A question on
    /// screen is asked again below it, so that it stays the last thing shown.
    fn say(&mut self, line: &str) {
        let asking = self.leave_prompt();
        if !self.output_closed && terminal::print(&format!("{line}\n")).is_err() {
            self.output_closed = true;
        }
        if asking {
            self.show_prompt();
        }
    }

    /// Reports a failed line on standard error, and counts it.
    fn fail(&mut self, line: &str) {
        if self.editing {
            // Standard error would break the line being typed: at a terminal, both
            // streams are the screen.
            self.failures += 1;
            return self.say(&red(line, Stream::Stdout));
        }
        let asking = self.leave_prompt();
        report!("{}", red(line, Stream::Stderr));
        self.failures += 1;
        if asking {
            self.show_prompt();
        }
    }

    /// Ends the line of a question on screen, if one is; answers whether one was.
    fn leave_prompt(&mut self) -> bool {
        let on_screen = std::mem::take(&mut self.prompt_on_screen);
        if on_screen && terminal::print("\n").is_err() {
            self.output_closed = true;
        }
        on_screen
    }

    /// The input ended (or `/quit`): questions are refused, replies awaited up to `wait`
    /// (and at least [`QUIET`], so that replies already on their way are printed even
    /// with `--wait 0`).
    fn begin_ending(&mut self) -> Ending {
        self.refuse_prompts("no input left");
        let now = Instant::now();
        Ending {
            give_up: after(self.wait).max(now + QUIET),
            last_heard: now,
        }
    }

    /// How the console ends once its input has.
    fn ended(&self) -> Outcome {
        match self.failures {
            0 => Outcome::InputEnded,
            failed => Outcome::Failed(failed),
        }
    }

    /// Lets the reader go on to the next line.
    /// Lets the reader go on to the next line, unless it is already reading one: a
    /// command line, or with the line editor and a question waiting, its answer.
    fn next_line(&mut self) {
        if self.reader_busy {
            return;
        }
        self.reader_busy = true;
        let ask = match self.prompts.front() {
            Some(_) => Ask::Answer,
            None => Ask::Command,
        };
        let _ = self.ready.send(ask);
    }

    /// Stops holding back input for a command's reply.
    fn unblock(&mut self) {
        if self.blocking.take().is_some() {
            self.next_line();
        }
    }

    fn on_line(&mut self, line: &str, reading: Reading) {
        if std::mem::take(&mut self.stale_answer) && (is_answer(line) || line.trim().is_empty()) {
            self.say("not sent: that question was already answered elsewhere");
            return self.next_line();
        }
        if self.prompts.is_empty() || reading == Reading::Command {
            if !self.prompts.is_empty() && is_answer(line) {
                // Typed at the command prompt while the question appeared above it.
                self.say(&format!(
                    "not sent: {} was typed before the question was asked; answer it now",
                    inline(&format!("{:?}", line.trim()))
                ));
            } else {
                self.on_command_line(line);
            }
            if self.editing {
                self.refresh_known();
            }
            if !self.prompts.is_empty() {
                // The question goes first, even while a reply holds commands back.
                self.ask();
            }
            return;
        }
        self.prompt_on_screen = false;
        let allowed = match line.trim().to_lowercase().as_str() {
            "y" | "yes" => true,
            "" | "n" | "no" => false,
            _ => {
                self.say(&format!(
                    "please answer y (yes) or n (no), not {}",
                    inline(line.trim())
                ));
                self.show_prompt();
                self.next_line();
                return;
            }
        };
        let question = self.prompts.pop_front().expect("a question is asked");
        let text = match self.permissions.answer(question.id, allowed, CONSOLE) {
            Ok(()) => format!("{} {}", verdict(allowed), describe(&question)),
            Err(earlier) => format!(
                "too late: {} was already {}",
                describe(&question),
                earlier.map_or("decided".into(), |d| d.to_string())
            ),
        };
        self.say(&text);
        if !self.prompts.is_empty() {
            self.ask();
        } else if self.blocking.is_none() {
            self.next_line();
        }
    }

    /// Runs a line typed as a command: a console command, or a message to send.
    fn on_command_line(&mut self, line: &str) {
        match command::parse(line) {
            Ok(Command::Nothing) => {}
            Ok(Command::Send(message)) => {
                let expects_reply = message.to != BROADCAST;
                let action = message.action.name.clone();
                let asked = format!("{}.{}", inline(&message.to), inline(&action));
                match self.me.send(message) {
                    Ok(id) if expects_reply => {
                        self.awaiting.insert(id.clone(), action);
                        // `--wait 0`: the next line is not held back for the reply.
                        if !self.wait.is_zero() {
                            self.blocking = Some((id, after(self.wait), asked));
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => self.fail(&format!("error: {}", block(&error.to_string()))),
                }
            }
            Ok(Command::Quit) => {
                self.quitting = true;
                return;
            }
            Ok(local) => self.on_local(local),
            Err(error) => self.fail(&format!("error: {}", inline(&error.to_string()))),
        }
        self.next_line();
    }

    /// Greets a person at a terminal: which agents are here, and where help is.
    fn say_banner(&mut self) {
        let agents: Vec<String> = self
            .space
            .agents()
            .into_iter()
            .filter(|(id, _)| id != self.me.id())
            .map(|(id, kind)| match kind {
                Some(kind) => format!("{} ({})", inline(&id), inline(&kind)),
                None => inline(&id).into_owned(),
            })
            .collect();
        let me = inline(self.me.id()).into_owned();
        self.say(&format!(
            "you are {me}; agents here: {}. /help for help",
            if agents.is_empty() {
                "none yet".to_owned()
            } else {
                agents.join(", ")
            }
        ));
    }

    /// Runs one of the console's own commands (but `/quit`, which ends it).
    fn on_local(&mut self, command: Command) {
        match command {
            Command::Help => self.say(&console_help()),
            Command::Agents => {
                let lines: Vec<String> = self
                    .space
                    .agents()
                    .into_iter()
                    .map(|(id, kind)| {
                        let kind = match kind {
                            Some(kind) => inline(&kind).into_owned(),
                            None if id == self.me.id() => "this console".into(),
                            None => "no type".into(),
                        };
                        format!("  {} ({kind})", inline(&id))
                    })
                    .collect();
                self.say(&format!(
                    "agents in this space, on this host:\n{}",
                    lines.join("\n")
                ));
            }
            Command::Watch { on: true } => self.watch(),
            Command::Watch { on: false } => match self.watching.take() {
                Some((_, on)) => {
                    on.store(false, Ordering::Release);
                    self.say("watch: off");
                }
                None => self.say("watch: already off"),
            },
            Command::Stats(id) => {
                self.say(&agency_operator::stats::answer(self.space, id.as_deref()))
            }
            Command::Nothing | Command::Quit | Command::Send(_) => {}
        }
    }

    /// Notes the agents of this host that completion does not know yet, and asks each
    /// for its `help`.
    fn refresh_known(&mut self) {
        for id in self.space.agent_ids() {
            self.discover(&id);
        }
    }

    /// Notes agent `id`; if it is new, asks for its `help` (quietly, see `quiet`).
    fn discover(&mut self, id: &str) {
        if id != self.me.id() && self.known.lock().unwrap().add_agent(id) {
            self.learn_from(id);
        }
    }

    /// Asks `to` (an agent, or `*` for every agent) for its `help`, quietly.
    fn learn_from(&mut self, to: &str) {
        let request = serde_json::json!({"to": to, "action": {"name": HELP, "args": {}}});
        if let Ok(id) = self.me.send(request) {
            self.quiet.insert(id);
        }
    }

    /// At the start, with the line editor: learns what every agent in the space can do,
    /// with one broadcast `help`.
    fn learn_agents(&mut self) {
        for id in self.space.agent_ids() {
            if id != self.me.id() {
                self.known.lock().unwrap().add_agent(&id);
            }
        }
        self.learn_from("*");
    }

    fn on_incoming(&mut self, message: &Message) {
        let reply = message.reply();
        let undeliverable = matches!(&reply, Some(Err(error)) if error.is(Kind::Undeliverable));
        if let Some(parent) = &message.meta.parent_id {
            if self.quiet.contains(parent) {
                if let Some(Ok(help)) = &reply {
                    self.known.lock().unwrap().learn_help(&message.from, help);
                }
                return;
            }
        }
        if self.editing && !undeliverable {
            self.discover(&message.from);
        }
        let mut asked = None;
        let mut answers_blocking = false;
        if let Some(parent) = &message.meta.parent_id {
            asked = self.awaiting.remove(parent);
            answers_blocking = self
                .blocking
                .as_ref()
                .is_some_and(|(id, _, _)| id == parent);
        }
        self.show_incoming(message, reply, asked);
        // The next line is read once the reply is on screen.
        if answers_blocking {
            self.unblock();
        }
    }

    /// Prints a message for the console's agent: a reply (to `asked`, if the console sent
    /// it), or an action another agent sent.
    fn show_incoming(
        &mut self,
        message: &Message,
        reply: Option<Result<Value, ActionError>>,
        asked: Option<String>,
    ) {
        let args = &message.action.args;
        let text = match (reply, message.action.name.as_str()) {
            (Some(Ok(value)), _) if asked.as_deref() == Some(HELP) => {
                self.known.lock().unwrap().learn_help(&message.from, &value);
                help_table(&value).unwrap_or_else(|| block(&render(&value)))
            }
            (Some(Ok(value)), _) => block(&render(&value)),
            (Some(Err(error)), _) if error.is(Kind::Undeliverable) => {
                let hint = did_you_mean(self.space, &message.from)
                    .map(|id| format!(" (did you mean {}?)", inline(&format!("{id:?}"))))
                    .unwrap_or_default();
                self.fail(&format!("error: {}{hint}", inline(error.message())));
                return;
            }
            (Some(Err(error)), _) => {
                let error = format!("error: {}", block(&error.to_string()));
                red(&error, Stream::Stdout).into_owned()
            }
            (None, "say") => format!(
                "says: {}",
                block(&render(args.get("content").unwrap_or(&Value::Null)))
            ),
            (None, name) => format!(
                "-> {} {}",
                inline(name),
                inline(&Value::Object(args.clone()).to_string())
            ),
        };
        self.say(&format!("{}: {text}", inline(&message.from)));
    }

    /// Puts the first question: what was typed before it is discarded (at a terminal),
    /// then the next line is its answer.
    /// While the line editor reads a command, the question is only announced: it is
    /// asked once that line ends.
    fn ask(&mut self) {
        if self.editing && self.reader_busy {
            if let Some(question) = self.prompts.front() {
                let text = format!(
                    "permission wanted: {}. Press Enter to answer (a line being typed is run \
                     first, as a command)",
                    describe(question)
                );
                self.say(&text);
            }
            return;
        }
        terminal::discard_typed_ahead();
        self.show_prompt();
        self.next_line();
    }

    fn show_prompt(&mut self) {
        if let Some(question) = self.prompts.front() {
            if terminal::print(&prompt(question)).is_err() {
                self.output_closed = true;
            }
            self.prompt_on_screen = true;
        }
    }

    fn refuse_prompts(&mut self, why: &str) {
        self.leave_prompt();
        let refused: Vec<_> = self.prompts.drain(..).collect();
        for question in refused {
            self.refuse(&question, why);
        }
    }

    /// Refuses `question` (unless decided elsewhere first), saying why.
    fn refuse(&mut self, question: &Question, why: &str) {
        if self.permissions.answer(question.id, false, CONSOLE).is_ok() {
            self.say(&format!("refused {}: {why}", describe(question)));
        }
    }

    /// Question `id` was decided by `by`: unless that was this console, it is taken off
    /// the queue and its outcome shown; the next question, if any, is asked.
    fn decided_elsewhere(&mut self, id: u64, allowed: bool, by: &str) {
        if by == CONSOLE {
            return;
        }
        let Some(position) = self.prompts.iter().position(|q| q.id == id) else {
            return;
        };
        let question = self.prompts.remove(position).expect("found");
        let asking = position == 0 && self.leave_prompt();
        self.say(&format!(
            "{} by the {}: {}",
            verdict(allowed),
            inline(by),
            describe(&question)
        ));
        // The line being read was meant as its answer.
        self.stale_answer |= asking;
        if position == 0 && !self.prompts.is_empty() {
            self.ask();
        }
    }
}

/// The name this console answers questions under.
const CONSOLE: &str = "console";

/// A question as the user is asked it.
fn prompt(question: &Question) -> String {
    format!("permission: allow {}? [y/N] ", describe(question))
}

/// `User -> Host.run_command {"command":"ls"}`: exactly what would run and for whom
/// (`(broadcast)` when the message went to every agent), every part escaped (any of them
/// may come from another process).
fn describe(question: &Question) -> String {
    let message = &question.message;
    format!(
        "{} -> {}.{} {}{}",
        inline(&message.from),
        inline(&question.agent),
        inline(&message.action.name),
        inline(&Value::Object(message.action.args.clone()).to_string()),
        if message.is_broadcast() {
            " (broadcast)"
        } else {
            ""
        }
    )
}

/// Passes permission notices to the console loop, for as long as the process runs.
fn forward_questions(listener: Listener, events: SyncSender<Event>) {
    threads::spawn("console questions", move || {
        while let Ok(notice) = listener.notices().recv() {
            if events.send(Event::Permission(notice)).is_err() {
                return;
            }
        }
    });
}

/// Whether a line reads as an answer to a permission question.
fn is_answer(line: &str) -> bool {
    matches!(
        line.trim().to_lowercase().as_str(),
        "y" | "yes" | "n" | "no"
    )
}

/// Compact JSON longer than this is shown indented, one field or item a line.
const COMPACT_WIDTH: usize = 100;

/// Strings as they are, anything else as JSON: compact when short, else indented.
fn render(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => {
            let compact = other.to_string();
            if compact.len() <= COMPACT_WIDTH {
                compact
            } else {
                serde_json::to_string_pretty(other).unwrap_or(compact)
            }
        }
    }
}

/// What `/help` prints.
fn console_help() -> String {
    let own = [
        ("/agents", "the agents in this space, on this host"),
        STATS_HELP,
        (
            "/watch, /watch off",
            "show every message of this host's agents, or stop",
        ),
        ("/help", "this help"),
        ("/quit", "leave (as do Ctrl-D and Ctrl-C)"),
    ];
    let lines = help_lines(SYNTAX_HELP.iter().chain(&own), "  ");
    format!("console commands:\n{lines}")
}

/// A `help` answer as a table, one line per action: `name(arg: type, ...) -> type` and
/// its description; `None` if the value is not shaped like one.
fn help_table(help: &Value) -> Option<String> {
    let actions = help.as_object()?;
    let mut rows = Vec::new();
    for (name, entry) in actions {
        let entry = entry.as_object()?;
        let args: Vec<String> = entry
            .get("args")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(arg, doc)| format!("{arg}: {}", doc["type"].as_str().unwrap_or("any")))
            .collect();
        let returns = entry
            .get("returns")
            .and_then(|r| r["type"].as_str())
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        let signature = inline(&format!("{name}({}){returns}", args.join(", "))).into_owned();
        let description = entry
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("");
        rows.push((signature, inline(description).into_owned()));
    }
    let width = rows
        .iter()
        .map(|(s, _)| s.chars().count())
        .max()
        .unwrap_or(0);
    let count = rows.len();
    let lines: Vec<String> = rows
        .into_iter()
        .map(|(signature, description)| format!("  {signature:width$}  {description}"))
        .collect();
    Some(format!(
        "{count} action{}\n{}",
        if count == 1 { "" } else { "s" },
        lines.join("\n")
    ))
}

/// `5 s`, `0.5 s`: a duration as a person reads it.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        "y"
    } else {
        "ies"
    }
}

/// Reads lines one at a time, each after the console's go-ahead. A line that is not UTF-8
/// is passed on as such (and skipped), not taken for the end.
fn read_stdin(events: SyncSender<Event>, next_line: Receiver<Ask>) {
    threads::spawn("console input", move || {
        let mut input = std::io::stdin().lock();
        let mut bytes = Vec::new();
        for number in 1.. {
            if next_line.recv().is_err() {
                return;
            }
            bytes.clear();
            if !matches!(input.read_until(b'\n', &mut bytes), Ok(1..)) {
                break;
            }
            if bytes.ends_with(b"\n") {
                bytes.pop();
                if bytes.ends_with(b"\r") {
                    bytes.pop();
                }
            }
            let event = match String::from_utf8(std::mem::take(&mut bytes)) {
                Ok(line) => Event::Line(line, Reading::Any),
                Err(error) => Event::BadLine(number, error.utf8_error().to_string()),
            };
            if events.send(event).is_err() {
                return;
            }
        }
        let _ = events.send(Event::EndOfInput);
    });
}

/// How many copies of the traffic may wait for the console; beyond, they are dropped
/// and counted, never holding the space back.
const TAP_CAPACITY: usize = 10_000;

impl Console<'_> {
    /// Starts showing every message of the space's agents (`/watch`).
    fn watch(&mut self) {
        if self.watching.is_some() {
            return self.say("watch: already on (/watch off stops it)");
        }
        let mut tap = self.space.tap(TAP_CAPACITY);
        let on = Arc::new(AtomicBool::new(true));
        let (running, events) = (on.clone(), self.events.clone());
        threads::spawn("console watch", move || {
            let mut reported = 0;
            while running.load(Ordering::Acquire) {
                let event = match tap.next_within(Duration::from_millis(100)) {
                    Ok(copy) => Event::Traffic(copy),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                if events.send(event).is_err() {
                    return;
                }
                let skipped = tap.skipped();
                if skipped > reported {
                    reported = skipped;
                    if events.send(Event::TrafficSkipped(skipped)).is_err() {
                        return;
                    }
                }
            }
        });
        self.watching = Some((traffic::Watch::new(Default::default(), false), on));
        self.say("watch: on; every message of this host's agents is shown (/watch off stops it)");
    }
}

/// Passes the console agent's messages to the loop; while the loop is behind, they wait
/// in the agent's subscription.
fn forward_incoming(me: &Foreground, events: SyncSender<Event>) {
    let incoming = me.subscribe();
    threads::spawn("console output", move || {
        for message in incoming {
            if events.send(Event::Incoming(message)).is_err() {
                return;
            }
        }
    });
}
