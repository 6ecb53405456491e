//! The root module a plugin built with this SDK exports: its manifest, and the functions
//! that create its agents and open its transports behind the ABI's boxes (the wrappers and
//! the calls' encoding live in `agency_protocol::ffi`). Every function body runs under
//! [`guarded`], so a panic becomes an error value.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    std_types::{RResult, RStr, RString},
};
use agency_abi::{
    guarded, AgentBox, CallResult, HostBox, PluginMod, PluginModRef, TransportBox, ABI_VERSION,
};
use agency_protocol::{
    ffi::{export_agent, export_transport, ImportedHost, NewAgent},
    spec::{Manifest, PluginConfig},
};

use crate::{
    agent::{agent_types, Init},
    transport::transport_types,
};

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
        let host = Arc::new(ImportedHost::new(host));
        crate::logging::forward_to_host(host.clone(), &config.max_log_level);
        crate::metrics::install(host);
        let manifest = serde_json::to_string(&manifest()).map_err(|e| RString::from(e.to_string()));
        manifest.map(RString::from).into()
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
            let NewAgent { id, args, share } =
                serde_json::from_str(init.as_str()).map_err(|e| e.to_string())?;
            let init = Init { id, args };
            let host = Arc::new(ImportedHost::new(host));
            let Some(share) = share else {
                let mut handles = (kind.create)(&init, 1, host).map_err(|e| e.to_string())?;
                return Ok(export_agent(handles.remove(0)));
            };
            let mut waiting = SHARES.lock().unwrap();
            if let Some(handles) = waiting.get_mut(&share.key) {
                let handle = handles.pop().expect("emptied shares are removed");
                if handles.is_empty() {
                    waiting.remove(&share.key);
                }
                return Ok(handle);
            }
            let mut handles: Vec<AgentBox> = (kind.create)(&init, share.handles as usize, host)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(export_agent)
                .collect();
            let first = handles.pop().expect("an agent has a handle");
            if !handles.is_empty() {
                waiting.insert(share.key, handles);
            }
            Ok(first)
        };
        create().map_err(RString::from).into()
    })
}

/// The handles of concurrent agents that the host has yet to ask for, by
/// [`agency_protocol::ffi::Share::key`].
static SHARES: Mutex<BTreeMap<u64, Vec<AgentBox>>> = Mutex::new(BTreeMap::new());

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
            Ok(export_transport(space))
        };
        open().map_err(RString::from).into()
    })
}
