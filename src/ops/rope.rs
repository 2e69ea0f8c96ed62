//! Rotary position embedding (RoPE), composed from primitive ops.
//!
//! For x of shape (B, H, T, D) with D even, position `p = offset + t` and frequencies
//! `f_i = base^(-2i / D)` for i < D/2, the "rotate half" form (GPT-NeoX, LLaMA in Hugging Face):
//!
//! ```text
//! x1 = x[..., :D/2],  x2 = x[..., D/2:]
//! y1 = x1 cos(p f_i) - x2 sin(p f_i)
//! y2 = x2 cos(p f_i) + x1 sin(p f_i)
//! ```
//!
//! i.e. each pair (x1_i, x2_i) is rotated by the angle `p f_i`, so `q_s . k_t` depends only on
//! `s - t`. The backward is the inverse rotation (angle `-p f_i`): a rotation matrix's transpose is
//! its inverse. `offset` is the position of the first row, for decoding with a KV cache.
//!
//! **Scaling** ([`RopeScaling`], [`rope_scaled`]) changes only the frequencies `f_i`: `Linear`
//! (position interpolation) divides each by `factor`; `Llama3` divides the low frequencies
//! (wavelength `2 pi / f_i` above `original / low_freq_factor`) by `factor`, keeps the high ones
//! (wavelength below `original / high_freq_factor`) and blends in between with
//! `s = (original / wavelength - low) / (high - low)`: `f' = (1 - s) f / factor + s f`.
//!
//! Composed, not fused: `y = x cos + rotate_half(x) sin` is five memory-bound passes (narrow and
//! negate, concat, two multiplies, add) on tensors the attention matmuls then read anyway, and
//! its gradient comes free from those ops (it is exactly the inverse rotation). The cos/sin tables
//! (T, D) are computed on the host in f64 and uploaded once per call.
//!
//! ```
//! # fn main() -> kiln::Result<()> {
//! use kiln::{Tensor, ops::rope};
//! // One head, one position p = 1, D = 2: rotate (1, 0) by 1 radian.
//! let x = Tensor::from_slice(&[1.0f32, 0.0], &[1, 1, 1, 2])?;
//! let y = rope::rope(&x, 1, 10_000.0)?.to_vec::<f32>()?;
//! assert!((y[0] - 1.0f32.cos()).abs() < 1e-6 && (y[1] - 1.0f32.sin()).abs() < 1e-6);
//! # Ok(())
//! # }
//! ```

use crate::error::{Result, arg_err, shape_err};
use crate::tensor::Tensor;

/// How RoPE's frequencies are rescaled for a longer context (Hugging Face's `rope_scaling`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RopeScaling {
    /// The plain frequencies `base^(-2i / D)`.
    #[default]
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// The divisor (> 0).
        factor: f32,
    },
    /// Llama 3's: low frequencies divided by `factor`, high ones kept, a blend between.
    Llama3 {
        /// The divisor of the low frequencies.
        factor: f32,
        /// Wavelengths above `original / low_freq_factor` are scaled.
        low_freq_factor: f32,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f32,
        /// The context the model was pretrained with.
        original_max_position_embeddings: usize,
    },
}

impl RopeScaling {
    /// The D/2 frequencies of head dim `d` with frequency base `base`, rescaled.
    pub fn frequencies(&self, d: usize, base: f32) -> Vec<f64> {
        let plain = (0..d / 2).map(|i| (base as f64).powf(-2.0 * i as f64 / d as f64));
        match *self {
            RopeScaling::None => plain.collect(),
            RopeScaling::Linear { factor } => plain.map(|f| f / factor as f64).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: orig,
            } => {
                let (factor, low, high, orig) =
                    (factor as f64, low as f64, high as f64, orig as f64);
                plain
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < orig / high {
                            f
                        } else if wavelen > orig / low {
                            f / factor
                        } else {
                            let s = (orig / wavelen - low) / (high - low);
                            (1.0 - s) * f / factor + s * f
                        }
                    })
                    .collect()
            }
        }
    }

    /// An error naming what is wrong with the numbers, if anything.
    pub fn check(&self) -> Result<()> {
        let bad = match *self {
            RopeScaling::None => false,
            RopeScaling::Linear { factor } => !(factor.is_finite() && factor > 0.0),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                !(factor.is_finite()
                    && factor > 0.0
                    && low_freq_factor > 0.0
                    && high_freq_factor > low_freq_factor)
                    || original_max_position_embeddings == 0
            }
        };
        if bad {
            return arg_err(
                "rope",
                format!(
                    "rope scaling needs positive factors (high_freq_factor > low_freq_factor), got {self:?}"
                ),
            );
        }
        Ok(())
    }
}

/// The (T, D) cos and sin tables for positions `offset..offset + t`, halves duplicated so they
/// multiply x elementwise.
pub fn rope_tables(t: usize, d: usize, offset: usize, base: f32) -> (Vec<f32>, Vec<f32>) {
    rope_tables_scaled(t, d, offset, base, RopeScaling::None)
}

/// [`rope_tables`] with rescaled frequencies.
pub fn rope_tables_scaled(
    t: usize,
    d: usize,
    offset: usize,
    base: f32,
    scaling: RopeScaling,
) -> (Vec<f32>, Vec<f32>) {
    let half = d / 2;
    let freqs = scaling.frequencies(d, base);
    let mut cos = Vec::with_capacity(t * d);
    let mut sin = Vec::with_capacity(t * d);
    for p in offset..offset + t {
        for j in 0..d {
            let i = j % half.max(1);
            let a = p as f64 * freqs[i];
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

/// Apply RoPE to `x` (B, H, T, D), D even, the first row at position `offset`, frequency base
/// `base` (10,000 in most models). Differentiable.
pub fn rope(x: &Tensor, offset: usize, base: f32) -> Result<Tensor> {
    rope_scaled(x, offset, base, RopeScaling::None)
}

/// [`rope`] with the frequencies rescaled by `scaling`. Differentiable.
pub fn rope_scaled(x: &Tensor, offset: usize, base: f32, scaling: RopeScaling) -> Result<Tensor> {
    scaling.check()?;
    x.expect_f32("rope")?;
    x.expect_rank("rope", "input", 4, "(B, H, T, D)")?;
    let (t, d) = (x.shape()[2], x.shape()[3]);
    if d % 2 != 0 {
        return shape_err(
            "rope",
            format!("head dim D must be even, got shape {:?}", x.shape()),
        );
    }
    if !(base.is_finite() && base > 0.0) {
        return arg_err("rope", format!("base must be finite and > 0, got {base}"));
    }
    if x.numel() == 0 {
        return Ok(x.clone());
    }
    let (cos, sin) = rope_tables_scaled(t, d, offset, base, scaling);
    let cos = Tensor::from_slice_on(x.gpu(), &cos, &[t, d])?;
    let sin = Tensor::from_slice_on(x.gpu(), &sin, &[t, d])?;
    let half = d / 2;
    let x1 = x.narrow(-1, 0, half)?;
    let x2 = x.narrow(-1, half, half)?;
    let rot = Tensor::concat(&[&x2.neg()?, &x1], -1)?;
    x.mul(&cos)?.add(&rot.mul(&sin)?)
}
