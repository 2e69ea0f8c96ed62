//! `MultiHeadAttention` with grouped-query heads, optional RoPE and a KV cache.
//!
//! For x (B, T, C), H query heads and Hkv key/value heads of size Dh = C / H (H a multiple of
//! Hkv; Hkv = H is plain multi-head attention, Hkv = 1 multi-query):
//!
//! ```text
//! q = x Wq^T + bq -> (B, T, H, Dh)   -> (B, H, T, Dh)      (RoPE on q and k when enabled)
//! k = x Wk^T + bk -> (B, T, Hkv, Dh) -> (B, Hkv, T, Dh)    likewise v
//! k, v: each kv head repeated H / Hkv times (query head h reads kv head h / (H / Hkv))
//! o = softmax(q k^T / sqrt(Dh) + mask) v  -> (B, T, H Dh) -> o Wo^T + bo   (B, T, C)
//! ```
//!
//! RoPE's frequencies may be rescaled ([`MultiHeadAttention::with_rope_scaling`], Llama's
//! `rope_scaling`).
//!
//! Parameters (PyTorch-style names): `q_proj` (H Dh, C), `k_proj` and `v_proj` (Hkv Dh, C),
//! `o_proj` (C, H Dh), each `.weight` and `.bias`.
//!
//! **KV cache.** [`KvCache`] keeps, per layer, the keys and values of every position seen so far
//! (B, Hkv, L, Dh), stored before the GQA repeat. [`MultiHeadAttention::forward_cached`] projects
//! only the new positions, applies RoPE at positions `L..L + T`, appends them to the cache and
//! attends with the causal mask aligned to the end, so a decode step of one token costs one
//! projection and one attention row over L keys rather than a full recompute. Appending is a
//! concat (a copy of the cache, O(L) per step, the same order as the attention read itself).
//!
//! ```
//! use kiln::{Tensor, nn::{AttentionConfig, KvCache, Module, MultiHeadAttention}};
//! let cfg = AttentionConfig { d_model: 8, n_heads: 4, n_kv_heads: 2, causal: true,
//!                             rope_base: Some(10_000.0), bias: true };
//! let attn = MultiHeadAttention::new(cfg)?;
//! let x = Tensor::randn(&[1, 3, 8], 1)?;
//! let full = attn.forward(&x)?.to_vec::<f32>()?;
//! // The same positions one at a time through a cache.
//! let mut cache = KvCache::new(1);
//! let mut step = Vec::new();
//! for t in 0..3 {
//!     step.extend(attn.forward_cached(&x.narrow(1, t, 1)?, &mut cache, 0)?.to_vec::<f32>()?);
//! }
//! assert_eq!(cache.len(), 3);
//! assert!(full.iter().zip(&step).all(|(a, b)| (a - b).abs() < 1e-5));
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::{Linear, Module};
use crate::error::{Result, arg_err, shape_err};
use crate::ops::rope::{RopeScaling, rope_scaled};
use crate::ops::{AttentionOptions, scaled_dot_product_attention};
use crate::tensor::Tensor;

/// Configuration of a [`MultiHeadAttention`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionConfig {
    /// Model width C.
    pub d_model: usize,
    /// Query heads H (C must be a multiple of H).
    pub n_heads: usize,
    /// Key/value heads Hkv (H must be a multiple of Hkv).
    pub n_kv_heads: usize,
    /// Causal (decoder) masking.
    pub causal: bool,
    /// RoPE frequency base on q and k (`None`: no rotary embedding).
    pub rope_base: Option<f32>,
    /// Whether the projections have biases.
    pub bias: bool,
}

