//! `LayerNorm` over the last dim, one fused kernel each way (`norm.wgsl`, see
//! [`crate::ops::norm`]; tested against the composed version).
//!
//! For x of shape (..., D), per row:
//!
//! ```text
//! mu   = mean_d x_d
//! var  = mean_d (x_d - mu)^2                     (biased, as PyTorch)
//! y_d  = (x_d - mu) / sqrt(var + eps) * w_d + b_d
//! ```
//!
//! Backward: `dx = rstd (g w - mean(g w) - xhat mean(g w xhat))`, `dw = sum_rows g xhat`,
//! `db = sum_rows g`.
//! Default initialisation: w = 1, b = 0.
//!
//! ```
//! use kiln::{Tensor, nn::{LayerNorm, Module}};
//! let ln = LayerNorm::new(4, 1e-5, true)?;
//! let y = ln.forward(&Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[1, 4])?)?;
//! let s = (1.25f32 + 1e-5).sqrt();
//! for (a, b) in y.to_vec::<f32>()?.iter().zip([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]) {
//!     assert!((a - b).abs() < 1e-5);
//! }
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::Module;
use crate::error::{Result, arg_err, shape_err};
use crate::tensor::Tensor;

/// Layer normalisation of `x` (..., D) over its last dim: the op
/// [`crate::ops::norm::layer_norm`], re-exported beside its layer.
pub use crate::ops::norm::layer_norm;

/// Layer normalisation over the last dim, of size `dim`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Per-feature scale (dim), if elementwise affine.
    pub weight: Option<Tensor>,
    /// Per-feature shift (dim), if elementwise affine.
    pub bias: Option<Tensor>,
    dim: usize,
    eps: f32,
}

impl LayerNorm {
    /// Normalise a last dim of size `dim`, adding `eps` to the variance; with
    /// `elementwise_affine`, learn a weight (ones) and bias (zeros). On the default device.
    pub fn new(dim: usize, eps: f32, elementwise_affine: bool) -> Result<Self> {
        Self::new_on(&crate::device()?, dim, eps, elementwise_affine)
    }

    /// [`LayerNorm::new`] on `gpu`.
    pub fn new_on(gpu: &Arc<Gpu>, dim: usize, eps: f32, elementwise_affine: bool) -> Result<Self> {
        if dim == 0 {
            return arg_err("LayerNorm", "normalized dim must be positive, got 0");
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return arg_err(
                "LayerNorm",
                format!("eps must be finite and >= 0, got {eps}"),
            );
        }
        let (weight, bias) = if elementwise_affine {
            (
                Some(Tensor::ones_on(gpu, &[dim])?.requires_grad()),
                Some(Tensor::zeros_on(gpu, &[dim])?.requires_grad()),
            )
        } else {
            (None, None)
        };
        Ok(LayerNorm {
            weight,
            bias,
            dim,
            eps,
        })
    }

    /// The normalised dim's size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The variance epsilon.
    pub fn eps(&self) -> f32 {
        self.eps
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 0 || x.shape()[x.rank() - 1] != self.dim {
            return shape_err(
                "LayerNorm",
                format!(
                    "input must have shape (..., {}), got shape {:?}",
                    self.dim,
                    x.shape()
                ),
            );
        }
        layer_norm(x, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        if let Some(w) = &self.weight {
            v.push(("weight".to_string(), w.clone()));
        }
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
}
