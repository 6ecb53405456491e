//! The stable-ABI surface between the `agency` host and its plugins.
//!
//! This crate is the *interface crate* of the abi_stable split: it holds nothing but the
//! types that cross a dynamic-library boundary. It is deliberately tiny and data-shaped:
//! every call carries an operation name and a JSON text, so features grow through JSON
//! and this crate stays at 1.x. Plugin authors never use it directly; the SDK wraps it.
//!
//! - [`PluginModRef`] is the root module every plugin library exports.
//! - [`AgentObj`], [`TransportObj`], [`SinkObj`] and [`HostObj`] are the object-safe
//!   traits behind the boxes that cross the boundary.
//! - [`guarded`] turns a panic into an error value; every implementation of these traits
//!   must use it, since a panic reaching an abi_stable shim aborts the process.
#![allow(non_local_definitions)]
#![warn(missing_docs)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RArc, RBox, RResult, RStr, RString},
    StableAbi,
};

/// The ABI generation this crate describes; the host accepts plugins of the same value.
pub const ABI_VERSION: u32 = 1;

/// The result of every data-shaped call: JSON text on success, a one-line error otherwise.
pub type CallResult = RResult<RString, RString>;

/// An agent instance living inside a plugin.
///
/// The host drives it with operations such as `action` or `after_add`, each with a JSON
/// payload (see `agency_protocol::ffi`, where each call is encoded). An unknown
/// operation returns an `UnsupportedOperation` error, so old plugins keep working with
/// newer hosts.
#[sabi_trait]
pub trait AgentObj: Send {
    /// Runs one operation on the agent.
    fn call(&mut self, op: RStr<'_>, payload: RStr<'_>) -> CallResult;
}

/// Services the host offers to an agent (sending, requests, permission prompts, logs).
#[sabi_trait]
pub trait HostObj: Send + Sync {
    /// Runs one host operation on behalf of the agent the object was created for.
    fn call(&self, op: RStr<'_>, payload: RStr<'_>) -> CallResult;
}

/// Where a transport delivers the messages addressed to one attached agent.
#[sabi_trait]
pub trait SinkObj: Send + Sync {
    /// Hands over one message body (UTF-8 JSON text). Never blocks for long.
    fn deliver(&self, body: RStr<'_>);
}

/// An open space on a transport: moves message bodies between attached agents.
#[sabi_trait]
pub trait TransportObj: Send + Sync {
    /// Attaches an agent id; its messages go to `sink`. Refuses an id already attached.
    fn attach(&self, agent_id: RStr<'_>, sink: SinkBox) -> RResult<(), RString>;
    /// Detaches an agent id; unknown ids are ignored.
    fn detach(&self, agent_id: RStr<'_>);
    /// Publishes a body to one agent id, or to every attached agent when `to` is `*`.
    fn publish(&self, to: RStr<'_>, body: RStr<'_>) -> RResult<(), RString>;
    /// Releases the space; later calls fail.
    fn close(&self);
}

/// An owned agent instance.
pub type AgentBox = AgentObj_TO<'static, RBox<()>>;
/// A shared handle to host services.
pub type HostBox = HostObj_TO<'static, RArc<()>>;
/// A shared inbound sink.
pub type SinkBox = SinkObj_TO<'static, RArc<()>>;
/// An owned open transport space.
pub type TransportBox = TransportObj_TO<'static, RBox<()>>;

/// The root module exported by every plugin library.
///
/// Fields may only ever be appended (after the last prefix field), never changed.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Initialises the plugin (log forwarding through `host`, JSON `config` with the host's
    /// log level) and returns its manifest: versions, transports and agent types, as JSON.
    pub init: extern "C" fn(host: HostBox, config: RStr<'_>) -> CallResult,
    /// Creates an agent of a type the manifest lists, from JSON `{"id", "args"}`.
    pub new_agent: extern "C" fn(
        type_name: RStr<'_>,
        init: RStr<'_>,
        host: HostBox,
    ) -> RResult<AgentBox, RString>,
    /// Opens a space on a transport the manifest lists, from a JSON configuration.
    #[sabi(last_prefix_field)]
    pub open_transport:
        extern "C" fn(name: RStr<'_>, config: RStr<'_>) -> RResult<TransportBox, RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "agency_plugin";
    const NAME: &'static str = "agency_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Runs `f`, turning a panic into an `Err` with the panic's message.
///
/// Every function or trait method that crosses the boundary runs its body through this.
pub fn guarded<T>(f: impl FnOnce() -> RResult<T, RString>) -> RResult<T, RString> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => RResult::RErr(format!("Panic: {}", panic_message(&*panic)).into()),
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panicked with a non-text payload".to_owned()
    }
}
