//! Pooling layers: [`MaxPool2d`], [`AvgPool2d`] and [`AdaptiveAvgPool2d`] over (N, C, H, W),
//! thin [`Module`] wrappers of [`Tensor::max_pool2d`], [`Tensor::avg_pool2d`] and
//! [`Tensor::adaptive_avg_pool2d`] (see `ops/pool.rs` for the math). They have no parameters.
//!
//! ```
//! use kiln::{Tensor, nn::{AdaptiveAvgPool2d, MaxPool2d, Module}};
//! let x = Tensor::arange(0.0, 16.0, 1.0)?.reshape(&[1, 1, 4, 4])?;
//! assert_eq!(MaxPool2d::new(2).forward(&x)?.to_vec::<f32>()?, [5.0, 7.0, 13.0, 15.0]);
//! assert_eq!(AdaptiveAvgPool2d::new((1, 1)).forward(&x)?.to_vec::<f32>()?, [7.5]);
//! # Ok::<(), kiln::Error>(())
//! ```

use super::Module;
use crate::error::Result;
use crate::tensor::Tensor;

/// A pooling window: (height, width) of kernel, stride and padding (padding at most half the
/// kernel); the kernels' [`Window`](kiln_kernels::launch::pool::Window).
pub use kiln_kernels::launch::pool::Window as PoolWindow;

/// A pooling layer defined by a [`PoolWindow`] and the op it applies.
macro_rules! window_pool {
    ($(#[$doc:meta])* $name:ident => $op:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            /// The window.
            pub window: PoolWindow,
        }

        impl $name {
            /// A `k` x `k` window with stride `k` and no padding.
            pub fn new(k: usize) -> Self {
                $name { window: PoolWindow::square(k) }
            }

            /// A window with the given (height, width) kernel, stride and padding (checked at
            /// forward).
            pub fn with_window(
                kernel: (usize, usize),
                stride: (usize, usize),
                padding: (usize, usize),
            ) -> Self {
                $name { window: PoolWindow { kernel, stride, padding } }
            }
        }

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                let w = self.window;
                x.$op(w.kernel, w.stride, w.padding)
            }

            fn named_parameters(&self) -> Vec<(String, Tensor)> {
                Vec::new()
            }
        }
    };
}

window_pool! {
/// 2-D max pooling (padding counts as -inf).
    MaxPool2d => max_pool2d
}

window_pool! {
/// 2-D average pooling (padding counts as zeros, included in the divisor as in PyTorch's default).
    AvgPool2d => avg_pool2d
}

/// Adaptive average pooling to a fixed (OH, OW); `(1, 1)` is global average pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveAvgPool2d {
    /// (OH, OW).
    pub output_size: (usize, usize),
}

impl AdaptiveAvgPool2d {
    /// Pool to `output_size` = (OH, OW).
    pub fn new(output_size: (usize, usize)) -> Self {
        AdaptiveAvgPool2d { output_size }
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.adaptive_avg_pool2d(self.output_size)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}
