//! A BERT-style encoder (post-norm) with Hugging Face parameter names, and sentence-embedding
//! helpers (mean pooling, L2 normalisation) as used by sentence-transformers models such as
//! all-MiniLM-L6-v2.
//!
//! For ids (B, T), token types (B, T) (zeros by default) and an attention mask (B, T)
//! (1 = token, 0 = padding):
//!
//! ```text
//! x = LN(word[ids] + position[0..T] + token_type[types])                   (B, T, C)
//! per layer:
//!   a = softmax(q k^T / sqrt(Dh) + padding mask) v   with q, k, v = x W^T + b, H heads
//!   x = LN(x + dense(a))                               attention.output
//!   x = LN(x + dense2(gelu_erf(dense1(x))))            intermediate / output
//! returns the last hidden state x                                           (B, T, C)
//! ```
//!
//! Parameter names (exactly Hugging Face's `BertModel` without the pooler):
//!
//! ```text
//! embeddings.word_embeddings.weight             (V, C)
//! embeddings.position_embeddings.weight         (max_position_embeddings, C)
//! embeddings.token_type_embeddings.weight       (type_vocab_size, C)
//! embeddings.LayerNorm.{weight,bias}            (C)
//! encoder.layer.N.attention.self.{query,key,value}.{weight,bias}   (C, C), (C)
//! encoder.layer.N.attention.output.dense.{weight,bias}             (C, C), (C)
//! encoder.layer.N.attention.output.LayerNorm.{weight,bias}         (C)
//! encoder.layer.N.intermediate.dense.{weight,bias}                 (I, C), (I)
//! encoder.layer.N.output.dense.{weight,bias}                       (C, I), (C)
//! encoder.layer.N.output.LayerNorm.{weight,bias}                   (C)
//! ```
//!
//! ```
//! use kiln::{Tensor, nn::Module, models::bert::{BertConfig, BertEncoder, l2_normalize, mean_pool}};
//! let cfg = BertConfig { vocab_size: 20, hidden_size: 8, num_hidden_layers: 1,
//!     num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 8,
//!     type_vocab_size: 2, layer_norm_eps: 1e-12, hidden_dropout_prob: 0.0 };
//! let bert = BertEncoder::new(cfg)?;
//! let ids = Tensor::from_slice(&[3u32, 4, 5, 6, 7, 0], &[2, 3])?;
//! let mask = Tensor::from_slice(&[1u32, 1, 1, 1, 1, 0], &[2, 3])?;
//! let h = bert.forward_with(&ids, None, Some(&mask))?;
//! assert_eq!(h.shape(), [2, 3, 8]);
//! let e = l2_normalize(&mean_pool(&h, &mask)?)?.to_vec::<f32>()?;
//! let n: f32 = e[..8].iter().map(|v| v * v).sum();
//! assert!((n - 1.0).abs() < 1e-5);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use crate::error::{Result, arg_err, shape_err};
use crate::nn::transformer::linear_gelu;
use crate::nn::{Embedding, LayerNorm, Linear, Module, dropout, prefixed};
use crate::ops::bias_gelu::GeluForm;
use crate::ops::{AttentionOptions, scaled_dot_product_attention};
use crate::tensor::{DType, Tensor};

/// Size of a [`BertEncoder`] (Hugging Face `BertConfig` field names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BertConfig {
    /// V.
    pub vocab_size: usize,
    /// C.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads H (C a multiple of H).
    pub num_attention_heads: usize,
    /// I: MLP width.
    pub intermediate_size: usize,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// Token types (2 in BERT).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon (1e-12 in BERT).
    pub layer_norm_eps: f32,
    /// Dropout after embeddings, attention output and MLP output (training only).
    pub hidden_dropout_prob: f32,
}

impl BertConfig {
    /// all-MiniLM-L6-v2: 6 layers, width 384, 12 heads, MLP 1536, vocabulary 30,522.
    pub fn minilm_l6() -> Self {
        BertConfig {
            vocab_size: 30_522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_dropout_prob: 0.1,
        }
    }
}

/// One post-norm encoder layer (Hugging Face `BertLayer`).
#[derive(Debug, Clone)]
pub struct BertLayer {
    /// `attention.self.query`.
    pub query: Linear,
    /// `attention.self.key`.
    pub key: Linear,
    /// `attention.self.value`.
    pub value: Linear,
    /// `attention.output.dense`.
    pub attn_out: Linear,
    /// `attention.output.LayerNorm`.
    pub attn_norm: LayerNorm,
    /// `intermediate.dense`.
    pub intermediate: Linear,
    /// `output.dense`.
    pub output: Linear,
    /// `output.LayerNorm`.
    pub out_norm: LayerNorm,
    heads: usize,
    dropout: f32,
}

