//! Quantized matrices and their products with activation vectors, computed as llama.cpp
//! (ggml) computes them, fast on x86.
//!
//! A weight matrix keeps the file's blocks (Q4_1: 32 weights as 4-bit steps from a
//! minimum; Q8_0: 32 signed bytes and a scale). Each product quantizes the activations per
//! block of 32, to Q8_1 for Q4_1 weights and to Q8_0 for Q8_0 weights, exactly as ggml
//! does (its `s = f16(d * sum)` included: candle rounds that term differently, and the
//! model's answers then part from llama.cpp's), and sums integer dot products.
//!
//! Scales are kept as the `f32` values of their `f16`s, so a kernel converts nothing. The
//! AVX2 kernels are chosen at run time (`is_x86_feature_detected!`); any other CPU runs the
//! scalar ones, which give the same integer sums. Rows are shared among rayon's threads.

use candle_core::quantized::{GgmlDType, QTensor};
use half::f16;
use rayon::prelude::*;

/// Weights (and activations) per block.
pub const BLOCK: usize = 32;

/// 32 weights `d * q + m`, `q` in 0..16: element `j` in the low nibble of `qs[j]`,
/// element `j + 16` in its high nibble.
#[derive(Clone, Copy)]
pub struct BlockQ4_1 {
    d: f32,
    m: f32,
    qs: [u8; 16],
}

/// 32 values `d * q`, `q` a signed byte.
#[derive(Clone, Copy)]
pub struct BlockQ8_0 {
    d: f32,
    qs: [i8; 32],
}

/// 32 activations `d * q` and `s`, `d` times the sum of the `q`s (for Q4_1's minimum).
#[derive(Clone, Copy)]
pub struct BlockQ8_1 {
    d: f32,
    s: f32,
    qs: [i8; 32],
}

/// A weight matrix of `rows` × `cols`, in the format its products use.
pub enum Matrix {
    /// 4-bit weights with a minimum.
    Q4_1 {
        /// Output size.
        rows: usize,
        /// Input size.
        cols: usize,
        /// Row after row, `cols / 32` blocks each.
        blocks: Vec<BlockQ4_1>,
    },
    /// 8-bit weights.
    Q8_0 {
        /// Output size.
        rows: usize,
        /// Input size.
        cols: usize,
        /// Row after row, `cols / 32` blocks each.
        blocks: Vec<BlockQ8_0>,
    },
    /// Any other type, dequantized (correct, not fast).
    F32 {
        /// Output size.
        rows: usize,
        /// Input size.
        cols: usize,
        /// Row after row.
        values: Vec<f32>,
    },
}

/// A value stored as `f16` in the file, as `f32`.
fn half_at(bytes: &[u8]) -> f32 {
    f16::from_le_bytes([bytes[0], bytes[1]]).to_f32()
}

/// `value` rounded to the nearest `f16`, as ggml stores a scale.
fn as_half(value: f32) -> f32 {
    f16::from_f32(value).to_f32()
}

impl Matrix {
    /// The matrix of a 2-D tensor read from a GGUF file.
    pub fn from_qtensor(tensor: &QTensor) -> candle_core::Result<Self> {
        let (rows, cols) = tensor.shape().dims2()?;
        if cols % BLOCK != 0 {
            candle_core::bail!("a row of {cols} values is not whole blocks of {BLOCK}");
        }
        let data = tensor.data()?;
        Ok(match tensor.dtype() {
            GgmlDType::Q4_1 => Matrix::Q4_1 {
                rows,
                cols,
                blocks: data
                    .chunks_exact(20)
                    .map(|b| BlockQ4_1 {
                        d: half_at(&b[0..2]),
                        m: half_at(&b[2..4]),
                        qs: b[4..20].try_into().unwrap(),
                    })
                    .collect(),
            },
            GgmlDType::Q8_0 => Matrix::Q8_0 {
                rows,
                cols,
                blocks: data
                    .chunks_exact(34)
                    .map(|b| BlockQ8_0 {
                        d: half_at(&b[0..2]),
                        qs: std::array::from_fn(|i| b[2 + i] as i8),
                    })
                    .collect(),
            },
            _ => Matrix::F32 {
                rows,
                cols,
                values: tensor
                    .dequantize(&candle_core::Device::Cpu)?
                    .flatten_all()?
                    .to_vec1()?,
            },
        })
    }

