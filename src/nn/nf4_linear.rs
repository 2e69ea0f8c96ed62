//! `Nf4Linear`: a frozen [`Linear`] whose weight is stored in NF4 (QLoRA's base layer).
//!
//! `y = x W'^T + b` over the last dim, with W' the NF4 quantisation of the original W (out, in)
//! (blocks of 64, double-quantised scales: about 0.13 x the f32 bytes) and b kept in f32. The
//! forward is one fused kernel that dequantises W in registers ([`crate::ops::nf4`]). Nothing is
//! trainable: W gets no gradient and b is stored detached; x gets `dx = g W'`, so trainable
//! layers before it (and a LoRA adapter beside it, through [`FrozenBase`]) still learn.
//!
//! ```
//! use kiln::{Tensor, nn::{Linear, Module, Nf4Linear}};
//! let lin = Linear::new(64, 8, true)?;
//! let q = Nf4Linear::from_linear(&lin)?;
//! let x = Tensor::randn(&[3, 64], 1)?;
//! let (y, y_ref) = (q.forward(&x)?.to_vec::<f32>()?, lin.forward(&x)?.to_vec::<f32>()?);
//! // Relative error of the outputs: about that of the weights (a few per cent).
//! let diff: f32 = y.iter().zip(&y_ref).map(|(a, b)| (a - b) * (a - b)).sum();
//! let norm: f32 = y_ref.iter().map(|b| b * b).sum();
//! assert!((diff / norm).sqrt() < 0.15, "NF4 error {}", (diff / norm).sqrt());
//! assert!(q.named_parameters().is_empty());
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::launch::nf4::Nf4Compute;

use super::lora::FrozenBase;
use super::{Linear, Module};
use crate::error::{Result, arg_err};
use crate::ops::nf4::{Nf4Weight, nf4_linear_with};
use crate::tensor::Tensor;

/// A frozen linear layer with an NF4 weight and an optional f32 bias.
#[derive(Debug, Clone)]
pub struct Nf4Linear {
    weight: Nf4Weight,
    bias: Option<Tensor>,
    compute: Nf4Compute,
}

impl Nf4Linear {
    /// Quantise `linear`'s weight to NF4 and keep a detached copy of its bias.
    pub fn from_linear(linear: &Linear) -> Result<Self> {
        let weight = Nf4Weight::quantize(&linear.weight)?;
        Ok(Self::new(weight, linear.bias.as_ref().map(Tensor::detach)))
    }

    /// A layer from an already quantised weight (out, in) and a bias (out), used as given.
    pub fn new(weight: Nf4Weight, bias: Option<Tensor>) -> Self {
        Nf4Linear {
            weight,
            bias,
            compute: Nf4Compute::Auto,
        }
    }

    /// The same layer computing in `compute` (default [`Nf4Compute::Auto`]: the tuner's
    /// measured choice of kernel and precision, f32 for shapes never tuned).
    pub fn with_compute(mut self, compute: Nf4Compute) -> Self {
        self.compute = compute;
        self
    }

    /// The compute precision in use.
    pub fn compute(&self) -> Nf4Compute {
        self.compute
    }

    /// Size of the input's last dim.
    pub fn in_features(&self) -> usize {
        self.weight.in_features()
    }

    /// Size of the output's last dim.
    pub fn out_features(&self) -> usize {
        self.weight.out_features()
    }

    /// The NF4 weight (its [`Nf4Weight::bytes`] and [`Nf4Weight::error`] report memory and
    /// quantisation error).
    pub fn weight(&self) -> &Nf4Weight {
        &self.weight
    }

    /// The bias (out), if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The dequantised weight (out, in) in f32, e.g. to merge an adapter into.
    pub fn dequantize(&self) -> Result<Tensor> {
        self.weight.dequantize()
    }

    /// An f32 [`Linear`] with the dequantised weight and the bias (no gradients), for merging
    /// an adapter and exporting.
    pub fn to_linear(&self) -> Result<Linear> {
        Linear::from_tensors(self.dequantize()?, self.bias.clone())
    }
}

impl Module for Nf4Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        nf4_linear_with(x, &self.weight, self.bias.as_ref(), self.compute)
    }

    /// None: the layer is frozen.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// The f32 bias (the NF4 weight is not a tensor; save it with its own format).
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.bias
            .iter()
            .map(|b| ("bias".to_string(), b.clone()))
            .collect()
    }
}

impl FrozenBase for Nf4Linear {
    fn in_features(&self) -> usize {
        Nf4Linear::in_features(self)
    }

    fn out_features(&self) -> usize {
        Nf4Linear::out_features(self)
    }

    fn base_forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(x)
    }

    /// Always an error: 4-bit codes cannot absorb an f32 update. Merge into
    /// [`Nf4Linear::to_linear`] instead (or re-quantise that with [`Nf4Linear::from_linear`]).
    fn add_to_weight(&self, _alpha: f32, _delta: &Tensor) -> Result<()> {
        arg_err(
            "Nf4Linear",
            "cannot merge into an NF4 weight in place; merge into to_linear() (f32) and \
             re-quantise with Nf4Linear::from_linear if wanted",
        )
    }
}