impl BertLayer {
    fn new_on(gpu: &Arc<Gpu>, cfg: &BertConfig) -> Result<Self> {
        let (c, i) = (cfg.hidden_size, cfg.intermediate_size);
        let lin = |a, b| Linear::new_on(gpu, a, b, true);
        Ok(BertLayer {
            query: lin(c, c)?,
            key: lin(c, c)?,
            value: lin(c, c)?,
            attn_out: lin(c, c)?,
            attn_norm: LayerNorm::new_on(gpu, c, cfg.layer_norm_eps, true)?,
            intermediate: lin(c, i)?,
            output: lin(i, c)?,
            out_norm: LayerNorm::new_on(gpu, c, cfg.layer_norm_eps, true)?,
            heads: cfg.num_attention_heads,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    /// x (B, T, C), mask (B, T) nonzero = keep -> (B, T, C).
    pub fn forward_masked(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        training: bool,
    ) -> Result<Tensor> {
        let (b, t, c) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let dh = c / self.heads;
        let heads = |l: &Linear| {
            l.forward(x)?
                .reshape(&[b, t, self.heads, dh])?
                .transpose(1, 2)
        };
        let opts = AttentionOptions {
            causal: false,
            scale: None,
            key_padding_mask: mask.cloned(),
        };
        let a = scaled_dot_product_attention(
            &heads(&self.query)?,
            &heads(&self.key)?,
            &heads(&self.value)?,
            &opts,
        )?;
        let a = a.transpose(1, 2)?.reshape(&[b, t, c])?;
        let a = dropout(&self.attn_out.forward(&a)?, self.dropout, training)?;
        let x = self.attn_norm.forward(&x.add(&a)?)?;
        let h = linear_gelu(&self.intermediate, &x, GeluForm::Erf)?;
        let h = dropout(&self.output.forward(&h)?, self.dropout, training)?;
        self.out_norm.forward(&x.add(&h)?)
    }

    /// The Linear layers with their HF paths (see `Module::visit_linears_mut`).
    fn visit_linears(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        crate::nn::visit_children_linears(
            prefix,
            f,
            [
                ("attention.self.query", &mut self.query),
                ("attention.self.key", &mut self.key),
                ("attention.self.value", &mut self.value),
                ("attention.output.dense", &mut self.attn_out),
                ("intermediate.dense", &mut self.intermediate),
                ("output.dense", &mut self.output),
            ],
        );
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        crate::nn::children_parameters([
            ("attention.self.query", &self.query),
            ("attention.self.key", &self.key),
            ("attention.self.value", &self.value),
            ("attention.output.dense", &self.attn_out),
            ("attention.output.LayerNorm", &self.attn_norm),
            ("intermediate.dense", &self.intermediate),
            ("output.dense", &self.output),
            ("output.LayerNorm", &self.out_norm),
        ])
    }
}

/// The BERT encoder. See the module notes.
#[derive(Debug, Clone)]
pub struct BertEncoder {
    /// `embeddings.word_embeddings` (V, C).
    pub word_embeddings: Embedding,
    /// `embeddings.position_embeddings` (max_position_embeddings, C).
    pub position_embeddings: Embedding,
    /// `embeddings.token_type_embeddings` (type_vocab_size, C).
    pub token_type_embeddings: Embedding,
    /// `embeddings.LayerNorm`.
    pub emb_norm: LayerNorm,
    /// `encoder.layer.N`.
    pub layers: Vec<BertLayer>,
    cfg: BertConfig,
    training: bool,
}

impl BertEncoder {
    /// A fresh encoder (embeddings N(0, 0.02^2)) on the default device.
    pub fn new(cfg: BertConfig) -> Result<Self> {
        Self::new_on(&crate::device()?, cfg)
    }

    /// [`BertEncoder::new`] on `gpu`.
    pub fn new_on(gpu: &Arc<Gpu>, cfg: BertConfig) -> Result<Self> {
        let c = cfg.hidden_size;
        if c == 0
            || cfg.num_attention_heads == 0
            || !c.is_multiple_of(cfg.num_attention_heads)
            || cfg.vocab_size == 0
            || cfg.max_position_embeddings == 0
            || cfg.type_vocab_size == 0
            || cfg.intermediate_size == 0
        {
            return arg_err(
                "BertEncoder",
                format!("sizes must be positive and hidden_size a multiple of the heads: {cfg:?}"),
            );
        }
        let emb = |rows: usize| Embedding::normal_on(gpu, rows, c, 0.02);
        Ok(BertEncoder {
            word_embeddings: emb(cfg.vocab_size)?,
            position_embeddings: emb(cfg.max_position_embeddings)?,
            token_type_embeddings: emb(cfg.type_vocab_size)?,
            emb_norm: LayerNorm::new_on(gpu, c, cfg.layer_norm_eps, true)?,
            layers: (0..cfg.num_hidden_layers)
                .map(|_| BertLayer::new_on(gpu, &cfg))
                .collect::<Result<_>>()?,
            cfg,
            training: true,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Last hidden state (B, T, C) of ids (B, T) (u32 or i32), with optional token types (B, T)
    /// (zeros when `None`) and attention mask (B, T) (1 = token, 0 = padding; all tokens when
    /// `None`).
    pub fn forward_with(
        &self,
        ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let ids = super::token_ids("BertEncoder", ids)?;
        let (b, t) = (ids.shape()[0], ids.shape()[1]);
        if t > self.cfg.max_position_embeddings {
            return shape_err(
                "BertEncoder",
                format!(
                    "sequence length {t} exceeds max_position_embeddings {}",
                    self.cfg.max_position_embeddings
                ),
            );
        }
        for (name, m) in [
            ("token_type_ids", token_type_ids),
            ("attention_mask", attention_mask),
        ] {
            if let Some(m) = m {
                if m.shape() != [b, t] {
                    return shape_err(
                        "BertEncoder",
                        format!("{name} must be ({b}, {t}), got shape {:?}", m.shape()),
                    );
                }
            }
        }
        let gpu = ids.gpu().clone();
        let pos: Vec<u32> = (0..t as u32).collect();
        let pos = Tensor::from_slice_on(&gpu, &pos, &[t])?;
        let types = match token_type_ids {
            Some(tt) => super::token_ids("BertEncoder token_type_ids", tt)?,
            None => Tensor::from_slice_on(&gpu, &vec![0u32; b * t], &[b, t])?,
        };
        let x = self
            .word_embeddings
            .forward(&ids)?
            .add(&self.position_embeddings.forward(&pos)?)?
            .add(&self.token_type_embeddings.forward(&types)?)?;
        let mut x = dropout(
            &self.emb_norm.forward(&x)?,
            self.cfg.hidden_dropout_prob,
            self.training,
        )?;
        for l in &self.layers {
            x = l.forward_masked(&x, attention_mask, self.training)?;
        }
        Ok(x)
    }
}

impl Module for BertEncoder {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.visit_linears(
                &crate::nn::child_path(prefix, &format!("encoder.layer.{i}")),
                f,
            );
        }
    }

    /// Last hidden state (B, T, C) of ids (B, T), token type 0, no padding.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward_with(ids, None, None)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = crate::nn::children_parameters([
            ("embeddings.word_embeddings", &self.word_embeddings),
            ("embeddings.position_embeddings", &self.position_embeddings),
            (
                "embeddings.token_type_embeddings",
                &self.token_type_embeddings,
            ),
            ("embeddings.LayerNorm", &self.emb_norm),
        ]);
        for (i, l) in self.layers.iter().enumerate() {
            v.extend(prefixed(
                &format!("encoder.layer.{i}"),
                l.named_parameters(),
            ));
        }
        v
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

/// Mean of hidden (B, T, C) over the positions where mask (B, T) is nonzero: (B, C). Rows with
/// no tokens give zeros (the count is clamped to 1e-9, as sentence-transformers does).
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if hidden.rank() != 3 || mask.shape() != &hidden.shape()[..2] {
        return shape_err(
            "mean_pool",
            format!(
                "need hidden (B, T, C) and mask (B, T), got {:?} and {:?}",
                hidden.shape(),
                mask.shape()
            ),
        );
    }
    let m = mask
        .to_dtype(DType::F32)?
        .ne(&Tensor::zeros_on(mask.gpu(), &[1])?)?;
    let m = m.unsqueeze(-1)?;
    let sum = hidden.mul(&m)?.sum_dims(&[1], false)?;
    let count = m.sum_dims(&[1], false)?.clamp(1e-9, f32::INFINITY)?;
    sum.div(&count)
}

/// Each row of x (..., C) divided by its L2 norm (clamped below at 1e-12, as PyTorch's
/// `F.normalize`).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let n = x.square()?.sum_dims(&[-1], true)?.sqrt()?;
    x.div(&n.clamp(1e-12, f32::INFINITY)?)
}
