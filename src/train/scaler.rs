//! The loss scaler as a hook of the one loop: [`GradScaler`] scales the loss before backward,
//! unscales the gradients after it (before clipping, as PyTorch asks), updates the scale after
//! the step, and at each epoch's end reads its counters into the epoch's record
//! (`loss_scale`, `overflow_skips` in metrics.jsonl): the one readback, where the loop reads
//! the loss anyway. The optimizer must be wrapped in [`crate::optim::Scaled`] with a clone of
//! the same scaler, so that an overflowing step is skipped on the device.

use super::hooks::Hook;
use super::log::EpochRecord;
use crate::error::Result;
use crate::nn::Module;
use crate::optim::GradScaler;
use crate::tensor::Tensor;

use super::hooks::{Control, StepInfo};

impl Hook for GradScaler {
    fn before_backward(&mut self, loss: Tensor) -> Result<Tensor> {
        self.scale_loss(&loss)
    }
    fn after_backward(&mut self, params: &[Tensor]) -> Result<()> {
        self.unscale(params)
    }
    fn after_step(&mut self, _: &StepInfo, _: &dyn Module) -> Result<Control> {
        self.update()?;
        Ok(Control::Continue)
    }
    fn fill_record(&mut self, record: &mut EpochRecord) -> Result<()> {
        let s = self.stats()?;
        record.loss_scale = Some(s.scale as f64);
        record.overflow_skips = Some(s.skipped as u64);
        Ok(())
    }
}
