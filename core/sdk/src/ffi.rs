//! Conversions between the [`crate::boundary`] traits and the stable-ABI boxes of
//! `agency-abi`, in both directions, plus the functions a plugin's root module exports.
//!
//! Both sides use this module: a plugin exports its agents and transports and imports the
//! host's services; the host imports agents and transports and exports its services.
//! Every exported method body runs under [`guarded`], so a panic becomes an error value.

use std::sync::{Arc, OnceLock};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RArc, RResult, RStr, RString},
};
use agency_abi::{
    guarded, AgentBox, AgentObj, AgentObj_TO, CallResult, HostBox, HostObj, HostObj_TO, PluginMod,
    PluginModRef, SinkBox, SinkObj, SinkObj_TO, TransportBox, TransportObj, TransportObj_TO,
    ABI_VERSION,
};

use crate::{
    agent::{agent_types, Init},
    boundary::{AgentCore, HostLink, Inbound, TransportSpace},
    protocol::{Manifest, PluginConfig},
    transport::transport_types,
};

fn to_call_result(result: Result<String, String>) -> CallResult {
    result.map(RString::from).map_err(RString::from).into()
}

fn from_call_result(result: CallResult) -> Result<String, String> {
    result
        .into_result()
        .map(RString::into_string)
        .map_err(RString::into_string)
}

// ---- host services ----------------------------------------------------------------------

/// Wraps host services for a plugin.
pub fn export_host(host: Arc<dyn HostLink>) -> HostBox {
    HostObj_TO::from_ptr(RArc::new(ExportedHost(host)), TD_Opaque)
}

struct ExportedHost(Arc<dyn HostLink>);

impl HostObj for ExportedHost {
    fn call(&self, op: RStr<'_>, payload: RStr<'_>) -> CallResult {
        guarded(|| to_call_result(self.0.call(op.as_str(), payload.as_str())))
    }
}

/// Host services as seen from inside a plugin.
pub struct ImportedHost(pub HostBox);

impl HostLink for ImportedHost {
    fn call(&self, op: &str, payload: &str) -> Result<String, String> {
        from_call_result(self.0.call(op.into(), payload.into()))
    }
}

// ---- agents -----------------------------------------------------------------------------

struct ExportedAgent(Box<dyn AgentCore>);

impl AgentObj for ExportedAgent {
    fn call(&mut self, op: RStr<'_>, payload: RStr<'_>) -> CallResult {
        guarded(|| to_call_result(self.0.call(op.as_str(), payload.as_str())))
    }
}

/// An agent living in a plugin, as the host drives it.
pub struct ImportedAgent(pub AgentBox);

impl AgentCore for ImportedAgent {
    fn call(&mut self, op: &str, payload: &str) -> Result<String, String> {
        from_call_result(self.0.call(op.into(), payload.into()))
    }
}

// ---- transports and sinks ---------------------------------------------------------------

struct ExportedTransport(Box<dyn TransportSpace>);

impl TransportObj for ExportedTransport {
    fn attach(&self, agent_id: RStr<'_>, sink: SinkBox) -> RResult<(), RString> {
        guarded(|| {
            self.0
                .attach(agent_id.as_str(), Arc::new(ImportedSink(sink)))
                .map_err(RString::from)
                .into()
        })
    }

    fn detach(&self, agent_id: RStr<'_>) {
        let _ = guarded(|| {
            self.0.detach(agent_id.as_str());
            RResult::ROk(())
        });
    }

    fn publish(&self, to: RStr<'_>, body: RStr<'_>) -> RResult<(), RString> {
        guarded(|| {
            self.0
                .publish(to.as_str(), body.as_str())
                .map_err(RString::from)
                .into()
        })
    }

    fn close(&self) {
        let _ = guarded(|| {
            self.0.close();
            RResult::ROk(())
        });
    }
}

/// A transport living in a plugin, as the host uses it.
pub struct ImportedTransport(pub TransportBox);

