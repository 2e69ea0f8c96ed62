//! Optimizers, learning-rate schedules, gradient clipping.
//!
//! An optimizer is built over named parameters (from [`crate::nn::Module::named_parameters`]) and
//! updates them in place from their accumulated `.grad()`. Parameters whose `requires_grad` is
//! off (frozen) or that received no gradient are skipped, and get no optimizer state.

use crate::error::Result;
use crate::tensor::Tensor;

/// Everything an optimizer needs to resume exactly: its step count and named state tensors
/// (names like `exp_avg.layers.0.weight`).
#[derive(Debug, Clone, Default)]
pub struct OptimizerState {
    /// Updates applied so far.
    pub step: u64,
    /// Named state tensors (momentum buffers, moments).
    pub tensors: Vec<(String, Tensor)>,
}

/// An optimizer.
pub trait Optimizer: Send {
    /// Apply one update to every trainable parameter that has a gradient.
    fn step(&mut self) -> Result<()>;

    /// Zero every parameter's gradient in place (a separate step from backward, as in PyTorch).
    fn zero_grad(&self) -> Result<()>;

    /// The current learning rate.
    fn learning_rate(&self) -> f32;

    /// Set the learning rate (schedules call this before each step).
    fn set_learning_rate(&mut self, lr: f32);

    /// State for checkpoints.
    fn state(&self) -> OptimizerState;

    /// Restore state saved by [`Optimizer::state`]; errors name missing or mis-shaped tensors.
    fn load_state(&mut self, state: &OptimizerState) -> Result<()>;

    /// Give the named parameters their own learning rate, `scale * learning_rate()` (also under
    /// a schedule), like a PyTorch parameter group with a lower `lr`: the way to fine-tune a
    /// pretrained trunk gently after unfreezing it (see `kiln::train::transfer`). Every
    /// parameter starts at scale 1. Errors, changing nothing, on a name the optimizer does not
    /// hold or a scale that is not a finite number > 0. Scales are not part of
    /// [`Optimizer::state`]; whoever set them sets them again on resume.
    fn set_lr_scale(&mut self, names: &[String], scale: f32) -> Result<()> {
        let _ = (names, scale);
        crate::error::arg_err(
            "set_lr_scale",
            "this optimizer does not support per-parameter learning rates",
        )
    }

    /// The learning-rate multiplier of parameter `name` (1 unless set), `None` for a name the
    /// optimizer does not hold.
    fn lr_scale(&self, name: &str) -> Option<f32> {
        let _ = name;
        None
    }

    /// Make every later update conditional on the device: skipped while word 0 of `flag` (a u32
    /// tensor, a [`GradScaler`]'s counters) is not 0, with parameters and state left as they
    /// were (`None`: unconditional again). Errors on an optimizer that cannot (the default).
    fn set_skip_flag(&mut self, flag: Option<Tensor>) -> Result<()> {
        let _ = flag;
        crate::error::arg_err(
            "set_skip_flag",
            "this optimizer cannot skip a step on the device (loss scaling needs sgd, adam or \
             adamw)",
        )
    }

    /// Bytes of optimizer state: the tensors of [`Optimizer::state`] (moments, momentum
    /// buffers, quantised codes and scales, per-parameter step counts), wherever they live.
    /// Adam keeps 8 bytes per trained value, 8-bit Adam about 2.004.
    fn state_bytes(&self) -> u64 {
        self.state()
            .tensors
            .iter()
            .map(|(_, t)| (t.numel() * t.dtype().size()) as u64)
            .sum()
    }
}

mod adam;
mod adam8bit;
mod clip;
mod kind;
mod offload;
mod params;
mod scaler;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use adam8bit::Adam8bit;
pub use clip::{clip_grad_norm, clip_grad_value};
pub use kind::{OptimizerKind, build, build_with};
pub use offload::OffloadAdam;
pub use scaler::{GradScaler, Scaled, ScalerConfig, ScalerStats};
pub use schedule::{Schedule, ScheduleKind};
pub use sgd::{Sgd, SgdConfig};
