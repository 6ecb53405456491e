//! Waiting for the next message or a reply without paying for a sleep when it is close.
//!
//! A [`Waiter`] polls a [`Source`] (an agent's queue, or a request's [`ReplySlot`]),
//! spinning briefly before it sleeps. A reply slot is the lightest one-shot there is:
//! one allocation, filled at most once, which wakes the very thread that made the
//! request. The invariant that makes this enough: a request is made and waited for on
//! one thread (`Endpoint::request` and `request_all` start and finish their requests
//! in the same call), so the slot knows at creation which thread to wake.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::Thread,
    time::Instant,
};

/// Why a [`Source`] has no item now.
#[derive(Debug, PartialEq)]
pub(crate) enum Empty {
    /// One may still come.
    Now,
    /// None ever will (every sender is gone).
    Forever,
}

/// Where a [`Waiter`] takes an item from.
pub(crate) trait Source<T> {
    /// The item if there is one now.
    fn poll(&self) -> Result<T, Empty>;
    /// Sleeps until there is an item (answered), `deadline` passes, or none can ever
    /// come (both `None`).
    fn sleep_until(&self, deadline: Option<Instant>) -> Option<T>;
}

impl<T> Source<T> for mpsc::Receiver<T> {
    fn poll(&self) -> Result<T, Empty> {
        self.try_recv().map_err(|e| match e {
            mpsc::TryRecvError::Empty => Empty::Now,
            mpsc::TryRecvError::Disconnected => Empty::Forever,
        })
    }

    fn sleep_until(&self, deadline: Option<Instant>) -> Option<T> {
        match deadline {
            Some(deadline) => self
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok(),
            None => self.recv().ok(),
        }
    }
}

/// Where a request's reply is put: filled at most once, by whichever thread delivers
/// the reply; taken by the thread that made the request (and made the slot).
pub(crate) struct ReplySlot<T> {
    item: Mutex<Option<T>>,
    /// Set once `item` holds the reply: the waiter polls this, not the lock.
    filled: AtomicBool,
    requester: Thread,
}

impl<T> ReplySlot<T> {
    /// An empty slot whose requester is the calling thread.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            item: Mutex::new(None),
            filled: AtomicBool::new(false),
            requester: std::thread::current(),
        })
    }

    /// Puts the reply and wakes the requester; a second reply is ignored.
    pub fn fill(&self, item: T) {
        {
            let mut slot = self.item.lock().unwrap();
            if self.filled.load(Ordering::Relaxed) {
                return;
            }
            *slot = Some(item);
            self.filled.store(true, Ordering::Release);
        }
        self.requester.unpark();
    }
}

impl<T> Source<T> for ReplySlot<T> {
    /// Never [`Empty::Forever`]: a reply can come as long as the request is pending.
    fn poll(&self) -> Result<T, Empty> {
        if !self.filled.load(Ordering::Acquire) {
            return Err(Empty::Now);
        }
        self.item.lock().unwrap().take().ok_or(Empty::Now)
    }

    /// Parks the requesting thread. A wake-up may be spurious (or meant for another
    /// wait on this thread: `park` allows that), hence the loop.
    fn sleep_until(&self, deadline: Option<Instant>) -> Option<T> {
        loop {
            if let Ok(item) = self.poll() {
                return Some(item);
            }
            match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    std::thread::park_timeout(deadline - now);
                }
                None => std::thread::park(),
            }
        }
    }
}

/// Receives from a [`Source`], spinning briefly before sleeping: a reply or the next
/// message usually comes within microseconds, and waking a sleeping thread costs far
/// more.
///
/// The spin adapts: it doubles after a wait that spinning ended, and halves after one
/// that had to sleep, so a worker fed from the network (messages a hundred microseconds
/// or more apart) stops burning CPU that the broker or the transport needs.
pub(crate) struct Waiter {
    rounds: Cell<u32>,
}

impl Waiter {
    /// A waiter that starts with the longest spin.
    pub fn new() -> Self {
        Self {
            rounds: Cell::new(MAX_ROUNDS),
        }
    }

    /// Answers the next item of `source`, or `None` once `deadline` passes (never if
    /// `None`) or no item can ever come. The clock is read only if the spin ends.
    pub fn receive<T>(&self, source: &impl Source<T>, deadline: Option<Instant>) -> Option<T> {
        let rounds = self.rounds.get();
        for round in 0..rounds {
            match source.poll() {
                Ok(item) => {
                    self.rounds.set((rounds * 2).min(MAX_ROUNDS));
                    return Some(item);
                }
                Err(Empty::Forever) => return None,
                Err(Empty::Now) if round < rounds / 2 => std::hint::spin_loop(),
                Err(Empty::Now) => std::thread::yield_now(),
            }
        }
        self.rounds.set((rounds / 2).max(MIN_ROUNDS));
        // On a pool thread, the pool runs other agents meanwhile.
        crate::scheduler::blocking(|| source.sleep_until(deadline))
    }
}

/// The longest spin: 256 polls, about 20-50 µs.
const MAX_ROUNDS: u32 = 256;
/// The shortest spin, reached after a few waits that all had to sleep.
const MIN_ROUNDS: u32 = 4;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_reply_slot_wakes_its_requester_once_and_keeps_the_first_reply() {
        let slot = ReplySlot::new();
        let filler = Arc::clone(&slot);
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            filler.fill(1);
            filler.fill(2);
        });
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        assert_eq!(Waiter::new().receive(&*slot, Some(deadline)), Some(1));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "woken by the reply, not by the deadline"
        );
        late.join().unwrap();
        assert_eq!(slot.poll(), Err(Empty::Now), "the second reply was ignored");
    }

    #[test]
    fn an_empty_reply_slot_gives_up_at_its_deadline() {
        let slot = ReplySlot::<u8>::new();
        let started = Instant::now();
        let waited = Waiter::new().receive(&*slot, Some(started + Duration::from_millis(30)));
        assert_eq!(waited, None);
        assert!(
            started.elapsed() >= Duration::from_millis(30),
            "not before it"
        );
    }
}
