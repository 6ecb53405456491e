//! Sending: the outbox and the task that publishes it with confirms.
//!
//! `publish` puts a message into a bounded outbox and returns. One task per space takes
//! messages in order and publishes them on a confirm-mode channel, pipelined: up to
//! `max_unconfirmed` wait for the broker's confirm at once, and whatever the outbox holds
//! is handed to lapin as one batch before its writes are waited for ([`publish_all`]). A
//! message leaves the
//! transport's care only when the broker confirms it. When the connection drops, the
//! unconfirmed messages go back to the front of the line and are published again, in
//! order, on the next connection; the broker may have routed some of them already, so
//! each carries a `message_id` that receivers use to drop the copy.
//!
//! Messages to one agent are published `mandatory`: one no queue takes (no agent holds the
//! id) comes back with its confirm and is returned to its sender in this process.
//!
//! **A refusal** (a negative confirm) is answered with a new channel: the refused message
//! and everything after it are published again, in order, on a channel opened after a
//! pause (0.1 s, doubling to 5 s while refusals go on, back to 0.1 s at the next confirm).
//! Not on the same channel: RabbitMQ (3.10) refuses a publish to a quorum queue whose
//! leader is being elected, and a channel whose first publish to that queue was such a
//! one went on refusing every later publish to it (`tests/cluster.rs` saw 150,000
//! refusals in 3 minutes), while a new channel's were taken within a second. A queue that
//! keeps refusing (a `reject-publish` overflow policy at its limit) holds back the
//! space's later messages, as a lost connection does, until it takes them.
//!
//! lapin's `basic_publish` (and channel set-up) can wait forever once the broker closes
//! the connection under it (lapin issue 409): every such step is abandoned as soon as
//! the supervisor reports the connection lost ([`unless_lost`]).

use std::{
    collections::VecDeque,
    future::{poll_fn, Future},
    sync::{atomic::Ordering, Arc},
    task::Poll,
    time::Duration,
};

use agency_sdk::transport::BROADCAST_KEY;
use futures_util::future::maybe_done;
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    BasicProperties, Channel, Confirmation, Connection, PublisherConfirm,
};
use tokio::sync::{mpsc, watch};

use crate::{counts::Counts, link::Shared};

/// The pause before publishing again on a new channel after the first refusal of a spell.
const FIRST_REFUSAL_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between refusals.
const LONGEST_REFUSAL_PAUSE: Duration = Duration::from_secs(5);

/// A message waiting for the broker.
pub struct Outgoing {
    /// The recipient id, or the broadcast key.
    pub routing_key: String,
    /// The message JSON text.
    pub body: String,
    /// Unique per published message, kept when it is published again.
    pub message_id: String,
}

/// Publishes everything the outbox receives, across reconnections, until the space ends.
pub async fn run(shared: Arc<Shared>, mut outbox: mpsc::UnboundedReceiver<Outgoing>) {
    let mut connections = shared.connection.subscribe();
    let mut waiting = VecDeque::new();
    let mut pause = FIRST_REFUSAL_PAUSE;
    loop {
        let current = connections.borrow_and_update().clone();
        let channel = match current {
            Some(connection) => unless_lost(&mut connections, confirm_channel(&connection))
                .await
                .ok(),
            None => None,
        };
        let Some(channel) = channel else {
            if connections.changed().await.is_err() {
                return;
            }
            continue;
        };
        let pumped = pump(
            &shared,
            &channel,
            &mut outbox,
            &mut waiting,
            &mut connections,
            &mut pause,
        )
        .await;
        match pumped {
            Ok(()) => return,
            Err(Paused::Refused) => {
                let to = waiting.front().map_or("", |m| m.routing_key.as_str());
                tracing::warn!(
                    %to, unconfirmed = waiting.len(), ?pause,
                    "the broker refused a message; publishing it and the ones after it again on a new channel"
                );
                tokio::spawn(async move { channel.close(200, "refused".into()).await });
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_REFUSAL_PAUSE);
            }
            Err(Paused::Failed(error)) => {
                tracing::debug!(%error, unconfirmed = waiting.len(), "publishing paused")
            }
        }
    }
}

async fn confirm_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Why publishing on a channel stopped.
enum Paused {
    /// The broker refused a message: it goes again on a new channel, first.
    Refused,
    /// The channel or its connection failed.
    Failed(String),
}

/// What woke the publishing loop.
enum Event {
    /// The front message's confirm, or why it failed.
    Confirmed(Result<Verdict, String>),
    Next(Option<Outgoing>),
    ConnectionChanged,
}

/// What a confirm from the broker says.
#[derive(Debug)]
struct Verdict {
    /// The broker refused the message (a nack): it is published again.
    refused: bool,
    /// The body of a message no queue took (no agent holds its recipient's id), which
    /// the broker returned.
    returned: Option<String>,
}

impl Verdict {
    fn of(confirmation: Confirmation) -> Self {
        let refused = confirmation.is_nack();
        let returned = confirmation
            .take_message()
            .map(|message| String::from_utf8_lossy(&message.delivery.data).into_owned());
        Self { refused, returned }
    }
}

