//! The console's line editor, used when standard input and output are a terminal.
//!
//! [rustyline](https://docs.rs/rustyline) does the editing: readline's keys (arrows,
//! Ctrl-A/E/W/U, Alt-B/F, ...), Ctrl-R to search the history, a history file kept across
//! runs, Tab completion, and an *external printer* through which everything the console
//! prints appears above the line being typed, which is then drawn again as it was. It
//! was chosen over reedline for its smaller dependency tree (no crossterm) and its
//! printer, which writes straight to the terminal whenever no line is being read.
//!
//! The editor reads a line only when the console lets it (as the plain reader does), and
//! each go-ahead says what the line is for ([`Ask`]): a command, at the `User> ` prompt,
//! or the answer to a permission question. An answer is read as a plain line from the
//! terminal, which the console flushed before printing the question: what rustyline read
//! ahead (a pasted block of lines) stays in its buffer for the next commands and never
//! answers a question. A line comes back tagged with what it was read for ([`Reading`]),
//! so a line typed at the command prompt never answers a question that appeared while it
//! was being typed.
//!
//! Completion knows what the console's session learnt (its
//! [`Catalogue`]): agent ids, and from their `help` answers,
//! action and argument names.

use std::{
    path::PathBuf,
    sync::{mpsc::Receiver, mpsc::SyncSender, Arc},
};

use crate::{
    events::{Event, Reading},
    terminal, threads,
};
use agency_operator::{command::LOCAL_COMMANDS, Catalogue, Session};
use rustyline::{
    completion::{Completer, Pair},
    config::Configurer,
    error::ReadlineError,
    highlight::Highlighter,
    hint::Hinter,
    history::FileHistory,
    validate::Validator,
    CompletionType, Config, Editor, Helper,
};

/// What the console lets the reader read next.
pub enum Ask {
    /// A command, at the command prompt.
    Command,
    /// The answer to the permission question the console printed.
    Answer,
}

/// The completions of `line` (up to the cursor) from what the session learnt: where the
/// word being completed starts, and the candidates for it (agent ids, local commands,
/// action names, argument names not given yet).
fn complete(catalogue: &Catalogue, line: &str) -> (usize, Vec<Pair>) {
    let Some(body) = line.strip_prefix('/') else {
        return (0, Vec::new());
    };
    let pair = |name: &str, suffix: &str| Pair {
        display: name.to_owned(),
        replacement: format!("{name}{suffix}"),
    };
    let Some((target, rest)) = body.split_once(char::is_whitespace) else {
        if let Some((agent, partial)) = body.rsplit_once('.') {
            let mut names = catalogue.actions(agent);
            if !names.contains(&"help") {
                names.push("help");
            }
            let found = names
                .into_iter()
                .filter(|name| name.starts_with(partial))
                .map(|name| pair(name, " "))
                .collect();
            return (1 + agent.len() + 1, found);
        }
        let lower = body.to_lowercase();
        let agents = catalogue
            .ids()
            .filter(|id| id.to_lowercase().starts_with(&lower))
            .map(|id| pair(id, "."));
        let commands = LOCAL_COMMANDS
            .iter()
            .filter(|command| command.starts_with(body))
            .map(|command| pair(command, ""));
        return (1, agents.chain(commands).collect());
    };
    let Some((agent, action)) = target.rsplit_once('.') else {
        return (0, Vec::new());
    };
    let word_start = line.len() - rest.len() + rest.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let word = &line[word_start..];
    if word.contains(':') {
        return (0, Vec::new());
    }
    let given: Vec<&str> = rest
        .split_whitespace()
        .filter_map(|part| part.split_once(':').map(|(key, _)| key))
        .collect();
    let found = catalogue
        .args(agent, action)
        .into_iter()
        .filter(|arg| arg.starts_with(word) && !given.contains(arg))
        .map(|arg| pair(arg, ":"))
        .collect();
    (word_start, found)
}

/// Completion from the session's catalogue; no hints, highlighting or validation.
struct Completion(Arc<Session>);

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(complete(&self.0.catalogue(), &line[..pos]))
    }
}

impl Hinter for Completion {
    type Hint = String;
}
impl Highlighter for Completion {}
impl Validator for Completion {}
impl Helper for Completion {}

/// Where the history is kept: `$AGENCY_HISTORY`, else `agency/history` in the user's
/// data folder (`$XDG_DATA_HOME`, `~/.local/share` on Linux).
fn history_file() -> Option<PathBuf> {
    match std::env::var_os("AGENCY_HISTORY") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => dirs::data_dir().map(|dir| dir.join("agency").join("history")),
    }
}

/// How many lines the history keeps.
const HISTORY_LINES: usize = 1000;

