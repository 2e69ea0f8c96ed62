//! What the trainer reports and saves about a run: where it stands ([`Progress`], part of
//! every checkpoint), why it stopped, and which tensors its checkpoints hold.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

use super::log::EpochRecord;

/// Where a run stands, saved in every checkpoint.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Progress {
    /// Epochs completed.
    pub epoch: usize,
    /// Batches of epoch `epoch + 1` already trained (0 at an epoch boundary).
    pub batch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// Best validation loss so far.
    pub best_val_loss: Option<f64>,
    /// Epoch of the best validation loss.
    pub best_epoch: usize,
    /// Epochs since the last improvement.
    pub since_best: usize,
    /// The sums of the epoch in progress (when `batch > 0`).
    pub partial: Option<PartialEpoch>,
}

/// The running sums of an epoch stopped inside, so the resumed epoch reports the loss an
/// uninterrupted one would.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartialEpoch {
    /// Sum of `loss * weight` over the batches done, as the f32 the GPU accumulated.
    pub loss_sum: f32,
    /// Sum of the weights.
    pub weight: f64,
    /// Examples seen.
    pub examples: usize,
    /// Seconds spent on the epoch so far.
    pub seconds: f64,
}

/// Why `fit` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// All epochs ran.
    Finished,
    /// Early stopping (`patience`).
    EarlyStop,
    /// `max_steps` reached.
    MaxSteps,
    /// `time_limit_minutes` reached.
    TimeLimit,
    /// A hook returned [`Control::Stop`].
    Hook,
    /// `stop_at_epoch` reached.
    StopAtEpoch,
}

/// What a finished `fit` reports.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// Final progress state.
    pub progress: Progress,
    /// Why the run ended.
    pub reason: StopReason,
    /// True when early stopping ended the run.
    pub stopped_early: bool,
    /// True when `max_steps`, `time_limit_minutes` or a hook ended the run (the last epoch
    /// may be partial; `--resume` continues it exactly).
    pub budget_reached: bool,
    /// The records of the epochs this call ran (the last one partial when the run stopped
    /// inside an epoch).
    pub records: Vec<EpochRecord>,
    /// Seconds spent training (this process).
    pub seconds: f64,
}

/// Which tensors a checkpoint holds besides the optimizer state.
#[derive(Default)]
pub enum Saved {
    /// Every parameter and buffer of the model (`model.*`, `buffer.*`).
    #[default]
    Model,
    /// These tensors only, under `prefix.` (LoRA fine-tuning: the adapters; the frozen base
    /// is rebuilt from its own file).
    Only {
        /// Name prefix in the file.
        prefix: String,
        /// The tensors, by name.
        tensors: Vec<(String, Tensor)>,
    },
}

/// An error when the loss is not a finite number (the run diverged).
pub(super) fn check_finite(loss: f32, epoch: usize, batch: usize) -> Result<()> {
    if !loss.is_finite() {
        return Err(Error::Diverged(format!(
            "the loss became {loss} in epoch {epoch} (batch {batch}); training stopped. The \
             run directory keeps the checkpoints written before (if any). Lower the learning \
             rate (--lr), add --clip-grad-norm, or check the data for extreme values"
        )));
    }
    Ok(())
}

/// JSON for checkpoint metadata.
pub(super) mod erased {
    pub trait Ser {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}
