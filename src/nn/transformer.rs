//! The pre-norm transformer block and its MLP.
//!
//! For x (B, T, C):
//!
//! ```text
//! x = x + dropout(attn(ln1(x)))
//! x = x + dropout(mlp(ln2(x))),     mlp(h) = fc2(gelu(fc1(h)))   fc1: C -> 4C, fc2: 4C -> C
//! ```
//!
//! Parameter names: `ln1.{weight,bias}`, `attn.{q,k,v,o}_proj.{weight,bias}`,
//! `ln2.{weight,bias}`, `mlp.fc1.{weight,bias}`, `mlp.fc2.{weight,bias}`.
//!
//! The Llama options ([`BlockConfig`]): RMSNorm instead of LayerNorm ([`Norm`]; `ln1.weight`,
//! `ln2.weight`, no bias), and the SwiGLU MLP instead of GELU's ([`SwiGlu`]):
//!
//! ```text
//! mlp(h) = down_proj(silu(gate_proj(h)) * up_proj(h))   gate, up: C -> hidden, down: hidden -> C
//! ```
//!
//! named `mlp.{gate,up,down}_proj.weight` (and `.bias` with `mlp_bias`). SwiGLU is composed from
//! Linear, silu and mul, each gradient-checked; so is the block (tests/ops/swiglu.rs).
//!
//! Learned positional embeddings are an [`super::Embedding`] over positions `0..context` (see
//! `models::gpt`).

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::attention::{AttentionConfig, KvCache, MultiHeadAttention};
use super::{LayerNorm, Linear, Module, RmsNorm, dropout};
use crate::error::Result;
use crate::ops::bias_gelu::{GeluForm, bias_gelu};
use crate::tensor::Tensor;

/// `fc2(gelu(fc1(x)))`, fc1: C -> hidden, fc2: hidden -> C.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// (hidden, C).
    pub fc1: Linear,
    /// (C, hidden).
    pub fc2: Linear,
    /// The GELU form.
    pub gelu: GeluForm,
}

impl Mlp {
    /// Fresh MLP of width `c` and hidden width `hidden` on `gpu`.
    pub fn new_on(gpu: &Arc<Gpu>, c: usize, hidden: usize, gelu: GeluForm) -> Result<Self> {
        Ok(Mlp {
            fc1: Linear::new_on(gpu, c, hidden, true)?,
            fc2: Linear::new_on(gpu, hidden, c, true)?,
            gelu,
        })
    }
}

/// Llama's MLP: `down_proj(silu(gate_proj(x)) * up_proj(x))`, x (..., C) -> (..., C).
#[derive(Debug, Clone)]
pub struct SwiGlu {
    /// (hidden, C).
    pub gate_proj: Linear,
    /// (hidden, C).
    pub up_proj: Linear,
    /// (C, hidden).
    pub down_proj: Linear,
}

impl SwiGlu {
    /// Fresh SwiGLU MLP of width `c` and hidden width `hidden` on `gpu`, with biases or not.
    pub fn new_on(gpu: &Arc<Gpu>, c: usize, hidden: usize, bias: bool) -> Result<Self> {
        Ok(SwiGlu {
            gate_proj: Linear::new_on(gpu, c, hidden, bias)?,
            up_proj: Linear::new_on(gpu, c, hidden, bias)?,
            down_proj: Linear::new_on(gpu, hidden, c, bias)?,
        })
    }
}

impl Module for SwiGlu {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        super::visit_children_linears(
            prefix,
            f,
            [
                ("gate_proj", &mut self.gate_proj),
                ("up_proj", &mut self.up_proj),
                ("down_proj", &mut self.down_proj),
            ],
        );
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.gate_proj.forward(x)?.silu()?;
        self.down_proj.forward(&h.mul(&self.up_proj.forward(x)?)?)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        super::children_parameters([
            ("gate_proj", &self.gate_proj),
            ("up_proj", &self.up_proj),
            ("down_proj", &self.down_proj),
        ])
    }
}

/// A block's MLP: GPT's GELU MLP or Llama's SwiGLU.
#[derive(Debug, Clone)]
pub enum FeedForward {
    /// `fc2(gelu(fc1(x)))`.
    Gelu(Mlp),
    /// `down_proj(silu(gate_proj(x)) * up_proj(x))`.
    SwiGlu(SwiGlu),
}

impl FeedForward {
    fn module(&self) -> &dyn Module {
        match self {
            FeedForward::Gelu(m) => m,
            FeedForward::SwiGlu(m) => m,
        }
    }
}

impl Module for FeedForward {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        match self {
            FeedForward::Gelu(m) => m.visit_linears_mut(prefix, f),
            FeedForward::SwiGlu(m) => m.visit_linears_mut(prefix, f),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.module().forward(x)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.module().named_parameters()
    }
}

/// A normalisation over the last dim: LayerNorm (GPT, weight and bias) or RMSNorm (Llama,
/// weight only).
#[derive(Debug, Clone)]
pub enum Norm {
    /// `(x - mean) / sqrt(var + eps) * w + b`.
    Layer(LayerNorm),
    /// `x / sqrt(mean(x^2) + eps) * w`.
    Rms(RmsNorm),
}

