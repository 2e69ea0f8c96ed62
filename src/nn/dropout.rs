//! Dropout: in training, zero each element with probability p and scale the survivors.
//!
//! ```text
//! y  = x * m,      m_i = 0 with probability p, else 1 / (1 - p)      (so E[y] = x)
//! dx = g * m
//! ```
//!
//! The mask `m` is drawn on the GPU by a counter-based generator (Philox4x32-10,
//! `shaders/dropout.wgsl`): `m_i` is a pure function of (key, i), with one key per call taken
//! from kiln's global stream ([`super::rng::next_key`]). No mask travels from the host, the same
//! key gives the same mask on every run, and restoring [`super::rng::rng_state`] on resume
//! replays the masks exactly. The mask is kept for the backward pass (one f32 per element) by
//! composing `y = x.mul(m)`. In evaluation mode dropout is the identity and draws no key.
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

use std::sync::Arc;

use kiln_kernels::Gpu;
use kiln_kernels::launch::dropout::{self as rk, Stream};

use super::Module;
use crate::error::{Result, arg_err};
use crate::tensor::{DType, Tensor};

fn check_p(p: f32) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return arg_err(
            "Dropout",
            format!("drop probability p must be in [0, 1], got {p}"),
        );
    }
    Ok(())
}

/// The dropout mask of `key` for `shape` on `gpu`: a contiguous f32 tensor holding 0 (dropped,
/// probability `p`) or `1 / (1 - p)`. `p` must be in `[0, 1)`.
pub fn dropout_mask_on(gpu: &Arc<Gpu>, shape: &[usize], p: f32, key: u64) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        return arg_err(
            "dropout_mask",
            format!("drop probability p must be in [0, 1), got {p}"),
        );
    }
    let mask = Tensor::empty_on(gpu, shape, DType::F32)?;
    rk::dropout_mask(gpu, Stream::new(key), p, mask.numel(), mask.buffer())?;
    Ok(mask)
}

/// Training-mode dropout of `x` with the mask of `key`: `x * mask` (differentiable in `x`).
/// `p = 1` gives `x * 0`.
pub fn dropout_with_key(x: &Tensor, p: f32, key: u64) -> Result<Tensor> {
    check_p(p)?;
    x.expect_f32("Dropout")?;
    if p == 0.0 {
        return Ok(x.clone());
    }
    if p == 1.0 {
        return x.mul_scalar(0.0);
    }
    x.mul(&dropout_mask_on(x.gpu(), x.shape(), p, key)?)
}

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
