//! The llama architecture's forward pass (SmolLM2 is one), step by step as llama.cpp
//! computes it: RMS norm, rotary positions in llama.cpp's "normal" mode (adjacent pairs),
//! grouped-query attention over an f32 KV cache, a SwiGLU feed-forward, tied or separate
//! output weights. The products go through [`crate::quant`].
//!
//! [`Weights`] are read once and shared; each conversation has a [`Cache`] of its own.

use std::io::{Read, Seek};

use candle_core::{quantized::gguf_file::Content, Device};

use crate::quant::Matrix;

/// The sizes and constants a llama model is built with, from the file's metadata.
#[derive(Clone, Debug)]
pub struct Config {
    /// Width of the residual stream.
    pub embedding: usize,
    /// Attention heads (queries).
    pub heads: usize,
    /// Key and value heads (fewer: heads share them in groups).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// RMS norm's epsilon.
    pub eps: f32,
    /// Rotary embedding's frequency base.
    pub rope_base: f32,
    /// The longest sequence the model was trained on.
    pub context: usize,
}

impl Config {
    /// The configuration in `content`'s `llama.*` metadata.
    pub fn from_gguf(content: &Content) -> candle_core::Result<Self> {
        let get = |key: &str| {
            content
                .metadata
                .get(&format!("llama.{key}"))
                .ok_or_else(|| candle_core::Error::Msg(format!("no llama.{key} in the file")))
        };
        let count = |key: &str| get(key).and_then(|v| v.to_u32()).map(|n| n as usize);
        let embedding = count("embedding_length")?;
        let heads = count("attention.head_count")?;
        let config = Config {
            embedding,
            heads,
            kv_heads: count("attention.head_count_kv").unwrap_or(heads),
            head_dim: embedding / heads.max(1),
            layers: count("block_count")?,
            eps: get("attention.layer_norm_rms_epsilon")?.to_f32()?,
            rope_base: get("rope.freq_base")
                .and_then(|v| v.to_f32())
                .unwrap_or(10_000.0),
            context: count("context_length")?,
        };
        if heads == 0
            || config.kv_heads == 0
            || heads % config.kv_heads != 0
            || embedding % heads != 0
            || !config.head_dim.is_multiple_of(2)
        {
            candle_core::bail!("inconsistent head counts in the file: {config:?}");
        }
        Ok(config)
    }

    fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// One transformer block's weights.
struct Layer {
    attn_norm: Vec<f32>,
    q: Matrix,
    k: Matrix,
    v: Matrix,
    out: Matrix,
    ffn_norm: Vec<f32>,
    gate: Matrix,
    up: Matrix,
    down: Matrix,
}

/// A model's weights.
pub struct Weights {
    config: Config,
    embed: Matrix,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// `None`: the embeddings are the output weights too (SmolLM2 ties them).
    output: Option<Matrix>,
}

/// What one conversation has computed so far: keys and values of every position.
#[derive(Default, Clone)]
pub struct Cache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    /// The values one position holds in one layer's keys (or values).
    width: usize,
}

impl Cache {
    /// Forgets every position.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
    }

    /// How many positions it holds.
    pub fn positions(&self) -> usize {
        self.keys.first().map_or(0, |keys| keys.len() / self.width)
    }

    /// A copy of its first `positions` positions (all it has, if fewer).
    pub fn first(&self, positions: usize) -> Cache {
        let cut = |layers: &[Vec<f32>]| {
            layers
                .iter()
                .map(|layer| layer[..layer.len().min(positions * self.width)].to_vec())
                .collect()
        };
        Cache {
            keys: cut(&self.keys),
            values: cut(&self.values),
            width: self.width,
        }
    }
}

