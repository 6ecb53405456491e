//! [`MessageLog`]: what a foreground agent sent and received, for the program driving it.

use std::{
    sync::{mpsc, Condvar, Mutex},
    time::{Duration, Instant},
};

use agency_sdk::Message;

/// The messages a foreground agent sent and received, in order, if it keeps them, and
/// the subscribers to what it receives.
pub(crate) struct MessageLog {
    keep: bool,
    entries: Mutex<LogEntries>,
    changed: Condvar,
    subscribers: Mutex<Vec<mpsc::Sender<Message>>>,
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

    /// Appends a message if the log keeps them; received ones also go to the subscribers.
    pub fn record(&self, message: Message, received: bool) {
        if received {
            self.subscribers
                .lock()
                .unwrap()
                .retain(|s| s.send(message.clone()).is_ok());
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

    pub fn subscribe(&self) -> mpsc::Receiver<Message> {
        let (tx, rx) = mpsc::channel();
        self.subscribers.lock().unwrap().push(tx);
        rx
    }

    /// Waits until `done(received messages)` holds or `timeout` passes; answers whether
    /// it held.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&[Message]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut entries = self.entries.lock().unwrap();
        loop {
            if done(&entries.received) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            entries = self.changed.wait_timeout(entries, left).unwrap().0;
        }
    }
}
