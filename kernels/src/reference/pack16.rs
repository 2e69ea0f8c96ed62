//! CPU twin of `pack16.wgsl`: f32 to packed f16 / bf16 words and back, through the `half`
//! crate's conversions (round to nearest, ties to even), an implementation independent of the
//! shader's bit work.

use crate::launch::pack16::{Half, words};

/// The 16-bit pattern of `x` in `format`.
pub fn bits16(format: Half, x: f32) -> u16 {
    match format {
        Half::F16 => half::f16::from_f32(x).to_bits(),
        Half::Bf16 => half::bf16::from_f32(x).to_bits(),
    }
}

/// The f32 value of the 16-bit pattern `h` in `format` (exact).
pub fn value16(format: Half, h: u16) -> f32 {
    match format {
        Half::F16 => half::f16::from_bits(h).to_f32(),
        Half::Bf16 => half::bf16::from_bits(h).to_f32(),
    }
}

/// `x` packed two to a word (element 2w in the low half of word w; a missing last one is 0).
pub fn pack(format: Half, x: &[f32]) -> Vec<u32> {
    (0..words(x.len()))
        .map(|w| {
            let lo = bits16(format, x[2 * w]) as u32;
            let hi = x.get(2 * w + 1).map_or(0, |&v| bits16(format, v) as u32);
            lo | (hi << 16)
        })
        .collect()
}

/// The first `n` values of `words` as f32.
pub fn unpack(format: Half, words: &[u32], n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| value16(format, (words[i / 2] >> (16 * (i % 2))) as u16))
        .collect()
}
