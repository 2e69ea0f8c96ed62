//! CPU twin of the NF4 kernels (`shaders/nf4/simple.wgsl`, f32 and f16, and `shaders/nf4/block.wgsl`): the quantiser, the
//! dequantiser, and "dequantise then matmul" for the fused forward and input-gradient kernels.
//!
//! # Format (QLoRA's NF4 with double quantisation)
//!
//! A weight W (out, in), row-major, is flattened to `n = out * in` values and cut into blocks of
//! [`BLOCK`] = 64 consecutive values (a block may span rows). For block `b` with absmax
//! `c_b = max |w|` each value is stored as the index of the nearest entry of the 16-value code
//! book [`NF4_CODE`] to `w / c_b` (a block of zeros stores code 7, the 0.0 entry); it decodes as
//! `NF4_CODE[code] * c_b'` where `c_b'` is the double-quantised absmax below.
//!
//! Double quantisation (our variant, stated exactly): with `mu` the mean of all block absmaxes,
//! the centred absmaxes `c_b - mu` are cut into groups of [`GROUP`] = 256 blocks; group `g` has
//! the scale `s_g = max |c_b - mu| / 127` and each block stores the int8
//! `q_b = round((c_b - mu) / s_g)` in -127..=127 (symmetric absmax int8, not bitsandbytes' dynamic
//! 8-bit code). Decoding gives `c_b' = q_b * s_g + mu`, within `s_g / 2` of `c_b`. The first level
//! codes are chosen with the exact `c_b` (as bitsandbytes does); the error bound of a value is
//! therefore `max_gap / 2 * c_b + |c_b - c_b'|`, `max_gap` = [`max_code_gap`].
//!
//! Storage: 4 bits per value, 8 bits per 64 values, 32 bits per 64 * 256 values plus one f32:
//! `4 + 8/64 + 32/16384 = 4.127` bits per parameter, `0.129 x` of f32.
//!
//! # Packing
//! - codes: value `e` (flat index) is nibble `e % 8` of u32 word `e / 8`, bits `4 (e % 8) ..
//!   4 (e % 8) + 3` (low nibble first). The tail of the last word is padded with code 7 (0.0).
//! - scales: the int8 of block `b` is byte `b % 4` of u32 word `b / 4` (low byte first, two's
//!   complement); the tail is padded with 0.
//! - stats (f32): `[mu, s_0, s_1, ...]`, one scale per group of 256 blocks.
//!
//! The last block of a weight whose size is not a multiple of 64 is shorter (its absmax is over
//! the values it has); likewise the last group. Nothing ever reads a padded value.

use num_traits::Float;

/// Values per first-level block (one absmax each).
pub const BLOCK: usize = 64;
/// Blocks per second-level group (one f32 scale each).
pub const GROUP: usize = 256;
/// Values per packed u32 word of codes.
pub const PER_WORD: usize = 8;
/// The code of 0.0 (used for padding and for all-zero blocks).
pub const ZERO_CODE: u32 = 7;

/// The NF4 code book: the 16 quantiles of N(0, 1) normalised to [-1, 1], with an exact 0
/// (QLoRA, Dettmers et al. 2023, appendix E; the same numbers as bitsandbytes'
/// `nf4_dequantization_lut` in `csrc/kernels.cu`). `shaders/common/nf4.wgsl` holds the same
/// table; a test checks they agree. The literals are the published digits (more than f32
/// holds), kept so they can be compared with the sources by eye.
#[allow(clippy::excessive_precision)]
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236328,
    1.0,
];

/// The largest gap between neighbouring code book values (between -1 and -0.696): a value
/// normalised by its block absmax is never further than half of it from its code.
pub fn max_code_gap() -> f32 {
    NF4_CODE.windows(2).map(|w| w[1] - w[0]).fold(0.0, f32::max)
}

/// Index of the code book entry nearest to `v` (ties go to the lower entry).
pub fn nearest_code(v: f32) -> u32 {
    let mut best = 0usize;
    for (i, &c) in NF4_CODE.iter().enumerate() {
        if (v - c).abs() < (v - NF4_CODE[best]).abs() {
            best = i;
        }
    }
    best as u32
}

