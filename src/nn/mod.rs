//! Layers: the [`Module`] trait, standard layers, initialisation and losses.
//!
//! A module owns its parameters as leaf tensors with `requires_grad`; optimizers update them in
//! place, so the tensors handed out by [`Module::named_parameters`] are the module's own (cheap
//! `Arc` clones of the same storage). Names follow PyTorch (`layers.0.weight`), so checkpoints
//! line up with the Python ecosystem.

pub mod activation;
pub mod attention;
pub mod batch_norm;
pub mod batch_norm2d;
pub mod checkpoint;
pub mod conv;
pub mod dropout;
pub mod embedding;
pub mod flatten;
pub mod freeze;
pub mod init;
pub mod layer_norm;
pub mod linear;
pub mod load;
pub mod lora;
pub mod lora_io;
pub mod loss;
pub mod pool;
pub mod probe;
pub mod qlora;
pub mod rms_norm;
pub mod rng;
pub mod rnn;
pub mod sequential;
pub mod transformer;

pub use activation::{GELU, ReLU, SiLU, Sigmoid, Tanh};
pub use attention::{AttentionConfig, KvCache, MultiHeadAttention};
pub use batch_norm::{BatchNorm1d, BatchNormOptions};
pub use batch_norm2d::{BatchNorm2d, batch_norm2d};
pub use checkpoint::Checkpoint;
pub use conv::{Conv1d, Conv2d};
pub use dropout::{Dropout, dropout};
pub use embedding::Embedding;
pub use flatten::Flatten;
pub use layer_norm::{LayerNorm, layer_norm};
pub use linear::Linear;
pub use loss::{CrossEntropyOptions, Reduction};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, PoolWindow};
pub use rms_norm::RmsNorm;
pub use rng::{RngState, manual_seed, next_key, rng_state, set_rng_state};
pub use rnn::{Gru, Lstm, Recurrent, RecurrentLayer, Rnn, RnnOptions, RnnOutput, RnnState};
pub use sequential::Sequential;
pub use transformer::{BlockConfig, FeedForward, Norm, SwiGlu, TransformerBlock};

use crate::error::Result;
use crate::tensor::Tensor;

/// A layer or model.
pub trait Module: Send + Sync {
    /// The forward pass.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// Trainable parameters with dotted PyTorch-style names, in a stable order.
    fn named_parameters(&self) -> Vec<(String, Tensor)>;

    /// Non-trainable state saved with the model (e.g. BatchNorm running statistics).
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Switch between training and evaluation behaviour (Dropout, BatchNorm). Containers forward
    /// it to their children.
    fn set_training(&mut self, _training: bool) {}

    /// True in training mode.
    fn is_training(&self) -> bool {
        true
    }

    /// The parameters without names.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Number of scalar parameters.
    fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.numel()).sum()
    }

    /// Call `f(path, linear)` for every [`Linear`] layer inside this module (itself included),
    /// `path` being its dotted name (`blocks.0.attn.q_proj`; `prefix` for the module itself).
    /// Containers pass each child its path with [`child_path`]; the default (a module with no
    /// Linear layers) does nothing. This is how LoRA finds and adapts layers in place
    /// ([`lora::apply_lora`]).
    fn visit_linears_mut(&mut self, _prefix: &str, _f: &mut dyn FnMut(&str, &mut Linear)) {}

    /// Activation checkpointing: run the module's blocks (GPT's transformer blocks, ResNet's
    /// residual blocks, the layers of a recurrent stack) as checkpointed segments of `every`
    /// blocks each, `0` for off (see [`checkpoint`]). Returns false, changing nothing, when the
    /// module has no blocks to checkpoint (the default).
    fn set_checkpointing(&mut self, _every: usize) -> bool {
        false
    }

    /// Number of scalar parameters that currently require grad (not frozen).
    fn num_trainable_parameters(&self) -> usize {
        self.named_parameters()
            .iter()
            .filter(|(_, t)| t.requires_grad_flag())
            .map(|(_, t)| t.numel())
            .sum()
    }
}

/// Error unless `x` is a batch-first sequence (B, T, `c`) for layer `op` (`what` qualifies the
/// layer in the message, e.g. its cell); returns (B, T).
pub(crate) fn expect_sequence(
    op: &'static str,
    what: &str,
    x: &Tensor,
    c: usize,
) -> Result<(usize, usize)> {
    match *x.shape() {
        [b, t, xc] if xc == c => Ok((b, t)),
        _ => crate::error::shape_err(
            op,
            format!(
                "{what}input must be (B, T, {c}) (batch first), got shape {:?}",
                x.shape()
            ),
        ),
    }
}

/// The dotted path of child `name` of the module at `prefix` (`name` alone at the root).
pub fn child_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A container's named parameters: each child's, its names prefixed with the child's name, in
/// the order given (`[("fc1", &self.fc1), ("fc2", &self.fc2)]`).
pub fn children_parameters<const N: usize>(
    children: [(&str, &dyn Module); N],
) -> Vec<(String, Tensor)> {
    children
        .into_iter()
        .flat_map(|(name, m)| prefixed(name, m.named_parameters()))
        .collect()
}

/// A container's [`Module::visit_linears_mut`]: each child visited at its path below `prefix`
/// (`[("fc1", &mut self.fc1), ("fc2", &mut self.fc2)]`).
pub fn visit_children_linears<const N: usize>(
    prefix: &str,
    f: &mut dyn FnMut(&str, &mut Linear),
    children: [(&str, &mut dyn Module); N],
) {
    for (name, m) in children {
        m.visit_linears_mut(&child_path(prefix, name), f);
    }
}

/// Prefix every name in `items` with `prefix.` (for containers).
pub fn prefixed(prefix: &str, items: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    items
        .into_iter()
        .map(|(n, t)| (format!("{prefix}.{n}"), t))
        .collect()
}
