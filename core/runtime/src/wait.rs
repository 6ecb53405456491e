//! Waiting for the next message or a reply without paying for a sleep when it is close.

use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

/// Receives from `queue`, spinning briefly before sleeping: a reply or the next message
/// usually comes within microseconds, and waking a sleeping thread costs far more.
/// Answers `None` once `timeout` passes.
pub(crate) fn receive<T>(queue: &mpsc::Receiver<T>, timeout: Duration) -> Option<T> {
    let started = Instant::now();
    for round in 0..SPIN_ROUNDS {
        match queue.try_recv() {
            Ok(item) => return Some(item),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if round < SPIN_ROUNDS / 2 => std::hint::spin_loop(),
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
        }
    }
    queue
        .recv_timeout(timeout.saturating_sub(started.elapsed()))
        .ok()
}

/// How many times [`receive`] polls before it sleeps (about 20-50 µs).
const SPIN_ROUNDS: u32 = 256;