/// A weight (out, in) quantised to NF4 with double-quantised scales, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Quantized {
    /// Rows of W (output features).
    pub out_features: usize,
    /// Columns of W (input features).
    pub in_features: usize,
    /// Packed codes, 8 per word (see the module docs): `ceil(n / 8)` words.
    pub codes: Vec<u32>,
    /// int8 absmax of each block, centred and scaled by its group: `ceil(n / 64)` entries.
    pub scales: Vec<i8>,
    /// `[mu, s_0, s_1, ...]`: the mean absmax and one scale per group of 256 blocks.
    pub stats: Vec<f32>,
    /// The exact (f32) absmax of each block, kept for error reports and tests; not uploaded.
    pub absmax: Vec<f32>,
}

impl Nf4Quantized {
    /// Number of values, `out * in`.
    pub fn len(&self) -> usize {
        self.out_features * self.in_features
    }

    /// True when the weight has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of blocks of 64.
    pub fn blocks(&self) -> usize {
        self.scales.len()
    }

    /// The scales packed 4 per u32 word, as uploaded (see the module docs).
    pub fn scale_words(&self) -> Vec<u32> {
        pack_i8(&self.scales)
    }

    /// The double-quantised absmax `c_b' = q_b * s_g + mu` of block `b`, as the kernels compute it.
    pub fn block_absmax(&self, b: usize) -> f32 {
        (self.scales[b] as f32).mul_add(self.stats[1 + b / GROUP], self.stats[0])
    }

    /// Bytes the three packed arrays take (codes + scale words + stats).
    pub fn bytes(&self) -> usize {
        4 * (self.codes.len() + self.scales.len().div_ceil(4) + self.stats.len())
    }
}

/// Pack 8 codes (each < 16) per u32, value `e` in nibble `e % 8` of word `e / 8`; the tail is
/// padded with [`ZERO_CODE`].
pub fn pack_codes(codes: &[u8]) -> Vec<u32> {
    codes
        .chunks(PER_WORD)
        .map(|c| {
            (0..PER_WORD).fold(0u32, |w, i| {
                let v = c.get(i).copied().map_or(ZERO_CODE, u32::from);
                w | ((v & 15) << (4 * i))
            })
        })
        .collect()
}

/// The first `n` codes of packed words (inverse of [`pack_codes`]).
pub fn unpack_codes(words: &[u32], n: usize) -> Vec<u8> {
    (0..n)
        .map(|e| ((words[e / PER_WORD] >> (4 * (e % PER_WORD))) & 15) as u8)
        .collect()
}

/// Pack int8 values 4 per u32, value `b` in byte `b % 4` of word `b / 4` (padded with 0).
pub fn pack_i8(v: &[i8]) -> Vec<u32> {
    v.chunks(4)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |w, (i, &q)| w | (u32::from(q as u8) << (8 * i)))
        })
        .collect()
}

/// The first `n` int8 values of packed words (inverse of [`pack_i8`]).
pub fn unpack_i8(words: &[u32], n: usize) -> Vec<i8> {
    (0..n)
        .map(|b| ((words[b / 4] >> (8 * (b % 4))) & 0xff) as u8 as i8)
        .collect()
}

/// Quantise W (out, in), row-major `w`, to NF4 with double-quantised scales.
///
/// Panics if `w.len() != out * in` (callers check shapes and report errors).
pub fn quantize(w: &[f32], out_features: usize, in_features: usize) -> Nf4Quantized {
    assert_eq!(w.len(), out_features * in_features, "nf4 quantize: length");
    let absmax: Vec<f32> = w
        .chunks(BLOCK)
        .map(|b| b.iter().fold(0.0f32, |m, v| m.max(v.abs())))
        .collect();
    let mut codes = Vec::with_capacity(w.len());
    for (blk, &c) in w.chunks(BLOCK).zip(&absmax) {
        for &v in blk {
            codes.push(if c > 0.0 {
                nearest_code(v / c) as u8
            } else {
                ZERO_CODE as u8
            });
        }
    }
    let (scales, stats) = double_quantize(&absmax);
    Nf4Quantized {
        out_features,
        in_features,
        codes: pack_codes(&codes),
        scales,
        stats,
        absmax,
    }
}