impl Weights {
    /// Reads the weights `content` describes from `reader`.
    pub fn read<R: Read + Seek>(content: &Content, reader: &mut R) -> candle_core::Result<Self> {
        let config = Config::from_gguf(content)?;
        let mut file = File { content, reader };
        let embed = file.matrix("token_embd.weight")?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            Some(file.matrix("output.weight")?)
        } else {
            None
        };
        let norm = file.vector("output_norm.weight")?;
        let mut layers = Vec::with_capacity(config.layers);
        for n in 0..config.layers {
            let name = |part: &str| format!("blk.{n}.{part}.weight");
            layers.push(Layer {
                attn_norm: file.vector(&name("attn_norm"))?,
                q: file.matrix(&name("attn_q"))?,
                k: file.matrix(&name("attn_k"))?,
                v: file.matrix(&name("attn_v"))?,
                out: file.matrix(&name("attn_output"))?,
                ffn_norm: file.vector(&name("ffn_norm"))?,
                gate: file.matrix(&name("ffn_gate"))?,
                up: file.matrix(&name("ffn_up"))?,
                down: file.matrix(&name("ffn_down"))?,
            });
        }
        let weights = Weights {
            config,
            embed,
            layers,
            norm,
            output,
        };
        weights.check()?;
        Ok(weights)
    }

    /// Refuses weights whose shapes do not fit the configuration.
    fn check(&self) -> candle_core::Result<()> {
        let c = &self.config;
        let (e, kv) = (c.embedding, c.kv_width());
        let wrong = |what: &str| {
            Err(candle_core::Error::Msg(format!(
                "{what} has the wrong shape"
            )))
        };
        if self.embed.dims().1 != e || self.norm.len() != e {
            return wrong("token_embd or output_norm");
        }
        if self.output.as_ref().is_some_and(|o| o.dims().1 != e) {
            return wrong("output");
        }
        for (n, l) in self.layers.iter().enumerate() {
            let ff = l.gate.dims().0;
            let fits = l.attn_norm.len() == e
                && l.ffn_norm.len() == e
                && l.q.dims() == (e, e)
                && l.k.dims() == (kv, e)
                && l.v.dims() == (kv, e)
                && l.out.dims() == (e, e)
                && l.up.dims() == (ff, e)
                && l.down.dims() == (e, ff);
            if !fits {
                return wrong(&format!("block {n}"));
            }
        }
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The vocabulary's size (the logits' length).
    pub fn vocabulary(&self) -> usize {
        self.output.as_ref().unwrap_or(&self.embed).dims().0
    }

    /// Feeds `tokens` at positions `cache`'s length onwards; answers the logits of the
    /// token after the last one. Ids beyond the vocabulary are refused.
    pub fn forward(&self, cache: &mut Cache, tokens: &[u32]) -> candle_core::Result<Vec<f32>> {
        let c = &self.config;
        let (e, n) = (c.embedding, tokens.len());
        if let Some(bad) = tokens.iter().find(|t| **t as usize >= self.embed.dims().0) {
            candle_core::bail!("token {bad} is not in the vocabulary");
        }
        if cache.keys.len() != c.layers {
            cache.keys = vec![Vec::new(); c.layers];
            cache.values = vec![Vec::new(); c.layers];
            cache.width = c.kv_width();
        }
        let start = cache.keys[0].len() / c.kv_width();
        let mut x: Vec<f32> = tokens
            .iter()
            .flat_map(|t| self.embed.row(*t as usize))
            .collect();
        for (layer, (keys, values)) in self
            .layers
            .iter()
            .zip(cache.keys.iter_mut().zip(cache.values.iter_mut()))
        {
            let h = rms_norm(&x, &layer.attn_norm, c.eps);
            let [mut q, mut k, v] = Matrix::matmul_all([&layer.q, &layer.k, &layer.v], &h);
            rope(&mut q, e, c.head_dim, start, c.rope_base);
            rope(&mut k, c.kv_width(), c.head_dim, start, c.rope_base);
            keys.extend_from_slice(&k);
            values.extend_from_slice(&v);
            let attended = attention(c, &q, keys, values, start);
            add(&mut x, &layer.out.matmul(&attended));

            let h = rms_norm(&x, &layer.ffn_norm, c.eps);
            let [mut gate, up] = Matrix::matmul_all([&layer.gate, &layer.up], &h);
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
            add(&mut x, &layer.down.matmul(&gate));
        }
        let last = rms_norm(&x[(n - 1) * e..], &self.norm, c.eps);
        Ok(self.output.as_ref().unwrap_or(&self.embed).matmul(&last))
    }
}

