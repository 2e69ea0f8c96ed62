//! A GPT-style decoder: token (+ learned position) embeddings, pre-norm causal transformer
//! blocks, a final LayerNorm and a linear head; KV-cached generation.
//!
//! For ids (B, T), T <= context:
//!
//! ```text
//! x = tok_emb[ids] + pos_emb[0..T]          (B, T, C)   (no pos_emb with RoPE: q, k rotated)
//! x = blocks[i](x)  for i < n_layer         pre-norm, causal, GELU (tanh form) MLP of 4 C
//! logits = lm_head(ln_f(x))                 (B, T, V)
//! ```
//!
//! Parameter names (PyTorch-style):
//!
//! | name | shape |
//! | --- | --- |
//! | `tok_emb.weight` | (V, C) |
//! | `pos_emb.weight` | (context, C), only without RoPE |
//! | `blocks.N.ln1.{weight,bias}` | (C) |
//! | `blocks.N.attn.q_proj.{weight,bias}` | (C, C), (C) |
//! | `blocks.N.attn.{k,v}_proj.{weight,bias}` | (Hkv Dh, C), (Hkv Dh) |
//! | `blocks.N.attn.o_proj.{weight,bias}` | (C, C), (C) |
//! | `blocks.N.ln2.{weight,bias}` | (C) |
//! | `blocks.N.mlp.fc1.{weight,bias}` | (4C, C), (4C) |
//! | `blocks.N.mlp.fc2.{weight,bias}` | (C, 4C), (C) |
//! | `ln_f.{weight,bias}` | (C) |
//! | `lm_head.weight` | (V, C), no bias |
//!
//! Initialisation (GPT-2's): embeddings N(0, 0.02^2), Linear layers PyTorch's default.
//!
//! **The Llama architecture** is the same decoder with other options ([`GptArch`], given to
//! [`Gpt::with_arch_on`]; [`GptArch::default`] is the GPT above, [`GptArch::llama`] Llama's):
//!
//! ```text
//! x = tok_emb[ids]                                     (B, T, C)   RoPE (theta, scaling) on q, k
//! x = x + attn(rms_norm(x))                            no biases, grouped-query heads
//! x = x + down_proj(silu(gate_proj(h)) * up_proj(h)),  h = rms_norm(x), hidden from the config
//! logits = lm_head(rms_norm(x))                        lm_head = tok_emb with tied embeddings
//! ```
//!
//! With RMSNorm the norms hold `weight` only (`blocks.N.ln1.weight`, `ln_f.weight`); the SwiGLU
//! MLP is `blocks.N.mlp.{gate,up,down}_proj.weight` ((hidden, C), (hidden, C), (C, hidden)). With
//! tied embeddings `lm_head.weight` is the `tok_emb.weight` tensor itself (one parameter, its
//! gradient the sum of both uses) and is not listed among the parameters.
//!
//! **Generation.** [`Gpt::generate`] feeds the prompt once through [`Gpt::forward_cached`], then
//! one token per step: each step projects only the new token and attends over the cached keys
//! and values (see [`KvCache`]), instead of recomputing the whole sequence. When the cache fills
//! the context, it is rebuilt from the last `context / 2` tokens (one recompute every
//! `context / 2` steps). Dropout is active in training mode: call `set_training(false)` before
//! generating.
//!
//! ```
//! use kiln::{Tensor, nn::Module, models::{Gpt, GptConfig, Sampling}};
//! let cfg = GptConfig { vocab_size: 10, n_layer: 1, n_head: 2, n_kv_head: 1, d_model: 8,
//!                       context: 6, dropout: 0.0, rope: true };
//! let mut gpt = Gpt::new(cfg)?;
//! gpt.set_training(false);
//! let logits = gpt.forward(&Tensor::from_slice(&[1u32, 2, 3], &[1, 3])?)?;
//! assert_eq!(logits.shape(), [1, 3, 10]);
//! let s = Sampling { temperature: 0.8, top_k: Some(5), top_p: Some(0.9), seed: 7 };
//! let a = gpt.generate(&[1, 2, 3], 4, s)?;
//! assert_eq!(a, gpt.generate(&[1, 2, 3], 4, s)?); // same seed, same tokens
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::sampling::{Sampler, Sampling};
use crate::error::{Result, arg_err, shape_err};
use crate::nn::attention::{AttentionConfig, KvCache};
use crate::nn::transformer::{BlockConfig, Norm, TransformerBlock};
use crate::nn::{Embedding, Linear, Module, dropout, prefixed};
use crate::ops::bias_gelu::GeluForm;
use crate::ops::rope::RopeScaling;
use crate::tensor::Tensor;

