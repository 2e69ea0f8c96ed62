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
//! **QLoRA base.** [`Linear::quantize_base`] replaces the f32 base weight by an NF4 one
//! ([`crate::ops::nf4::Nf4Weight`], about 0.13 x the bytes) and frees the f32 buffer. The forward
//! then runs the fused NF4 kernel (`y = x W'^T + b`, W' the dequantised weight, never
//! materialised), plus the LoRA path if any; W' gets no gradient, x still does. A quantised
//! layer's [`Linear::weight`] is only a shape holder (a zero-stride view of one NaN, shape
//! (out, in)): read its values through [`Linear::base_weight_f32`]. It is no longer a parameter:
//! [`Module::named_parameters`] leaves it out (the bias and the LoRA tensors stay); write a full
//! checkpoint with [`super::lora::dense_state`] (dequantised f32 base weights) or
//! [`super::lora::merged_state`].
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
use crate::ops::lora::{LoraBase, lora_linear};
use crate::ops::nf4::{Nf4Compute, Nf4Weight, nf4_linear_with};
use crate::tensor::Tensor;

/// `y = x W^T + b` over the last dim.
#[derive(Debug, Clone)]
pub struct Linear {
    /// (out, in). For a quantised layer ([`Linear::is_quantized`]) a placeholder with the shape
    /// only (a zero-stride view of one NaN); the values are in the NF4 base.
    pub weight: Tensor,
    /// (out), if the layer has a bias.
    pub bias: Option<Tensor>,
    /// A LoRA adapter added to the output (see [`super::lora::apply_lora`]); `None` for a
    /// plain layer.
    pub lora: Option<LoraAdapter>,
    /// The NF4 base weight and its compute precision once [`Linear::quantize_base`] ran.
    nf4: Option<(Nf4Weight, Nf4Compute)>,
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
            nf4: None,
        })
    }

    /// A layer with the given weight (out, in) and bias (out), used as they are (their
    /// `requires_grad` flags are kept).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        weight.expect_f32("Linear")?;
        weight.expect_rank("Linear", "weight", 2, "(out, in)")?;
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
            nf4: None,
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

    /// Replace the f32 base weight by its NF4 quantisation (blocks of 64, double-quantised
    /// scales; compute [`Nf4Compute::Auto`]: the tuner's measured choice of kernel and f32/f16). The f32
    /// weight buffer is released (if nothing else holds a clone of the tensor: quantise before
    /// building an optimizer or collecting `named_parameters`), the weight leaves
    /// [`Module::named_parameters`] and never gets a gradient; the bias is kept as it is. A LoRA
    /// adapter present stays and keeps working. Errors if the layer is already quantised or
    /// its adapter is merged (unmerge first: a merged delta would be quantised into the base).
    pub fn quantize_base(&mut self) -> Result<()> {
        self.quantize_base_with(Nf4Compute::Auto)
    }

    /// [`Linear::quantize_base`] with an explicit compute precision for the fused kernel
    /// ([`Nf4Compute::F32`] is the exact twin of "dequantise, then matmul").
    pub fn quantize_base_with(&mut self, compute: Nf4Compute) -> Result<()> {
        if self.nf4.is_some() {
            return arg_err("Linear::quantize_base", "the base weight is already NF4");
        }
        if self.lora.as_ref().is_some_and(LoraAdapter::is_merged) {
            return arg_err(
                "Linear::quantize_base",
                "the LoRA adapter is merged into the weight; unmerge it before quantising",
            );
        }
        // The packed weight and the placeholder are the model's weights in the memory ledger.
        let _m = crate::memory::scope(crate::memory::Category::Weights);
        let q = Nf4Weight::quantize(&self.weight)?;
        let shape = self.weight.shape().to_vec();
        let holder = Tensor::full_on(self.weight.gpu(), &[1, 1], f32::NAN)?.expand(&shape)?;
        self.weight = holder;
        self.nf4 = Some((q, compute));
        Ok(())
    }

    /// True when the base weight is held in NF4 ([`Linear::quantize_base`]).
    pub fn is_quantized(&self) -> bool {
        self.nf4.is_some()
    }

    /// The NF4 base weight, if quantised (its [`Nf4Weight::bytes`] and [`Nf4Weight::error`]
    /// report memory and quantisation error).
    pub fn nf4_weight(&self) -> Option<&Nf4Weight> {
        self.nf4.as_ref().map(|(w, _)| w)
    }

    /// The base weight (out, in) in f32: the weight itself for an f32 layer, a fresh
    /// dequantised copy (no gradient) for a quantised one.
    pub fn base_weight_f32(&self) -> Result<Tensor> {
        match &self.nf4 {
            Some((w, _)) => w.dequantize(),
            None => Ok(self.weight.clone()),
        }
    }

    /// Turn a quantised layer back into an f32 one holding the dequantised weight (frozen: no
    /// `requires_grad`). The quantisation error stays in the weight. No-op for an f32 layer.
    pub fn dequantize_base(&mut self) -> Result<()> {
        if let Some((w, _)) = &self.nf4 {
            self.weight = w.dequantize()?;
            self.nf4 = None;
        }
        Ok(())
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
        if let Some((w, c)) = &self.nf4 {
            return nf4_linear_with(x, w, self.bias.as_ref(), *c);
        }
        x.linear(&self.weight, self.bias.as_ref())
    }

    /// `x W^T` plus the LoRA path if any, without the bias (for callers that fuse the bias add
    /// into the next kernel, like `linear_gelu`).
    pub fn forward_no_bias(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        if let Some(l) = &self.lora
            && let Some(y) = self.forward_lora_fused(l, x, false)?
        {
            return Ok(y);
        }
        let y = match &self.nf4 {
            Some((w, c)) => nf4_linear_with(x, w, None, *c)?,
            None => x.matmul(&self.weight.t()?)?,
        };
        match &self.lora {
            Some(l) if !l.is_merged() => y.add(&l.delta(x)?),
            _ => Ok(y),
        }
    }
}

impl Linear {
    /// `x W^T (+ b) + s (x A^T) B^T` as one recorded op ([`crate::ops::lora::lora_linear`]), or
    /// `None` where it does not apply (a merged adapter, or dropout active on the LoRA path: the
    /// composed ops then run).
    fn forward_lora_fused(
        &self,
        l: &LoraAdapter,
        x: &Tensor,
        with_bias: bool,
    ) -> Result<Option<Tensor>> {
        if l.is_merged() || (l.is_training() && l.dropout() > 0.0) {
            return Ok(None);
        }
        self.check_input(x)?;
        let base = match &self.nf4 {
            Some((w, c)) => LoraBase::Nf4(w, *c),
            None => LoraBase::Dense(&self.weight),
        };
        let bias = self.bias.as_ref().filter(|_| with_bias);
        lora_linear(x, base, bias, &l.a, &l.b, l.scale()).map(Some)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.lora {
            Some(l) => match self.forward_lora_fused(l, x, true)? {
                Some(y) => Ok(y),
                None => l.forward(self, x),
            },
            None => self.forward_base(x),
        }
    }

    /// `weight` (left out when quantised), `bias`, and the LoRA tensors.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        if self.nf4.is_none() {
            v.push(("weight".to_string(), self.weight.clone()));
        }
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
