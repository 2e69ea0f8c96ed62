//! `Flatten`: merge dims `start_dim..=end_dim` into one (PyTorch's defaults 1 and -1 flatten all
//! but the batch dim, (N, C, H, W) -> (N, C*H*W)). A view when the input is contiguous.
//!
//! ```
//! use kiln::{Tensor, nn::{Flatten, Module}};
//! let x = Tensor::zeros(&[2, 3, 4, 5])?;
//! assert_eq!(Flatten::default().forward(&x)?.shape(), [2, 60]);
//! assert_eq!(Flatten::new(1, 2).forward(&x)?.shape(), [2, 12, 5]);
//! # Ok::<(), kiln::Error>(())
//! ```

use super::Module;
use crate::error::Result;
use crate::tensor::Tensor;

/// Merge dims `start_dim..=end_dim` (negative counts from the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flatten {
    /// First dim merged.
    pub start_dim: isize,
    /// Last dim merged.
    pub end_dim: isize,
}

impl Flatten {
    /// Merge `start_dim..=end_dim`.
    pub fn new(start_dim: isize, end_dim: isize) -> Self {
        Flatten { start_dim, end_dim }
    }
}

impl Default for Flatten {
    /// PyTorch's defaults: `Flatten(1, -1)`.
    fn default() -> Self {
        Flatten::new(1, -1)
    }
}

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.flatten(self.start_dim, self.end_dim)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}