/// Size of a [`Gpt`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptConfig {
    /// V: vocabulary size.
    pub vocab_size: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Query heads H.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention; = n_head for plain multi-head).
    pub n_kv_head: usize,
    /// C: model width (a multiple of n_head).
    pub d_model: usize,
    /// Longest sequence (positions).
    pub context: usize,
    /// Dropout on embeddings, attention output and MLP output (training only).
    pub dropout: f32,
    /// Rotary position embedding instead of a learned position table.
    pub rope: bool,
}

/// The architecture options of a [`Gpt`] beyond its size: GPT-2's by default, Llama's with
/// [`GptArch::llama`]. See the module notes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptArch {
    /// RMSNorm (Llama) instead of LayerNorm (GPT), in the blocks and the final norm.
    pub rms_norm: bool,
    /// The norms' epsilon (1e-5 in GPT-2; Llama's `rms_norm_eps`).
    pub norm_eps: f32,
    /// The SwiGLU MLP (Llama) instead of the GELU (tanh form) MLP.
    pub swiglu: bool,
    /// The MLP's hidden width; 0 means 4 C.
    pub mlp_hidden: usize,
    /// Biases in the attention projections.
    pub attention_bias: bool,
    /// Biases in the SwiGLU MLP (GPT's GELU MLP always has them).
    pub mlp_bias: bool,
    /// RoPE's frequency base (`rope_theta`; used when the config has `rope`).
    pub rope_theta: f32,
    /// RoPE's frequency scaling (`rope_scaling`).
    pub rope_scaling: RopeScaling,
    /// The output head shares the token table (`tie_word_embeddings`).
    pub tied_embeddings: bool,
}

impl Default for GptArch {
    /// GPT-2's: LayerNorm (eps 1e-5), GELU MLP of 4 C, biases, RoPE base 10,000 unscaled,
    /// untied head.
    fn default() -> Self {
        GptArch {
            rms_norm: false,
            norm_eps: 1e-5,
            swiglu: false,
            mlp_hidden: 0,
            attention_bias: true,
            mlp_bias: true,
            rope_theta: 10_000.0,
            rope_scaling: RopeScaling::None,
            tied_embeddings: false,
        }
    }
}

impl GptArch {
    /// Llama's: RMSNorm with `eps`, SwiGLU of `hidden`, no biases, RoPE base `theta`, untied.
    pub fn llama(hidden: usize, eps: f32, theta: f32) -> Self {
        GptArch {
            rms_norm: true,
            norm_eps: eps,
            swiglu: true,
            mlp_hidden: hidden,
            attention_bias: false,
            mlp_bias: false,
            rope_theta: theta,
            rope_scaling: RopeScaling::None,
            tied_embeddings: false,
        }
    }
}

/// The GPT decoder. See the module notes.
#[derive(Debug, Clone)]
pub struct Gpt {
    /// Token table (V, C).
    pub tok_emb: Embedding,
    /// Position table (context, C); `None` with RoPE.
    pub pos_emb: Option<Embedding>,
    /// The blocks.
    pub blocks: Vec<TransformerBlock>,
    /// Final norm.
    pub ln_f: Norm,
    /// Output head (V, C), no bias; its weight is `tok_emb.weight` with tied embeddings.
    pub lm_head: Linear,
    cfg: GptConfig,
    arch: GptArch,
    training: bool,
    /// Blocks per checkpointed segment (0: no activation checkpointing).
    checkpoint_every: usize,
}

impl Gpt {
    /// A fresh model on the default device.
    pub fn new(cfg: GptConfig) -> Result<Self> {
        Self::new_on(&crate::device()?, cfg)
    }

