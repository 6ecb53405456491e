//! What `agency plugins` prints: the plugins of a folder, or a diagnosis of one file.

use std::{fmt::Write as _, path::Path};

use agency_loader::{Plugin, Plugins, SUPPORTED_ABI};
use agency_protocol::spec::AgentTypeSpec;

/// Lists each plugin that loaded with what it provides, then the files refused.
pub fn list(plugins: &Plugins) -> String {
    let mut out = String::new();
    for plugin in plugins.loaded() {
        let manifest = &plugin.manifest;
        let _ = writeln!(
            out,
            "{} (abi {}, sdk {})",
            plugin.path.display(),
            manifest.abi_version,
            manifest.sdk_version
        );
        for name in &manifest.transports {
            let _ = writeln!(out, "  transport {name}");
        }
        for kind in &manifest.agent_types {
            print_agent_type(&mut out, kind, false);
        }
    }
    for failure in plugins.failures() {
        let _ = writeln!(out, "{failure} (not loaded)");
    }
    out
}

/// Loads one file as the host would and describes it, or fails with the one-line reason
/// it cannot be used.
pub fn check(file: &Path, allow_writable: bool) -> Result<String, String> {
    let mut plugins = Plugins::new().allow_writable(allow_writable);
    let plugin = plugins.add_file(file).map_err(|e| e.to_string())?;
    Ok(describe(plugin))
}

fn describe(plugin: &Plugin) -> String {
    let mut out = String::new();
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
    let _ = writeln!(out, "file: {}", plugin.path.display());
    let _ = writeln!(out, "sha256: {}", plugin.sha256);
    let _ = writeln!(
        out,
        "load time: {:.2} ms (read, check, hash, private copy, load, initialise)",
        plugin.load_time.as_secs_f64() * 1e3
    );
    let _ = writeln!(out, "kind: {kind}");
    let _ = writeln!(out, "name: {} {}", manifest.name, manifest.version);
    let _ = writeln!(
        out,
        "versions: agency ABI {} (this host accepts {}..={}), built with agency-sdk {}",
        manifest.abi_version,
        SUPPORTED_ABI.start(),
        SUPPORTED_ABI.end(),
        manifest.sdk_version
    );
    for name in &manifest.transports {
        let _ = writeln!(out, "transport {name}");
    }
    for kind in &manifest.agent_types {
        print_agent_type(&mut out, kind, true);
    }
    let _ = writeln!(out, "ok: this host can load it");
    out
}

/// Prints an agent type and its actions, with each argument's JSON Schema if `schemas`.
fn print_agent_type(out: &mut String, kind: &AgentTypeSpec, schemas: bool) {
    let _ = writeln!(out, "  agent type {}: {}", kind.name, kind.description);
    if let Some(limit) = kind.concurrency {
        let _ = writeln!(out, "    concurrent: up to {limit} messages at once");
    }
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
        let _ = writeln!(
            out,
            "    {}({}){returns} [{}]",
            action.name,
            args.join(", "),
            access.as_str().unwrap_or("")
        );
        if schemas {
            for arg in &action.args {
                let _ = writeln!(out, "      {}: {}", arg.name, arg.schema);
            }
        }
    }
}
