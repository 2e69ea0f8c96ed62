//! The Dropout layer and functional dropout with a key from kiln's global stream.
//!
//! The op itself, `y = x * m` with the Philox mask `m` of one 64-bit key, is
//! [`crate::ops::dropout`] (it takes the key and knows nothing of the stream); this layer takes
//! one key per training call from [`super::rng::next_key`], so restoring
//! [`super::rng::rng_state`] on resume replays the masks exactly. In evaluation mode dropout is
//! the identity and draws no key.
//!
//! ```
//! use kiln::{Tensor, nn::{Dropout, Module}};
//! let x = Tensor::ones(&[1000])?;
//! let mut d = Dropout::new(0.25)?;
//! let y = d.forward(&x)?.to_vec::<f32>()?;
//! assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
//! d.set_training(false);
//! assert_eq!(d.forward(&x)?.to_vec::<f32>()?, vec![1.0; 1000]);
//! # Ok::<(), kiln::Error>(())
//! ```

use super::Module;
use crate::error::Result;
use crate::ops::dropout::check_p;
pub use crate::ops::dropout::{dropout_mask_on, dropout_with_key};
use crate::tensor::Tensor;

/// Functional dropout: `x * mask` with a fresh key from the global stream when `training`, else
/// `x` unchanged. Draws a key only when a mask is needed (`training` and `0 < p < 1`).
pub fn dropout(x: &Tensor, p: f32, training: bool) -> Result<Tensor> {
    check_p(p)?;
    if !training {
        return Ok(x.clone());
    }
    let key = if p > 0.0 && p < 1.0 {
        super::rng::next_key()
    } else {
        0
    };
    dropout_with_key(x, p, key)
}

/// Dropout as a layer (training mode at first).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    p: f32,
    training: bool,
}

impl Dropout {
    /// Dropout with drop probability `p` in `[0, 1]`.
    pub fn new(p: f32) -> Result<Self> {
        check_p(p)?;
        Ok(Dropout { p, training: true })
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        dropout(x, self.p, self.training)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn is_training(&self) -> bool {
        self.training
    }
}
