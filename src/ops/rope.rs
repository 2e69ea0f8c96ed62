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

/// The (T, D) cos and sin tables for positions `offset..offset + t`, halves duplicated so they
/// multiply x elementwise.
pub fn rope_tables(t: usize, d: usize, offset: usize, base: f32) -> (Vec<f32>, Vec<f32>) {
    let half = d / 2;
    let mut cos = Vec::with_capacity(t * d);
    let mut sin = Vec::with_capacity(t * d);
    for p in offset..offset + t {
        for j in 0..d {
            let i = j % half.max(1);
            let f = (base as f64).powf(-2.0 * i as f64 / d as f64);
            let a = p as f64 * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

/// Apply RoPE to `x` (B, H, T, D), D even, the first row at position `offset`, frequency base
/// `base` (10,000 in most models). Differentiable.
pub fn rope(x: &Tensor, offset: usize, base: f32) -> Result<Tensor> {
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
    let (cos, sin) = rope_tables(t, d, offset, base);
    let cos = Tensor::from_slice_on(x.gpu(), &cos, &[t, d])?;
    let sin = Tensor::from_slice_on(x.gpu(), &sin, &[t, d])?;
    let half = d / 2;
    let x1 = x.narrow(-1, 0, half)?;
    let x2 = x.narrow(-1, half, half)?;
    let rot = Tensor::concat(&[&x2.neg()?, &x1], -1)?;
    x.mul(&cos)?.add(&rot.mul(&sin)?)
}
