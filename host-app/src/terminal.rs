//! Writing to the operator's terminal: remote text made safe, and a closed output noticed.
//!
//! Everything the console shows that another process chose (ids, action names,
//! arguments, values, errors) goes through [`inline`] or [`block`]: control characters
//! and bidirectional overrides are shown as escapes, so no peer can move the cursor,
//! erase a line or forge one (see [`agency_runtime::printable`]).

/// `eprintln!` that never panics: with standard error closed, the line is lost and the
/// host goes on.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::{
    borrow::Cow,
    io::{self, IsTerminal, Write},
    sync::Mutex,
};

use rustyline::ExternalPrinter;

/// The line editor's printer, once the console edits lines at a terminal.
static PRINTER: Mutex<Option<Box<dyn ExternalPrinter + Send>>> = Mutex::new(None);

/// From now on, [`print()`] writes through the line editor's `printer`: text appears above
/// the line being typed, which is drawn again below it.
pub fn print_through(printer: Box<dyn ExternalPrinter + Send>) {
    *PRINTER.lock().unwrap() = Some(printer);
}

/// One-line remote text (an id, an action name, arguments as JSON): every control
/// character, line breaks included, shown escaped.
pub fn inline(text: &str) -> Cow<'_, str> {
    agency_runtime::printable(text)
}

/// Remote text that may span lines (a value, an error): the first line as it is, the
/// others framed (`  │ ` before each, `  └─` after the last), so that none can pass for a
/// line of the console's own and the reply's end is plain to see; every other control
/// character is shown escaped.
pub fn block(text: &str) -> String {
    let mut lines = text.split('\n');
    let mut framed = inline(lines.next().unwrap_or_default()).into_owned();
    let mut more = false;
    for line in lines {
        framed.push_str("\n  │ ");
        framed.push_str(&inline(line));
        more = true;
    }
    if more {
        framed.push_str("\n  └─");
    }
    framed
}

/// Writes `text` to standard output and flushes it; fails once nobody reads it any more
/// (a closed pipe), which ends the console quietly, as `rg | head` does.
pub fn print(text: &str) -> io::Result<()> {
    if let Some(printer) = PRINTER.lock().unwrap().as_mut() {
        return printer.print(text.to_owned()).map_err(io::Error::other);
    }
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Throws away what was typed at the terminal and not read yet, so that a question is
/// answered only by what is typed after it appears (as `sudo` does). Piped input is left
/// alone: there, the lines after a command are its answers.
pub fn discard_typed_ahead() {
    if io::stdin().is_terminal() {
        // SAFETY: `tcflush` takes a descriptor (standard input, open for the whole
        // process) and a constant; it touches no memory of ours.
        unsafe { libc::tcflush(libc::STDIN_FILENO, libc::TCIFLUSH) };
    }
}

/// Which stream a text goes to, for [`red`].
#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// `text` in red when `stream` is a terminal and `NO_COLOR` is not set; as it is
/// otherwise (a pipe, a file, a user who asked for no colour).
pub fn red(text: &str, stream: Stream) -> Cow<'_, str> {
    let terminal = match stream {
        Stream::Stdout => io::stdout().is_terminal(),
        Stream::Stderr => io::stderr().is_terminal(),
    };
    if terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) {
        Cow::Owned(format!("\x1b[31m{text}\x1b[0m"))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_lines_cannot_pass_for_the_consoles_own() {
        assert_eq!(
            block("ok\n\u{1b}[2Kpermission: allow\r"),
            "ok\n  │ \\u{1b}[2Kpermission: allow\\u{d}\n  └─"
        );
        assert_eq!(block("one line"), "one line");
        assert_eq!(inline("a\nb"), "a\\u{a}b");
    }
}
