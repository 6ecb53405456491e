//! A GGUF language model on the CPU: loaded once per process and file, shared by every
//! agent that names the file, each with a [`Session`] of its own.
//!
//! Invariant: the weights are read once. [`Model::load`] keeps a weak table keyed by the
//! file (canonical path, size, modification time): a second agent on the same file gets
//! the same `Arc<Model>`, and the memory goes when the last agent does. A session owns
//! only its KV cache, filled while it generates and emptied after, so sessions never
//! contend and an idle agent holds no cache; a prompt starts from the cache of the
//! longest recent beginning it shares ([`crate::prefix`], bounded per model).

use std::{
    collections::HashMap,
    fs::File,
    io::BufReader,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak},
    time::SystemTime,
};

use candle_core::quantized::gguf_file::Content;
use tokenizers::Tokenizer;

use crate::{
    error::{candle_text, GenerateError, LoadError},
    llama::{Cache, Weights},
    prefix::Prefixes,
    sample::Sampler,
    template::{ChatTemplate, Turn},
    tokenizer,
};

/// The architectures whose weights this model code reads.
const ARCHITECTURES: &[&str] = &["llama"];

/// A loaded model: weights, tokenizer, chat template.
pub struct Model {
    weights: Weights,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    stops: Vec<u32>,
    context: usize,
    prefixes: Prefixes,
}

/// What identifies a model file: a file replaced on disk is loaded anew.
type FileKey = (PathBuf, u64, Option<SystemTime>);

impl Model {
    /// The model in the GGUF file at `path`, shared with every other caller that loaded
    /// the same file and still holds it.
    pub fn load(path: &Path) -> Result<Arc<Model>, LoadError> {
        static LOADED: Mutex<Option<HashMap<FileKey, Weak<Model>>>> = Mutex::new(None);
        let io = |error: std::io::Error| LoadError::Io(path.to_owned(), error);
        let canonical = path.canonicalize().map_err(io)?;
        let meta = std::fs::metadata(&canonical).map_err(io)?;
        if !meta.is_file() {
            return Err(LoadError::NotAFile(path.to_owned()));
        }
        let key = (canonical, meta.len(), meta.modified().ok());
        // Held while loading: two agents added at once on one file load it once.
        let mut loaded = LOADED.lock().unwrap_or_else(|poison| poison.into_inner());
        let table = loaded.get_or_insert_with(HashMap::new);
        table.retain(|_, model| model.strong_count() > 0);
        if let Some(model) = table.get(&key).and_then(Weak::upgrade) {
            return Ok(model);
        }
        let model = Arc::new(Self::read(&key.0)?);
        table.insert(key, Arc::downgrade(&model));
        Ok(model)
    }

