//! The `local` transport: every agent of the space lives in this process.
//!
//! A message is handed to the recipient's sink on the sender's thread, with no copy and
//! no serialisation beyond the JSON text itself; a broadcast goes to every attached agent.
//! A message to an id nobody attached is returned to its sender's sink, on the same thread
//! (the runtime answers the sender with an `UndeliverableError`).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
};

use agency_sdk::transport::{sender_of, Inbound, TransportError, TransportSpace, BROADCAST};

agency_sdk::register_transport!("local", open);
agency_sdk::export_plugin!();

/// Opens a local space. It takes no options (the configuration must be an object), and
/// refuses `watch = true` (see the amqp transport's `watch`).
fn open(config: &str) -> Result<Box<dyn TransportSpace>, String> {
    let config: serde_json::Value = serde_json::from_str(if config.trim().is_empty() {
        "{}"
    } else {
        config
    })
    .map_err(|e| format!("local transport configuration is not JSON: {e}"))?;
    if !config.is_object() && !config.is_null() {
        return Err("local transport configuration must be a JSON object".into());
    }
    if config["watch"] == true {
        return Err(
            "a local space lives inside one process and cannot be watched from \
                    another: watch it in its host, with `agency run --watch` or `/watch` at \
                    its console"
                .into(),
        );
    }
    Ok(Box::new(LocalSpace::default()))
}

/// What a closed space answers.
fn closed() -> TransportError {
    TransportError::Failed("the local space is closed".into())
}

#[derive(Default)]
struct LocalSpace {
    agents: RwLock<HashMap<String, Arc<dyn Inbound>>>,
    closed: AtomicBool,
}

impl TransportSpace for LocalSpace {
    fn attach(&self, agent_id: &str, sink: Arc<dyn Inbound>) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let mut agents = self.agents.write().unwrap();
        if agents.contains_key(agent_id) {
            return Err(TransportError::DuplicateId {
                id: agent_id.to_owned(),
                detail: None,
            });
        }
        agents.insert(agent_id.to_owned(), sink);
        Ok(())
    }

    fn detach(&self, agent_id: &str) {
        self.agents.write().unwrap().remove(agent_id);
    }

    fn publish(&self, to: &str, body: &str) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        // Sinks are taken out of the map before delivering: a delivery may wait for room
        // in a full mailbox, and must not hold the lock that `attach` needs meanwhile.
        if to == BROADCAST {
            let sinks: Vec<Arc<dyn Inbound>> =
                self.agents.read().unwrap().values().cloned().collect();
            sinks.iter().for_each(|sink| sink.deliver(body));
        } else {
            let sink = self.agents.read().unwrap().get(to).cloned();
            let sink = sink.or_else(|| {
                let sender = sender_of(body)?;
                self.agents.read().unwrap().get(&sender).cloned()
            });
            if let Some(sink) = sink {
                sink.deliver(body);
            }
        }
        Ok(())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.agents.write().unwrap().clear();
    }
}
