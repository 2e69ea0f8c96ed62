//! `Conv2d` and `Conv1d`: convolution layers over [`Tensor::conv2d`] / [`Tensor::conv1d`].
//!
//! Weight (C_out, C_in / groups, KH, KW) (1-D: (C_out, C_in / groups, K)) and bias (C_out).
//! Default initialisation (PyTorch's): weight by [`init::kaiming_uniform`] with
//! [`init::linear_default_gain`] (a = sqrt 5) and fan_in = C_in / groups * KH * KW, which is
//! U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
//!
//! ```
//! use kiln::{Tensor, nn::{Conv2d, Module}, ops::Conv2dOptions};
//! let opts = Conv2dOptions { padding: (1, 1), ..Default::default() };
//! let conv = Conv2d::new(3, 8, (3, 3), opts)?;
//! let y = conv.forward(&Tensor::randn(&[2, 3, 5, 5], 0)?)?;
//! assert_eq!(y.shape(), [2, 8, 5, 5]);
//! assert!(conv.weight.to_vec::<f32>()?.iter().all(|v| v.abs() <= 1.0 / 27f32.sqrt()));
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;

use super::Module;
use super::init::{self, FanMode, Init};
use crate::error::{Result, arg_err};
use crate::ops::{Conv1dOptions, Conv2dOptions};
use crate::tensor::Tensor;

/// A weight of `shape` (out, in / groups, k...) and a bias (out) with PyTorch's default init.
fn default_params(gpu: &Arc<Gpu>, shape: &[usize]) -> Result<(Tensor, Option<Tensor>)> {
    let weight = Init::KaimingUniform {
        gain: init::linear_default_gain(),
        mode: FanMode::FanIn,
    }
    .tensor_on(gpu, shape)?
    .requires_grad();
    let (fan_in, _) = init::fan_in_and_fan_out(shape)?;
    let b = 1.0 / (fan_in as f32).sqrt();
    let bias = Init::Uniform { lo: -b, hi: b }
        .tensor_on(gpu, &[shape[0]])?
        .requires_grad();
    Ok((weight, Some(bias)))
}

/// A kernel size: K (1-D) or (KH, KW) (2-D).
trait KernelSize {
    /// The sizes, outermost first.
    fn dims(self) -> Vec<usize>;
}

impl KernelSize for usize {
    fn dims(self) -> Vec<usize> {
        vec![self]
    }
}

impl KernelSize for (usize, usize) {
    fn dims(self) -> Vec<usize> {
        vec![self.0, self.1]
    }
}

/// A fresh layer's weight (cout, cin / groups, k...) and bias (cout), PyTorch's default init,
/// after [`check_sizes`].
fn new_params(
    op: &'static str,
    gpu: &Arc<Gpu>,
    (cin, cout): (usize, usize),
    k: &[usize],
    groups: usize,
) -> Result<(Tensor, Option<Tensor>)> {
    check_sizes(op, cin, cout, k, groups)?;
    let mut shape = vec![cout, cin / groups];
    shape.extend_from_slice(k);
    default_params(gpu, &shape)
}

/// Error unless every size is positive and `groups` divides both channel counts.
fn check_sizes(
    op: &'static str,
    cin: usize,
    cout: usize,
    k: &[usize],
    groups: usize,
) -> Result<()> {
    if cin == 0 || cout == 0 || k.contains(&0) {
        return arg_err(
            op,
            format!("channels ({cin} in, {cout} out) and kernel size {k:?} must be positive"),
        );
    }
    if groups == 0 || !cin.is_multiple_of(groups) || !cout.is_multiple_of(groups) {
        return arg_err(
            op,
            format!("groups {groups} must divide in channels {cin} and out channels {cout}"),
        );
    }
    Ok(())
}

/// The parts of a convolution layer `$name` that do not depend on its rank: `new` / `new_on`
/// (kernel size of type `$kernel`, a [`KernelSize`]), `without_bias`, `from_tensors`,
/// and the [`Module`] impl whose forward is `Tensor::$f`.
macro_rules! conv_layer_common {
    ($name:ident, $opts:ty, $f:ident, $kernel:ty) => {
        impl $name {
            /// A layer with a bias on the default device, PyTorch's initialisation.
            pub fn new(
                in_channels: usize,
                out_channels: usize,
                kernel: $kernel,
                opts: $opts,
            ) -> Result<Self> {
                Self::new_on(&crate::device()?, in_channels, out_channels, kernel, opts)
            }

            #[doc = concat!("[`", stringify!($name), "::new`] on `gpu`.")]
            pub fn new_on(
                gpu: &Arc<Gpu>,
                in_channels: usize,
                out_channels: usize,
                kernel: $kernel,
                opts: $opts,
            ) -> Result<Self> {
                let channels = (in_channels, out_channels);
                let dims = kernel.dims();
                let op = stringify!($name);
                let (weight, bias) = new_params(op, gpu, channels, &dims, opts.groups)?;
                Ok($name { weight, bias, opts })
            }

            /// The same layer without its bias.
            pub fn without_bias(self) -> Self {
                $name { bias: None, ..self }
            }

            /// A layer with the given weight and bias, used as they are (their `requires_grad`
            /// flags are kept; shapes are checked by the first forward).
            pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, opts: $opts) -> Self {
                $name { weight, bias, opts }
            }
        }

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                x.$f(&self.weight, self.bias.as_ref(), self.opts)
            }

            fn named_parameters(&self) -> Vec<(String, Tensor)> {
                let mut v = vec![("weight".to_string(), self.weight.clone())];
                v.extend(self.bias.iter().map(|b| ("bias".to_string(), b.clone())));
                v
            }
        }
    };
}

/// 2-D convolution layer: (N, C_in, H, W) -> (N, C_out, OH, OW).
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// (C_out, C_in / groups, KH, KW).
    pub weight: Tensor,
    /// (C_out), if the layer has a bias.
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub opts: Conv2dOptions,
}

conv_layer_common!(Conv2d, Conv2dOptions, conv2d, (usize, usize));

/// 1-D convolution layer: (N, C_in, L) -> (N, C_out, OL).
#[derive(Debug, Clone)]
pub struct Conv1d {
    /// (C_out, C_in / groups, K).
    pub weight: Tensor,
    /// (C_out), if the layer has a bias.
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub opts: Conv1dOptions,
}

conv_layer_common!(Conv1d, Conv1dOptions, conv1d, usize);
