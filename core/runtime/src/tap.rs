//! Taps: copies of a space's traffic, for watching it (`agency run --watch`, the console's
//! `/watch`, a web page).
//!
//! A [`Tap`] receives a copy of every message an agent of this space sends (on `local`,
//! all the space's traffic; on a shared transport, what this host's agents send), and of
//! every message that came back undeliverable.
//!
//! Invariant: **a tap never slows or alters the space.** A copy is appended to each tap's
//! bounded queue under a lock held for that push alone, and nobody is woken: the tap's
//! reader collects what accumulated every [`POLL`] (a wake-up per message would cost the
//! sender a system call). When a reader falls behind, its queue is full and the copy is
//! dropped and counted ([`Tap::skipped`]); the message itself goes on as if nobody
//! watched. With no tap attached, a send pays one atomic load.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::RecvTimeoutError,
        Arc, Mutex, RwLock,
    },
    time::{Duration, Instant},
};

/// How often a reader looks for new copies when there are none.
pub const POLL: Duration = Duration::from_millis(5);

/// One copy a tap receives: a message's JSON, as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Traffic {
    /// A message an agent sent.
    Sent(String),
    /// A message that no agent could receive (a dead letter), back at its sender.
    Undeliverable(String),
}

/// One tap's queue, shared by the space (which appends) and the [`Tap`] (which takes).
struct Queue {
    copies: Mutex<VecDeque<Traffic>>,
    capacity: usize,
    skipped: AtomicU64,
}

/// A reader of a space's traffic, from [`crate::Space::tap`]. Dropping it detaches it.
pub struct Tap {
    queue: Arc<Queue>,
    /// Copies taken from the queue and not read yet.
    taken: VecDeque<Traffic>,
    /// When copies were last taken: the queue is taken at most every [`POLL`], so that
    /// the reader and the senders rarely meet at its lock.
    last_taken: Instant,
}

impl Tap {
    /// The next copy, waiting up to `timeout`; fails with `Timeout` when none came, and
    /// with `Disconnected` once the space is gone.
    pub fn next_within(&mut self, timeout: Duration) -> Result<Traffic, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(copy) = self.taken.pop_front() {
                return Ok(copy);
            }
            let now = Instant::now();
            let next_take = self.last_taken + POLL;
            if now < next_take {
                match deadline {
                    Some(deadline) if now >= deadline => return Err(RecvTimeoutError::Timeout),
                    Some(deadline) => std::thread::sleep((next_take - now).min(deadline - now)),
                    None => std::thread::sleep(next_take - now),
                }
                continue;
            }
            self.last_taken = now;
            std::mem::swap(&mut self.taken, &mut self.queue.copies.lock().unwrap());
            // Only this tap holds its queue: the space dropped its end.
            if self.taken.is_empty() && Arc::strong_count(&self.queue) == 1 {
                return Err(RecvTimeoutError::Disconnected);
            }
        }
    }

    /// How many copies were dropped so far because this tap's queue was full.
    pub fn skipped(&self) -> u64 {
        self.queue.skipped.load(Ordering::Relaxed)
    }
}

impl Iterator for Tap {
    type Item = Traffic;

    /// The next copy; `None` once the space is gone.
    fn next(&mut self) -> Option<Traffic> {
        self.next_within(Duration::MAX).ok()
    }
}

/// The taps of one space.
#[derive(Default)]
pub(crate) struct Taps {
    /// Whether any tap is attached: the only cost of a send when none is.
    any: AtomicBool,
    taps: RwLock<Vec<Arc<Queue>>>,
}

impl Taps {
    /// Attaches a tap whose queue holds `capacity` copies.
    pub fn attach(&self, capacity: usize) -> Tap {
        let queue = Arc::new(Queue {
            copies: Mutex::default(),
            capacity: capacity.max(1),
            skipped: AtomicU64::new(0),
        });
        self.taps.write().unwrap().push(queue.clone());
        self.any.store(true, Ordering::Release);
        Tap {
            queue,
            taken: VecDeque::new(),
            last_taken: Instant::now(),
        }
    }

    /// Offers each tap a copy made by `copy`, made only when a tap has room for it (and
    /// made once: a second tap with room gets a clone); taps that were dropped are
    /// detached.
    pub fn offer(&self, copy: impl FnOnce() -> Traffic) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut make = Some(copy);
        let mut spare: Option<Traffic> = None;
        let mut gone = false;
        let taps = self.taps.read().unwrap();
        for (index, queue) in taps.iter().enumerate() {
            if Arc::strong_count(queue) == 1 {
                gone = true;
                continue;
            }
            let mut copies = queue.copies.lock().unwrap();
            if copies.len() < queue.capacity {
                let copy = match spare.take() {
                    Some(copy) => copy,
                    None => (make.take().expect("a copy is made once"))(),
                };
                if index + 1 < taps.len() {
                    spare = Some(copy.clone());
                }
                copies.push_back(copy);
            } else {
                queue.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(taps);
        if gone {
            let mut taps = self.taps.write().unwrap();
            taps.retain(|queue| Arc::strong_count(queue) > 1);
            self.any.store(!taps.is_empty(), Ordering::Release);
        }
    }
}