/// Publishes on one channel until it fails or the broker refuses a message (unconfirmed
/// messages end up in `waiting`, in order), or until the outbox is closed and everything
/// in it confirmed. A confirm sets `pause` back to the first one.
async fn pump(
    shared: &Shared,
    channel: &Channel,
    outbox: &mut mpsc::UnboundedReceiver<Outgoing>,
    waiting: &mut VecDeque<Outgoing>,
    connections: &mut watch::Receiver<Option<Arc<Connection>>>,
    pause: &mut Duration,
) -> Result<(), Paused> {
    let limit = shared.config.max_unconfirmed;
    let mut in_flight: VecDeque<(Outgoing, PublisherConfirm)> = VecDeque::new();
    let mut open = true;
    let mut refused = None;
    let paused = loop {
        let room = limit.saturating_sub(in_flight.len()).min(waiting.len());
        if room > 0 {
            let batch: Vec<Outgoing> = waiting.drain(..room).collect();
            let publishing = async { Ok(publish_all(shared, channel, &batch).await) };
            let written = unless_lost(connections, publishing).await;
            let mut unsent = VecDeque::new();
            let mut failure = None;
            match written {
                Ok(confirms) => {
                    for (message, confirm) in batch.into_iter().zip(confirms) {
                        match confirm {
                            Ok(confirm) if failure.is_none() => {
                                in_flight.push_back((message, confirm))
                            }
                            Ok(_) => unsent.push_back(message),
                            Err(error) => {
                                failure.get_or_insert_with(|| error.to_string());
                                unsent.push_back(message);
                            }
                        }
                    }
                }
                Err(error) => {
                    failure = Some(error);
                    unsent.extend(batch);
                }
            }
            unsent.append(waiting);
            *waiting = unsent;
            match failure {
                Some(error) => break Paused::Failed(error),
                None => continue,
            }
        }
        if !open && in_flight.is_empty() && waiting.is_empty() {
            return Ok(());
        }
        let event = tokio::select! {
            biased;
            _ = connections.changed() => Event::ConnectionChanged,
            confirmation = async { (&mut in_flight.front_mut().unwrap().1).await },
                if !in_flight.is_empty() => Event::Confirmed(
                    confirmation.map(Verdict::of).map_err(|e| e.to_string())),
            next = outbox.recv(), if open && in_flight.len() < limit => Event::Next(next),
        };
        match event {
            Event::ConnectionChanged => break Paused::Failed("connection lost".into()),
            Event::Next(None) => open = false,
            Event::Next(Some(message)) => {
                // With what else the outbox holds, up to the limit: published at once.
                waiting.push_back(message);
                while in_flight.len() + waiting.len() < limit {
                    match outbox.try_recv() {
                        Ok(message) => waiting.push_back(message),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
            }
            Event::Confirmed(Ok(verdict)) => {
                let (message, _) = in_flight.pop_front().unwrap();
                // lapin hands a returned message over with the next confirm it resolves,
                // not necessarily its own: what goes back is the body the broker returned.
                if let Some(body) = verdict.returned {
                    Counts::one(&shared.counts.returned);
                    shared.return_to_sender(body).await;
                }
                if verdict.refused {
                    Counts::one(&shared.counts.publishes_refused);
                    refused = Some(message);
                    break Paused::Refused;
                }
                *pause = FIRST_REFUSAL_PAUSE;
                Counts::one(&shared.counts.confirmed);
                shared.unconfirmed.fetch_sub(1, Ordering::AcqRel);
            }
            Event::Confirmed(Err(error)) => break Paused::Failed(error),
        }
    };
    let unconfirmed = refused
        .into_iter()
        .chain(in_flight.into_iter().map(|(m, _)| m));
    for message in unconfirmed.rev() {
        waiting.push_front(message);
    }
    Err(paused)
}

/// Runs one broker step, unless the supervisor reports the connection lost first.
async fn unless_lost<T>(
    connections: &mut watch::Receiver<Option<Arc<Connection>>>,
    step: impl std::future::Future<Output = lapin::Result<T>>,
) -> Result<T, String> {
    tokio::select! {
        biased;
        _ = connections.changed() => Err("connection lost".into()),
        result = step => result.map_err(|e| e.to_string()),
    }
}

/// Publishes `batch`, in order, without waiting for one to be written before handing over
/// the next: the first poll of a publish hands its frames (and its delivery tag) to
/// lapin, in the order polled, so the publishes are first polled here one after the
/// other, then waited for together. (Awaiting each in turn costs a wake-up of lapin's
/// I/O loop and back per message.) Answers each one's confirm, or why it failed.
async fn publish_all(
    shared: &Shared,
    channel: &Channel,
    batch: &[Outgoing],
) -> Vec<lapin::Result<PublisherConfirm>> {
    let mut writes: Vec<_> = batch
        .iter()
        .map(|message| Box::pin(maybe_done(publish(shared, channel, message))))
        .collect();
    poll_fn(|cx| {
        let mut done = true;
        for write in &mut writes {
            done &= write.as_mut().poll(cx).is_ready();
        }
        if done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    writes
        .iter_mut()
        .map(|write| write.as_mut().take_output().expect("every publish is done"))
        .collect()
}

async fn publish(
    shared: &Shared,
    channel: &Channel,
    message: &Outgoing,
) -> lapin::Result<PublisherConfirm> {
    // The properties Python Agency publishes with, plus our id for de-duplication.
    let properties = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_message_id(message.message_id.as_str().into());
    // Mandatory: the broker returns a message no queue takes (an id no agent holds). A
    // broadcast nobody hears is no error.
    let options = BasicPublishOptions {
        mandatory: message.routing_key != BROADCAST_KEY,
        ..BasicPublishOptions::default()
    };
    channel
        .basic_publish(
            shared.config.exchange.as_str().into(),
            message.routing_key.as_str().into(),
            options,
            message.body.as_bytes(),
            properties,
        )
        .await
}
