//! `--grad-checkpoint [N]` of `kiln train` and `kiln finetune`: activation checkpointing.
//!
//! The flag sets `TrainConfig::grad_checkpoint`, which the run's `config.toml` records (a
//! resumed run checkpoints as it did; the flag may change it on `--resume`, as it changes no
//! state); the trainer applies it to the model with `Module::set_checkpointing`.

use clap::Args;

use super::{Error, Result};
use crate::nn::Module;
use crate::train::TrainConfig;

/// The activation-checkpointing flag (flattened into the loop flags).
#[derive(Debug, Args, Default, Clone)]
pub struct GradCheckpointArgs {
    /// Activation checkpointing: keep only the input of every N blocks in the forward pass and
    /// recompute the blocks in backward (less memory for about one more forward pass of time).
    /// N defaults to 1; 0 turns it off. GPT transformer blocks, ResNet-18 residual blocks,
    /// LSTM/GRU/RNN layers.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1")]
    pub grad_checkpoint: Option<usize>,
}

impl GradCheckpointArgs {
    /// Record the flag in `t` (0: off); without the flag `t` keeps its setting.
    pub fn apply_to(&self, t: &mut TrainConfig) {
        if let Some(n) = self.grad_checkpoint {
            t.grad_checkpoint = (n > 0).then_some(n);
        }
    }
}

/// Turn checkpointing on in `model` as `t` asks, before the run starts: an error naming the
/// model (`name`) when it has no blocks to checkpoint.
pub fn apply(model: &mut dyn Module, t: &TrainConfig, name: &str) -> Result<()> {
    match t.grad_checkpoint {
        Some(n) if !model.set_checkpointing(n) => Err(Error(format!(
            "--grad-checkpoint {n}: model {name} has no blocks to checkpoint (gpt, resnet18, \
             lstm, gru and rnn have)"
        ))),
        _ => Ok(()),
    }
}
