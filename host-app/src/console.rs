//! The console: a foreground agent driven by lines from standard input.
//!
//! Lines become messages (see [`crate::command`]); replies and messages arriving for the
//! console's agent are printed; `requested` actions that ask the space's permission prompt
//! are put to the user as a y/n question, answered by the next line. After a command to
//! one agent the console reads no further line until its reply (or a permission question)
//! arrives, or `wait` passes, so piped input behaves as if typed by a person watching.
//! At the end of input it waits (up to `wait`) for the replies still in flight, and until
//! nothing more arrives for a moment, so answers to a last broadcast are printed too.

use std::{
    collections::{HashSet, VecDeque},
    io::{BufRead, Write},
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender},
    time::{Duration, Instant},
};

use agency_runtime::{Foreground, Space};
use agency_sdk::{
    message::{ERROR, RESPONSE},
    Message,
};
use serde_json::Value;

use crate::command::parse_line;

/// Something the console loop reacts to.
enum Event {
    Line(String),
    EndOfInput,
    Incoming(Message),
    Prompt(Message, SyncSender<bool>),
    Interrupt,
}

/// Runs the console until the end of input (plus `wait` for replies) or Ctrl-C.
pub fn run(space: &Space, me: Foreground, wait: Duration) {
    let (events, queue) = mpsc::channel();
    let (ready, next_line) = mpsc::channel();
    read_stdin(events.clone(), next_line);
    forward_incoming(&me, events.clone());
    let prompts = events.clone();
    space.set_permission_prompt(move |message| {
        let (answer_tx, answer_rx) = mpsc::sync_channel(1);
        prompts
            .send(Event::Prompt(message.clone(), answer_tx))
            .is_ok()
            && answer_rx.recv().unwrap_or(false)
    });
    let interrupts = events;
    if let Err(error) = ctrlc::set_handler(move || {
        let _ = interrupts.send(Event::Interrupt);
    }) {
        tracing::warn!(%error, "Ctrl-C will end the process without a clean shutdown");
    }
    let console = Console {
        me,
        awaiting: HashSet::new(),
        prompts: VecDeque::new(),
        blocking: None,
        ready,
        wait,
    };
    console.run(queue);
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

struct Console {
    me: Foreground,
    /// Ids of sent messages whose reply has not arrived yet.
    awaiting: HashSet<String>,
    /// Permission questions waiting for a y/n line; the first one is on screen.
    prompts: VecDeque<(Message, SyncSender<bool>)>,
    /// The command whose reply holds back the next line, and until when.
    blocking: Option<(String, Instant)>,
    /// Lets the stdin reader go on to the next line.
    ready: Sender<()>,
    /// How long to wait for a reply.
    wait: Duration,
}

impl Console {
    fn run(mut self, queue: Receiver<Event>) {
        let mut ending: Option<Ending> = None;
        loop {
            if let Some(end) = &ending {
                let now = Instant::now();
                if self.awaiting.is_empty() && now >= end.last_heard + QUIET {
                    return;
                }
                if now >= end.give_up {
                    let count = self.awaiting.len();
                    println!("(stopped waiting for {count} repl{})", plural(count));
                    return;
                }
            }
            let deadline = match &ending {
                Some(end) if self.awaiting.is_empty() => {
                    Some(end.give_up.min(end.last_heard + QUIET))
                }
                Some(end) => Some(end.give_up),
                None => self.blocking.as_ref().map(|(_, until)| *until),
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
                    self.unblock();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match event {
                Event::Line(line) => self.on_line(&line),
                Event::EndOfInput => {
                    let now = Instant::now();
                    ending = Some(Ending {
                        give_up: now + self.wait,
                        last_heard: now,
                    });
                    self.refuse_prompts("no input left");
                }
                Event::Incoming(message) => {
                    if let Some(end) = &mut ending {
                        end.last_heard = Instant::now();
                    }
                    self.on_incoming(&message);
                }
                Event::Prompt(message, answer) => {
                    if ending.is_some() {
                        println!(
                            "refused {}: no input left to ask permission",
                            describe_action(&message)
                        );
                        let _ = answer.send(false);
                    } else {
                        self.prompts.push_back((message, answer));
                        if self.prompts.len() == 1 {
                            self.show_prompt();
                            self.next_line();
                        }
                    }
                }
                Event::Interrupt => {
                    println!("interrupted");
                    return;
                }
            }
        }
    }

    /// Lets the reader go on to the next line.
    fn next_line(&self) {
        let _ = self.ready.send(());
    }

    /// Stops holding back input for a command's reply.
    fn unblock(&mut self) {
        if self.blocking.take().is_some() {
            self.next_line();
        }
    }

    fn on_line(&mut self, line: &str) {
        if let Some((message, answer)) = self.prompts.pop_front() {
            let allowed = matches!(line.trim().to_lowercase().as_str(), "y" | "yes");
            println!(
                "{} {}",
                if allowed { "allowed" } else { "refused" },
                describe_action(&message)
            );
            let _ = answer.send(allowed);
            if !self.prompts.is_empty() {
                self.show_prompt();
                self.next_line();
            }
            return;
        }
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some(message)) => {
                let expects_reply = message["to"] != "*";
                match self.me.send(message) {
                    Ok(id) if expects_reply => {
                        self.awaiting.insert(id.clone());
                        self.blocking = Some((id, Instant::now() + self.wait));
                        return;
                    }
                    Ok(_) => {}
                    Err(error) => println!("error: {error}"),
                }
            }
            Err(error) => println!("error: {error}"),
        }
        self.next_line();
    }

    fn on_incoming(&mut self, message: &Message) {
        if let Some(parent) = &message.meta.parent_id {
            self.awaiting.remove(parent);
            if self.blocking.as_ref().is_some_and(|(id, _)| id == parent) {
                self.unblock();
            }
        }
        let args = &message.action.args;
        let text = match message.action.name.as_str() {
            RESPONSE => render(args.get("value").unwrap_or(&Value::Null)),
            ERROR => format!(
                "error: {}",
                render(args.get("error").unwrap_or(&Value::Null))
            ),
            "say" => format!(
                "says: {}",
                render(args.get("content").unwrap_or(&Value::Null))
            ),
            name => format!("-> {name} {}", Value::Object(args.clone())),
        };
        println!("{}: {text}", message.from);
    }

    fn show_prompt(&self) {
        if let Some((message, _)) = self.prompts.front() {
            print!("permission: allow {}? [y/N] ", describe_action(message));
            let _ = std::io::stdout().flush();
        }
    }

    fn refuse_prompts(&mut self, why: &str) {
        for (message, answer) in self.prompts.drain(..) {
            println!("refused {}: {why}", describe_action(&message));
            let _ = answer.send(false);
        }
    }
}

/// `User -> Host.run_command {"command":"ls"}`
fn describe_action(message: &Message) -> String {
    format!(
        "{} -> {}.{} {}",
        message.from,
        message.to,
        message.action.name,
        Value::Object(message.action.args.clone())
    )
}

/// Strings as they are, anything else as JSON.
fn render(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        "y"
    } else {
        "ies"
    }
}

/// Reads lines one at a time: each waits for the console's go-ahead after the previous.
fn read_stdin(events: Sender<Event>, next_line: Receiver<()>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if events.send(Event::Line(line)).is_err() || next_line.recv().is_err() {
                return;
            }
        }
        let _ = events.send(Event::EndOfInput);
    });
}

fn forward_incoming(me: &Foreground, events: Sender<Event>) {
    let incoming = me.subscribe();
    std::thread::spawn(move || {
        for message in incoming {
            if events.send(Event::Incoming(message)).is_err() {
                return;
            }
        }
    });
}
