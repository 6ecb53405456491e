//! What the console reacts to, from whichever thread it comes: lines of input (from the
//! plain reader or the line editor), messages for its agent, permission questions, the
//! space's traffic, Ctrl-C. The console's loop reads them from one bounded queue.

use agency_operator::permissions::Notice;
use agency_protocol::Message;
use agency_runtime::tap::Traffic;

/// What a line was read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// By the plain reader (piped input): the console decides from its own state.
    Any,
    /// At the command prompt.
    Command,
    /// At a permission question.
    Answer,
}

/// Something the console loop reacts to.
pub enum Event {
    /// A line, and what it was read for.
    Line(String, Reading),
    /// A line of input that is not UTF-8 text: its number and what is wrong.
    BadLine(usize, String),
    EndOfInput,
    /// A message for the console's agent.
    Incoming(Message),
    /// A permission question to put to the user, or one decided.
    Permission(Notice),
    /// A copy of the space's traffic, while the console watches it.
    Traffic(Traffic),
    /// How many copies the console missed so far, because it fell behind.
    TrafficSkipped(u64),
    /// Ctrl-C (seen through the flag it sets).
    Interrupt,
}
