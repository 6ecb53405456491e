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
//! What a line or a message means is the operator [`Session`]'s; this module is the loop
//! and its state (which line is read for what, what holds input back, how it ends), with
//! the threads that feed it in [`feeds`], permission prompts in [`questions`], and the
//! words in [`show`].
//!
//! Answers (values, and errors agents reply) go to standard output. The console's own
//! errors go to standard error and make the exit code 1 ([`Outcome::exit_code`]): a line
//! not understood or not sent, a message for an agent nobody holds (with the nearest id
//! as a suggestion), a command not answered within `wait`. Ctrl-C ends with 130; a second
//! Ctrl-C exits at once, without waiting for busy agents.

use std::{
    collections::VecDeque,
    io::IsTerminal,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender},
        Arc,
    },
    time::{Duration, Instant},
};

use agency_operator::{
    command::{self, Command},
    session, Notice, Question, Session,
};
use agency_protocol::Message;

use crate::{
    editor::{self, Ask},
    events::{Event, Reading},
    terminal::{self, block, inline, red, Stream},
    traffic,
};

mod feeds;
mod questions;
mod show;

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

/// The name the console answers permission questions under.
pub const CONSOLE: &str = "console";

/// Runs the console of `session` until the end of input (plus `wait` for replies),
/// Ctrl-C, or the end of its output.
pub fn run(session: Session, wait: Duration, watch: bool) -> Outcome {
    // This thread drains the console's subscription (through the event queue): what it
    // sends to its own agent must not wait for room there.
    agency_runtime::never_wait_here();
    let session = Arc::new(session);
    let (events, queue) = mpsc::sync_channel(EVENTS_BOUND);
    let (ready, next_line) = mpsc::channel();
    let interrupted = Arc::new(AtomicBool::new(false));
    let editing = {
        let (events, interrupted) = (events.clone(), interrupted.clone());
        let prompt = format!("{}> ", inline(session.me().id()));
        editor::start(
            prompt,
            session.clone(),
            next_line,
            events.clone(),
            move || feeds::interrupt(&interrupted, &events),
        )
    };
    let editing = match editing {
        Ok(()) => true,
        Err(next_line) => {
            feeds::read_stdin(events.clone(), next_line);
            false
        }
    };
    feeds::forward_incoming(session.me(), events.clone());
    feeds::forward_questions(session.listen(), events.clone());
    let flag = interrupted.clone();
    let on_ctrl_c = events.clone();
    if let Err(error) = ctrlc::set_handler(move || feeds::interrupt(&flag, &on_ctrl_c)) {
        tracing::warn!(%error, "Ctrl-C will end the process without a clean shutdown");
    }
    let mut console = Console {
        session,
        quitting: false,
        prompts: VecDeque::new(),
        stale_answer: false,
        blocking: None,
        failures: 0,
        prompt_on_screen: false,
        ready,
        reader_busy: false,
        editing,
        events,
        watching: None,
        wait,
        interrupted,
        output_closed: false,
    };
    if std::io::stdin().is_terminal() {
        console.say_banner();
    }
    if editing {
        console.session.learn_all();
    }
    if watch {
        console.watch();
    }
    console.next_line();
    console.run(queue)
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

/// The command whose reply holds back the next line.
struct Blocking {
    /// The id of the message sent.
    id: String,
    /// Until when the reply is awaited.
    until: Instant,
    /// What it asked (`Agent.action`), escaped.
    asked: String,
}

struct Console {
    session: Arc<Session>,
    /// Set by `/quit`: the console ends as at the end of its input.
    quitting: bool,
    /// Permission questions waiting for a y/n line; the first one is on screen.
    prompts: VecDeque<Arc<Question>>,
    /// Whether the question being answered was decided elsewhere: the next line, if it
    /// reads as an answer, is dropped instead of sent.
    stale_answer: bool,
    /// Whether the first question is the last thing printed (the cursor after it).
    prompt_on_screen: bool,
    /// The command whose reply holds back the next line.
    blocking: Option<Blocking>,
    /// How many lines failed (see [`Outcome::Failed`]).
    failures: usize,
    /// Lets the reader go on to the next line, saying what it is for.
    ready: Sender<Ask>,
    /// Whether the reader was let go on and has not read its line yet.
    reader_busy: bool,
    /// Whether lines are read by the line editor (at a terminal): a question is then its
    /// prompt, everything printed appears above the line being typed, and the agents
    /// met are asked for their `help` to complete their actions.
    editing: bool,
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

impl Console {
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
            let awaiting = self.session.awaiting();
            if let Some(end) = &ending {
                let now = Instant::now();
                if awaiting == 0 && now >= end.last_heard + QUIET {
                    return self.ended();
                }
                if now >= end.give_up && awaiting > 0 {
                    self.fail(&format!(
                        "error: stopped waiting for {awaiting} {}",
                        show::replies(awaiting)
                    ));
                    return self.ended();
                }
            }
            let deadline = match &ending {
                Some(end) if awaiting == 0 => Some(end.last_heard + QUIET),
                Some(end) => Some(end.give_up),
                None => self.blocking.as_ref().map(|blocking| blocking.until),
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
                    if let Some(blocking) = &self.blocking {
                        let error = format!(
                            "error: no reply from {} within {}",
                            blocking.asked,
                            show::seconds(self.wait)
                        );
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
                    for event in self.session.on_message(message) {
                        self.on_session_event(event);
                    }
                }
                Event::Permission(Notice::Asked(question)) => {
                    if ending.is_some() {
                        self.refuse(&question, "no input left to ask permission");
                    } else {
                        self.on_asked(question);
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
        if std::mem::take(&mut self.stale_answer)
            && (questions::is_answer(line) || line.trim().is_empty())
        {
            self.say("not sent: that question was already answered elsewhere");
            return self.next_line();
        }
        if !self.prompts.is_empty() && reading != Reading::Command {
            return self.on_answer(line);
        }
        if !self.prompts.is_empty() && questions::is_answer(line) {
            // Typed at the command prompt while the question appeared above it.
            self.say(&format!(
                "not sent: {} was typed before the question was asked; answer it now",
                inline(&format!("{:?}", line.trim()))
            ));
        } else {
            self.on_command_line(line);
        }
        if self.editing {
            self.session.discover_local();
        }
        if !self.prompts.is_empty() {
            // The question goes first, even while a reply holds commands back.
            self.ask();
        }
    }

    /// Runs a line typed as a command: a console command, or a message to send.
    fn on_command_line(&mut self, line: &str) {
        match command::parse(line) {
            Ok(Command::Nothing) => {}
            Ok(Command::Send(message)) => {
                let asked = format!("{}.{}", inline(&message.to), inline(&message.action.name));
                match self.session.send(message) {
                    // `--wait 0`: the next line is not held back for the reply.
                    Ok(sent) if sent.expects_reply && !self.wait.is_zero() => {
                        self.blocking = Some(Blocking {
                            id: sent.id,
                            until: after(self.wait),
                            asked,
                        });
                        return;
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
        let me = self.session.me().id();
        let agents: Vec<String> = self
            .session
            .space()
            .agents()
            .into_iter()
            .filter(|(id, _)| id != me)
            .map(|(id, kind)| match kind {
                Some(kind) => format!("{} ({})", inline(&id), inline(&kind)),
                None => inline(&id).into_owned(),
            })
            .collect();
        let me = inline(me).into_owned();
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
            Command::Help => self.say(&show::console_help()),
            Command::Agents => {
                let me = self.session.me().id();
                let lines: Vec<String> = self
                    .session
                    .space()
                    .agents()
                    .into_iter()
                    .map(|(id, kind)| {
                        let kind = match kind {
                            Some(kind) => inline(&kind).into_owned(),
                            None if id == me => "this console".into(),
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
                let text = self.session.stats(id.as_deref());
                self.say(&text)
            }
            Command::Nothing | Command::Quit | Command::Send(_) => {}
        }
    }

    /// Shows what a message for the console's agent meant; the next line is read once
    /// the reply it waited for is on screen. With the line editor, an agent met is
    /// asked for its `help`, to complete its actions.
    fn on_session_event(&mut self, event: session::Event) {
        let answers_blocking = |message: &Message, blocking: &Option<Blocking>| {
            matches!((&message.meta.parent_id, blocking),
                (Some(parent), Some(blocking)) if *parent == blocking.id)
        };
        match event {
            session::Event::Learned(_) => {}
            session::Event::Reply {
                message,
                asked,
                result,
            } => {
                self.discover(&message.from);
                let text = show::reply(&result, asked.as_deref());
                self.say(&format!("{}: {text}", inline(&message.from)));
                if answers_blocking(&message, &self.blocking) {
                    self.unblock();
                }
            }
            session::Event::Undeliverable {
                message,
                error,
                did_you_mean,
            } => {
                self.fail(&show::undeliverable(&error, did_you_mean.as_deref()));
                if answers_blocking(&message, &self.blocking) {
                    self.unblock();
                }
            }
            session::Event::Action(message) => {
                self.discover(&message.from);
                let text = show::action(&message);
                self.say(&format!("{}: {text}", inline(&message.from)));
            }
        }
    }

    /// With the line editor, notes agent `id` for completion (asking for its `help`).
    fn discover(&self, id: &str) {
        if self.editing {
            self.session.discover(id);
        }
    }

    /// Starts showing every message of the space's agents (`/watch`).
    fn watch(&mut self) {
        if self.watching.is_some() {
            return self.say("watch: already on (/watch off stops it)");
        }
        let on = feeds::forward_traffic(self.session.space(), self.events.clone());
        self.watching = Some((traffic::Watch::new(Default::default(), false), on));
        self.say("watch: on; every message of this host's agents is shown (/watch off stops it)");
    }
}