/// Starts the line editor on its own thread if standard input and output are a terminal,
/// else gives `asks` back (the console then reads plain lines). From then on, what the
/// console prints goes through the editor's printer. `prompt` is the command prompt; a
/// line is read for each of `asks`; lines and the end of input go to `events`; Ctrl-C
/// calls `interrupt`.
pub fn start(
    prompt: String,
    session: Arc<Session>,
    asks: Receiver<Ask>,
    events: SyncSender<Event>,
    interrupt: impl Fn() + Send + 'static,
) -> Result<(), Receiver<Ask>> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal()
        || !std::io::stdout().is_terminal()
        || std::env::var("TERM").is_ok_and(|term| term == "dumb")
    {
        return Err(asks);
    }
    let config = Config::builder()
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .build();
    let Ok(mut editor) = Editor::<Completion, FileHistory>::with_config(config) else {
        return Err(asks);
    };
    let Ok(printer) = editor.create_external_printer() else {
        return Err(asks);
    };
    let _ = editor.set_max_history_size(HISTORY_LINES);
    let _ = editor.set_history_ignore_dups(true);
    editor.set_helper(Some(Completion(session)));
    let history = history_file().and_then(|path| match load_history(&mut editor, &path) {
        Ok(()) => Some(path),
        Err(error) => {
            report!("warning: history not kept: {}: {error}", path.display());
            None
        }
    });
    terminal::print_through(Box::new(printer));
    threads::spawn("console editor", move || {
        for ask in asks {
            let read = match ask {
                Ask::Command => editor.readline(&prompt),
                Ask::Answer => read_answer(),
            };
            let event = match read {
                Ok(line) => {
                    let reading = match ask {
                        Ask::Command if line.trim().is_empty() => Reading::Command,
                        Ask::Command => {
                            remember(&mut editor, history.as_ref(), &line);
                            Reading::Command
                        }
                        Ask::Answer => Reading::Answer,
                    };
                    Event::Line(line, reading)
                }
                Err(ReadlineError::Interrupted) => {
                    interrupt();
                    return;
                }
                Err(ReadlineError::Eof) => Event::EndOfInput,
                Err(error) => {
                    report!("error: cannot read the terminal: {error}");
                    Event::EndOfInput
                }
            };
            let ended = matches!(event, Event::EndOfInput);
            if events.send(event).is_err() || ended {
                return;
            }
        }
    });
    Ok(())
}

/// Reads the answer to a question: one line, in the terminal's own line mode (Ctrl-C
/// interrupts, Ctrl-D ends the input).
fn read_answer() -> rustyline::Result<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line)? {
        0 => Err(ReadlineError::Eof),
        _ => Ok(line.trim_end_matches(['\n', '\r']).to_owned()),
    }
}

/// Loads the history file, if there is one; it must be a regular file (a FIFO there
/// would hang the console).
fn load_history(
    editor: &mut Editor<Completion, FileHistory>,
    path: &PathBuf,
) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    match agency_loader::open_regular_file(path, MAX_HISTORY_BYTES) {
        Ok(_) => editor.load_history(path).map_err(|e| e.to_string()),
        Err(_) if !path.exists() => Ok(()),
        Err(error) => Err(error),
    }
}

/// The largest history file loaded.
const MAX_HISTORY_BYTES: u64 = 16 << 20;

/// Adds a command line to the history and to its file (a failure to write is said once).
fn remember(editor: &mut Editor<Completion, FileHistory>, file: Option<&PathBuf>, line: &str) {
    let _ = editor.add_history_entry(line);
    if let Some(path) = file {
        if let Err(error) = editor.append_history(path) {
            tracing::warn!(path = %path.display(), %error, "cannot write the console history");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use agency_operator::Catalogue;

    use super::complete;

    fn completions(known: &Catalogue, line: &str) -> (usize, Vec<String>) {
        let (start, pairs) = complete(known, line);
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn completes_ids_actions_and_argument_names() {
        let mut known = Catalogue::default();
        known.add_agent("Calculator");
        known.add_agent("Chatty");
        known.learn_help(
            "Calculator",
            &json!({"add": {"args": {"a": {}, "b": {}}}, "sqrt": {"args": {"x": {}}}}),
        );
        assert_eq!(
            completions(&known, "/c"),
            (1, vec!["Calculator.".into(), "Chatty.".into()])
        );
        assert_eq!(completions(&known, "/a"), (1, vec!["agents".into()]));
        assert_eq!(
            completions(&known, "/Calculator."),
            (12, vec!["add ".into(), "sqrt ".into(), "help ".into()])
        );
        assert_eq!(completions(&known, "/Chatty.h"), (8, vec!["help ".into()]));
        assert_eq!(
            completions(&known, "/Calculator.add "),
            (16, vec!["a:".into(), "b:".into()])
        );
        assert_eq!(
            completions(&known, "/Calculator.add a:1 "),
            (20, vec!["b:".into()])
        );
        assert_eq!(completions(&known, "/Calculator.add a:1"), (0, vec![]));
        assert_eq!(completions(&known, "hello"), (0, vec![]));
    }
}
