//! Recurrent models: a token-level language model and a sequence classifier, over any
//! [`RnnCell`] (RNN tanh, LSTM, GRU).
//!
//! ```text
//! RnnLanguageModel  ids (B, T) -> Embedding (B, T, E) -> recurrent stack (B, T, H)
//!                   [-> dropout] -> Linear (B, T, V) logits
//! RnnClassifier     ids (B, T) -> Embedding, or features (B, T, F) -> recurrent stack
//!                   -> last h (B, H) or mean over T (B, H) [-> dropout] -> Linear (B, C) logits
//! ```
//!
//! Parameter names: `embedding.weight`, `rnn.weight_ih_l0`, ..., `head.weight`, `head.bias` (the
//! `rnn.*` part loads into a `torch.nn.LSTM` / `GRU` / `RNN` with `batch_first=True`).
//! Generation keeps the recurrent state between calls of [`RnnLanguageModel::step`], so each
//! new token costs one step, not a rerun of the prefix.
//!
//! ```
//! use kiln::Tensor;
//! use kiln::models::{RnnLanguageModel, RnnLmConfig};
//! use kiln::nn::Module;
//! use kiln::ops::RnnCell;
//! let lm = RnnLanguageModel::new(RnnLmConfig::new(RnnCell::Gru, 11, 8, 16))?;
//! let ids = Tensor::from_slice(&[1u32, 2, 3, 4, 5, 6], &[2, 3])?;
//! assert_eq!(lm.forward(&ids)?.shape(), [2, 3, 11]);
//! let (logits, state) = lm.step(&Tensor::from_slice(&[1u32, 2], &[2])?, None)?;
//! assert_eq!(logits.shape(), [2, 11]);
//! let (logits, _) = lm.step(&Tensor::from_slice(&[3u32, 4], &[2])?, Some(&state))?;
//! assert_eq!(logits.shape(), [2, 11]);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use crate::Gpu;
use crate::error::{Result, arg_err, shape_err};
use crate::nn::{self, Embedding, Linear, Module, Recurrent, RnnOptions, RnnState, prefixed};
use crate::ops::RnnCell;
use crate::tensor::Tensor;

/// Configuration of an [`RnnLanguageModel`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RnnLmConfig {
    /// The recurrent cell.
    pub cell: RnnCell,
    /// V, vocabulary size.
    pub vocab_size: usize,
    /// E, embedding size (the recurrent input size).
    pub embed_dim: usize,
    /// H, hidden size.
    pub hidden_size: usize,
    /// L, stacked recurrent layers.
    pub num_layers: usize,
    /// Dropout between recurrent layers and before the head, in training.
    pub dropout: f32,
}

impl RnnLmConfig {
    /// One layer, no dropout.
    pub fn new(cell: RnnCell, vocab_size: usize, embed_dim: usize, hidden_size: usize) -> Self {
        RnnLmConfig {
            cell,
            vocab_size,
            embed_dim,
            hidden_size,
            num_layers: 1,
            dropout: 0.0,
        }
    }
}

/// Embedding -> recurrent stack -> Linear to the vocabulary.
#[derive(Debug, Clone)]
pub struct RnnLanguageModel {
    /// (V, E).
    pub embedding: Embedding,
    /// The recurrent stack.
    pub rnn: Recurrent,
    /// (V, H) and (V).
    pub head: Linear,
    config: RnnLmConfig,
    training: bool,
}

impl RnnLanguageModel {
    /// A model on the default device.
    pub fn new(config: RnnLmConfig) -> Result<Self> {
        Self::new_on(&crate::device()?, config)
    }

    /// A model on `gpu`, PyTorch's default initialisation in every layer.
    pub fn new_on(gpu: &Arc<Gpu>, config: RnnLmConfig) -> Result<Self> {
        let (rnn, head) = Stack {
            cell: config.cell,
            input: config.embed_dim,
            hidden: config.hidden_size,
            layers: config.num_layers,
            dropout: config.dropout,
            outputs: config.vocab_size,
        }
        .build(gpu, "RnnLanguageModel")?;
        Ok(RnnLanguageModel {
            embedding: Embedding::new_on(gpu, config.vocab_size, config.embed_dim)?,
            rnn,
            head,
            config,
            training: true,
        })
    }

    /// The configuration.
    pub fn config(&self) -> RnnLmConfig {
        self.config
    }

    /// Logits (B, T, V) for `ids` (B, T, u32) from `state` (zeros when `None`), and the final
    /// state.
    pub fn forward_with(
        &self,
        ids: &Tensor,
        state: Option<&RnnState>,
    ) -> Result<(Tensor, RnnState)> {
        let ids = super::token_ids("RnnLanguageModel", ids)?;
        let x = self.embedding.forward(&ids)?;
        let out = self.rnn.forward_with(&x, state)?;
        let h = nn::dropout(&out.output, self.config.dropout, self.training)?;
        Ok((self.head.forward(&h)?, out.state))
    }

    /// One generation step: `ids` (B) or (B, 1) u32, the state from the previous step (zeros when
    /// `None`) -> logits (B, V) and the new state.
    pub fn step(&self, ids: &Tensor, state: Option<&RnnState>) -> Result<(Tensor, RnnState)> {
        let b = ids.shape().first().copied().unwrap_or(0);
        let ids = match ids.shape() {
            [_] => ids.reshape(&[b, 1])?,
            [_, 1] => ids.clone(),
            s => {
                return shape_err(
                    "RnnLanguageModel::step",
                    format!("ids must be (B) or (B, 1), got shape {s:?}"),
                );
            }
        };
        let (logits, state) = self.forward_with(&ids, state)?;
        Ok((logits.reshape(&[b, self.config.vocab_size])?, state))
    }
}