    /// (rows, cols).
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Matrix::Q4_1 { rows, cols, .. }
            | Matrix::Q8_0 { rows, cols, .. }
            | Matrix::F32 { rows, cols, .. } => (*rows, *cols),
        }
    }

    /// Row `row` as values (an embedding lookup).
    pub fn row(&self, row: usize) -> Vec<f32> {
        let (_, cols) = self.dims();
        let per_row = cols / BLOCK;
        match self {
            Matrix::Q4_1 { blocks, .. } => blocks[row * per_row..(row + 1) * per_row]
                .iter()
                .flat_map(|b| {
                    let low = b.qs.map(|q| b.d * (q & 0x0F) as f32 + b.m);
                    let high = b.qs.map(|q| b.d * (q >> 4) as f32 + b.m);
                    low.into_iter().chain(high)
                })
                .collect(),
            Matrix::Q8_0 { blocks, .. } => blocks[row * per_row..(row + 1) * per_row]
                .iter()
                .flat_map(|b| b.qs.map(|q| b.d * q as f32))
                .collect(),
            Matrix::F32 { values, .. } => values[row * cols..(row + 1) * cols].to_vec(),
        }
    }

    /// `out[t * rows + r]` = row `r` · input `t`, for the `xs.len() / cols` inputs laid
    /// one after another in `xs`.
    pub fn matmul(&self, xs: &[f32]) -> Vec<f32> {
        let [out] = Matrix::matmul_all([self], xs);
        out
    }

    /// The products of several matrices of one width with the same inputs, each laid out
    /// as [`Matrix::matmul`]'s, in one pass over the threads (one hand-out, not one per
    /// matrix) with the inputs quantized once. Matrices of different types take a pass
    /// each.
    pub fn matmul_all<const M: usize>(matrices: [&Matrix; M], xs: &[f32]) -> [Vec<f32>; M] {
        let cols = matrices.first().map_or(BLOCK, |m| m.dims().1);
        if let Some(all) = each(matrices, |m| match m {
            Matrix::Q4_1 { blocks, rows, .. } => Some((blocks.as_slice(), *rows)),
            _ => None,
        }) {
            let acts: Vec<BlockQ8_1> = xs.chunks_exact(BLOCK).map(quantize_q8_1).collect();
            return products(all, &acts, cols / BLOCK);
        }
        if let Some(all) = each(matrices, |m| match m {
            Matrix::Q8_0 { blocks, rows, .. } => Some((blocks.as_slice(), *rows)),
            _ => None,
        }) {
            let acts: Vec<BlockQ8_0> = xs.chunks_exact(BLOCK).map(quantize_q8_0).collect();
            return products(all, &acts, cols / BLOCK);
        }
        if let Some(all) = each(matrices, |m| match m {
            Matrix::F32 { values, rows, .. } => Some((values.as_slice(), *rows)),
            _ => None,
        }) {
            return products(all, xs, cols);
        }
        matrices.map(|matrix| matrix.matmul(xs))
    }
}

