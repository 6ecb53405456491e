//! Registering transports: what a transport plugin provides.

use crate::boundary::TransportSpace;

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

/// Registers a transport under a name.
///
/// ```ignore
/// agency_sdk::register_transport!("local", open_local_space);
/// ```
#[macro_export]
macro_rules! register_transport {
    ($name:expr, $open:path) => {
        $crate::__private::inventory::submit! {
            $crate::TransportType { name: $name, open: $open }
        }
    };
}