    /// [`Gpt::new`] on `gpu`.
    pub fn new_on(gpu: &Arc<Gpu>, cfg: GptConfig) -> Result<Self> {
        Self::with_arch_on(gpu, cfg, GptArch::default())
    }

    /// A fresh model of size `cfg` and architecture `arch` (e.g. [`GptArch::llama`]) on `gpu`.
    pub fn with_arch_on(gpu: &Arc<Gpu>, cfg: GptConfig, arch: GptArch) -> Result<Self> {
        if cfg.vocab_size == 0 || cfg.n_layer == 0 || cfg.context == 0 {
            return arg_err(
                "Gpt",
                format!("vocab_size, n_layer and context must be positive, got {cfg:?}"),
            );
        }
        let c = cfg.d_model;
        let emb = |rows: usize| Embedding::normal_on(gpu, rows, c, 0.02);
        let block = BlockConfig {
            attn: AttentionConfig {
                d_model: c,
                n_heads: cfg.n_head,
                n_kv_heads: cfg.n_kv_head,
                causal: true,
                rope_base: cfg.rope.then_some(arch.rope_theta),
                bias: arch.attention_bias,
            },
            mlp_hidden: if arch.mlp_hidden == 0 {
                4 * c
            } else {
                arch.mlp_hidden
            },
            dropout: cfg.dropout,
            eps: arch.norm_eps,
            gelu: GeluForm::Tanh,
            rms_norm: arch.rms_norm,
            swiglu: arch.swiglu,
            mlp_bias: arch.mlp_bias,
        };
        let new_block = |_| -> Result<TransformerBlock> {
            let mut b = TransformerBlock::new_on(gpu, block)?;
            b.attn = b.attn.with_rope_scaling(arch.rope_scaling)?;
            Ok(b)
        };
        let tok_emb = emb(cfg.vocab_size)?;
        let mut lm_head = Linear::new_on(gpu, c, cfg.vocab_size, false)?;
        if arch.tied_embeddings {
            lm_head.weight = tok_emb.weight.clone();
        }
        Ok(Gpt {
            tok_emb,
            pos_emb: if cfg.rope {
                None
            } else {
                Some(emb(cfg.context)?)
            },
            blocks: (0..cfg.n_layer).map(new_block).collect::<Result<_>>()?,
            ln_f: Norm::new_on(gpu, c, arch.norm_eps, arch.rms_norm)?,
            lm_head,
            cfg,
            arch,
            training: true,
            checkpoint_every: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// The architecture options.
    pub fn arch(&self) -> &GptArch {
        &self.arch
    }

    /// Embeddings of ids (B, T) at positions `offset..offset + T`: (B, T, C).
    fn embed(&self, ids: &Tensor, offset: usize) -> Result<Tensor> {
        let ids = super::token_ids("Gpt", ids)?;
        let t = ids.shape()[1];
        if offset + t > self.cfg.context {
            return shape_err(
                "Gpt",
                format!(
                    "positions {offset}..{} exceed the context of {}",
                    offset + t,
                    self.cfg.context
                ),
            );
        }
        let mut x = self.tok_emb.forward(&ids)?;
        if let Some(pe) = &self.pos_emb {
            let pos: Vec<u32> = (offset as u32..(offset + t) as u32).collect();
            let pos = Tensor::from_slice_on(ids.gpu(), &pos, &[t])?;
            x = x.add(&pe.forward(&pos)?)?;
        }
        dropout(&x, self.cfg.dropout, self.training)
    }

    fn head(&self, x: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(&self.ln_f.forward(x)?)
    }

    /// Logits (B, T, V) of new ids (B, T) that follow the positions held in `cache`, extending it.
    pub fn forward_cached(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        if cache.n_layers() != self.blocks.len() {
            return arg_err(
                "Gpt",
                format!(
                    "cache has {} layers, the model {}",
                    cache.n_layers(),
                    self.blocks.len()
                ),
            );
        }
        let mut x = self.embed(ids, cache.len())?;
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.forward_cached(&x, cache, i)?;
        }
        self.head(&x)
    }

    /// Continue `prompt` by `max_tokens` sampled tokens (batch 1); returns only the new tokens.
    /// The same prompt, model and `sampling` (seed included) give the same tokens.
    pub fn generate(
        &self,
        prompt: &[u32],
        max_tokens: usize,
        sampling: Sampling,
    ) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return arg_err("generate", "the prompt needs at least one token");
        }
        let mut sampler = Sampler::new(sampling);
        let mut out = Vec::with_capacity(max_tokens);
        self.generate_each(prompt, max_tokens, &mut sampler, |t| {
            out.push(t);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The decoding loop behind every generator (batch 1, no gradients): up to `max_tokens`
    /// tokens drawn by `sampler` after `prompt`, each handed to `on_token`, which returns
    /// whether to go on. The KV cache holds the last `context` positions; when it is full it
    /// is rebuilt from the most recent half.
    pub fn generate_each(
        &self,
        prompt: &[u32],
        max_tokens: usize,
        sampler: &mut Sampler,
        mut on_token: impl FnMut(u32) -> Result<bool>,
    ) -> Result<()> {
        if prompt.is_empty() {
            return arg_err("generate", "the prompt needs at least one token");
        }
        let _g = crate::no_grad();
        let gpu = self.tok_emb.weight.gpu().clone();
        let (ctx, v) = (self.cfg.context, self.cfg.vocab_size);
        let mut cache = KvCache::new(self.blocks.len());
        let mut all: Vec<u32> = prompt.to_vec();
        // Tokens not yet fed through the model.
        let mut pending: Vec<u32> = all[all.len().saturating_sub(ctx)..].to_vec();
        for _ in 0..max_tokens {
            if cache.len() + pending.len() > ctx {
                cache.clear();
                let keep = (ctx / 2).max(1);
                pending = all[all.len() - keep..].to_vec();
            }
            let ids = Tensor::from_slice_on(&gpu, &pending, &[1, pending.len()])?;
            let logits = self.forward_cached(&ids, &mut cache)?; // (1, T, V)
            let last = logits.narrow(1, pending.len() - 1, 1)?.to_vec::<f32>()?;
            let tok = sampler.sample(&last[..v])?;
            all.push(tok);
            pending = vec![tok];
            if !on_token(tok)? {
                break;
            }
        }
        Ok(())
    }
}

impl Module for Gpt {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        for (i, b) in self.blocks.iter_mut().enumerate() {
            b.visit_linears_mut(&crate::nn::child_path(prefix, &format!("blocks.{i}")), f);
        }
        self.lm_head
            .visit_linears_mut(&crate::nn::child_path(prefix, "lm_head"), f);
    }

    /// Logits (B, T, V) of ids (B, T) (u32 or i32), causal, positions from 0.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.embed(ids, 0)?;
        let x = crate::nn::checkpoint::forward_blocks(&self.blocks, self.checkpoint_every, &x)?;
        self.head(&x)
    }

    /// Checkpointed segments of `every` transformer blocks (0: off).
    fn set_checkpointing(&mut self, every: usize) -> bool {
        self.checkpoint_every = every;
        true
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = prefixed("tok_emb", self.tok_emb.named_parameters());
        if let Some(pe) = &self.pos_emb {
            v.extend(prefixed("pos_emb", pe.named_parameters()));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            v.extend(prefixed(&format!("blocks.{i}"), b.named_parameters()));
        }
        v.extend(prefixed("ln_f", self.ln_f.named_parameters()));
        let head = self.lm_head.named_parameters();
        if self.arch.tied_embeddings {
            // The weight is tok_emb's; a LoRA adapter on the head is still its own.
            v.extend(
                prefixed("lm_head", head)
                    .into_iter()
                    .filter(|(n, _)| n != "lm_head.weight"),
            );
        } else {
            v.extend(prefixed("lm_head", head));
        }
        v
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        self.blocks
            .iter_mut()
            .for_each(|b| b.set_training(training));
        self.lm_head.set_training(training);
    }

    fn is_training(&self) -> bool {
        self.training
    }
}
