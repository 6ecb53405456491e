//! [`MessageLog`]: what a foreground agent sent and received, for the program driving it,
//! and [`Subscription`]s to what it receives.

use std::{
    sync::{Condvar, Mutex},
    time::{Duration, Instant},
};

use agency_sdk::Message;

use crate::mailbox::{mailbox, Mailbox, MailboxReceiver};

/// The messages a foreground agent sent and received, in order, if it keeps them, and
/// the subscribers to what it receives.
pub(crate) struct MessageLog {
    keep: bool,
    entries: Mutex<LogEntries>,
    changed: Condvar,
    subscribers: Mutex<Vec<Mailbox<Message>>>,
}

#[derive(Default)]
struct LogEntries {
    all: Vec<Message>,
    received: Vec<Message>,
}

impl MessageLog {
    /// A log that keeps every message if `keep`, else only feeds subscribers.
    pub fn new(keep: bool) -> Self {
        Self {
            keep,
            entries: Mutex::default(),
            changed: Condvar::new(),
            subscribers: Mutex::default(),
        }
    }

    /// Appends a message if the log keeps them; received ones also go to the subscribers,
    /// waiting for room in a full subscription (see [`crate::mailbox`]).
    pub fn record(&self, message: Message, received: bool) {
        if received {
            self.subscribers
                .lock()
                .unwrap()
                .retain(|s| s.put(message.clone()));
        }
        if !self.keep {
            return;
        }
        let mut entries = self.entries.lock().unwrap();
        if received {
            entries.received.push(message.clone());
        }
        entries.all.push(message);
        self.changed.notify_all();
    }

    pub fn all(&self) -> Vec<Message> {
        self.entries.lock().unwrap().all.clone()
    }

    pub fn received(&self) -> Vec<Message> {
        self.entries.lock().unwrap().received.clone()
    }

    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = mailbox();
        self.subscribers.lock().unwrap().push(tx);
        Subscription(rx)
    }

    /// Waits until `done(received messages)` holds or `timeout` passes; answers whether
    /// it held.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&[Message]) -> bool) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut entries = self.entries.lock().unwrap();
        loop {
            if done(&entries.received) {
                return true;
            }
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return false;
            }
            entries = self.changed.wait_timeout(entries, left).unwrap().0;
        }
    }
}

/// The messages a foreground agent receives from the moment it subscribed, in order.
///
/// It holds at most [`crate::MAILBOX_LIMIT`] messages not yet taken: beyond that,
/// deliveries from a transport's own threads wait (and the broker keeps the backlog), so a
/// reader that does not keep up never makes the process grow without bound. The thread
/// that reads it, and any thread whose progress that reading needs, should call
/// [`crate::never_wait_here`].
pub struct Subscription(MailboxReceiver<Message>);

impl Subscription {
    /// The next message, waiting as long as it takes; `None` once the agent is gone.
    pub fn recv(&self) -> Option<Message> {
        self.0.next(Duration::MAX)
    }

    /// The next message, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Message> {
        self.0.next(timeout)
    }
}

impl Iterator for Subscription {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        self.recv()
    }
}
