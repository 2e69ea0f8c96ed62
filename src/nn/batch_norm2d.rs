//! `BatchNorm2d`: the batch-norm layer of (N, C, H, W) inputs, statistics per channel over
//! (N, H, W); the math and the fused kernels are [`crate::ops::batch_norm`]'s.
//!
//! ```
//! use kiln::{Tensor, nn::{BatchNorm2d, Module}};
//! let bn = BatchNorm2d::new(1)?;
//! let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 1, 1, 2])?;
//! let y = bn.forward(&x)?.to_vec::<f32>()?;   // mean 2.5, variance 1.25
//! assert!((y[0] + 1.5 / 1.25f32.sqrt()).abs() < 1e-4);
//! assert!((bn.running_mean.to_vec::<f32>()?[0] - 0.25).abs() < 1e-6);
//! # Ok::<(), kiln::Error>(())
//! ```

use super::batch_norm::batch_norm_layer;
use crate::error::{Result, shape_err};
pub use crate::ops::batch_norm::batch_norm2d;
use crate::tensor::Tensor;

batch_norm_layer!(
    BatchNorm2d,
    "Batch normalisation of (N, C, H, W) inputs (see [`crate::ops::batch_norm`])."
);

impl BatchNorm2d {
    /// The forward: [`batch_norm2d`] with the layer's statistics, then counts the batch.
    fn norm(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.num_features();
        if x.rank() != 4 || x.shape()[1] != c {
            return shape_err(
                "BatchNorm2d",
                format!(
                    "input must have shape (N, {c}, H, W), got shape {:?}",
                    x.shape()
                ),
            );
        }
        // A checkpointed segment's recomputation normalises as its forward did (batch
        // statistics) but must not count the batch twice.
        let recount = self.training && crate::autograd::checkpoint::is_recomputing();
        let y = batch_norm2d(
            x,
            (!recount).then_some((&self.running_mean, &self.running_var)),
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.training,
            self.options.momentum,
            self.options.eps,
        )?;
        if self.training && !recount {
            let _g = crate::no_grad();
            self.num_batches_tracked
                .copy_from(&self.num_batches_tracked.add_scalar(1.0)?)?;
        }
        Ok(y)
    }
}
