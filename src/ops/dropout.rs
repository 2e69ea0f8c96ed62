//! Dropout with a given key: zero each element with probability p and scale the survivors.
//!
//! ```text
//! x (*) -> y (*)
//! y  = x * m,      m_i = 0 with probability p, else 1 / (1 - p)      (so E[y] = x)
//! dx = g * m
//! ```
//!
//! The mask `m` (f32, the shape of `x`) is drawn on the GPU by a counter-based generator
//! (Philox4x32-10, `shaders/dropout.wgsl`): `m_i` is a pure function of (key, i). No mask travels
//! from the host and the same key gives the same mask on every run. The op takes the key and
//! knows nothing of where keys come from: the layer `nn::Dropout` and the function `nn::dropout`
//! (a layer above) take one per call from kiln's global stream (`nn::rng`). The
//! mask is kept for the backward pass (one f32 per element) by composing `y = x.mul(m)`.
//!
//! See also: launcher `kiln_kernels::launch::dropout`, CPU twin
//! `kiln_kernels::reference::dropout`, tests `tests/ops/dropout.rs`.
//!
//! ```
//! use kiln::{Tensor, ops::dropout::dropout_with_key};
//! let x = Tensor::ones(&[1000])?;
//! let y = dropout_with_key(&x, 0.25, 7)?.to_vec::<f32>()?;
//! assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
//! assert_eq!(dropout_with_key(&x, 0.25, 7)?.to_vec::<f32>()?, y);
//! # Ok::<(), kiln::Error>(())
//! ```

use std::sync::Arc;

use kiln_kernels::Gpu;
use kiln_kernels::launch::dropout::{self as rk, Stream};

use crate::error::{Result, arg_err};
use crate::tensor::{DType, Tensor};

/// `p` must be a probability in `[0, 1]`.
pub(crate) fn check_p(p: f32) -> Result<()> {
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

/// Training-mode dropout of `x (*)` with the mask of `key`: `x * mask`, shape `(*)`
/// (differentiable in `x`). `p = 0` gives `x` itself, `p = 1` gives `x * 0`.
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
