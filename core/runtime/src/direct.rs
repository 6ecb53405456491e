//! Direct hand-off: the agent a request wakes takes its turn on the requester's thread.
//!
//! A request to an idle agent of this process would otherwise cross threads twice: the
//! callee is queued and taken by another pool thread, and its reply goes back to the
//! thread where the requester waits. Each crossing costs a wake-up or a spin, and moves
//! the message's cache lines between cores. The requester does nothing but wait
//! meanwhile, so its thread runs the callee's turn itself, then finds the reply
//! already there: as Go's scheduler runs the goroutine a channel send woke on the
//! sender's processor (`runnext`).
//!
//! The price: the requester cannot give up before the callee's turn ends, so its
//! timeout cannot fire meanwhile. The hand-off is therefore taken only for one message,
//! for a request with at least [`MIN_LEFT`] to wait, and for an action the callee
//! handled in under [`QUICK`] before and never in [`SLOW`] or more since its last
//! [`FORGET_AFTER`] requests. A timeout can thus come late only when an action that
//! never took [`SLOW`] suddenly takes longer than the whole timeout; the action is not
//! handed off again until that many quicker requests passed. Turns nest (the callee
//! may request in its turn) up to [`MAX_DEPTH`].
//!
//! This module holds the policy; the [`crate::scheduler`] keeps the woken agent and runs
//! its turn (`keeping_woken`, `Next`).

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// A request handled in less time than this makes its action quick.
pub const QUICK: Duration = Duration::from_millis(1);
/// A request handled in this time or more makes its action slow: a pause of the
/// thread alone (another process ran) rarely lasts as long.
pub const SLOW: Duration = Duration::from_millis(20);
/// After this many requests in a row under [`SLOW`], an agent's slow actions are
/// forgotten.
pub const FORGET_AFTER: u32 = 4096;
/// A request is handed off only if its requester may wait this long or longer.
pub const MIN_LEFT: Duration = Duration::from_secs(1);
/// How many turns may be nested in one another on one thread by hand-offs.
pub const MAX_DEPTH: usize = 4;

/// Whether a request for `action` that may wait `timeout` is handed off to an agent
/// with these `speeds`.
pub(crate) fn may_hand_off(speeds: &Speeds, action: &str, timeout: Duration) -> bool {
    timeout >= MIN_LEFT && speeds.quick(action)
}

/// Which actions an agent handled quickly, and which slowly: two sets of bits, two per
/// action name (a Bloom filter; a name taken for another's can only make an action
/// look slow, or quick only when it has never run). Written by the agent's own turns
/// only, one at a time. 12 bytes: every agent has one.
#[derive(Default)]
pub(crate) struct Speeds {
    quick: AtomicU32,
    slow: AtomicU32,
    /// Requests handled in under [`SLOW`] since the last slow one.
    unslow: AtomicU32,
}

impl Speeds {
    /// Notes that handling a request for `action` took `took`.
    pub fn record(&self, action: &str, took: Duration) {
        let bits = bits_of(action);
        if took >= SLOW {
            self.slow.fetch_or(bits, Ordering::Relaxed);
            self.unslow.store(0, Ordering::Relaxed);
            return;
        }
        if took < QUICK && self.quick.load(Ordering::Relaxed) & bits != bits {
            self.quick.fetch_or(bits, Ordering::Relaxed);
        }
        let unslow = self.unslow.load(Ordering::Relaxed) + 1;
        if unslow < FORGET_AFTER {
            self.unslow.store(unslow, Ordering::Relaxed);
        } else {
            self.slow.store(0, Ordering::Relaxed);
            self.unslow.store(0, Ordering::Relaxed);
        }
    }

    /// Whether `action` was handled quickly before, and not slowly since the slow
    /// actions were last forgotten.
    pub fn quick(&self, action: &str) -> bool {
        let bits = bits_of(action);
        self.quick.load(Ordering::Relaxed) & bits == bits
            && self.slow.load(Ordering::Relaxed) & bits == 0
    }
}

/// Two bits of 32 for a name (FNV-1a).
fn bits_of(name: &str) -> u32 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (1 << (hash & 31)) | (1 << ((hash >> 5) & 31))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Duration = Duration::from_micros(3);

    #[test]
    fn an_action_is_quick_once_handled_quickly_until_slow_and_again_after_many_requests() {
        let speeds = Speeds::default();
        assert!(!speeds.quick("ping"), "never handled");
        speeds.record("ping", QUICK);
        assert!(!speeds.quick("ping"), "handled, not quickly");
        speeds.record("ping", FAST);
        assert!(speeds.quick("ping"));
        assert!(!speeds.quick("sleep"), "another action, never handled");
        speeds.record("ping", SLOW - FAST);
        assert!(speeds.quick("ping"), "a pause under SLOW is no slow action");
        speeds.record("ping", SLOW);
        assert!(!speeds.quick("ping"), "slow once");
        for _ in 1..FORGET_AFTER {
            speeds.record("pong", FAST);
        }
        assert!(
            !speeds.quick("ping"),
            "slow until FORGET_AFTER requests passed"
        );
        speeds.record("pong", FAST);
        assert!(speeds.quick("ping"), "forgotten");
    }
}
