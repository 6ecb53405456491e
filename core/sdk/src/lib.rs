//! # Agency SDK
//!
//! Write agents for [Agency](https://pypi.org/project/agency/)-style spaces in Rust and
//! ship them as plugins: build your crate as a `cdylib`, drop the library into the
//! `plugins/` folder of an `agency` host, and your agents join the space.
//!
//! ```
//! use agency_sdk::prelude::*;
//!
//! /// Does arithmetic.
//! pub struct Calculator;
//!
//! impl Agent for Calculator {
//!     fn new(_init: &Init) -> Result<Self, ActionError> {
//!         Ok(Calculator)
//!     }
//! }
//!
//! #[actions]
//! impl Calculator {
//!     /// Adds two numbers.
//!     ///
//!     /// - a: the first number
//!     /// - b: the second number
//!     ///
//!     /// Returns: their sum
//!     #[action]
//!     fn add(&mut self, a: f64, b: f64) -> f64 {
//!         a + b
//!     }
//!
//!     /// Divides `a` by `b`; fails on division by zero.
//!     #[action]
//!     fn divide(&mut self, a: f64, b: f64) -> Result<f64, ActionError> {
//!         if b == 0.0 {
//!             return Err(ActionError::of(agency_sdk::Kind::Value, "division by zero"));
//!         }
//!         Ok(a / b)
//!     }
//! }
//!
//! // Once per plugin library (not in doc tests or the host binary):
//! // agency_sdk::export_plugin!();
//! ```
//!
//! An agent whose messages may run in parallel (Python Agency's model) implements
//! [`ConcurrentAgent`] instead of [`Agent`], and its block says how many at once:
//! `#[actions(concurrency = 8)]`; its actions take `&self`.
//!
//! What the host does with these (validation, routing, permissions, `help`, replies) is
//! decided once, in the host's runtime; the SDK only carries calls across the boundary.
#![warn(missing_docs)]

pub mod agent;
mod args;
mod context;
mod ffi;
mod logging;
pub mod metrics;
pub mod transport;

pub use agency_protocol::{ActionError, Kind, Message};
pub use agency_sdk_macros::actions;
pub use agent::{agent_types, Agent, AgentType, ConcurrentAgent, Init};
pub use args::{json_type, schema};
pub use context::Context;
pub use logging::{hide_in_logs, quiet_log_target, Repeated};
pub use transport::{transport_types, TransportType};

/// The message schema every agent speaks, on every transport.
pub mod message {
    pub use agency_protocol::message::{
        Action, Message, Meta, ANNOUNCEMENT, BROADCAST, ERROR, RESPONSE,
    };
}

/// The version of this SDK, recorded in every plugin's manifest.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything an agent author needs, in one import.
pub mod prelude {
    pub use crate::{actions, ActionError, Agent, ConcurrentAgent, Context, Init, Message};
    pub use serde_json::{json, Value};
}

/// Exports this library's agent types and transports as an Agency plugin.
///
/// Call it once, at the root of a `cdylib` crate.
#[macro_export]
macro_rules! export_plugin {
    () => {
        /// The abi_stable library header the `agency` host looks for.
        #[doc(hidden)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static AGENCY_PLUGIN_HEADER: $crate::__private::abi_stable::library::LibHeader = {
            extern "C" fn load_root_module(
            ) -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(|| {
                    $crate::__private::plugin_module(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                    )
                })
            }
            // SAFETY: `plugin_module` returns the root module type named here.
            unsafe {
                $crate::__private::abi_stable::library::LibHeader::from_constructor::<
                    $crate::__private::PluginModRef,
                >(
                    load_root_module,
                    $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::agent::{create_agent, create_concurrent_agent, Actions, ConcurrentActions};
    pub use crate::args::ArgReader;
    pub use crate::ffi::plugin_module;
    pub use abi_stable;
    pub use agency_abi::PluginModRef;
    pub use agency_protocol::spec::{
        Access, ActionSpec, AgentTypeSpec, ArgSpec, TypeDoc, MAX_CONCURRENCY,
    };
    pub use inventory;
    pub use serde_json;
}

#[cfg(test)]
mod tests {
    #[test]
    fn exported_header_name_is_the_one_abi_stable_looks_up() {
        let expanded = stringify!(_1as_0lib_1header_0root_bmodule_bloader);
        assert_eq!(expanded, abi_stable::library::ROOT_MODULE_LOADER_NAME);
        let source = include_str!("lib.rs");
        assert!(source.contains(&format!("export_name = \"{expanded}\"")));
    }
}
