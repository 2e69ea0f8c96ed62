//! Gradient clipping, in place and without reading anything back (`torch.nn.utils.clip_grad_*`).
//!
//! - by global norm: `norm = sqrt(sum over every gradient g of sum(g^2))`, then every gradient is
//!   multiplied by `min(1, max_norm / (norm + 1e-6))`. The factor is a rank-0 tensor computed on
//!   the GPU and broadcast into each gradient, so clipping never waits for the device;
//! - by value: every gradient element is clamped to `[-clip, clip]`.
//!
//! Parameters without a gradient are skipped.
//!
//! ```
//! use kiln::Tensor;
//! let w = Tensor::from_slice(&[1.0f32, 1.0], &[2])?.requires_grad();
//! w.mul_scalar(3.0)?.sum()?.backward()?;                     // grad = [3, 3]
//! let norm = kiln::optim::clip_grad_norm(&[w.clone()], 1.0)?;
//! assert!((norm.item()? - 18f32.sqrt()).abs() < 1e-5);        // the norm before clipping
//! let g = w.grad().unwrap().to_vec::<f32>()?;                 // now of norm ~1
//! assert!((g[0] * g[0] + g[1] * g[1] - 1.0).abs() < 1e-5);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::launch::elementwise::{self as ew, BinaryOp};

use crate::error::{Result, arg_err};
use crate::tensor::{DType, Tensor};

/// The gradients of `params` that exist, checked to be f32.
fn grads(op: &'static str, params: &[Tensor]) -> Result<Vec<Tensor>> {
    let mut out = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let Some(g) = p.grad() else { continue };
        if g.dtype() != DType::F32 {
            return arg_err(
                op,
                format!(
                    "gradient of parameter {i} (shape {:?}) has dtype {:?}, expected f32",
                    p.shape(),
                    g.dtype()
                ),
            );
        }
        out.push(g);
    }
    Ok(out)
}

/// Scale all gradients so that their global L2 norm is at most `max_norm`; returns the norm
/// before clipping as a rank-0 tensor (read it with `.item()` only when logging).
pub fn clip_grad_norm(params: &[Tensor], max_norm: f32) -> Result<Tensor> {
    const OP: &str = "clip_grad_norm";
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return arg_err(
            OP,
            format!("max_norm must be a finite number > 0, got {max_norm}"),
        );
    }
    let _g = crate::no_grad();
    let grads = grads(OP, params)?;
    let Some(first) = grads.first() else {
        let gpu = match params.first() {
            Some(p) => p.gpu().clone(),
            None => crate::device()?,
        };
        return Tensor::zeros_on(&gpu, &[]);
    };
    let mut sumsq: Option<Tensor> = None;
    for g in &grads {
        first.same_device(OP, g)?;
        let s = g.square()?.sum()?;
        sumsq = Some(match sumsq {
            None => s,
            Some(acc) => acc.add(&s)?,
        });
    }
    let Some(sumsq) = sumsq else {
        return Tensor::zeros_on(first.gpu(), &[]);
    };
    let norm = sumsq.sqrt()?;
    // min(1, max_norm / (norm + 1e-6)); the ratio is >= 0, so clamping to [0, 1] is the min.
    let scale = norm
        .add_scalar(1e-6)?
        .recip()?
        .mul_scalar(max_norm)?
        .clamp(0.0, 1.0)?;
    for g in &grads {
        let shape = g.shape().to_vec();
        ew::binary_inplace(
            g.gpu(),
            BinaryOp::Mul,
            &shape,
            g.strided(),
            scale.strided_as(&shape),
            0.0,
        )?;
    }
    Ok(norm)
}

/// Clamp every gradient element to `[-clip, clip]` in place.
pub fn clip_grad_value(params: &[Tensor], clip: f32) -> Result<()> {
    const OP: &str = "clip_grad_value";
    if !(clip.is_finite() && clip > 0.0) {
        return arg_err(OP, format!("clip must be a finite number > 0, got {clip}"));
    }
    let _g = crate::no_grad();
    for g in grads(OP, params)? {
        let clamped = g.clamp(-clip, clip)?;
        g.copy_from(&clamped)?;
    }
    Ok(())
}