impl Norm {
    /// The epsilon added to the variance (LayerNorm) or mean square (RMSNorm).
    pub fn eps(&self) -> f32 {
        match self {
            Norm::Layer(n) => n.eps(),
            Norm::Rms(n) => n.eps(),
        }
    }

    /// A fresh norm over a last dim of `dim` on `gpu`: RMSNorm when `rms`, else LayerNorm.
    pub fn new_on(gpu: &Arc<Gpu>, dim: usize, eps: f32, rms: bool) -> Result<Self> {
        Ok(if rms {
            Norm::Rms(RmsNorm::new_on(gpu, dim, eps)?)
        } else {
            Norm::Layer(LayerNorm::new_on(gpu, dim, eps, true)?)
        })
    }

    fn module(&self) -> &dyn Module {
        match self {
            Norm::Layer(m) => m,
            Norm::Rms(m) => m,
        }
    }
}

impl Module for Norm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.module().forward(x)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.module().named_parameters()
    }
}

/// `gelu(x W^T + b)` of a Linear layer `l`, the bias add fused into the GELU kernel.
pub fn linear_gelu(l: &Linear, x: &Tensor, form: GeluForm) -> Result<Tensor> {
    match &l.bias {
        // `forward_no_bias` keeps a LoRA adapter's contribution.
        Some(b) => bias_gelu(&l.forward_no_bias(x)?, b, form),
        None => crate::ops::bias_gelu::gelu(&l.forward(x)?, form),
    }
}

impl Module for Mlp {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        super::visit_children_linears(prefix, f, [("fc1", &mut self.fc1), ("fc2", &mut self.fc2)]);
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&linear_gelu(&self.fc1, x, self.gelu)?)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        super::children_parameters([("fc1", &self.fc1), ("fc2", &self.fc2)])
    }
}

/// Configuration of a [`TransformerBlock`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockConfig {
    /// The attention layer.
    pub attn: AttentionConfig,
    /// MLP hidden width (4 C in GPT).
    pub mlp_hidden: usize,
    /// Dropout after attention and after the MLP (training only).
    pub dropout: f32,
    /// Norm epsilon.
    pub eps: f32,
    /// GELU form of the MLP.
    pub gelu: GeluForm,
    /// RMSNorm instead of LayerNorm (Llama).
    pub rms_norm: bool,
    /// The SwiGLU MLP instead of GELU's (Llama; `gelu` is then unused).
    pub swiglu: bool,
    /// Biases in the SwiGLU MLP (the GELU MLP always has them).
    pub mlp_bias: bool,
}

/// Pre-norm transformer block. See the module notes.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    /// Norm before attention.
    pub ln1: Norm,
    /// Self-attention.
    pub attn: MultiHeadAttention,
    /// Norm before the MLP.
    pub ln2: Norm,
    /// The MLP.
    pub mlp: FeedForward,
    dropout: f32,
    training: bool,
}

impl TransformerBlock {
    /// Fresh block on `gpu`.
    pub fn new_on(gpu: &Arc<Gpu>, cfg: BlockConfig) -> Result<Self> {
        let c = cfg.attn.d_model;
        let mlp = if cfg.swiglu {
            FeedForward::SwiGlu(SwiGlu::new_on(gpu, c, cfg.mlp_hidden, cfg.mlp_bias)?)
        } else {
            FeedForward::Gelu(Mlp::new_on(gpu, c, cfg.mlp_hidden, cfg.gelu)?)
        };
        Ok(TransformerBlock {
            ln1: Norm::new_on(gpu, c, cfg.eps, cfg.rms_norm)?,
            attn: MultiHeadAttention::new_on(gpu, cfg.attn)?,
            ln2: Norm::new_on(gpu, c, cfg.eps, cfg.rms_norm)?,
            mlp,
            dropout: cfg.dropout,
            training: true,
        })
    }

    fn residual(&self, x: &Tensor, y: Tensor) -> Result<Tensor> {
        x.add(&dropout(&y, self.dropout, self.training)?)
    }

    fn mlp_half(&self, x: &Tensor) -> Result<Tensor> {
        self.residual(x, self.mlp.forward(&self.ln2.forward(x)?)?)
    }

    /// The block on x (B, T, C) with an optional key padding mask (B, T).
    pub fn forward_masked(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let x = self.residual(x, self.attn.forward_masked(&self.ln1.forward(x)?, mask)?)?;
        self.mlp_half(&x)
    }

    /// The block on new positions x (B, T, C), reading and extending `cache` slot `layer`.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut KvCache, layer: usize) -> Result<Tensor> {
        let a = self
            .attn
            .forward_cached(&self.ln1.forward(x)?, cache, layer)?;
        let x = self.residual(x, a)?;
        self.mlp_half(&x)
    }
}

impl Module for TransformerBlock {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        super::visit_children_linears(
            prefix,
            f,
            [("attn", &mut self.attn), ("mlp", &mut self.mlp)],
        );
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_masked(x, None)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        super::children_parameters([
            ("ln1", &self.ln1),
            ("attn", &self.attn),
            ("ln2", &self.ln2),
            ("mlp", &self.mlp),
        ])
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        // Reaches the LoRA adapters' dropout in every projection.
        self.visit_linears_mut("", &mut |_, l| l.set_training(training));
    }

    fn is_training(&self) -> bool {
        self.training
    }
}
