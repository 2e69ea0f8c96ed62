//! `BatchNorm1d`: normalise each channel over the batch, with running statistics for evaluation.
//!
//! For x of shape (N, C) (or (N, C, L), statistics over N and L), per channel c, with n the
//! number of values per channel:
//!
//! ```text
//! training:  mu_c  = mean x[:, c],   var_c = mean (x[:, c] - mu_c)^2          (biased)
//!            y     = (x - mu_c) / sqrt(var_c + eps) * w_c + b_c
//!            running_mean = (1 - m) running_mean + m mu_c
//!            running_var  = (1 - m) running_var  + m var_c * n / (n - 1)      (unbiased)
//!            num_batches_tracked += 1
//! eval:      y     = (x - running_mean_c) / sqrt(running_var_c + eps) * w_c + b_c
//! ```
//!
//! as in PyTorch (momentum m = 0.1, eps = 1e-5 by default). The running statistics are updated in
//! place, outside autograd, and reported by [`super::Module::named_buffers`] as `running_mean`,
//! `running_var` (C) and `num_batches_tracked` (a rank-0 f32 tensor; PyTorch's is an int64
//! scalar). Gradients come from the ops the forward is composed of. Initialisation: w = 1, b = 0,
//! running_mean = 0, running_var = 1.

use std::sync::Arc;

use kiln_kernels::Gpu;

use crate::error::{Result, arg_err, shape_err};
use crate::tensor::Tensor;

/// Options of [`BatchNorm1d`] (PyTorch's defaults via `Default`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormOptions {
    /// Added to the variance before the square root. Default 1e-5.
    pub eps: f32,
    /// Weight of the new batch in the running statistics. Default 0.1.
    pub momentum: f32,
    /// Learn a per-channel scale and shift. Default true.
    pub affine: bool,
}

impl Default for BatchNormOptions {
    fn default() -> Self {
        BatchNormOptions {
            eps: 1e-5,
            momentum: 0.1,
            affine: true,
        }
    }
}

/// A batch-norm layer struct `$name` (weight, bias, running statistics, options, mode), its
/// constructors, and its [`super::Module`] impl whose forward is the inherent `$name::norm`. Written
/// once for [`BatchNorm1d`] and [`super::BatchNorm2d`], which differ only in that forward.
macro_rules! batch_norm_layer {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $name {
            /// Per-channel scale (C), if affine.
            pub weight: Option<Tensor>,
            /// Per-channel shift (C), if affine.
            pub bias: Option<Tensor>,
            /// Running mean (C), a buffer.
            pub running_mean: Tensor,
            /// Running unbiased variance (C), a buffer.
            pub running_var: Tensor,
            /// Training batches seen, a rank-0 f32 buffer.
            pub num_batches_tracked: Tensor,
            options: $crate::nn::BatchNormOptions,
            training: bool,
        }

        impl $name {
            /// `num_features` channels with PyTorch's defaults, on the default device.
            pub fn new(num_features: usize) -> Result<Self> {
                Self::with_options(num_features, $crate::nn::BatchNormOptions::default())
            }

            /// `num_features` channels with the given options, on the default device.
            pub fn with_options(
                num_features: usize,
                options: $crate::nn::BatchNormOptions,
            ) -> Result<Self> {
                Self::new_on(&$crate::device()?, num_features, options)
            }

            /// The layer with the given options on `gpu`. Initialisation: w = 1, b = 0,
            /// running_mean = 0, running_var = 1, num_batches_tracked = 0.
            pub fn new_on(
                gpu: &std::sync::Arc<kiln_kernels::Gpu>,
                num_features: usize,
                options: $crate::nn::BatchNormOptions,
            ) -> Result<Self> {
                let (weight, bias, running_mean, running_var, num_batches_tracked) =
                    $crate::nn::batch_norm::batch_norm_state(
                        stringify!($name),
                        gpu,
                        num_features,
                        options,
                    )?;
                Ok($name {
                    weight,
                    bias,
                    running_mean,
                    running_var,
                    num_batches_tracked,
                    options,
                    training: true,
                })
            }

            /// Number of channels C.
            pub fn num_features(&self) -> usize {
                self.running_mean.shape()[0]
            }

            /// The options.
            pub fn options(&self) -> $crate::nn::BatchNormOptions {
                self.options
            }
        }

        impl $crate::nn::Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                self.norm(x)
            }

            /// `weight` and `bias` when affine.
            fn named_parameters(&self) -> Vec<(String, Tensor)> {
                let named = [("weight", &self.weight), ("bias", &self.bias)];
                named
                    .into_iter()
                    .filter_map(|(n, t)| Some((n.to_string(), t.clone()?)))
                    .collect()
            }

            /// `running_mean`, `running_var` and `num_batches_tracked`.
            fn named_buffers(&self) -> Vec<(String, Tensor)> {
                let named = [
                    ("running_mean", &self.running_mean),
                    ("running_var", &self.running_var),
                    ("num_batches_tracked", &self.num_batches_tracked),
                ];
                named
                    .into_iter()
                    .map(|(n, t)| (n.to_string(), t.clone()))
                    .collect()
            }

            fn set_training(&mut self, training: bool) {
                self.training = training;
            }

            fn is_training(&self) -> bool {
                self.training
            }
        }
    };
}
pub(crate) use batch_norm_layer;

