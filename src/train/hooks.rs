//! Hooks: how data parallelism, loss scaling, trial pruning, tracing, diagnostics and the CLI's
//! progress display plug into [`super::Trainer::fit`] without copying its loop.
//!
//! Where each method runs in one optimizer step (`accumulate` micro-batches):
//!
//! ```text
//! on_epoch_start(epoch, first batch)
//! for each micro-batch:
//!     (loss, weight) = objective.loss(model, batch)
//!     loss = before_backward(loss)          e.g. multiply by the loss scale
//!     loss.backward()
//!     on_batch(info)                        progress; info.loss read back every few batches
//!     after the last micro-batch of the step:
//!         after_backward(params)            e.g. all-reduce the gradients, overflow check
//!         (clip) before_step(info) -> Control::Skip skips this update
//!         optimizer.step(); zero_grad
//!         after_step(info) -> Control::Stop ends the run here (checkpointed, resumable)
//! end of epoch: fill_record(record) (e.g. the loss scale), validate, log, checkpoint,
//!               end_of_epoch(record, improved) -> Control
//! ```
//!
//! `on_phase(phase, start)` brackets the loader's next batch, the forward, the backward, the
//! optimizer update, each checkpoint and each validation.
//!
//! Every method has a default that does nothing, so a hook implements only what it needs.

use crate::error::Result;
use crate::nn::Module;
use crate::tensor::Tensor;

use super::log::EpochRecord;

/// What a hook asks of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Control {
    /// Go on.
    #[default]
    Continue,
    /// Skip this optimizer update (from `before_step`: e.g. gradients overflowed); the
    /// gradients are zeroed and the step counter still advances.
    Skip,
    /// Stop the run: the loop checkpoints where it stands (resumable) and returns.
    Stop,
}

/// Where the loop is, passed to the hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepInfo {
    /// 1-based epoch.
    pub epoch: usize,
    /// Batches of this epoch done (after this one).
    pub batch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// Optimizer steps taken so far (after this one, in `after_step`).
    pub step: u64,
}

/// One micro-batch, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchInfo {
    /// Position.
    pub at: StepInfo,
    /// The batch's loss, read back from the GPU every [`BatchInfo::EVERY`] batches and on the
    /// epoch's last batch (a device sync), `None` otherwise.
    pub loss: Option<f32>,
    /// Examples seen this epoch (this process).
    pub examples: usize,
    /// Seconds spent on this epoch (this process).
    pub seconds: f64,
}

impl BatchInfo {
    /// How often the loop reads the loss back for [`Hook::on_batch`].
    pub const EVERY: usize = 10;
}

/// What the end of an epoch carries besides its record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochEnd {
    /// The validation loss improved (the best checkpoint was just written).
    pub improved: bool,
    /// Epochs in the run.
    pub epochs: usize,
}

/// A stretch of host work in the loop, reported to [`Hook::on_phase`] as it starts and ends
/// (`kiln train --trace` draws them; `kiln explain` names the kernels of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Taking the next batch from the loader (reading, augmenting, batching).
    Data,
    /// `objective.loss`: the batch's upload and the forward pass.
    Forward,
    /// `loss.backward()` (with the hooks' `before_backward`).
    Backward,
    /// Clipping, `optimizer.step()` and `zero_grad`.
    Optimizer,
    /// Writing a checkpoint.
    Checkpoint,
    /// Validation at the end of an epoch (or of a stopped partial one).
    Evaluation,
}

impl Phase {
    /// Lower-case name, e.g. `forward`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Data => "data",
            Phase::Forward => "forward",
            Phase::Backward => "backward",
            Phase::Optimizer => "optimizer",
            Phase::Checkpoint => "checkpoint",
            Phase::Evaluation => "evaluation",
        }
    }
}

