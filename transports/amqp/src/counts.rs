//! [`Counts`]: the events of one space the transport counts as they happen (relaxed
//! atomic adds on the paths where they happen), for its reports (`stats`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Events of one space, counted as they happen.
#[derive(Debug, Default)]
pub struct Counts {
    /// Connections lost and made again (to the same broker or another).
    pub reconnects: AtomicU64,
    /// Messages the broker confirmed.
    pub confirmed: AtomicU64,
    /// Publishes the broker refused (a negative confirm): each went again, on a new channel.
    pub publishes_refused: AtomicU64,
    /// Messages the broker returned: no queue was bound to their recipient.
    pub returned: AtomicU64,
    /// Deliveries dropped as copies of one already delivered.
    pub copies_dropped: AtomicU64,
    /// Deliveries refused for their size or encoding.
    pub refused: AtomicU64,
}

impl Counts {
    /// Adds one to `count`.
    pub fn one(count: &AtomicU64) {
        count.fetch_add(1, Ordering::Relaxed);
    }
}
