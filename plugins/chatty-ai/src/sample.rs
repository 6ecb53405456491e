//! Choosing the next token from the model's logits: greedy (temperature 0, the same
//! choice as llama.cpp's greedy sampler: the first highest logit) or drawn at a
//! temperature from a seeded generator, after an optional repetition penalty.

use std::collections::HashSet;

use rand::{distr::weighted::WeightedIndex, prelude::Distribution, rngs::StdRng, SeedableRng};

/// How many of the last tokens the repetition penalty looks at.
const PENALTY_WINDOW: usize = 64;

/// Picks tokens one after another.
pub struct Sampler {
    /// `None`: greedy.
    random: Option<(StdRng, f32)>,
    repeat_penalty: f32,
}

impl Sampler {
    /// Always the most likely token, no penalty: what llama.cpp's greedy decoding gives.
    pub fn greedy() -> Self {
        Self::new(0.0, 0, 1.0)
    }

    /// Draws at `temperature` (0 = greedy) from a generator seeded with `seed`, after
    /// making recently seen tokens `repeat_penalty` times less likely (1 = no penalty).
    pub fn new(temperature: f64, seed: u64, repeat_penalty: f32) -> Self {
        let random = (temperature > 0.0).then(|| (StdRng::seed_from_u64(seed), temperature as f32));
        Self {
            random,
            repeat_penalty,
        }
    }

    /// The next token, given the logits of the last position and the tokens so far.
    pub fn next(&mut self, logits: &[f32], previous: &[u32]) -> u32 {
        let mut logits = logits.to_vec();
        if self.repeat_penalty != 1.0 {
            let recent = &previous[previous.len().saturating_sub(PENALTY_WINDOW)..];
            for token in recent.iter().collect::<HashSet<_>>() {
                if let Some(logit) = logits.get_mut(*token as usize) {
                    *logit = if *logit >= 0.0 {
                        *logit / self.repeat_penalty
                    } else {
                        *logit * self.repeat_penalty
                    };
                }
            }
        }
        let Some((rng, temperature)) = &mut self.random else {
            return first_highest(&logits);
        };
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, l| m.max(*l));
        let weights = logits.iter().map(|l| ((l - max) / *temperature).exp());
        match WeightedIndex::new(weights) {
            Ok(index) => index.sample(rng) as u32,
            Err(_) => first_highest(&logits),
        }
    }
}

/// The index of the first highest value.
fn first_highest(values: &[f32]) -> u32 {
    let mut best = 0;
    for (index, value) in values.iter().enumerate() {
        if *value > values[best] {
            best = index;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_of_equal_highest() {
        assert_eq!(first_highest(&[0.5, 2.0, -1.0, 2.0]), 1);
        assert_eq!(Sampler::greedy().next(&[0.1, 0.3, 0.2], &[]), 1);
    }

    #[test]
    fn a_seed_gives_the_same_tokens_again() {
        let logits = [1.0, 1.1, 0.9, 1.05];
        let draw = |seed| {
            let mut sampler = Sampler::new(1.0, seed, 1.0);
            (0..32)
                .map(|_| sampler.next(&logits, &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(draw(7).iter().collect::<HashSet<_>>().len() > 1);
    }

    #[test]
    fn the_penalty_turns_greedy_away_from_a_repeated_token() {
        let mut sampler = Sampler::new(0.0, 0, 1.5);
        assert_eq!(sampler.next(&[1.0, 1.2], &[]), 1);
        assert_eq!(sampler.next(&[1.0, 1.2], &[1]), 0);
        // A negative logit is made more negative, never less.
        assert_eq!(sampler.next(&[-1.0, -1.2], &[0]), 1);
    }
}
