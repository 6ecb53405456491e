//! The KV caches of recent prompts' beginnings, shared by every session on one model, so
//! that a prompt starting as a recent one did computes only what is new.
//!
//! Prompts repeat their beginnings: every conversation of an agent opens with the same
//! system prompt, and a conversation's next prompt is its last one plus the answer and a
//! new question. Keys and values of a position depend only on the tokens up to it, so the
//! cache of a shared beginning is exact for any prompt that starts with it: reusing it
//! changes no logit, it only skips the work.
//!
//! Invariant: memory stays bounded whatever the number of agents and conversations: at
//! most [`KEPT`] beginnings of at most [`KEPT_POSITIONS`] positions each, for the model
//! (SmolLM2-135M: 46 KiB a position, so at most 23 MiB), the least recently used going
//! first.

use std::sync::{Arc, Mutex};

use crate::llama::Cache;

/// How many beginnings are kept.
pub const KEPT: usize = 4;

/// The most positions kept of one prompt.
pub const KEPT_POSITIONS: usize = 128;

/// Shorter shared beginnings are not worth a copy.
const MIN_SHARED: usize = 4;

/// One kept beginning: its tokens and their cache.
struct Beginning {
    tokens: Vec<u32>,
    cache: Cache,
}

/// The kept beginnings, least recently used first.
#[derive(Default)]
pub struct Prefixes {
    kept: Mutex<Vec<Arc<Beginning>>>,
}

impl Prefixes {
    /// The cache of the longest kept beginning `prompt` shares, cut to what it shares and
    /// leaving at least the prompt's last token to compute (its logits are needed).
    pub fn longest_shared(&self, prompt: &[u32]) -> Option<Cache> {
        let found = {
            let mut kept = self
                .kept
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let (at, shared) = kept
                .iter()
                .enumerate()
                .map(|(at, beginning)| (at, shared_length(&beginning.tokens, prompt)))
                .max_by_key(|(_, shared)| *shared)?;
            let shared = shared.min(prompt.len() - 1);
            if shared < MIN_SHARED {
                return None;
            }
            let beginning = kept.remove(at);
            kept.push(Arc::clone(&beginning));
            (beginning, shared)
        };
        let (beginning, shared) = found;
        Some(beginning.cache.first(shared))
    }

    /// Forgets every kept beginning.
    pub fn clear(&self) {
        self.kept
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clear();
    }

    /// Keeps the beginning of `prompt` (at most [`KEPT_POSITIONS`] tokens) with its cache,
    /// which holds at least that many positions; a kept beginning it extends is replaced.
    pub fn keep(&self, prompt: &[u32], cache: &Cache) {
        let tokens = &prompt[..prompt.len().min(KEPT_POSITIONS).min(cache.positions())];
        if tokens.len() < MIN_SHARED {
            return;
        }
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(at) = kept.iter().position(|b| b.tokens.starts_with(tokens)) {
            let beginning = kept.remove(at);
            kept.push(beginning);
            return;
        }
        kept.retain(|beginning| !tokens.starts_with(&beginning.tokens));
        if kept.len() == KEPT {
            kept.remove(0);
        }
        kept.push(Arc::new(Beginning {
            tokens: tokens.to_vec(),
            cache: cache.first(tokens.len()),
        }));
    }
}

/// How many tokens `a` and `b` start with in common.
fn shared_length(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(a, b)| a == b).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_beginning_worth_a_copy_is_kept_or_shared() {
        let prefixes = Prefixes::default();
        assert!(prefixes.longest_shared(&[1, 2, 3, 4, 5]).is_none());
        // An empty cache holds no position: nothing to keep.
        prefixes.keep(&[1, 2, 3, 4, 5], &Cache::default());
        assert!(prefixes.kept.lock().unwrap().is_empty());
        assert_eq!(shared_length(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(shared_length(&[1, 2], &[1, 2, 4]), 2);
        assert_eq!(shared_length(&[], &[1]), 0);
    }
}
