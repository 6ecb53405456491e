//! Transports: the traits a transport implements and how a plugin registers one.

pub use agency_protocol::{
    boundary::{Inbound, TransportError, TransportSpace},
    message::{sender_of, BROADCAST, BROADCAST_KEY},
};

/// A registered transport: a name and how to open a space from a JSON configuration.
///
/// Submit one with [`crate::register_transport!`].
pub struct TransportType {
    /// The name users select it by (`--transport NAME`).
    pub name: &'static str,
    /// Opens a space; the configuration is a JSON object (possibly empty).
    pub open: fn(config: &str) -> Result<Box<dyn TransportSpace>, String>,
}

inventory::collect!(TransportType);

/// Every transport compiled into the current library or binary.
pub fn transport_types() -> impl Iterator<Item = &'static TransportType> {
    inventory::iter::<TransportType>.into_iter()
}

/// Registers a transport under a name, in a transport plugin (or a host binary).
///
/// ```
/// use std::sync::Arc;
/// use agency_sdk::transport::{Inbound, TransportError, TransportSpace};
///
/// /// A transport that loses everything.
/// struct Void;
///
/// impl TransportSpace for Void {
///     fn attach(&self, _id: &str, _sink: Arc<dyn Inbound>) -> Result<(), TransportError> {
///         Ok(())
///     }
///     fn detach(&self, _id: &str) {}
///     fn publish(&self, _to: &str, _body: &str) -> Result<(), TransportError> {
///         Err(TransportError::Failed("the void sends nothing".into()))
///     }
///     fn close(&self) {}
/// }
///
/// fn open(_config: &str) -> Result<Box<dyn TransportSpace>, String> {
///     Ok(Box::new(Void))
/// }
///
/// agency_sdk::register_transport!("void", open);
///
/// assert!(agency_sdk::transport_types().any(|t| t.name == "void"));
/// ```
#[macro_export]
macro_rules! register_transport {
    ($name:expr, $open:path) => {
        $crate::__private::inventory::submit! {
            $crate::TransportType { name: $name, open: $open }
        }
    };
}
