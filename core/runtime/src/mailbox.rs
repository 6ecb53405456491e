//! [`Mailbox`]: an agent's queue of work, counted so that deliveries can be held back.
//!
//! A transport that delivers from threads of its own (the `amqp` consumers) waits while
//! the agent has [`MAILBOX_LIMIT`] messages queued: a slow agent slows down its consumers,
//! which stop acknowledging, and the broker keeps the rest, instead of this process
//! growing without bound. A delivery made on an agent's own worker thread (an in-process
//! transport publishing on the sender's thread) never waits, since two agents sending to
//! each other would wait for each other forever.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::Duration,
};

use crate::{endpoint::Work, wait::Waiter};

/// How many messages an agent may have queued before deliveries from outside wait.
pub const MAILBOX_LIMIT: usize = 10_000;

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// A new mailbox: the sending side (cloneable) and the worker's receiving side.
pub(crate) fn mailbox() -> (Mailbox, MailboxReceiver) {
    let (queue, receiver) = mpsc::channel();
    let state = Arc::new(State {
        queued: AtomicUsize::new(0),
        open: AtomicBool::new(true),
    });
    (
        Mailbox {
            queue,
            state: state.clone(),
        },
        MailboxReceiver {
            receiver,
            state,
            waiter: Waiter::new(),
        },
    )
}

struct State {
    queued: AtomicUsize,
    /// False once the worker is gone: nobody will make room any more.
    open: AtomicBool,
}

/// The sending side of an agent's mailbox.
#[derive(Clone)]
pub(crate) struct Mailbox {
    queue: mpsc::Sender<Work>,
    state: Arc<State>,
}

impl Mailbox {
    /// Queues a message body, and the message if it was already parsed, after waiting
    /// for room when called from outside the space's worker threads.
    pub fn deliver(&self, body: &str, parsed: Option<agency_sdk::Message>) {
        if !ON_WORKER.get() {
            while self.state.queued.load(Ordering::Acquire) >= MAILBOX_LIMIT
                && self.state.open.load(Ordering::Acquire)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.state.queued.fetch_add(1, Ordering::AcqRel);
        let _ = self.queue.send(Work::Message(body.to_owned(), parsed));
    }

    /// Asks the worker to stop once it has handled what is queued.
    pub fn stop(&self) {
        let _ = self.queue.send(Work::Stop);
    }
}

/// The worker's side of an agent's mailbox.
pub(crate) struct MailboxReceiver {
    receiver: mpsc::Receiver<Work>,
    state: Arc<State>,
    waiter: Waiter,
}

impl MailboxReceiver {
    /// Marks the calling thread as a worker (its deliveries never wait) and answers the
    /// next work, waiting as long as it takes; `None` once every sender is gone.
    pub fn next(&self) -> Option<Work> {
        ON_WORKER.set(true);
        let work = self.waiter.receive(&self.receiver, Duration::MAX);
        if let Some(Work::Message(..)) = work {
            self.state.queued.fetch_sub(1, Ordering::AcqRel);
        }
        work
    }
}

impl Drop for MailboxReceiver {
    fn drop(&mut self) {
        self.state.open.store(false, Ordering::Release);
    }
}
