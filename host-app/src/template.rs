//! `agency new-agent NAME`: writes a new agent plugin crate that builds as it is.

use std::path::{Path, PathBuf};

/// Writes the crate for agent type `name` into a new folder under `dir`, depending on the
/// SDK at `sdk` (or the default described on the command), and says what to do next.
pub fn new_agent(name: &str, dir: &Path, sdk: Option<&Path>) -> Result<(), String> {
    let crate_name = crate_name(name)?;
    let root = dir.join(&crate_name);
    if root.exists() {
        return Err(format!(
            "{} already exists; pick another name or folder",
            root.display()
        ));
    }
    let dependency = sdk_dependency(sdk)?;
    let files = [
        ("Cargo.toml", cargo_toml(&crate_name, &dependency)),
        ("src/lib.rs", lib_rs(name)),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let library = format!(
        "{}{crate_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    crate::show(&format!(
        "created {} (agent type {name})\nnext:\n  cd {} && cargo build --release\n  \
         cp target/release/{library} <plugins folder of your agency host>/\n  \
         and list it in that host's agency.toml:\n    [[agents]]\n    type = \"{name}\"\n    \
         id = \"{name}\"\n",
        root.display(),
        root.display()
    ));
    Ok(())
}

/// The crate name for agent type `name`: `Greeter` → `greeter`, `WebSearch` →
/// `web_search`. Refuses names that are not a Rust type name.
fn crate_name(name: &str) -> Result<String, String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric());
    if !valid {
        return Err(format!(
            "{name:?} is not a usable agent type name: use CamelCase letters and digits, starting with a capital (e.g. Greeter)"
        ));
    }
    let mut snake = String::new();
    for (index, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    if TAKEN_TYPE_NAMES.contains(&name) {
        return Err(format!(
            "{name:?} cannot be an agent type name: the crate already has a {name} (from Rust's or the SDK's prelude); pick another, e.g. My{name}"
        ));
    }
    if RESERVED_CRATE_NAMES.contains(&snake.as_str()) {
        return Err(format!(
            "{name:?} cannot be an agent type name: its crate would be named {snake:?}, which Rust reserves; pick another, e.g. {name}Agent"
        ));
    }
    Ok(snake)
}

/// Type names the generated crate already has in scope: `Self`, the SDK prelude's and
/// Rust's prelude's.
const TAKEN_TYPE_NAMES: &[&str] = &[
    "Self",
    "Agent",
    "ActionError",
    "Context",
    "Init",
    "Message",
    "Value",
    "Option",
    "Some",
    "None",
    "Result",
    "Ok",
    "Err",
    "String",
    "Vec",
    "Box",
];

/// Crate names cargo refuses: Rust's keywords (strict and reserved) and its own crates.
const RESERVED_CRATE_NAMES: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// The `agency-sdk` dependency line: by path to `sdk`, else to the SDK source this binary
/// was built from if it is still there, else the release on crates.io.
fn sdk_dependency(sdk: Option<&Path>) -> Result<String, String> {
    let built_from = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../core/sdk"));
    let path = match sdk {
        Some(path) => Some(
            path.canonicalize()
                .map_err(|e| format!("--sdk {}: {e}", path.display()))?,
        ),
        None => built_from.canonicalize().ok(),
    };
    Ok(match path {
        Some(path) if path.join("Cargo.toml").is_file() => {
            format!("agency-sdk = {{ path = {:?} }}", path.display().to_string())
        }
        Some(path) => {
            return Err(format!(
                "--sdk {}: no Cargo.toml there; give the folder of the agency-sdk crate",
                path.display()
            ))
        }
        None => format!("agency-sdk = \"{}\"", agency_sdk::SDK_VERSION),
    })
}

fn cargo_toml(crate_name: &str, dependency: &str) -> String {
    format!(
        r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2021"

# An agency plugin is a dynamic library the host loads at run time.
[lib]
crate-type = ["cdylib"]

[dependencies]
{dependency}

# The host turns a panic in your agent into an error reply; that needs unwinding.
[profile.dev]
panic = "unwind"

[profile.release]
panic = "unwind"

# A crate of its own, even when created inside another workspace.
[workspace]
"#
    )
}

fn lib_rs(name: &str) -> String {
    format!(
        r#"//! The {name} agent, as an Agency plugin.

use agency_sdk::prelude::*;

agency_sdk::export_plugin!(); // once per library

/// Greets whoever asks.
pub struct {name} {{
    id: String,
}}

impl Agent for {name} {{
    fn new(init: &Init) -> Result<Self, ActionError> {{
        Ok({name} {{
            id: init.id.clone(),
        }})
    }}
}}

/// Greets whoever asks.
#[actions]
impl {name} {{
    /// Says hello.
    ///
    /// - name: who to greet
    ///
    /// Returns: the greeting
    #[action]
    fn greet(&mut self, name: String) -> String {{
        format!("Hello, {{name}}! {{}} here.", self.id)
    }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::crate_name;

    #[test]
    fn crate_names_are_snake_case_and_names_are_checked() {
        assert_eq!(crate_name("Greeter").unwrap(), "greeter");
        assert_eq!(crate_name("WebSearch2").unwrap(), "web_search2");
        assert!(crate_name("greeter").is_err());
        assert!(crate_name("Web-Search").is_err());
        assert!(crate_name("").is_err());
        for taken in ["Self", "Agent", "Context", "Value", "Result"] {
            assert!(
                crate_name(taken).unwrap_err().contains("prelude"),
                "{taken}"
            );
        }
        for keyword in ["Fn", "Crate", "Type", "Std", "Async"] {
            assert!(
                crate_name(keyword).unwrap_err().contains("reserves"),
                "{keyword}"
            );
        }
        assert_eq!(crate_name("FnAgent").unwrap(), "fn_agent");
    }
}
