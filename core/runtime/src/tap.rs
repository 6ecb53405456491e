//! Taps: copies of a space's traffic, for watching it (`agency run --watch`, the console's
//! `/watch`, a web page).
//!
//! A [`Tap`] receives a copy of every message an agent of this space sends (on `local`,
//! all the space's traffic; on a shared transport, what this host's agents send), and of
//! every message that came back undeliverable.
//!
//! Invariant: **a tap never slows or alters the space.** A copy is offered to each tap's
//! bounded queue without waiting: when a tap's reader falls behind, its queue is full and
//! the copy is dropped and counted ([`Tap::skipped`]); the message itself goes on as if
//! nobody watched. With no tap attached, a send pays one atomic load.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    Arc, RwLock,
};
use std::time::Duration;

/// One copy a tap receives: a message's JSON, as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Traffic {
    /// A message an agent sent.
    Sent(String),
    /// A message that no agent could receive (a dead letter), back at its sender.
    Undeliverable(String),
}

/// A reader of a space's traffic, from [`crate::Space::tap`]. Dropping it detaches it.
pub struct Tap {
    copies: Receiver<Traffic>,
    skipped: Arc<AtomicU64>,
}

impl Tap {
    /// The next copy, waiting up to `timeout`; fails with `Timeout` when none came, and
    /// with `Disconnected` once the space is gone.
    pub fn next_within(&self, timeout: Duration) -> Result<Traffic, RecvTimeoutError> {
        self.copies.recv_timeout(timeout)
    }

    /// How many copies were dropped so far because this tap's queue was full.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

impl Iterator for Tap {
    type Item = Traffic;

    /// The next copy; `None` once the space is gone.
    fn next(&mut self) -> Option<Traffic> {
        self.copies.recv().ok()
    }
}

/// The taps of one space.
#[derive(Default)]
pub(crate) struct Taps {
    /// Whether any tap is attached: the only cost of a send when none is.
    any: AtomicBool,
    taps: RwLock<Vec<(SyncSender<Traffic>, Arc<AtomicU64>)>>,
}

impl Taps {
    /// Attaches a tap whose queue holds `capacity` copies.
    pub fn attach(&self, capacity: usize) -> Tap {
        let (sender, copies) = mpsc::sync_channel(capacity.max(1));
        let skipped = Arc::new(AtomicU64::new(0));
        let mut taps = self.taps.write().unwrap();
        taps.push((sender, skipped.clone()));
        self.any.store(true, Ordering::Release);
        Tap { copies, skipped }
    }

    /// Offers each tap a copy made by `copy` (only made when a tap is attached); taps
    /// that were dropped are detached.
    pub fn offer(&self, copy: impl FnOnce() -> Traffic) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let copy = copy();
        let mut gone = false;
        for (sender, skipped) in self.taps.read().unwrap().iter() {
            match sender.try_send(copy.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    skipped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => gone = true,
            }
        }
        if gone {
            let mut taps = self.taps.write().unwrap();
            // A dropped tap leaves its counter here alone.
            taps.retain(|(_, skipped)| Arc::strong_count(skipped) > 1);
            self.any.store(!taps.is_empty(), Ordering::Release);
        }
    }
}
