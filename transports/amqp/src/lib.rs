//! The `amqp` transport: one space across every process attached to a RabbitMQ exchange.
//!
//! ## Wire format (shared with Python Agency)
//! A durable topic exchange (`agency` unless configured); each agent consumes two queues,
//! `<id>` bound with routing key `<id>` and `<id>-broadcast` bound with `__broadcast__`;
//! messages are published with routing key = recipient id (or `__broadcast__` for `*`),
//! the message JSON as UTF-8 text, `content_type: text/plain`, `content_encoding: utf-8`,
//! `delivery_mode: 2`. We add a `message_id` property, which Python ignores.
//!
//! With `queue_per = "host"` the agents of a process receive through one queue of the
//! process instead, bound with each agent's id and once with `__broadcast__`: the routing
//! keys, and so the wire, are the same (`host_queue`).
//!
//! ## Delivery guarantee
//! Between Rust agents: **each message is handed to its recipient exactly once, in the
//! order each sender sent it**, across lost connections and broker-side closes, within
//! these bounds:
//! - the sender keeps at most `outbox_capacity` (100,000) unconfirmed messages; beyond
//!   that, `send` fails with an error saying so (it waits up to 30 s while connected);
//! - the sender retries until the broker confirms, but gives up at `close` after 10 s;
//! - the recipient's queues outlive its connection for `queue_expires_secs` (600 s):
//!   messages to an agent whose process is away that long are lost with its queues;
//! - copies (a message published again after a lost confirm, or delivered again after a
//!   lost ack) are recognised by `message_id` and body among the last `dedup_window` (65,536)
//!   messages of that agent;
//! - a message is acknowledged once the agent's mailbox holds it: a crash of the receiving
//!   process loses what its mailboxes held;
//! - queues are durable and messages persistent, so a broker restart keeps them.
//!
//! Messages from Python agents carry no `message_id` and are delivered at least once.
//!
//! ## On a cluster
//! With several brokers (`urls`), a space connects to one at random and moves to the next
//! when it loses it (`session`). Classic queues live on one node: while it is down, their
//! agents are out of the space (messages to them come back as dead letters) and their
//! host retries until it is back. Quorum queues (`queue_type = "quorum"`) outlive a
//! minority of nodes, with the guarantee above, except for order in two cases: the
//! deliveries a consumer held (up to `prefetch`) when its own node died are given back by
//! the broker after newer ones, and a publish the broker refused while the queue's leader
//! was being elected (it is published again, `publisher`) may come after later ones the
//! broker took meanwhile. Quorum queues ignore `exclusive` consumers, so an
//! exclusive queue of the connection, `<id>-owner`, holds each agent's id.
//!
//! ## Modules
//! - [`config`]: the `[transports.amqp]` keys and the `AMQP_*` environment.
//! - `session`: the connection, its supervision and reconnection.
//! - `consumer`: an agent's queues, consumers, and de-duplication.
//! - `acks`: acknowledging what was handed over, several deliveries per ack.
//! - `host_queue`: one queue for all the agents of a process (`queue_per = "host"`).
//! - `publisher`: the outbox and the confirm-mode publishing task.
//! - `space`: the [`TransportSpace`] the host sees.
//! - `counts`, `stats`: what it counts about itself, and its reports to the host's
//!   metrics.
//! - `watch`: a read-only space (`watch = true`): copies of all traffic, from the
//!   broker's firehose, for `agency watch`.

mod acks;
pub mod config;
mod consumer;
mod counts;
mod host_queue;
mod link;
mod publisher;
mod session;
mod space;
mod stats;
mod watch;

use agency_sdk::transport::TransportSpace;

agency_sdk::register_transport!("amqp", open);
agency_sdk::export_plugin!();

/// Opens a space on the broker the configuration (or the environment) names.
fn open(config: &str) -> Result<Box<dyn TransportSpace>, String> {
    let config = config::Config::from_json(config)?;
    for broker in &config.brokers {
        agency_sdk::hide_in_logs(&broker.authority.userinfo.password);
    }
    // lapin warns of every message the broker returns: to us, a dead letter, which its
    // sender is told of (see `publisher`).
    agency_sdk::quiet_log_target("lapin::returned_messages", tracing::Level::ERROR);
    if config.watch {
        return Ok(Box::new(watch::WatchSpace::open(config)?));
    }
    Ok(Box::new(space::AmqpSpace::open(config)?))
}
