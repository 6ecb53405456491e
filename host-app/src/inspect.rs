//! What `agency plugins` prints: the plugins of a folder, or a diagnosis of one file.

use std::path::Path;

use agency_loader::{Plugin, Plugins, SUPPORTED_ABI};
use agency_sdk::protocol::AgentTypeSpec;

/// Lists each plugin that loaded with what it provides, then the files refused.
pub fn list(plugins: &Plugins) {
    for plugin in plugins.loaded() {
        let manifest = &plugin.manifest;
        println!(
            "{} (abi {}, sdk {})",
            plugin.path.display(),
            manifest.abi_version,
            manifest.sdk_version
        );
        for name in &manifest.transports {
            println!("  transport {name}");
        }
        for kind in &manifest.agent_types {
            print_agent_type(kind, false);
        }
    }
    for failure in plugins.failures() {
        println!("{failure} (not loaded)");
    }
}

/// Loads one file as the host would and describes it, or fails with the one-line reason
/// it cannot be used.
pub fn check(file: &Path, allow_writable: bool) -> Result<(), String> {
    let mut plugins = Plugins::new().allow_writable(allow_writable);
    let plugin = plugins.add_file(file).map_err(|e| e.to_string())?;
    describe(plugin);
    Ok(())
}

fn describe(plugin: &Plugin) {
    let manifest = &plugin.manifest;
    let kind = match (
        manifest.transports.is_empty(),
        manifest.agent_types.is_empty(),
    ) {
        (false, false) => "transport and agent plugin",
        (false, true) => "transport plugin",
        (true, false) => "agent plugin",
        (true, true) => "plugin that provides nothing",
    };
    println!("file: {}", plugin.path.display());
    println!("sha256: {}", plugin.sha256);
    println!("kind: {kind}");
    println!("name: {} {}", manifest.name, manifest.version);
    println!(
        "versions: agency ABI {} (this host accepts {}..={}), built with agency-sdk {}",
        manifest.abi_version,
        SUPPORTED_ABI.start(),
        SUPPORTED_ABI.end(),
        manifest.sdk_version
    );
    for name in &manifest.transports {
        println!("transport {name}");
    }
    for kind in &manifest.agent_types {
        print_agent_type(kind, true);
    }
    println!("ok: this host can load it");
}

/// Prints an agent type and its actions, with each argument's JSON Schema if `schemas`.
fn print_agent_type(kind: &AgentTypeSpec, schemas: bool) {
    println!("  agent type {}: {}", kind.name, kind.description);
    for action in &kind.actions {
        let args: Vec<String> = action
            .args
            .iter()
            .map(|arg| {
                let optional = if arg.optional { "?" } else { "" };
                format!("{}{optional}: {}", arg.name, arg.doc.json_type)
            })
            .collect();
        let returns = action
            .returns
            .as_ref()
            .map(|r| format!(" -> {}", r.json_type))
            .unwrap_or_default();
        let access = serde_json::to_value(action.access).unwrap_or_default();
        println!(
            "    {}({}){returns} [{}]",
            action.name,
            args.join(", "),
            access.as_str().unwrap_or("")
        );
        if schemas {
            for arg in &action.args {
                println!("      {}: {}", arg.name, arg.schema);
            }
        }
    }
}
