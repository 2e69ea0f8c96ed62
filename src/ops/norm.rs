//! Fused LayerNorm and RMSNorm over the last dim (`norm.wgsl`), forward and backward.
//!
//! For x of shape (..., D), viewed as R = numel / D rows, per row:
//!
//! ```text
//! LayerNorm: mean = sum_d x_d / D,  rstd = 1 / sqrt(sum_d (x_d - mean)^2 / D + eps)
//!            xhat = (x - mean) rstd,  y = xhat w + b
//! RMSNorm:   rstd = 1 / sqrt(sum_d x_d^2 / D + eps),  xhat = x rstd,  y = xhat w
//! ```
//!
//! Backward, with g = dL/dy and gw = g w:
//!
//! ```text
//! LayerNorm: dx = rstd (gw - mean_d(gw) - xhat mean_d(gw xhat))
//! RMSNorm:   dx = rstd (gw - xhat mean_d(gw xhat))
//! dw = sum over rows of g xhat,   db = sum over rows of g
//! ```
//!
//! The forward saves `[mean, rstd]` per row (R, 2) for the backward. The backward kernel writes dx
//! and the (R, D) block `g xhat`; dw and db are column sums done by the reduce kernels, which are
//! deterministic and split long columns for llvmpipe's loop limit (rows can be many). Rows longer
//! than [`MAX_D`] use the composed versions ([`layer_norm_composed`], [`rms_norm_composed`]),
//! which are also the test references for the fused kernels.
//!
//! ```
//! # fn main() -> kiln::Result<()> {
//! use kiln::{Tensor, ops::norm};
//! let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[1, 4])?;
//! let y = norm::layer_norm(&x, None, None, 0.0)?.to_vec::<f32>()?;
//! let s = 1.25f32.sqrt();
//! for (a, b) in y.iter().zip([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]) {
//!     assert!((a - b).abs() < 1e-5);
//! }
//! let r = norm::rms_norm(&x, None, 0.0)?.to_vec::<f32>()?;
//! assert!((r[3] - 4.0 / 7.5f32.sqrt()).abs() < 1e-5);
//! # Ok(())
//! # }
//! ```

use kiln_kernels::launch::norm::{self as lk, NormKind};

pub use kiln_kernels::launch::norm::MAX_D;

use crate::error::{Result, shape_err};
use crate::tensor::{DType, Tensor};

/// LayerNorm of `x` (..., D) over its last dim with optional scale `weight` (D) and shift `bias`
/// (D): one fused kernel each way.
pub fn layer_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    let d = check("layer_norm", x, &[("weight", weight), ("bias", bias)])?;
    if d > MAX_D {
        return layer_norm_composed(x, weight, bias, eps);
    }
    fused(NormKind::LayerNorm, "layer_norm", x, weight, bias, eps)
}

/// RMSNorm of `x` (..., D) over its last dim, `x / sqrt(mean(x^2) + eps) * weight`: one fused
/// kernel each way.
pub fn rms_norm(x: &Tensor, weight: Option<&Tensor>, eps: f32) -> Result<Tensor> {
    let d = check("rms_norm", x, &[("weight", weight)])?;
    if d > MAX_D {
        return rms_norm_composed(x, weight, eps);
    }
    fused(NormKind::RmsNorm, "rms_norm", x, weight, None, eps)
}

/// LayerNorm composed from primitive ops (mean, sub, square, rsqrt, mul, add); its gradient comes
/// from them. The reference for the fused kernel, and the path for rows longer than [`MAX_D`].
pub fn layer_norm_composed(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    check("layer_norm", x, &[("weight", weight), ("bias", bias)])?;
    let mu = x.mean_dims(&[-1], true)?;
    let xc = x.sub(&mu)?;
    let var = xc.square()?.mean_dims(&[-1], true)?;
    let mut y = xc.mul(&var.add_scalar(eps)?.rsqrt()?)?;
    if let Some(w) = weight {
        y = y.mul(w)?;
    }
    if let Some(b) = bias {
        y = y.add(b)?;
    }
    Ok(y)
}

/// RMSNorm composed from primitive ops; the reference for the fused kernel.
pub fn rms_norm_composed(x: &Tensor, weight: Option<&Tensor>, eps: f32) -> Result<Tensor> {
    check("rms_norm", x, &[("weight", weight)])?;
    let ms = x.square()?.mean_dims(&[-1], true)?;
    let y = x.mul(&ms.add_scalar(eps)?.rsqrt()?)?;
    match weight {
        Some(w) => y.mul(w),
        None => Ok(y),
    }
}

/// Check dtype, rank and parameter shapes; returns D.
fn check(op: &'static str, x: &Tensor, params: &[(&str, Option<&Tensor>)]) -> Result<usize> {
    x.expect_f32(op)?;
    if x.rank() == 0 {
        return shape_err(op, "input must have at least one dim, got a scalar");
    }
    let d = x.shape()[x.rank() - 1];
    for (name, p) in params {
        let Some(p) = p else { continue };
        p.expect_f32(op)?;
        p.expect_len(op, name, d, ("input", x))?;
    }
    Ok(d)
}

fn fused(
    kind: NormKind,
    name: &'static str,
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    let gpu = x.gpu().clone();
    let shape = x.shape().to_vec();
    let d = shape[shape.len() - 1];
    let rows = x.numel() / d.max(1);
    let xc = if x.is_contiguous() {
        x.detach()
    } else {
        x.copy_contiguous()?
    };
    let w = match weight {
        Some(w) => w.dense()?,
        None => Tensor::ones_on(&gpu, &[d])?,
    };
    let b = match bias {
        Some(b) => b.dense()?,
        None => Tensor::zeros_on(&gpu, &[d])?,
    };
    let y = Tensor::empty_on(&gpu, &shape, DType::F32)?;
    let stats = Tensor::empty_on(&gpu, &[rows, 2], DType::F32)?;
    if d == 0 {
        return Ok(y);
    }
    let s = lk::RowNorm { kind, rows, d, eps };
    let (x_in, w_in) = (xc.operand(), w.buffer());
    lk::forward(&gpu, s, x_in, w_in, b.buffer(), y.buffer(), stats.buffer())?;
    let mut inputs = vec![x];
    inputs.extend(weight);
    inputs.extend(bias);
    let (has_w, has_b) = (weight.is_some(), bias.is_some());
    Ok(y.record(name, &inputs, move |g| {
        let g = g.dense()?;
        let dx = Tensor::empty_on(&gpu, &shape, DType::F32)?;
        let gxh = Tensor::empty_on(&gpu, &[rows, d], DType::F32)?;
        let (x_in, w_in, g_in) = (xc.operand(), w.buffer(), g.operand());
        lk::backward(
            &gpu,
            s,
            x_in,
            w_in,
            g_in,
            stats.buffer(),
            dx.buffer(),
            gxh.buffer(),
        )?;
        let mut grads = vec![Some(dx)];
        if has_w {
            grads.push(Some(gxh.sum_dims(&[0], false)?));
        }
        if has_b {
            grads.push(Some(g.reshape(&[rows, d])?.sum_dims(&[0], false)?));
        }
        Ok(grads)
    }))
}