batch_norm_layer!(
    BatchNorm1d,
    "Batch normalisation of (N, C) or (N, C, L) inputs."
);

impl BatchNorm1d {
    /// Fold the batch statistics into the running ones, in place and outside autograd.
    fn update_running(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let _g = crate::no_grad();
        let m = self.options.momentum;
        let c = [self.num_features()];
        let unbiased = var.reshape(&c)?.mul_scalar(n as f32 / (n - 1) as f32)?;
        let rm = self.running_mean.mul_scalar(1.0 - m)?;
        let rv = self.running_var.mul_scalar(1.0 - m)?;
        self.running_mean
            .copy_from(&rm.add(&mean.reshape(&c)?.mul_scalar(m)?)?)?;
        self.running_var
            .copy_from(&rv.add(&unbiased.mul_scalar(m)?)?)?;
        self.num_batches_tracked
            .copy_from(&self.num_batches_tracked.add_scalar(1.0)?)
    }

    /// The forward (see the module docs).
    fn norm(&self, x: &Tensor) -> Result<Tensor> {
        x.expect_f32("BatchNorm1d")?;
        let c = self.num_features();
        if !(x.rank() == 2 || x.rank() == 3) || x.shape()[1] != c {
            return shape_err(
                "BatchNorm1d",
                format!(
                    "input must have shape (N, {c}) or (N, {c}, L), got shape {:?}",
                    x.shape()
                ),
            );
        }
        let (dims, stat_shape): (Vec<isize>, Vec<usize>) = if x.rank() == 2 {
            (vec![0], vec![1, c])
        } else {
            (vec![0, 2], vec![1, c, 1])
        };
        let (xc, var) = if self.training {
            let n = x.numel() / c;
            if n <= 1 {
                return shape_err(
                    "BatchNorm1d",
                    format!(
                        "training needs more than one value per channel, got input shape {:?}",
                        x.shape()
                    ),
                );
            }
            let mean = x.mean_dims(&dims, true)?;
            let xc = x.sub(&mean)?;
            let var = xc.square()?.mean_dims(&dims, true)?;
            // Not again in a checkpointed segment's recomputation.
            if !crate::autograd::checkpoint::is_recomputing() {
                self.update_running(&mean, &var, n)?;
            }
            (xc, var)
        } else {
            let xc = x.sub(&self.running_mean.reshape(&stat_shape)?)?;
            (xc, self.running_var.reshape(&stat_shape)?)
        };
        let mut y = xc.mul(&var.add_scalar(self.options.eps)?.rsqrt()?)?;
        if let Some(w) = &self.weight {
            y = y.mul(&w.reshape(&stat_shape)?)?;
        }
        if let Some(b) = &self.bias {
            y = y.add(&b.reshape(&stat_shape)?)?;
        }
        Ok(y)
    }
}

/// Parameters and buffers of a batch-norm layer with `c` channels, after checking the options:
/// (weight = 1, bias = 0 if affine; running_mean = 0, running_var = 1, num_batches_tracked = 0).
#[allow(clippy::type_complexity)]
pub(crate) fn batch_norm_state(
    layer: &'static str,
    gpu: &Arc<Gpu>,
    c: usize,
    options: BatchNormOptions,
) -> Result<(Option<Tensor>, Option<Tensor>, Tensor, Tensor, Tensor)> {
    let BatchNormOptions { eps, momentum, .. } = options;
    if c == 0 {
        return arg_err(layer, "num_features must be positive, got 0");
    }
    if !(eps.is_finite() && eps >= 0.0 && (0.0..=1.0).contains(&momentum)) {
        return arg_err(
            layer,
            format!("needs eps >= 0 and momentum in [0, 1], got eps {eps} momentum {momentum}"),
        );
    }
    let (weight, bias) = if options.affine {
        (
            Some(Tensor::ones_on(gpu, &[c])?.requires_grad()),
            Some(Tensor::zeros_on(gpu, &[c])?.requires_grad()),
        )
    } else {
        (None, None)
    };
    Ok((
        weight,
        bias,
        Tensor::zeros_on(gpu, &[c])?,
        Tensor::ones_on(gpu, &[c])?,
        Tensor::zeros_on(gpu, &[])?,
    ))
}