/// A GGUF file being read: its description and its bytes.
struct File<'a, R> {
    content: &'a Content,
    reader: &'a mut R,
}

impl<R: Read + Seek> File<'_, R> {
    /// The 2-D tensor `name`.
    fn matrix(&mut self, name: &str) -> candle_core::Result<Matrix> {
        Matrix::from_qtensor(&self.content.tensor(self.reader, name, &Device::Cpu)?)
    }

    /// The 1-D tensor `name`, as values.
    fn vector(&mut self, name: &str) -> candle_core::Result<Vec<f32>> {
        self.content
            .tensor(self.reader, name, &Device::Cpu)?
            .dequantize(&Device::Cpu)?
            .flatten_all()?
            .to_vec1()
    }
}

/// `matrix` applied to each input of `xs`.
fn add(x: &mut [f32], delta: &[f32]) {
    for (x, d) in x.iter_mut().zip(delta) {
        *x += d;
    }
}

/// Each input of `xs` scaled to unit root-mean-square, times `weight` (ggml sums the
/// squares in f64).
fn rms_norm(xs: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    xs.chunks_exact(weight.len())
        .flat_map(|x| {
            let sum: f64 = x.iter().map(|v| (v * v) as f64).sum();
            let scale = 1.0 / ((sum / x.len() as f64) as f32 + eps).sqrt();
            x.iter().zip(weight).map(move |(v, w)| v * scale * w)
        })
        .collect()
}

/// Rotates each head's adjacent pairs by its position's angles (llama.cpp's mode 0,
/// angles computed as it does: `theta *= base^(-2/head_dim)` pair after pair). `xs` holds
/// inputs of `width` values at positions `start`, `start + 1`, ...
fn rope(xs: &mut [f32], width: usize, head_dim: usize, start: usize, base: f32) {
    let theta_scale = base.powf(-2.0 / head_dim as f32);
    let mut angles = vec![(0f32, 0f32); head_dim / 2];
    for (t, input) in xs.chunks_exact_mut(width).enumerate() {
        let mut theta = (start + t) as f32;
        for angle in angles.iter_mut() {
            *angle = (theta.cos(), theta.sin());
            theta *= theta_scale;
        }
        for head in input.chunks_exact_mut(head_dim) {
            for (pair, (cos, sin)) in head.chunks_exact_mut(2).zip(&angles) {
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0 * cos - x1 * sin;
                pair[1] = x0 * sin + x1 * cos;
            }
        }
    }
}

/// Attention of each query of `q` (inputs at positions `start`...) over the cache's
/// keys and values, causally.
fn attention(c: &Config, q: &[f32], keys: &[f32], values: &[f32], start: usize) -> Vec<f32> {
    let kv_width = c.kv_width();
    let group = c.heads / c.kv_heads;
    let scale = 1.0 / (c.head_dim as f32).sqrt();
    let mut out = vec![0.0; q.len()];
    let mut scores = Vec::new();
    for (t, (query, result)) in q
        .chunks_exact(c.embedding)
        .zip(out.chunks_exact_mut(c.embedding))
        .enumerate()
    {
        let visible = start + t + 1;
        for head in 0..c.heads {
            let qh = &query[head * c.head_dim..(head + 1) * c.head_dim];
            let kv = (head / group) * c.head_dim;
            scores.clear();
            scores.extend((0..visible).map(|j| {
                let k = &keys[j * kv_width + kv..j * kv_width + kv + c.head_dim];
                qh.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale
            }));
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, s| m.max(*s));
            let mut sum = 0f64;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s as f64;
            }
            let inverse = (1.0 / sum) as f32;
            let rh = &mut result[head * c.head_dim..(head + 1) * c.head_dim];
            for (j, p) in scores.iter().enumerate() {
                let v = &values[j * kv_width + kv..j * kv_width + kv + c.head_dim];
                for (r, v) in rh.iter_mut().zip(v) {
                    *r += p * inverse * v;
                }
            }
        }
    }
    out
}