impl TransportSpace for ImportedTransport {
    fn attach(&self, agent_id: &str, sink: Arc<dyn Inbound>) -> Result<(), String> {
        let sink = SinkObj_TO::from_ptr(RArc::new(ExportedSink(sink)), TD_Opaque);
        self.0
            .attach(agent_id.into(), sink)
            .into_result()
            .map_err(RString::into_string)
    }

    fn detach(&self, agent_id: &str) {
        self.0.detach(agent_id.into());
    }

    fn publish(&self, to: &str, body: &str) -> Result<(), String> {
        self.0
            .publish(to.into(), body.into())
            .into_result()
            .map_err(RString::into_string)
    }

    fn close(&self) {
        self.0.close();
    }
}

struct ExportedSink(Arc<dyn Inbound>);

impl SinkObj for ExportedSink {
    fn deliver(&self, body: RStr<'_>) {
        let _ = guarded(|| {
            self.0.deliver(body.as_str());
            RResult::ROk(())
        });
    }
}

struct ImportedSink(SinkBox);

impl Inbound for ImportedSink {
    fn deliver(&self, body: &str) {
        self.0.deliver(body.into());
    }
}

// ---- the root module a plugin exports ---------------------------------------------------

/// The root module of a plugin built with this SDK, for the plugin crate `name` at
/// `version`; [`crate::export_plugin`] exports it.
pub fn plugin_module(name: &'static str, version: &'static str) -> PluginModRef {
    let _ = PACKAGE.set((name, version));
    PluginMod {
        init: plugin_init,
        new_agent: plugin_new_agent,
        open_transport: plugin_open_transport,
    }
    .leak_into_prefix()
}

/// The plugin crate's name and version, as given to [`plugin_module`].
static PACKAGE: OnceLock<(&str, &str)> = OnceLock::new();

/// What this library provides.
pub fn manifest() -> Manifest {
    let (name, version) = PACKAGE.get().copied().unwrap_or_default();
    Manifest {
        name: name.to_owned(),
        version: version.to_owned(),
        abi_version: ABI_VERSION,
        sdk_version: crate::SDK_VERSION.to_owned(),
        transports: transport_types().map(|t| t.name.to_owned()).collect(),
        agent_types: agent_types().map(|t| (t.spec)()).collect(),
    }
}

extern "C" fn plugin_init(host: HostBox, config: RStr<'_>) -> CallResult {
    guarded(|| {
        let config: PluginConfig = serde_json::from_str(config.as_str()).unwrap_or_default();
        crate::logging::forward_to_host(Arc::new(ImportedHost(host)), &config.max_log_level);
        to_call_result(serde_json::to_string(&manifest()).map_err(|e| e.to_string()))
    })
}

extern "C" fn plugin_new_agent(
    type_name: RStr<'_>,
    init: RStr<'_>,
    host: HostBox,
) -> RResult<AgentBox, RString> {
    guarded(|| {
        let create = || -> Result<AgentBox, String> {
            let kind = agent_types()
                .find(|t| t.name == type_name.as_str())
                .ok_or_else(|| format!("this plugin has no agent type {:?}", type_name.as_str()))?;
            let init: Init = serde_json::from_str(init.as_str()).map_err(|e| e.to_string())?;
            let agent =
                (kind.create)(&init, Arc::new(ImportedHost(host))).map_err(|e| e.to_string())?;
            Ok(AgentObj_TO::from_value(ExportedAgent(agent), TD_Opaque))
        };
        create().map_err(RString::from).into()
    })
}

extern "C" fn plugin_open_transport(
    name: RStr<'_>,
    config: RStr<'_>,
) -> RResult<TransportBox, RString> {
    guarded(|| {
        let open = || -> Result<TransportBox, String> {
            let kind = transport_types()
                .find(|t| t.name == name.as_str())
                .ok_or_else(|| format!("this plugin has no transport {:?}", name.as_str()))?;
            let space = (kind.open)(config.as_str())?;
            Ok(TransportObj_TO::from_value(
                ExportedTransport(space),
                TD_Opaque,
            ))
        };
        open().map_err(RString::from).into()
    })
}
