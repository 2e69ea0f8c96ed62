//! `Linear`: an affine map of the last dim, `y = x W^T + b`.
//!
//! For x of shape (..., in), W (out, in) and b (out): `y[..., o] = sum_i x[..., i] W[o, i] + b[o]`,
//! shape (..., out). `W^T` is a transposed *view* of W (no copy); the matmul reads it through its
//! strides, and autograd gives dx = g W, dW = g^T x (summed over the leading dims), db = sum g.
//!
//! Default initialisation (PyTorch's): W and b both U(-1/sqrt(in), 1/sqrt(in)), W by
//! [`init::kaiming_uniform`] with [`init::linear_default_gain`].
//!
//! A Linear layer may carry a LoRA adapter ([`Linear::lora`], see [`super::lora`]): then
//! `y = x W^T + b + s (x A^T) B^T` and its parameters include `lora_A.weight` and
//! `lora_B.weight`.
//!
//! ```
//! use kiln::{Tensor, nn::{Linear, Module}};
//! let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
//! let b = Tensor::from_slice(&[0.5f32, -0.5], &[2])?;
//! let lin = Linear::from_tensors(w, Some(b))?;
//! let y = lin.forward(&Tensor::from_slice(&[1.0f32, 0.0, -1.0], &[1, 3])?)?;
//! assert_eq!(y.to_vec::<f32>()?, [1.0 - 3.0 + 0.5, 4.0 - 6.0 - 0.5]);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::Module;
use super::init::{self, FanMode, Init};
use super::lora::LoraAdapter;
use crate::error::{Result, arg_err, shape_err};
use crate::tensor::Tensor;

/// `y = x W^T + b` over the last dim.
#[derive(Debug, Clone)]
pub struct Linear {
    /// (out, in).
    pub weight: Tensor,
    /// (out), if the layer has a bias.
    pub bias: Option<Tensor>,
    /// A LoRA adapter added to the output (see [`super::lora::apply_lora`]); `None` for a
    /// plain layer.
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    /// A layer from `in_features` to `out_features` on the default device, PyTorch's
    /// initialisation, with a bias when `bias` is true.
    pub fn new(in_features: usize, out_features: usize, bias: bool) -> Result<Self> {
        Self::new_on(&crate::device()?, in_features, out_features, bias)
    }

    /// [`Linear::new`] on `gpu`.
    pub fn new_on(
        gpu: &Arc<Gpu>,
        in_features: usize,
        out_features: usize,
        bias: bool,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return arg_err(
                "Linear",
                format!(
                    "in_features and out_features must be positive, got {in_features} and \
                     {out_features}"
                ),
            );
        }
        let weight = Init::KaimingUniform {
            gain: init::linear_default_gain(),
            mode: FanMode::FanIn,
        }
        .tensor_on(gpu, &[out_features, in_features])?
        .requires_grad();
        let bias = if bias {
            let b = 1.0 / (in_features as f32).sqrt();
            Some(
                Init::Uniform { lo: -b, hi: b }
                    .tensor_on(gpu, &[out_features])?
                    .requires_grad(),
            )
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            lora: None,
        })
    }

    /// A layer with the given weight (out, in) and bias (out), used as they are (their
    /// `requires_grad` flags are kept).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        weight.expect_f32("Linear")?;
        if weight.rank() != 2 {
            return shape_err(
                "Linear",
                format!("weight must be (out, in), got shape {:?}", weight.shape()),
            );
        }
        if let Some(b) = &bias {
            b.expect_f32("Linear")?;
            weight.same_device("Linear", b)?;
            if b.shape() != [weight.shape()[0]] {
                return shape_err(
                    "Linear",
                    format!(
                        "bias must have shape ({}) for weight of shape {:?}, got shape {:?}",
                        weight.shape()[0],
                        weight.shape(),
                        b.shape()
                    ),
                );
            }
        }
        Ok(Linear {
            weight,
            bias,
            lora: None,
        })
    }

    /// Size of the input's last dim.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Size of the output's last dim.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let fin = self.in_features();
        if x.rank() == 0 || x.shape()[x.rank() - 1] != fin {
            return shape_err(
                "Linear",
                format!(
                    "input must have shape (..., {fin}) for weight of shape {:?}, got shape {:?}",
                    self.weight.shape(),
                    x.shape()
                ),
            );
        }
        Ok(())
    }

    /// `x W^T + b` of the base layer alone, ignoring any LoRA adapter.
    pub fn forward_base(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        let y = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    /// `x W^T` plus the LoRA path if any, without the bias (for callers that fuse the bias add
    /// into the next kernel, like `linear_gelu`).
    pub fn forward_no_bias(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        let y = x.matmul(&self.weight.t()?)?;
        match &self.lora {
            Some(l) if !l.is_merged() => y.add(&l.delta(x)?),
            _ => Ok(y),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.lora {
            Some(l) => l.forward(self, x),
            None => self.forward_base(x),
        }
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        if let Some(l) = &self.lora {
            v.extend(l.named_parameters());
        }
        v
    }

    /// Passes the mode to the LoRA adapter (its dropout); a plain layer has none.
    fn set_training(&mut self, training: bool) {
        if let Some(l) = &mut self.lora {
            l.set_training(training);
        }
    }

    fn is_training(&self) -> bool {
        self.lora.as_ref().is_none_or(|l| l.is_training())
    }

    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Linear)) {
        f(prefix, self);
    }
}
