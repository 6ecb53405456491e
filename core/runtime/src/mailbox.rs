//! [`Mailbox`]: a queue of work or messages, counted so that deliveries can be held back.
//!
//! A transport that delivers from threads of its own (the `amqp` consumers) waits while
//! a mailbox holds [`MAILBOX_LIMIT`] items: a slow agent, or a console whose terminal
//! does not keep up, slows down its consumers, which stop acknowledging, and the broker
//! keeps the rest, instead of this process growing without bound. Agents' queues and
//! foreground agents' subscriptions are both mailboxes.
//!
//! A thread that drains a mailbox, directly or through another thread, must never wait
//! for room in one: it could be waiting for itself, or two agents sending to each other
//! would wait for each other forever. The agents' pool threads are such threads (an
//! in-process transport delivers on the sender's thread: a mailbox asks the scheduler
//! whether it is on one); others say so with [`never_wait_here`], as the console does.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use crate::{
    scheduler::{self, Task},
    wait::Waiter,
};

/// How many items a mailbox may hold before deliveries from outside wait.
pub const MAILBOX_LIMIT: usize = 10_000;

thread_local! {
    static NEVER_WAITS: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one whose deliveries never wait for room in a full
/// mailbox (an agent's queue, a foreground agent's subscription). Call it on a thread
/// that drains one, directly or through another thread: waiting there could be waiting
/// for itself. Deliveries from such a thread are not held back, so it must not be the
/// one flooding the space.
pub fn never_wait_here() {
    NEVER_WAITS.set(true);
}

/// A new mailbox: the sending side (cloneable) and the receiving side.
pub(crate) fn mailbox<T>() -> (Mailbox<T>, MailboxReceiver<T>) {
    mailbox_of(None)
}

/// A new mailbox whose every item schedules `task` (an agent's, see [`crate::scheduler`]).
pub(crate) fn mailbox_of<T>(task: Option<Arc<Task>>) -> (Mailbox<T>, MailboxReceiver<T>) {
    let (queue, receiver) = mpsc::channel();
    let state = Arc::new(State {
        queued: AtomicUsize::new(0),
        open: AtomicBool::new(true),
    });
    (
        Mailbox {
            queue,
            state: state.clone(),
            task,
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
    /// False once the receiving side is gone: nobody will make room any more.
    open: AtomicBool,
}

/// The sending side of a mailbox.
pub(crate) struct Mailbox<T> {
    queue: mpsc::Sender<T>,
    state: Arc<State>,
    /// The agent to schedule when an item arrives, if a pool thread reads this mailbox.
    task: Option<Arc<Task>>,
}

impl<T> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            state: self.state.clone(),
            task: self.task.clone(),
        }
    }
}

impl<T> Mailbox<T> {
    /// Queues an item, after waiting for room unless the calling thread never waits;
    /// false if the receiving side is gone.
    pub fn put(&self, item: T) -> bool {
        if !NEVER_WAITS.get() && !scheduler::on_pool_thread() {
            while self.state.queued.load(Ordering::Acquire) >= MAILBOX_LIMIT
                && self.state.open.load(Ordering::Acquire)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.put_now(item)
    }

    /// How many items are queued.
    pub fn len(&self) -> usize {
        self.state.queued.load(Ordering::Acquire)
    }

    /// Queues an item at once, full or not; false if the receiving side is gone.
    pub fn put_now(&self, item: T) -> bool {
        self.state.queued.fetch_add(1, Ordering::AcqRel);
        let sent = self.queue.send(item).is_ok();
        if let Some(task) = &self.task {
            task.notify();
        }
        sent
    }
}

/// The receiving side of a mailbox.
pub(crate) struct MailboxReceiver<T> {
    receiver: mpsc::Receiver<T>,
    state: Arc<State>,
    waiter: Waiter,
}

impl<T> MailboxReceiver<T> {
    /// The next item, waiting up to `timeout`; `None` after that, or once every sender is
    /// gone and the mailbox is empty.
    pub fn next(&self, timeout: Duration) -> Option<T> {
        let item = self
            .waiter
            .receive(&self.receiver, Instant::now().checked_add(timeout));
        if item.is_some() {
            self.state.queued.fetch_sub(1, Ordering::AcqRel);
        }
        item
    }

    /// Whether no item is queued (one being put counts as queued).
    pub fn is_empty(&self) -> bool {
        self.state.queued.load(Ordering::Acquire) == 0
    }

    /// The next item if there is one; `Disconnected` once every sender is gone and the
    /// mailbox is empty.
    pub fn try_next(&self) -> Result<T, mpsc::TryRecvError> {
        let item = self.receiver.try_recv();
        if item.is_ok() {
            self.state.queued.fetch_sub(1, Ordering::AcqRel);
        }
        item
    }
}

impl<T> Drop for MailboxReceiver<T> {
    fn drop(&mut self) {
        self.state.open.store(false, Ordering::Release);
    }
}