/// Keys and values of the positions seen so far, one slot per layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for `n_layers` attention layers.
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![None; n_layers],
        }
    }

    /// Number of layers.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Cached positions L (of layer 0; every layer holds the same number after a full step).
    pub fn len(&self) -> usize {
        self.layer_len(0)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cached positions of layer `i`.
    pub fn layer_len(&self, i: usize) -> usize {
        match self.layers.get(i) {
            Some(Some((k, _))) => k.shape()[2],
            _ => 0,
        }
    }

    /// The cached (k, v) of layer `i`, each (B, Hkv, L, Dh).
    pub fn get(&self, i: usize) -> Option<&(Tensor, Tensor)> {
        self.layers.get(i).and_then(|s| s.as_ref())
    }

    /// Append k, v (B, Hkv, T, Dh) to layer `i`; returns the full (k, v) after the append.
    pub fn append(&mut self, i: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let Some(slot) = self.layers.get_mut(i) else {
            return arg_err(
                "KvCache",
                format!(
                    "layer {i} out of range for a cache of {} layers",
                    self.layers.len()
                ),
            );
        };
        let full = match slot.take() {
            None => (k.detach(), v.detach()),
            Some((ck, cv)) => {
                if ck.shape()[..2] != k.shape()[..2] || ck.shape()[3] != k.shape()[3] {
                    return shape_err(
                        "KvCache",
                        format!(
                            "layer {i}: new keys {:?} do not extend cached keys {:?}",
                            k.shape(),
                            ck.shape()
                        ),
                    );
                }
                let _g = crate::no_grad();
                (
                    Tensor::concat(&[&ck, &k], 2)?,
                    Tensor::concat(&[&cv, &v], 2)?,
                )
            }
        };
        *slot = Some(full.clone());
        Ok(full)
    }

    /// Forget everything (keeps the number of layers).
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|s| *s = None);
    }
}

/// Multi-head (grouped-query) self-attention. See the module notes.
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    /// (H Dh, C).
    pub q_proj: Linear,
    /// (Hkv Dh, C).
    pub k_proj: Linear,
    /// (Hkv Dh, C).
    pub v_proj: Linear,
    /// (C, H Dh).
    pub o_proj: Linear,
    cfg: AttentionConfig,
    rope_scaling: RopeScaling,
}

impl MultiHeadAttention {
    /// Fresh layer (PyTorch Linear initialisation) on the default device.
    pub fn new(cfg: AttentionConfig) -> Result<Self> {
        Self::new_on(&crate::device()?, cfg)
    }

    /// [`MultiHeadAttention::new`] on `gpu`.
    pub fn new_on(gpu: &Arc<Gpu>, cfg: AttentionConfig) -> Result<Self> {
        Self::check_config(&cfg)?;
        let (c, dh) = (cfg.d_model, cfg.d_model / cfg.n_heads);
        Ok(MultiHeadAttention {
            q_proj: Linear::new_on(gpu, c, cfg.n_heads * dh, cfg.bias)?,
            k_proj: Linear::new_on(gpu, c, cfg.n_kv_heads * dh, cfg.bias)?,
            v_proj: Linear::new_on(gpu, c, cfg.n_kv_heads * dh, cfg.bias)?,
            o_proj: Linear::new_on(gpu, cfg.n_heads * dh, c, cfg.bias)?,
            cfg,
            rope_scaling: RopeScaling::None,
        })
    }

    /// A layer from given projections (shapes checked against `cfg`).
    pub fn from_parts(
        cfg: AttentionConfig,
        q_proj: Linear,
        k_proj: Linear,
        v_proj: Linear,
        o_proj: Linear,
    ) -> Result<Self> {
        Self::check_config(&cfg)?;
        let (c, dh) = (cfg.d_model, cfg.d_model / cfg.n_heads);
        for (name, l, o, i) in [
            ("q_proj", &q_proj, cfg.n_heads * dh, c),
            ("k_proj", &k_proj, cfg.n_kv_heads * dh, c),
            ("v_proj", &v_proj, cfg.n_kv_heads * dh, c),
            ("o_proj", &o_proj, c, cfg.n_heads * dh),
        ] {
            if l.weight.shape() != [o, i] {
                return shape_err(
                    "MultiHeadAttention",
                    format!(
                        "{name}.weight must be ({o}, {i}), got {:?}",
                        l.weight.shape()
                    ),
                );
            }
        }
        Ok(MultiHeadAttention {
            q_proj,
            k_proj,
            v_proj,
            o_proj,
            cfg,
            rope_scaling: RopeScaling::None,
        })
    }

    fn check_config(cfg: &AttentionConfig) -> Result<()> {
        let AttentionConfig {
            d_model: c,
            n_heads: h,
            n_kv_heads: hkv,
            ..
        } = *cfg;
        if c == 0 || h == 0 || hkv == 0 || c % h != 0 || h % hkv != 0 {
            return arg_err(
                "MultiHeadAttention",
                format!(
                    "need d_model a multiple of n_heads and n_heads a multiple of n_kv_heads \
                     (all > 0); got d_model {c}, n_heads {h}, n_kv_heads {hkv}"
                ),
            );
        }
        if cfg.rope_base.is_some() && (c / h) % 2 != 0 {
            return arg_err(
                "MultiHeadAttention",
                format!("RoPE needs an even head dim, got {}", c / h),
            );
        }
        Ok(())
    }

