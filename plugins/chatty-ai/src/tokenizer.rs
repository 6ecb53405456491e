//! The tokenizer, built from the GGUF file alone (its vocabulary, merges and special
//! tokens), with the pre-tokenizer its `tokenizer.ggml.pre` tag names.
//!
//! candle builds a byte-level BPE from the file, but knows only a few pre-tokenizer tags
//! and falls back to GPT-2's, which adds a prefix space: SmolLM2's (`smollm`) splits every
//! digit alone and adds none. The ids must be llama.cpp's for the same file (this crate's
//! tests compare them on a corpus), so a tag not checked against llama.cpp is refused
//! rather than guessed.

use candle_core::quantized::{gguf_file::Content, tokenizer::TokenizerFromGguf};
use tokenizers::{
    pre_tokenizers::{byte_level::ByteLevel, digits::Digits, sequence::Sequence},
    Tokenizer,
};

use crate::error::{candle_text, LoadError};

/// The pre-tokenizer tags whose ids are checked against llama.cpp's.
pub const SUPPORTED_PRE: &[&str] = &["smollm"];

/// The text of metadata entry `key`, if the file has one.
pub fn metadata_text(content: &Content, key: &str) -> Option<String> {
    content
        .metadata
        .get(key)
        .and_then(|value| value.to_string().ok())
        .cloned()
}

/// The file's tokenizer, or why it cannot be used.
pub fn from_gguf(content: &Content) -> Result<Tokenizer, LoadError> {
    let text = |key: &str| metadata_text(content, key);
    let kind = text("tokenizer.ggml.model").unwrap_or_default();
    if kind != "gpt2" {
        return Err(LoadError::Tokenizer(format!(
            "tokenizer {kind:?} is not supported (byte-level BPE, \"gpt2\", is)"
        )));
    }
    let pre = text("tokenizer.ggml.pre").unwrap_or_default();
    let mut tokenizer =
        Tokenizer::from_gguf(content).map_err(|error| LoadError::Tokenizer(candle_text(&error)))?;
    match pre.as_str() {
        "smollm" => {
            tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])));
        }
        other => {
            return Err(LoadError::Tokenizer(format!(
                "pre-tokenizer {other:?} is not supported (supported: {})",
                SUPPORTED_PRE.join(", ")
            )))
        }
    }
    Ok(tokenizer)
}
