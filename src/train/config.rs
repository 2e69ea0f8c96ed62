//! Settings of a training run (from flags or a TOML file) and the task being learned.

use serde::{Deserialize, Serialize};

/// How the trainer runs. Every field has a default, so a TOML file may set any subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f32,
    /// `sgd`, `adam` or `adamw`.
    pub optimizer: String,
    /// Learning-rate schedule: `constant`, `step`, `exponential`, `cosine`, `warmup-cosine`,
    /// `one-cycle`.
    pub schedule: String,
    /// Weight decay (L2 for SGD/Adam, decoupled for AdamW).
    pub weight_decay: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// Seed of data order, initialisation and dropout.
    pub seed: u64,
    /// Stop after this many epochs without validation improvement (none: never).
    pub patience: Option<usize>,
    /// Improvement smaller than this does not count.
    pub min_delta: f64,
    /// At the end, put back the weights of the best validation epoch.
    pub restore_best: bool,
    /// Clip the global gradient norm to this value.
    pub clip_grad_norm: Option<f32>,
    /// Micro-batches per optimizer step (gradient accumulation).
    pub accumulate: usize,
    /// No progress bars or per-epoch lines.
    pub quiet: bool,
    /// Transfer learning: at the start of this epoch (1-based) every frozen parameter starts
    /// training, at `unfreeze_lr_scale` x the learning rate (none: frozen ones stay frozen).
    pub unfreeze_at: Option<usize>,
    /// Learning-rate multiplier of the parameters unfrozen at `unfreeze_at`.
    pub unfreeze_lr_scale: f32,
    /// Stop after this many optimizer steps in total (none: no limit). The epoch in progress
    /// ends there and is validated and checkpointed as usual.
    pub max_steps: Option<u64>,
    /// Stop after this many minutes of training in this process (none: no limit), checked after
    /// every batch; the epoch in progress ends there, validated and checkpointed.
    pub time_limit_minutes: Option<f64>,
    /// Examples per validation batch (none: the larger of `batch_size` and 256).
    pub eval_batch_size: Option<usize>,
    /// Also checkpoint every this many optimizer steps inside epochs (for runs that may be
    /// killed: `--resume` then continues exactly from the last one). `None`: at epoch ends
    /// and when a budget stops the run.
    pub checkpoint_every: Option<u64>,
    /// Stop after this epoch completes (none: run all `epochs`). Unlike a smaller `epochs`
    /// it does not change the learning-rate schedule, so a run continued with `--resume`
    /// computes what one that never stopped would (how `kiln sweep` trains a trial rung by
    /// rung).
    #[serde(default)]
    pub stop_at_epoch: Option<usize>,
    /// Keep the optimizer's moments in host memory and update on the CPU
    /// (`--offload-optimizer`; Adam / AdamW only).
    #[serde(default)]
    pub offload_optimizer: bool,
    /// Activation checkpointing: the model's blocks run as checkpointed segments of this many
    /// blocks (`Module::set_checkpointing`; none: off). Changes memory and time, not results.
    #[serde(default)]
    pub grad_checkpoint: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            optimizer: "adam".into(),
            schedule: "constant".into(),
            weight_decay: 0.0,
            momentum: 0.9,
            seed: 0,
            patience: None,
            min_delta: 0.0,
            restore_best: true,
            clip_grad_norm: None,
            accumulate: 1,
            quiet: false,
            unfreeze_at: None,
            unfreeze_lr_scale: 0.1,
            max_steps: None,
            time_limit_minutes: None,
            eval_batch_size: None,
            checkpoint_every: None,
            stop_at_epoch: None,
            offload_optimizer: false,
            grad_checkpoint: None,
        }
    }
}

impl TrainConfig {
    /// Whether the optimizer keeps state between steps (Adam's moments, SGD's momentum), so
    /// a resumed run needs it from the checkpoint. Optimizers keep it lazily (created at the
    /// first step), so the optimizer itself cannot say before then.
    pub fn optimizer_keeps_state(&self) -> bool {
        !(self.optimizer.eq_ignore_ascii_case("sgd") && self.momentum == 0.0)
    }

    /// Check ranges; the error names the setting.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("lr must be a positive number, got {}", self.lr));
        }
        if self.accumulate == 0 {
            return bad("accumulate must be at least 1".into());
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return bad(format!(
                "weight_decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if self.unfreeze_at == Some(0) {
            return bad("unfreeze_at is an epoch number, counted from 1".into());
        }
        if !(self.unfreeze_lr_scale > 0.0 && self.unfreeze_lr_scale.is_finite()) {
            return bad(format!(
                "unfreeze_lr_scale must be a positive number, got {}",
                self.unfreeze_lr_scale
            ));
        }
        if self.max_steps == Some(0)
            || self.eval_batch_size == Some(0)
            || self.checkpoint_every == Some(0)
            || self.stop_at_epoch == Some(0)
            || self.grad_checkpoint == Some(0)
        {
            return bad(
                "max_steps, eval_batch_size, checkpoint_every, stop_at_epoch and grad_checkpoint \
                 must be at least 1"
                    .into(),
            );
        }
        if let Some(m) = self.time_limit_minutes {
            if !(m > 0.0 && m.is_finite()) {
                return bad(format!(
                    "time_limit_minutes must be a positive number, got {m}"
                ));
            }
        }
        if let Some(c) = self.clip_grad_norm {
            if c.is_nan() || c <= 0.0 {
                return bad(format!("clip_grad_norm must be > 0, got {c}"));
            }
        }
        Ok(())
    }
}

/// What is being learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Task {
    /// Class indices, trained with cross-entropy.
    Classification {
        /// Class names, index = class id.
        class_names: Vec<String>,
    },
    /// Real targets, trained with mean squared error.
    Regression {
        /// Targets per example.
        width: usize,
    },
}