/// `get` of every matrix, if it has an answer for each.
fn each<'a, T: 'a, const M: usize>(
    matrices: [&'a Matrix; M],
    get: impl Fn(&'a Matrix) -> Option<(&'a [T], usize)>,
) -> Option<[(&'a [T], usize); M]> {
    let all: Option<Vec<_>> = matrices.into_iter().map(get).collect();
    all?.try_into().ok()
}

/// Rows at a time per thread's task: large enough that a task outweighs handing it out.
const ROWS_PER_TASK: usize = 64;

/// Inputs a kernel takes at once: each weight block is unpacked once for all of them.
const INPUTS_AT_ONCE: usize = 4;

/// A weight type's dot products with the activations it pairs with, `N` inputs at a
/// time. Each input's sum is computed in the same order whatever `N`, so a prompt's
/// tokens get the very logits they would get one at a time.
trait Dots: Sized + Sync {
    /// The activations' type.
    type Act: Sync;
    /// `[w · xs[0], ..., w · xs[N - 1]]`.
    fn dots<const N: usize>(w: &[Self], xs: [&[Self::Act]; N]) -> [f32; N];
}

impl Dots for BlockQ4_1 {
    type Act = BlockQ8_1;
    fn dots<const N: usize>(w: &[Self], xs: [&[BlockQ8_1]; N]) -> [f32; N] {
        #[cfg(target_arch = "x86_64")]
        match x86_kernels() {
            // SAFETY: the CPU has what each kernel needs (asked by `x86_kernels`).
            X86Kernels::Vnni => return unsafe { x86::dots_q4_1_vnni(w, xs) },
            X86Kernels::Avx2 => return unsafe { x86::dots_q4_1(w, xs) },
            X86Kernels::None => {}
        }
        xs.map(|x| scalar_q4_1(w, x))
    }
}

impl Dots for BlockQ8_0 {
    type Act = BlockQ8_0;
    fn dots<const N: usize>(w: &[Self], xs: [&[BlockQ8_0]; N]) -> [f32; N] {
        #[cfg(target_arch = "x86_64")]
        match x86_kernels() {
            // SAFETY: the CPU has what each kernel needs (asked by `x86_kernels`).
            X86Kernels::Vnni => return unsafe { x86::dots_q8_0_vnni(w, xs) },
            X86Kernels::Avx2 => return unsafe { x86::dots_q8_0(w, xs) },
            X86Kernels::None => {}
        }
        xs.map(|x| scalar_q8_0(w, x))
    }
}

impl Dots for f32 {
    type Act = f32;
    fn dots<const N: usize>(w: &[f32], xs: [&[f32]; N]) -> [f32; N] {
        xs.map(|x| dot_f32(w, x))
    }
}

/// For each matrix `(weights, rows)`, `out[t * rows + r] = weights row r · acts input t`;
/// the rows of all of them shared among threads in tasks of [`ROWS_PER_TASK`]. `width` is
/// a row's length in `W`s (and an input's in activations).
fn products<W: Dots, const M: usize>(
    matrices: [(&[W], usize); M],
    acts: &[W::Act],
    width: usize,
) -> [Vec<f32>; M] {
    let inputs = acts.len() / width;
    let tasks: Vec<(usize, usize)> = (0..M)
        .flat_map(|m| {
            (0..matrices[m].1)
                .step_by(ROWS_PER_TASK)
                .map(move |first| (m, first))
        })
        .collect();
    let done: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(m, first)| {
            let (weights, rows) = matrices[m];
            let count = ROWS_PER_TASK.min(rows - first);
            let mut results = vec![0.0; count * inputs];
            rows_times_inputs(weights, acts, width, first, &mut results);
            results
        })
        .collect();
    let mut outs = matrices.map(|(_, rows)| vec![0.0; rows * inputs]);
    for (&(m, first), results) in tasks.iter().zip(&done) {
        let (rows, count) = (matrices[m].1, results.len() / inputs);
        for t in 0..inputs {
            outs[m][t * rows + first..t * rows + first + count]
                .copy_from_slice(&results[t * count..(t + 1) * count]);
        }
    }
    outs
}

/// The rows from `first` on (as many as `results` holds) times every input:
/// `results[t * count + i]` = row `first + i` · input `t`.
fn rows_times_inputs<W: Dots>(
    weights: &[W],
    acts: &[W::Act],
    width: usize,
    first: usize,
    results: &mut [f32],
) {
    let inputs = acts.len() / width;
    let input = |t: usize| &acts[t * width..(t + 1) * width];
    let count = results.len() / inputs;
    for (i, row) in (first..first + count).enumerate() {
        let w = &weights[row * width..(row + 1) * width];
        let mut t = 0;
        while t + INPUTS_AT_ONCE <= inputs {
            let sums = W::dots::<INPUTS_AT_ONCE>(w, std::array::from_fn(|k| input(t + k)));
            for (k, sum) in sums.into_iter().enumerate() {
                results[(t + k) * count + i] = sum;
            }
            t += INPUTS_AT_ONCE;
        }
        for t in t..inputs {
            results[t * count + i] = W::dots(w, [input(t)])[0];
        }
    }
}

/// `x` rounded to the nearest integer, ties to even, as `rintf` rounds it (for |x| below
/// 2^22, as quantized values are): adding 1.5 × 2^23 leaves no bits below the units, and
/// the addition rounds to nearest even. `f32::round_ties_even` calls `rintf` on CPUs
/// without SSE4.1 in the build's baseline, a fifth of a prompt's serial time.
fn nearest(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    (x + SHIFT) - SHIFT
}

/// ggml's `quantize_row_q8_1` for one block.
fn quantize_q8_1(xs: &[f32]) -> BlockQ8_1 {
    let amax = xs.iter().fold(0f32, |max, x| max.max(x.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let qs: [i8; 32] = std::array::from_fn(|i| nearest(xs[i] * id) as i8);
    let sum: i32 = qs.iter().map(|&q| q as i32).sum();
    BlockQ8_1 {
        d: as_half(d),
        s: as_half(d * sum as f32),
        qs,
    }
}

/// ggml's `quantize_row_q8_0` for one block.
fn quantize_q8_0(xs: &[f32]) -> BlockQ8_0 {
    let amax = xs.iter().fold(0f32, |max, x| max.max(x.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    BlockQ8_0 {
        d: as_half(d),
        qs: std::array::from_fn(|i| nearest(xs[i] * id) as i8),
    }
}

fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(w, x)| w * x).sum()
}

/// The Q4_1 dot product on any CPU (and the AVX2 kernel's reference in the tests).
fn scalar_q4_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let sum: i32 = (0..16)
                .map(|j| {
                    (w.qs[j] & 0x0F) as i32 * x.qs[j] as i32
                        + (w.qs[j] >> 4) as i32 * x.qs[j + 16] as i32
                })
                .sum();
            sum as f32 * w.d * x.d + w.m * x.s
        })
        .sum()
}

