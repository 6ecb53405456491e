//! Why a model cannot be loaded or an answer generated: one line each, naming what to
//! change; candle's own errors cut to their first line.

use std::path::PathBuf;

/// Why a model file cannot be used; one line each, naming what to change.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A directory, device or FIFO where the model file should be.
    #[error("{0} is not a regular file")]
    NotAFile(PathBuf),
    /// Not a GGUF file.
    #[error("not a GGUF model file: {0}")]
    NotGguf(String),
    /// A model of an architecture this agent cannot run.
    #[error(
        "architecture {0:?} is not supported (llama-architecture models, such as SmolLM2, are)"
    )]
    Architecture(String),
    /// A tokenizer this agent cannot reproduce exactly.
    #[error("{0}")]
    Tokenizer(String),
    /// No usable chat template.
    #[error("chat template: {0}")]
    Template(String),
    /// The weights could not be read.
    #[error("weights: {0}")]
    Weights(String),
}

/// Why an answer could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Prompt and answer do not fit the context.
    #[error("the prompt is {prompt} tokens; with up to {max_new} new ones it does not fit the context of {context}")]
    TooLong {
        /// Tokens in the prompt.
        prompt: usize,
        /// Tokens that may be generated.
        max_new: usize,
        /// Tokens the model takes.
        context: usize,
    },
    /// The text could not be tokenized, or tokens decoded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed on this conversation.
    #[error("chat template: {0}")]
    Template(String),
    /// The model's arithmetic failed.
    #[error("model: {0}")]
    Model(String),
}

/// A candle error's message, without the backtrace candle appends to it when
/// `RUST_BACKTRACE` is set: an error shown to a user is one line.
pub(crate) fn candle_text(error: &candle_core::Error) -> String {
    let text = error.to_string();
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}
