//! The console's feeds: the threads that turn what happens elsewhere (a line of input,
//! a message for its agent, a permission notice, a copy of the traffic, Ctrl-C) into
//! [`Event`]s on the console loop's one bounded queue. Each blocks on its source and
//! then on the queue, so a console that falls behind holds its sources back (messages
//! wait in the agent's bounded subscription, then at the broker), never this process's
//! memory; only the traffic, which must never hold the space back, is dropped and
//! counted instead.

use std::{
    io::BufRead,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender},
        Arc,
    },
    time::Duration,
};

use agency_operator::permissions::Listener;
use agency_runtime::{Foreground, Space};

use crate::{
    editor::Ask,
    events::{Event, Reading},
    threads,
};

/// Ctrl-C: sets `interrupted` and wakes the console, which then ends. A second Ctrl-C
/// does not wait for a clean shutdown (an action still running): it exits at once.
pub fn interrupt(interrupted: &AtomicBool, events: &SyncSender<Event>) {
    if interrupted.swap(true, Ordering::AcqRel) {
        report!("interrupted again: exiting now");
        std::process::exit(130);
    }
    // The queue may be full: the flag is seen at the next event; the event only wakes.
    let _ = events.try_send(Event::Interrupt);
}

/// Reads lines one at a time, each after the console's go-ahead. A line that is not UTF-8
/// is passed on as such (and skipped), not taken for the end.
pub fn read_stdin(events: SyncSender<Event>, next_line: Receiver<Ask>) {
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

/// Passes the console agent's messages to the loop; while the loop is behind, they wait
/// in the agent's subscription.
pub fn forward_incoming(me: &Foreground, events: SyncSender<Event>) {
    let incoming = me.subscribe();
    threads::spawn("console output", move || {
        for message in incoming {
            if events.send(Event::Incoming(message)).is_err() {
                return;
            }
        }
    });
}

/// Passes permission notices to the console loop, for as long as the process runs.
pub fn forward_questions(listener: Listener, events: SyncSender<Event>) {
    threads::spawn("console questions", move || {
        while let Ok(notice) = listener.notices().recv() {
            if events.send(Event::Permission(notice)).is_err() {
                return;
            }
        }
    });
}

/// How many copies of the traffic may wait for the console; beyond, they are dropped
/// and counted, never holding the space back.
const TAP_CAPACITY: usize = 10_000;

/// Passes copies of the space's traffic to the loop (`/watch`), with how many were
/// dropped so far when the console fell behind, until the switch answered is turned off.
pub fn forward_traffic(space: &Space, events: SyncSender<Event>) -> Arc<AtomicBool> {
    let mut tap = space.tap(TAP_CAPACITY);
    let on = Arc::new(AtomicBool::new(true));
    let running = on.clone();
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
    on
}