/// The Q8_0 dot product on any CPU (and the AVX2 kernel's reference in the tests).
fn scalar_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
    w.iter()
        .zip(x)
        .map(|(w, x)| {
            let sum: i32 =
                w.qs.iter()
                    .zip(&x.qs)
                    .map(|(a, b)| *a as i32 * *b as i32)
                    .sum();
            sum as f32 * w.d * x.d
        })
        .sum()
}

/// Which x86 kernels run here.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum X86Kernels {
    /// AVX2 and FMA, and AVX-VNNI: a block's byte products summed in one instruction.
    Vnni,
    /// AVX2 and FMA.
    Avx2,
    /// Neither: the scalar sums.
    None,
}

/// The x86 kernels this CPU runs (asked once).
#[cfg(target_arch = "x86_64")]
fn x86_kernels() -> X86Kernels {
    static KERNELS: std::sync::OnceLock<X86Kernels> = std::sync::OnceLock::new();
    *KERNELS.get_or_init(|| {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        match (avx2, is_x86_feature_detected!("avxvnni")) {
            (true, true) => X86Kernels::Vnni,
            (true, false) => X86Kernels::Avx2,
            _ => X86Kernels::None,
        }
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The dot products with AVX2: a block's 32 byte products summed into eight 32-bit
    //! lanes (unsigned times signed bytes: `maddubs` to 16 bits, then `madd` to 32, or
    //! AVX-VNNI's `vpdpbusd` in one step: the same sums, none of them near 16 bits'
    //! limit), then one fused multiply-add of the block's scale into eight float lanes.
    //! Each kernel is written once over [`PairSums`] and compiled per instruction set.

    use std::arch::x86_64::*;

    use super::{BlockQ4_1, BlockQ8_0, BlockQ8_1};

    /// How a block's 32 byte products become eight 32-bit sums.
    trait PairSums {
        /// The products of `unsigned` and `signed` bytes, summed in fours.
        ///
        /// # Safety
        /// The CPU has the instructions the implementation uses.
        unsafe fn sums(unsigned: __m256i, signed: __m256i) -> __m256;
    }

    /// `maddubs` and `madd` (AVX2).
    struct Avx2;

    impl PairSums for Avx2 {
        #[inline(always)]
        unsafe fn sums(unsigned: __m256i, signed: __m256i) -> __m256 {
            let sums16 = _mm256_maddubs_epi16(unsigned, signed);
            _mm256_cvtepi32_ps(_mm256_madd_epi16(sums16, _mm256_set1_epi16(1)))
        }
    }

    /// `vpdpbusd` (AVX-VNNI).
    struct Vnni;

    impl PairSums for Vnni {
        #[inline(always)]
        unsafe fn sums(unsigned: __m256i, signed: __m256i) -> __m256 {
            _mm256_cvtepi32_ps(_mm256_dpbusd_avx_epi32(
                _mm256_setzero_si256(),
                unsigned,
                signed,
            ))
        }
    }

    #[inline(always)]
    unsafe fn sum_lanes(v: __m256) -> f32 {
        let quad = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)))
    }

    /// `N` dot products of one row of Q4_1 blocks: each block unpacked once, its
    /// products with every input summed as [`super::scalar_q4_1`] defines them.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and what `P` uses.
    #[inline(always)]
    unsafe fn q4_1<P: PairSums, const N: usize>(
        w: &[BlockQ4_1],
        xs: [&[BlockQ8_1]; N],
    ) -> [f32; N] {
        assert!(xs.iter().all(|x| x.len() >= w.len()));
        let nibble = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); N];
        let mut mins = [0f32; N];
        for (b, w) in w.iter().enumerate() {
            // `qs` holds 16 bytes; unaligned load.
            let packed = _mm_loadu_si128(w.qs.as_ptr().cast());
            let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
            let unsigned = _mm256_and_si256(both, nibble);
            for k in 0..N {
                let x = &xs[k][b];
                // `x.qs` holds 32 bytes; unaligned load.
                let signed = _mm256_loadu_si256(x.qs.as_ptr().cast());
                let scale = _mm256_set1_ps(w.d * x.d);
                acc[k] = _mm256_fmadd_ps(scale, P::sums(unsigned, signed), acc[k]);
                mins[k] += w.m * x.s;
            }
        }
        std::array::from_fn(|k| sum_lanes(acc[k]) + mins[k])
    }

    /// `N` dot products of one row of Q8_0 blocks, as [`super::scalar_q8_0`] defines them.
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and what `P` uses.
    #[inline(always)]
    unsafe fn q8_0<P: PairSums, const N: usize>(
        w: &[BlockQ8_0],
        xs: [&[BlockQ8_0]; N],
    ) -> [f32; N] {
        assert!(xs.iter().all(|x| x.len() >= w.len()));
        let mut acc = [_mm256_setzero_ps(); N];
        for (b, w) in w.iter().enumerate() {
            // `qs` holds 32 bytes; unaligned load.
            let a = _mm256_loadu_si256(w.qs.as_ptr().cast());
            let magnitude = _mm256_sign_epi8(a, a);
            for k in 0..N {
                let x = &xs[k][b];
                let b = _mm256_loadu_si256(x.qs.as_ptr().cast());
                // |a| · (b with a's sign): unsigned times signed, as both sums want.
                let products = P::sums(magnitude, _mm256_sign_epi8(b, a));
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(w.d * x.d), products, acc[k]);
            }
        }
        std::array::from_fn(|k| sum_lanes(acc[k]))
    }

    /// [`q4_1`] with AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub fn dots_q4_1<const N: usize>(w: &[BlockQ4_1], xs: [&[BlockQ8_1]; N]) -> [f32; N] {
        // SAFETY: this function is compiled for, and only called with, AVX2 and FMA.
        unsafe { q4_1::<Avx2, N>(w, xs) }
    }

    /// [`q4_1`] with AVX-VNNI.
    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub fn dots_q4_1_vnni<const N: usize>(w: &[BlockQ4_1], xs: [&[BlockQ8_1]; N]) -> [f32; N] {
        // SAFETY: this function is compiled for, and only called with, AVX-VNNI.
        unsafe { q4_1::<Vnni, N>(w, xs) }
    }

    /// [`q8_0`] with AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub fn dots_q8_0<const N: usize>(w: &[BlockQ8_0], xs: [&[BlockQ8_0]; N]) -> [f32; N] {
        // SAFETY: this function is compiled for, and only called with, AVX2 and FMA.
        unsafe { q8_0::<Avx2, N>(w, xs) }
    }

    /// [`q8_0`] with AVX-VNNI.
    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub fn dots_q8_0_vnni<const N: usize>(w: &[BlockQ8_0], xs: [&[BlockQ8_0]; N]) -> [f32; N] {
        // SAFETY: this function is compiled for, and only called with, AVX-VNNI.
        unsafe { q8_0::<Vnni, N>(w, xs) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    fn q4_1_matrix(rows: usize, cols: usize) -> Matrix {
        let blocks = (0..rows * cols / BLOCK)
            .map(|i| BlockQ4_1 {
                d: as_half(0.01 + (i % 7) as f32 * 0.003),
                m: as_half(-0.05 * (i % 5) as f32),
                qs: std::array::from_fn(|j| ((i * 31 + j * 7) % 256) as u8),
            })
            .collect();
        Matrix::Q4_1 { rows, cols, blocks }
    }

    #[test]
    fn quantized_products_are_near_the_exact_ones_and_kernels_agree() {
        let (rows, cols) = (130, 256);
        let matrix = q4_1_matrix(rows, cols);
        // Five inputs: four through the kernel at once, one alone.
        let xs = values(cols * 5, 1);
        let out = matrix.matmul(&xs);
        let Matrix::Q4_1 { blocks, .. } = &matrix else {
            unreachable!()
        };
        for t in 0..5 {
            let x = &xs[t * cols..(t + 1) * cols];
            let acts: Vec<_> = x.chunks_exact(BLOCK).map(quantize_q8_1).collect();
            for r in 0..rows {
                let exact = dot_f32(&matrix.row(r), x);
                let got = out[t * rows + r];
                assert!(
                    (got - exact).abs() < 0.05 * (1.0 + exact.abs()),
                    "{got} vs {exact}"
                );
                let w = &blocks[r * cols / BLOCK..(r + 1) * cols / BLOCK];
                let scalar = scalar_q4_1(w, &acts);
                assert!(
                    (got - scalar).abs() <= 1e-4 * (1.0 + scalar.abs()),
                    "{got} vs {scalar}"
                );
            }
        }
        // One input at a time gives what a batch gives, to the bit.
        for t in [1, 4] {
            let single = matrix.matmul(&xs[t * cols..(t + 1) * cols]);
            assert_eq!(single, out[t * rows..(t + 1) * rows]);
        }
    }

    #[test]
    fn products_in_one_pass_are_the_products_one_by_one() {
        let (a, b) = (q4_1_matrix(130, 256), q4_1_matrix(70, 256));
        let c = Matrix::F32 {
            rows: 3,
            cols: 256,
            values: values(3 * 256, 8),
        };
        let xs = values(256 * 6, 4);
        let [pa, pb] = Matrix::matmul_all([&a, &b], &xs);
        assert_eq!((pa, pb.clone()), (a.matmul(&xs), b.matmul(&xs)));
        // Of different types: a pass each.
        let [pb2, pc] = Matrix::matmul_all([&b, &c], &xs);
        assert_eq!((pb2, pc), (pb, c.matmul(&xs)));
    }

    #[test]
    fn q8_0_products_match_the_scalar_sum() {
        let (rows, cols) = (70, 128);
        let ws = values(rows * cols, 2);
        let blocks: Vec<_> = ws.chunks_exact(BLOCK).map(quantize_q8_0).collect();
        let matrix = Matrix::Q8_0 { rows, cols, blocks };
        let x = values(cols, 3);
        let out = matrix.matmul(&x);
        // In a batch of five (four at once, one alone), the same sums to the bit.
        let batch: Vec<f32> = [
            values(cols, 4),
            x.clone(),
            values(cols, 5),
            values(cols, 6),
            x.clone(),
        ]
        .concat();
        let outs = matrix.matmul(&batch);
        assert_eq!(outs[rows..2 * rows], out);
        assert_eq!(outs[4 * rows..], out);
        let Matrix::Q8_0 { blocks, .. } = &matrix else {
            unreachable!()
        };
        let acts: Vec<_> = x.chunks_exact(BLOCK).map(quantize_q8_0).collect();
        for (r, got) in out.iter().enumerate() {
            let scalar = scalar_q8_0(&blocks[r * cols / BLOCK..(r + 1) * cols / BLOCK], &acts);
            assert!(
                (got - scalar).abs() <= 1e-4 * (1.0 + scalar.abs()),
                "{got} vs {scalar}"
            );
            // Both sides 8-bit: about 0.02 off per product, over 128 of them.
            let exact = dot_f32(&ws[r * cols..(r + 1) * cols], &x);
            assert!((got - exact).abs() < 1.0, "{got} vs {exact}");
        }
    }

    /// Every x86 kernel this CPU runs gives the scalar integer sums: AVX2's and
    /// AVX-VNNI's agree to the bit, and with the scalar code up to float rounding.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_x86_kernel_gives_the_scalar_sums() {
        if matches!(x86_kernels(), X86Kernels::None) {
            return;
        }
        let cols = 256;
        let Matrix::Q4_1 { blocks: w4, .. } = q4_1_matrix(1, cols) else {
            unreachable!()
        };
        let w8: Vec<_> = values(cols, 7)
            .chunks_exact(BLOCK)
            .map(quantize_q8_0)
            .collect();
        let inputs: Vec<Vec<f32>> = (0..4).map(|t| values(cols, 10 + t)).collect();
        let q8_1: Vec<Vec<BlockQ8_1>> = inputs
            .iter()
            .map(|x| x.chunks_exact(BLOCK).map(quantize_q8_1).collect())
            .collect();
        let q8_0: Vec<Vec<BlockQ8_0>> = inputs
            .iter()
            .map(|x| x.chunks_exact(BLOCK).map(quantize_q8_0).collect())
            .collect();
        let xs4: [&[BlockQ8_1]; 4] = std::array::from_fn(|k| q8_1[k].as_slice());
        let xs8: [&[BlockQ8_0]; 4] = std::array::from_fn(|k| q8_0[k].as_slice());
        // SAFETY: the CPU has AVX2 and FMA (not `None` above).
        let (avx2_4, avx2_8) = unsafe { (x86::dots_q4_1(&w4, xs4), x86::dots_q8_0(&w8, xs8)) };
        for k in 0..4 {
            let (scalar4, scalar8) = (scalar_q4_1(&w4, xs4[k]), scalar_q8_0(&w8, xs8[k]));
            assert!((avx2_4[k] - scalar4).abs() <= 1e-4 * (1.0 + scalar4.abs()));
            assert!((avx2_8[k] - scalar8).abs() <= 1e-4 * (1.0 + scalar8.abs()));
        }
        if matches!(x86_kernels(), X86Kernels::Vnni) {
            // SAFETY: the CPU has AVX-VNNI (asked above).
            let vnni = unsafe { (x86::dots_q4_1_vnni(&w4, xs4), x86::dots_q8_0_vnni(&w8, xs8)) };
            assert_eq!(vnni, (avx2_4, avx2_8));
        }
    }

    #[test]
    fn nearest_rounds_as_rintf() {
        for x in values(10_000, 9).iter().map(|x| x * 70.0).chain([
            0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -127.5, 0.0, -0.0, 0.49999997,
        ]) {
            assert_eq!(nearest(x), x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn q8_1_keeps_ggml_s_rounded_once_from_f32() {
        let xs: Vec<f32> = (0..32).map(|i| i as f32 * 0.37).collect();
        let block = quantize_q8_1(&xs);
        let sum: i32 = block.qs.iter().map(|&q| q as i32).sum();
        let d = 31.0 * 0.37 / 127.0;
        assert_eq!(block.s, as_half(d * sum as f32));
        assert_eq!(block.qs[31], 127);
    }
}