impl Module for RnnLanguageModel {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        self.head
            .visit_linears_mut(&crate::nn::child_path(prefix, "head"), f);
    }

    /// Logits (B, T, V) for `ids` (B, T) from a zero state.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with(ids, None)?.0)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        parameters(Some(&self.embedding), &self.rnn, &self.head)
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        self.rnn.set_training(training);
    }

    fn is_training(&self) -> bool {
        self.training
    }

    /// Checkpointed segments of `every` recurrent layers (0: off).
    fn set_checkpointing(&mut self, every: usize) -> bool {
        self.rnn.set_checkpointing(every)
    }
}

/// What an [`RnnClassifier`] reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SequenceInput {
    /// Token ids (B, T, u32) through an embedding of `vocab_size` rows of `embed_dim`.
    Tokens {
        /// V.
        vocab_size: usize,
        /// E.
        embed_dim: usize,
    },
    /// Feature vectors (B, T, F), f32.
    Features {
        /// F.
        size: usize,
    },
}

/// How an [`RnnClassifier`] summarises the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequencePooling {
    /// The last layer's final h.
    Last,
    /// The mean of the last layer's h over all steps.
    Mean,
}

/// Configuration of an [`RnnClassifier`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RnnClassifierConfig {
    /// The recurrent cell.
    pub cell: RnnCell,
    /// Token or feature input.
    pub input: SequenceInput,
    /// H, hidden size.
    pub hidden_size: usize,
    /// L, stacked recurrent layers.
    pub num_layers: usize,
    /// C, classes.
    pub classes: usize,
    /// Last h or mean over time.
    pub pooling: SequencePooling,
    /// Dropout between recurrent layers and before the head, in training.
    pub dropout: f32,
}

/// [Embedding ->] recurrent stack -> last h or mean -> Linear to classes.
#[derive(Debug, Clone)]
pub struct RnnClassifier {
    /// Present for token input.
    pub embedding: Option<Embedding>,
    /// The recurrent stack.
    pub rnn: Recurrent,
    /// (C, H) and (C).
    pub head: Linear,
    config: RnnClassifierConfig,
    training: bool,
}

impl RnnClassifier {
    /// A classifier on the default device.
    pub fn new(config: RnnClassifierConfig) -> Result<Self> {
        Self::new_on(&crate::device()?, config)
    }

    /// A classifier on `gpu`, PyTorch's default initialisation in every layer.
    pub fn new_on(gpu: &Arc<Gpu>, config: RnnClassifierConfig) -> Result<Self> {
        let (embedding, input) = match config.input {
            SequenceInput::Tokens {
                vocab_size,
                embed_dim,
            } => (
                Some(Embedding::new_on(gpu, vocab_size, embed_dim)?),
                embed_dim,
            ),
            SequenceInput::Features { size } => (None, size),
        };
        let (rnn, head) = Stack {
            cell: config.cell,
            input,
            hidden: config.hidden_size,
            layers: config.num_layers,
            dropout: config.dropout,
            outputs: config.classes,
        }
        .build(gpu, "RnnClassifier")?;
        Ok(RnnClassifier {
            embedding,
            rnn,
            head,
            config,
            training: true,
        })
    }

    /// The configuration.
    pub fn config(&self) -> RnnClassifierConfig {
        self.config
    }
}

impl Module for RnnClassifier {
    fn visit_linears_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut crate::nn::Linear)) {
        self.head
            .visit_linears_mut(&crate::nn::child_path(prefix, "head"), f);
    }

    /// Logits (B, C) for ids (B, T) or features (B, T, F).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match &self.embedding {
            Some(e) => e.forward(&super::token_ids("RnnClassifier", x)?)?,
            None => x.clone(),
        };
        let out = self.rnn.forward_with(&x, None)?;
        let summary = match self.config.pooling {
            SequencePooling::Last => {
                let l = self.config.num_layers;
                out.state.h.narrow(0, l - 1, 1)?.squeeze(0)?
            }
            SequencePooling::Mean => out.output.mean_dims(&[1], false)?,
        };
        let summary = nn::dropout(&summary, self.config.dropout, self.training)?;
        self.head.forward(&summary)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        parameters(self.embedding.as_ref(), &self.rnn, &self.head)
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        self.rnn.set_training(training);
    }

    fn is_training(&self) -> bool {
        self.training
    }
}

/// What both models build after their input: the recurrent stack `input -> hidden` (`layers`,
/// `dropout` between layers) and the head `hidden -> outputs`.
struct Stack {
    cell: RnnCell,
    input: usize,
    hidden: usize,
    layers: usize,
    dropout: f32,
    outputs: usize,
}

impl Stack {
    /// The stack and the head on `gpu`, PyTorch's default initialisation; `op` names the model in
    /// errors.
    fn build(self, gpu: &Arc<Gpu>, op: &'static str) -> Result<(Recurrent, Linear)> {
        let p = self.dropout;
        if !(0.0..=1.0).contains(&p) {
            return arg_err(op, format!("dropout must be in [0, 1], got {p}"));
        }
        let opts = RnnOptions::new(self.input, self.hidden)
            .num_layers(self.layers)
            .dropout(p);
        Ok((
            Recurrent::new_on(gpu, self.cell, opts)?,
            Linear::new_on(gpu, self.hidden, self.outputs, true)?,
        ))
    }
}

/// Both models' parameter names: `embedding.*` (when present), `rnn.*`, `head.*`.
fn parameters(
    embedding: Option<&Embedding>,
    rnn: &Recurrent,
    head: &Linear,
) -> Vec<(String, Tensor)> {
    let mut v = embedding.map_or_else(Vec::new, |e| prefixed("embedding", e.named_parameters()));
    v.extend(nn::children_parameters([("rnn", rnn), ("head", head)]));
    v
}