/// Second-level quantisation of the block absmaxes: `(q, [mu, s_0, s_1, ...])` (module docs).
pub fn double_quantize(absmax: &[f32]) -> (Vec<i8>, Vec<f32>) {
    let mu = if absmax.is_empty() {
        0.0
    } else {
        (absmax.iter().map(|&c| c as f64).sum::<f64>() / absmax.len() as f64) as f32
    };
    let mut q = Vec::with_capacity(absmax.len());
    let mut stats = vec![mu];
    for g in absmax.chunks(GROUP) {
        let dev = g.iter().fold(0.0f32, |m, &c| m.max((c - mu).abs()));
        let s = dev / 127.0;
        stats.push(s);
        for &c in g {
            let v = if s > 0.0 {
                ((c - mu) / s).round().clamp(-127.0, 127.0)
            } else {
                0.0
            };
            q.push(v as i8);
        }
    }
    (q, stats)
}

/// The dequantised weight (out, in), row-major: `NF4_CODE[code] * c_b'`.
pub fn dequantize<T: Float>(q: &Nf4Quantized) -> Vec<T> {
    let codes = unpack_codes(&q.codes, q.len());
    codes
        .iter()
        .enumerate()
        .map(|(e, &c)| {
            T::from(NF4_CODE[c as usize] * q.block_absmax(e / BLOCK)).expect("f32 fits T")
        })
        .collect()
}

/// CPU twin of `matmul_nf4`: `y (M, out) = x (M, in) @ W^T + bias`, W dequantised first.
pub fn matmul_nf4<T: Float>(x: &[T], m: usize, q: &Nf4Quantized, bias: Option<&[T]>) -> Vec<T> {
    let (n, k) = (q.out_features, q.in_features);
    let w = dequantize::<T>(q);
    let mut y = Vec::with_capacity(m * n);
    for i in 0..m {
        for o in 0..n {
            let mut acc = bias.map_or(T::zero(), |b| b[o]);
            for p in 0..k {
                acc = acc + x[i * k + p] * w[o * k + p];
            }
            y.push(acc);
        }
    }
    y
}

/// CPU twin of `matmul_nf4_grad_input`: `dx (M, in) = dy (M, out) @ W`, W dequantised first.
pub fn matmul_nf4_grad_input<T: Float>(dy: &[T], m: usize, q: &Nf4Quantized) -> Vec<T> {
    let (n, k) = (q.out_features, q.in_features);
    let w = dequantize::<T>(q);
    let mut dx = vec![T::zero(); m * k];
    for i in 0..m {
        for o in 0..n {
            let g = dy[i * n + o];
            for p in 0..k {
                dx[i * k + p] = dx[i * k + p] + g * w[o * k + p];
            }
        }
    }
    dx
}

/// Quantisation error of one weight: how far the dequantised values are from the originals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantError {
    /// Mean of `|w - w'|`.
    pub mean_abs: f64,
    /// Largest `|w - w'|`.
    pub max_abs: f64,
    /// `||w - w'||_F / ||w||_F` (0 for an all-zero weight).
    pub rel_frobenius: f64,
}

/// The error of `q` as a quantisation of `w` (row-major, same shape).
pub fn quant_error(w: &[f32], q: &Nf4Quantized) -> QuantError {
    let d = dequantize::<f64>(q);
    let (mut sum, mut max, mut sq, mut norm) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (&a, &b) in w.iter().zip(&d) {
        let e = (a as f64 - b).abs();
        sum += e;
        max = max.max(e);
        sq += e * e;
        norm += (a as f64) * (a as f64);
    }
    QuantError {
        mean_abs: if w.is_empty() {
            0.0
        } else {
            sum / w.len() as f64
        },
        max_abs: max,
        rel_frobenius: if norm > 0.0 { (sq / norm).sqrt() } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        for n in [1usize, 7, 8, 9, 63, 65, 257] {
            let c: Vec<u8> = (0..n).map(|i| (i * 7 % 16) as u8).collect();
            assert_eq!(unpack_codes(&pack_codes(&c), n), c);
            let s: Vec<i8> = (0..n).map(|i| (i as i32 * 37 % 255 - 127) as i8).collect();
            assert_eq!(unpack_i8(&pack_i8(&s), n), s);
        }
        // Value 1 sits in bits 4..8 of word 0.
        assert_eq!(pack_codes(&[1, 2])[0] & 0xff, 0x21);
    }

    #[test]
    fn exact_codes_round_trip() {
        // One block whose values are the code book times 2 quantises exactly (up to the scale).
        let w: Vec<f32> = NF4_CODE.iter().map(|c| 2.0 * c).collect();
        let q = quantize(&w, 2, 8);
        let d = dequantize::<f32>(&q);
        for (a, b) in w.iter().zip(&d) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