    /// The layer with RoPE's frequencies rescaled (Hugging Face's `rope_scaling`; no effect
    /// without RoPE).
    pub fn with_rope_scaling(mut self, scaling: RopeScaling) -> Result<Self> {
        scaling.check()?;
        self.rope_scaling = scaling;
        Ok(self)
    }

    /// The RoPE frequency scaling.
    pub fn rope_scaling(&self) -> RopeScaling {
        self.rope_scaling
    }

    /// The configuration.
    pub fn config(&self) -> &AttentionConfig {
        &self.cfg
    }

    /// Head size Dh.
    pub fn head_dim(&self) -> usize {
        self.cfg.d_model / self.cfg.n_heads
    }

    /// Self-attention of x (B, T, C) with an optional key padding mask (B, T), nonzero = keep.
    pub fn forward_masked(&self, x: &Tensor, key_padding_mask: Option<&Tensor>) -> Result<Tensor> {
        let (q, k, v) = self.project(x, 0)?;
        self.attend(x, &q, &k, &v, key_padding_mask)
    }

    /// Self-attention of the new positions x (B, T, C), given and extending `cache` slot `layer`:
    /// keys and values of earlier positions come from the cache.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut KvCache, layer: usize) -> Result<Tensor> {
        let offset = cache.layer_len(layer);
        let (q, k, v) = self.project(x, offset)?;
        let (k, v) = cache.append(layer, k, v)?;
        self.attend(x, &q, &k, &v, None)
    }

    /// q (B, H, T, Dh), k and v (B, Hkv, T, Dh), RoPE applied at positions `offset..`.
    fn project(&self, x: &Tensor, offset: usize) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t) = super::expect_sequence("MultiHeadAttention", "", x, self.cfg.d_model)?;
        let dh = self.head_dim();
        let heads = |y: Tensor, h: usize| y.reshape(&[b, t, h, dh])?.transpose(1, 2);
        let mut q = heads(self.q_proj.forward(x)?, self.cfg.n_heads)?;
        let mut k = heads(self.k_proj.forward(x)?, self.cfg.n_kv_heads)?;
        let v = heads(self.v_proj.forward(x)?, self.cfg.n_kv_heads)?;
        if let Some(base) = self.cfg.rope_base {
            q = rope_scaled(&q, offset, base, self.rope_scaling)?;
            k = rope_scaled(&k, offset, base, self.rope_scaling)?;
        }
        Ok((q, k, v))
    }

    fn attend(
        &self,
        x: &Tensor,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (b, t) = (x.shape()[0], x.shape()[1]);
        let rep = self.cfg.n_heads / self.cfg.n_kv_heads;
        let k = repeat_kv(k, rep)?;
        let v = repeat_kv(v, rep)?;
        let opts = AttentionOptions {
            causal: self.cfg.causal,
            scale: None,
            key_padding_mask: mask.cloned(),
        };
        let o = scaled_dot_product_attention(q, &k, &v, &opts)?;
        let o = o
            .transpose(1, 2)?
            .reshape(&[b, t, self.cfg.n_heads * self.head_dim()])?;
        self.o_proj.forward(&o)
    }
}

/// Repeat each kv head `rep` times: (B, Hkv, T, D) -> (B, Hkv rep, T, D), head h reading kv head
/// h / rep (PyTorch's `repeat_interleave(rep, dim=1)`).
pub fn repeat_kv(x: &Tensor, rep: usize) -> Result<Tensor> {
    if rep == 1 {
        return Ok(x.clone());
    }
    let s = x.shape();
    let (b, h, t, d) = (s[0], s[1], s[2], s[3]);
    x.unsqueeze(2)?
        .expand(&[b, h, rep, t, d])?
        .reshape(&[b, h * rep, t, d])
}

impl Module for MultiHeadAttention {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        super::visit_children_linears(
            prefix,
            f,
            [
                ("q_proj", &mut self.q_proj),
                ("k_proj", &mut self.k_proj),
                ("v_proj", &mut self.v_proj),
                ("o_proj", &mut self.o_proj),
            ],
        );
    }

    /// Self-attention of x (B, T, C), no padding mask.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_masked(x, None)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        super::children_parameters([
            ("q_proj", &self.q_proj),
            ("k_proj", &self.k_proj),
            ("v_proj", &self.v_proj),
            ("o_proj", &self.o_proj),
        ])
    }
}
