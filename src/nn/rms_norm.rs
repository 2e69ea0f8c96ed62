//! `RmsNorm` over the last dim (LLaMA-style), one fused kernel each way (`norm.wgsl`, see
//! [`crate::ops::norm`]).
//!
//! For x of shape (..., D), per row: `y_d = x_d / sqrt(mean_d x_d^2 + eps) * w_d`. No centring and
//! no bias. Default initialisation: w = 1.
//!
//! ```
//! use kiln::{Tensor, nn::{Module, RmsNorm}};
//! let n = RmsNorm::new(2, 0.0)?;
//! let y = n.forward(&Tensor::from_slice(&[3.0f32, 4.0], &[1, 2])?)?;
//! let r = 12.5f32.sqrt();
//! let v = y.to_vec::<f32>()?;
//! assert!((v[0] - 3.0 / r).abs() < 1e-6 && (v[1] - 4.0 / r).abs() < 1e-6);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::Module;
use crate::error::{Result, arg_err, shape_err};
use crate::tensor::Tensor;

/// Root-mean-square normalisation over the last dim, of size `dim`, with a learned scale.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// Per-feature scale (dim).
    pub weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// Normalise a last dim of size `dim`, adding `eps` to the mean square; weight = ones. On the
    /// default device.
    pub fn new(dim: usize, eps: f32) -> Result<Self> {
        Self::new_on(&crate::device()?, dim, eps)
    }

    /// [`RmsNorm::new`] on `gpu`.
    pub fn new_on(gpu: &Arc<Gpu>, dim: usize, eps: f32) -> Result<Self> {
        if dim == 0 {
            return arg_err("RmsNorm", "normalized dim must be positive, got 0");
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return arg_err("RmsNorm", format!("eps must be finite and >= 0, got {eps}"));
        }
        Ok(RmsNorm {
            weight: Tensor::ones_on(gpu, &[dim])?.requires_grad(),
            eps,
        })
    }

    /// The normalised dim's size.
    pub fn dim(&self) -> usize {
        self.weight.shape()[0]
    }

    /// The epsilon.
    pub fn eps(&self) -> f32 {
        self.eps
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 0 || x.shape()[x.rank() - 1] != self.dim() {
            return shape_err(
                "RmsNorm",
                format!(
                    "input must have shape (..., {}), got shape {:?}",
                    self.dim(),
                    x.shape()
                ),
            );
        }
        crate::ops::norm::rms_norm(x, Some(&self.weight), self.eps)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".to_string(), self.weight.clone())]
    }
}