/// Callbacks into the training loop. See the module notes for when each runs.
#[allow(unused_variables)]
pub trait Hook {
    /// `phase` starts (`start`) or ends; phases do not nest.
    fn on_phase(&mut self, phase: Phase, start: bool) {}
    /// Before the first batch of `epoch` (1-based); `first` is the batch the epoch starts at
    /// (0, or where a resumed run left off).
    fn on_epoch_start(&mut self, epoch: usize, first: usize, batches: usize) -> Result<()> {
        Ok(())
    }
    /// Change the loss before `backward()` (e.g. scale it); the default passes it through.
    fn before_backward(&mut self, loss: Tensor) -> Result<Tensor> {
        Ok(loss)
    }
    /// After a micro-batch's backward.
    fn on_batch(&mut self, info: &BatchInfo) -> Result<()> {
        Ok(())
    }
    /// The gradients of `params` are complete for this step (all micro-batches).
    fn after_backward(&mut self, params: &[Tensor]) -> Result<()> {
        Ok(())
    }
    /// Right before `optimizer.step()`; [`Control::Skip`] skips the update.
    fn before_step(&mut self, info: &StepInfo) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// After `optimizer.step()` and `zero_grad()`, with the updated `model` (still in
    /// training mode); [`Control::Stop`] ends the run.
    fn after_step(&mut self, info: &StepInfo, model: &dyn Module) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// Add this hook's figures to an epoch's record before it is validated and logged (the
    /// loss scaler's scale and overflow skips).
    fn fill_record(&mut self, record: &mut EpochRecord) -> Result<()> {
        Ok(())
    }
    /// After an epoch was validated, logged and checkpointed; `model` holds its weights.
    fn end_of_epoch(
        &mut self,
        record: &EpochRecord,
        end: &EpochEnd,
        model: &dyn Module,
    ) -> Result<Control> {
        Ok(Control::Continue)
    }
    /// The run stopped inside an epoch (budget, a hook, ...): `record` is that partial epoch
    /// (validated, not used for early stopping), `model` holds its weights.
    fn on_partial_epoch(&mut self, record: &EpochRecord, model: &dyn Module) -> Result<()> {
        Ok(())
    }
}

/// A hook from a closure called with each finished epoch's record (what the CLI prints).
pub struct OnEpoch<F>(pub F);

impl<F: FnMut(&EpochRecord)> Hook for OnEpoch<F> {
    fn end_of_epoch(&mut self, r: &EpochRecord, _: &EpochEnd, _: &dyn Module) -> Result<Control> {
        (self.0)(r);
        Ok(Control::Continue)
    }
}

/// A borrowed hook is a hook, so the caller can read what it gathered after the run.
impl<H: Hook + ?Sized> Hook for &mut H {
    fn on_phase(&mut self, phase: Phase, start: bool) {
        (**self).on_phase(phase, start)
    }
    fn on_epoch_start(&mut self, epoch: usize, first: usize, batches: usize) -> Result<()> {
        (**self).on_epoch_start(epoch, first, batches)
    }
    fn before_backward(&mut self, loss: Tensor) -> Result<Tensor> {
        (**self).before_backward(loss)
    }
    fn on_batch(&mut self, info: &BatchInfo) -> Result<()> {
        (**self).on_batch(info)
    }
    fn after_backward(&mut self, params: &[Tensor]) -> Result<()> {
        (**self).after_backward(params)
    }
    fn before_step(&mut self, info: &StepInfo) -> Result<Control> {
        (**self).before_step(info)
    }
    fn after_step(&mut self, info: &StepInfo, model: &dyn Module) -> Result<Control> {
        (**self).after_step(info, model)
    }
    fn end_of_epoch(&mut self, r: &EpochRecord, end: &EpochEnd, m: &dyn Module) -> Result<Control> {
        (**self).end_of_epoch(r, end, m)
    }
    fn fill_record(&mut self, record: &mut EpochRecord) -> Result<()> {
        (**self).fill_record(record)
    }
    fn on_partial_epoch(&mut self, record: &EpochRecord, model: &dyn Module) -> Result<()> {
        (**self).on_partial_epoch(record, model)
    }
}
