//! Waiting for the next message or a reply without paying for a sleep when it is close.

use std::{cell::Cell, sync::mpsc, time::Instant};

/// Receives from a queue, spinning briefly before sleeping: a reply or the next message
/// usually comes within microseconds, and waking a sleeping thread costs far more.
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

    /// Answers the next item of `queue`, or `None` once `deadline` passes (never if
    /// `None`) or every sender is gone. The clock is read only if the spin ends.
    pub fn receive<T>(&self, queue: &mpsc::Receiver<T>, deadline: Option<Instant>) -> Option<T> {
        let rounds = self.rounds.get();
        for round in 0..rounds {
            match queue.try_recv() {
                Ok(item) => {
                    self.rounds.set((rounds * 2).min(MAX_ROUNDS));
                    return Some(item);
                }
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) if round < rounds / 2 => std::hint::spin_loop(),
                Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        self.rounds.set((rounds / 2).max(MIN_ROUNDS));
        // On a pool thread, the pool runs other agents meanwhile.
        crate::scheduler::blocking(|| match deadline {
            Some(deadline) => queue
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok(),
            None => queue.recv().ok(),
        })
    }
}

/// The longest spin: 256 polls, about 20-50 µs.
const MAX_ROUNDS: u32 = 256;
/// The shortest spin, reached after a few waits that all had to sleep.
const MIN_ROUNDS: u32 = 4;