    /// Reads the file: metadata checks first, so a wrong file is refused before its
    /// weights are read.
    fn read(path: &Path) -> Result<Model, LoadError> {
        let mut file =
            BufReader::new(File::open(path).map_err(|e| LoadError::Io(path.to_owned(), e))?);
        let content =
            Content::read(&mut file).map_err(|error| LoadError::NotGguf(candle_text(&error)))?;
        let text = |key: &str| tokenizer::metadata_text(&content, key);
        let architecture = text("general.architecture").unwrap_or_default();
        if !ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(LoadError::Architecture(architecture));
        }
        let tokenizer = tokenizer::from_gguf(&content)?;
        let token_text = |key: &str| {
            content
                .metadata
                .get(key)
                .and_then(|value| value.to_u32().ok())
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let source = text("tokenizer.chat_template").ok_or_else(|| {
            LoadError::Template("the file has no chat template (tokenizer.chat_template)".into())
        })?;
        let template = ChatTemplate::new(
            &source,
            &token_text("tokenizer.ggml.bos_token_id"),
            &token_text("tokenizer.ggml.eos_token_id"),
        )?;
        let mut stops: Vec<u32> = ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"]
            .iter()
            .filter_map(|token| tokenizer.token_to_id(token))
            .collect();
        if let Some(eos) = content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|value| value.to_u32().ok())
        {
            stops.push(eos);
        }
        // A malformed file must be a refusal, never a crash of the host.
        let weights =
            std::panic::catch_unwind(AssertUnwindSafe(|| Weights::read(&content, &mut file)))
                .map_err(|_| LoadError::Weights("the weights do not fit the architecture".into()))?
                .map_err(|error| LoadError::Weights(candle_text(&error)))?;
        if weights.vocabulary() < tokenizer.get_vocab_size(true) {
            return Err(LoadError::Weights(
                "the tokenizer has more tokens than the weights".into(),
            ));
        }
        Ok(Model {
            context: weights.config().context,
            weights,
            tokenizer,
            template,
            stops,
            prefixes: Prefixes::default(),
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The token ids of `text`, special tokens (`<|im_start|>`...) recognised in it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, GenerateError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|error| GenerateError::Tokenizer(error.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, GenerateError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|error| GenerateError::Tokenizer(error.to_string()))
    }

    /// The prompt for `turns` through the file's chat template, as token ids.
    pub fn prompt(&self, turns: &[Turn]) -> Result<Vec<u32>, GenerateError> {
        let text = self
            .template
            .render(turns)
            .map_err(|error| GenerateError::Template(error.to_string()))?;
        self.encode(&text)
    }

    /// The longest sequence (prompt and answer) the model takes, in tokens.
    pub fn context_length(&self) -> usize {
        self.context
    }

    /// Forgets the kept beginnings of recent prompts ([`crate::prefix`]): the next prompt
    /// is computed whole.
    pub fn forget_beginnings(&self) {
        self.prefixes.clear();
    }

    /// A session: the shared weights and a KV cache of its own.
    pub fn session(self: &Arc<Self>) -> Session {
        Session {
            model: Arc::clone(self),
            cache: Cache::default(),
            reused: 0,
        }
    }
}

/// One conversation's use of a model.
pub struct Session {
    model: Arc<Model>,
    cache: Cache,
    reused: usize,
}

impl Session {
    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// How many positions of the last prompt came from a kept beginning's cache instead
    /// of being computed.
    pub fn reused(&self) -> usize {
        self.reused
    }

    /// Generates at most `max_new` tokens after `prompt`, stopping before a stop token
    /// (end of turn, end of text); answers the new tokens.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampler: &mut Sampler,
    ) -> Result<Vec<u32>, GenerateError> {
        let context = self.model.context;
        if prompt.is_empty() || prompt.len() + max_new > context {
            return Err(GenerateError::TooLong {
                prompt: prompt.len(),
                max_new,
                context,
            });
        }
        // On one of rayon's threads: each product's parallel pass then starts inside the
        // pool (work stealing), instead of waking this thread from a sleep after each.
        let answer = rayon::scope(|_| self.continue_after(prompt, max_new, sampler));
        self.cache.clear();
        answer
    }

    /// The generation itself, on an empty cache: from the longest kept beginning the
    /// prompt shares, whose own beginning is kept in turn.
    fn continue_after(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        sampler: &mut Sampler,
    ) -> Result<Vec<u32>, GenerateError> {
        self.cache = self
            .model
            .prefixes
            .longest_shared(prompt)
            .unwrap_or_default();
        self.reused = self.cache.positions();
        let mut all = prompt.to_vec();
        let mut logits = self.forward(&prompt[self.reused..])?;
        self.model.prefixes.keep(prompt, &self.cache);
        let mut new = Vec::new();
        while new.len() < max_new {
            let token = sampler.next(&logits, &all);
            if self.model.stops.contains(&token) {
                break;
            }
            new.push(token);
            all.push(token);
            if new.len() < max_new {
                logits = self.forward(&[token])?;
            }
        }
        Ok(new)
    }

    /// Feeds `tokens` after those fed so far; answers the next token's logits.
    fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, GenerateError> {
        self.model
            .weights
            .forward(&mut self.cache, tokens)
            .map_err(|error| GenerateError::Model(candle_text(&error)))
    }
}
