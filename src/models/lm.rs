//! [`LanguageModel`]: a [`Gpt`] or an [`RnnLanguageModel`] behind one face, for the trainer and
//! for streamed generation.
//!
//! The trainer sees a classifier over `B * T` positions: a [`crate::data::text::TextDataset`]
//! batch has ids `x` (B, T) as `f32` and `B * T` next-token labels, so
//!
//! ```text
//! forward(x (B, T) f32 or u32) = logits (B * T, V)     row b * T + t predicts x[b, t + 1]
//! ```
//!
//! and the ordinary cross-entropy of the trainer is the mean over all `B * T` next-token
//! positions; argmax accuracy is token accuracy.
//!
//! **Generation** ([`LanguageModel::generate_with`]) calls back once per new token, so a caller
//! can print text as it appears. A GPT feeds the prompt once (its last `context` tokens) and
//! then one token per step through its KV cache; when the cache fills the context it is rebuilt
//! from the last `context / 2` tokens, exactly as [`Gpt::generate`] does, so both give the same
//! tokens. A recurrent model runs the prompt once and then one [`RnnLanguageModel::step`] per
//! token, carrying its state (no context limit).
//!
//! ```
//! use kiln::Tensor;
//! use kiln::models::{Gpt, GptConfig, LanguageModel, Sampling};
//! use kiln::nn::Module;
//! let cfg = GptConfig { vocab_size: 9, n_layer: 1, n_head: 2, n_kv_head: 2, d_model: 8,
//!                       context: 4, dropout: 0.0, rope: false };
//! let mut lm = LanguageModel::Gpt(Gpt::new(cfg)?);
//! lm.set_training(false);
//! let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
//! assert_eq!(lm.forward(&x)?.shape(), [6, 9]); // (B * T, V)
//! let s = Sampling { temperature: 0.9, top_k: Some(4), top_p: None, seed: 3 };
//! let mut streamed = Vec::new();
//! let out = lm.generate_with(&[1, 2, 3], 7, s, |t| { streamed.push(t); Ok(()) })?;
//! assert_eq!(out, streamed);
//! let LanguageModel::Gpt(gpt) = &lm else { unreachable!() };
//! assert_eq!(out, gpt.generate(&[1, 2, 3], 7, s)?); // the same sliding window as Gpt's own
//! # Ok::<(), kiln::Error>(())
//! ```

use super::gpt::Gpt;
use super::rnn::RnnLanguageModel;
use super::sampling::{Sampler, Sampling};
use crate::error::{Result, arg_err};
use crate::nn::Module;
use crate::tensor::{DType, Tensor};

/// A next-token model: a transformer decoder or a recurrent stack.
#[derive(Debug, Clone)]
pub enum LanguageModel {
    /// GPT decoder (KV-cached generation).
    Gpt(Gpt),
    /// RNN / LSTM / GRU (stateful generation).
    Rnn(RnnLanguageModel),
}

impl LanguageModel {
    /// V, the vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            LanguageModel::Gpt(g) => g.config().vocab_size,
            LanguageModel::Rnn(r) => r.config().vocab_size,
        }
    }

    /// The longest sequence the model reads at once: the GPT's context; `None` for a recurrent
    /// model, which has no limit.
    pub fn context(&self) -> Option<usize> {
        match self {
            LanguageModel::Gpt(g) => Some(g.config().context),
            LanguageModel::Rnn(_) => None,
        }
    }

    /// Logits (B, T, V) of ids (B, T) (u32, or f32 holding exact integers).
    pub fn logits(&self, ids: &Tensor) -> Result<Tensor> {
        let ids = match ids.dtype() {
            DType::F32 => ids.to_dtype(DType::U32)?,
            _ => ids.clone(),
        };
        let ids = super::token_ids("LanguageModel", &ids)?;
        match self {
            LanguageModel::Gpt(g) => g.forward(&ids),
            LanguageModel::Rnn(r) => r.forward(&ids),
        }
    }

    /// Continue `prompt` by `max_tokens` sampled tokens (batch 1), calling `on_token` with each
    /// new token as soon as it is drawn; returns the new tokens. Same prompt, weights and
    /// `sampling` (seed included): same tokens. Call `set_training(false)` first so that dropout
    /// is off.
    pub fn generate_with(
        &self,
        prompt: &[u32],
        max_tokens: usize,
        sampling: Sampling,
        mut on_token: impl FnMut(u32) -> Result<()>,
    ) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return arg_err("generate", "the prompt needs at least one token");
        }
        let v = self.vocab_size();
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= v) {
            return arg_err(
                "generate",
                format!("prompt token id {bad} is outside the vocabulary of {v}"),
            );
        }
        let _g = crate::no_grad();
        let mut sampler = Sampler::new(sampling);
        // Grown as tokens arrive: `max_tokens` is a bound, not a promise to allocate.
        let mut out = Vec::with_capacity(max_tokens.min(4096));
        match self {
            LanguageModel::Gpt(gpt) => {
                gpt.generate_each(prompt, max_tokens, &mut sampler, |tok| {
                    on_token(tok)?;
                    out.push(tok);
                    Ok(true)
                })?;
            }
            LanguageModel::Rnn(rnn) => {
                let gpu = rnn.embedding.weight.gpu().clone();
                if max_tokens == 0 {
                    return Ok(out);
                }
                let ids = Tensor::from_slice_on(&gpu, prompt, &[1, prompt.len()])?;
                let (logits, mut state) = rnn.forward_with(&ids, None)?; // (1, T, V)
                let last = logits.narrow(1, prompt.len() - 1, 1)?.to_vec::<f32>()?;
                let mut tok = sampler.sample(&last[..v])?;
                loop {
                    on_token(tok)?;
                    out.push(tok);
                    if out.len() == max_tokens {
                        break;
                    }
                    let id = Tensor::from_slice_on(&gpu, &[tok], &[1])?;
                    let (logits, next) = rnn.step(&id, Some(&state))?; // (1, V)
                    state = next;
                    tok = sampler.sample(&logits.to_vec::<f32>()?[..v])?;
                }
            }
        }
        Ok(out)
    }
}

impl Module for LanguageModel {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        match self {
            LanguageModel::Gpt(g) => g.visit_linears_mut(prefix, f),
            LanguageModel::Rnn(r) => r.visit_linears_mut(prefix, f),
        }
    }

    /// Logits (B * T, V) of ids (B, T): one row per next-token position, lined up with a text
    /// batch's `B * T` labels.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let logits = self.logits(ids)?; // (B, T, V)
        let (b, t) = (ids.shape()[0], ids.shape()[1]);
        logits.reshape(&[b * t, self.vocab_size()])
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        match self {
            LanguageModel::Gpt(g) => g.named_parameters(),
            LanguageModel::Rnn(r) => r.named_parameters(),
        }
    }

    fn set_training(&mut self, training: bool) {
        match self {
            LanguageModel::Gpt(g) => g.set_training(training),
            LanguageModel::Rnn(r) => r.set_training(training),
        }
    }

    fn is_training(&self) -> bool {
        match self {
            LanguageModel::Gpt(g) => g.is_training(),
            LanguageModel::Rnn(r) => r.is_training(),
        }
    }

    fn set_checkpointing(&mut self, every: usize) -> bool {
        match self {
            LanguageModel::Gpt(g) => g.set_checkpointing(every),
            LanguageModel::Rnn(r) => r.set_checkpointing(every),
        }
    }
}
