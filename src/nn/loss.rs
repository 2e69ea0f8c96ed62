//! Losses, with PyTorch's semantics, reduced by [`Reduction`] (`Mean` by default, `Sum`, or
//! `None` for the unreduced losses).
//!
//! Classification, for logits x (N, C), log-probabilities `lp = log_softmax(x)`, targets t (N, u32)
//! and optional class weights w (C):
//!
//! ```text
//! nll_i    = -w[t_i] lp[i, t_i]                              (w = 1 without weights)
//! smooth_i = -sum_c w[c] lp[i, c]
//! loss_i   = (1 - eps) nll_i + (eps / C) smooth_i            (label smoothing eps in [0, 1])
//! Mean     = sum_i loss_i / sum_i w[t_i]                     (= mean_i without weights)
//! ```
//!
//! Without smoothing or weights, [`cross_entropy`] is the fused kernel
//! ([`Tensor::cross_entropy_with`]); otherwise it is composed from `log_softmax`, `gather` and
//! elementwise ops. A target >= C makes its row's loss NaN (and so a Mean or Sum), as the fused
//! kernel does: checking on the host would wait for the GPU.
//!
//! Regression, elementwise over same-shape input x and target y, with d = x - y:
//!
//! ```text
//! mse:    d^2
//! l1:     |d|
//! huber:  d^2 / 2 if |d| < delta, else delta (|d| - delta / 2)     (delta > 0)
//! bce_with_logits (y in [0, 1], pos_weight p broadcast over x):
//!         (1 - y) x + (1 + (p - 1) y) softplus(-x),  softplus(-x) = max(-x, 0) + log(1 + e^-|x|)
//!         which without p is max(x, 0) - x y + log(1 + e^-|x|), never overflowing.
//! ```
//!
//! ```
//! use kiln::{Tensor, nn::loss::{self, Reduction}};
//! let x = Tensor::from_slice(&[0.5f32, -1.0, 2.0], &[3])?;
//! let y = Tensor::from_slice(&[1.0f32, 1.0, 0.0], &[3])?;
//! let l = loss::mse_loss(&x, &y, Reduction::Sum)?.item()?;
//! assert!((l - (0.25 + 4.0 + 4.0)).abs() < 1e-6);
//! # Ok::<(), kiln::Error>(())
//! ```

use crate::error::{Result, arg_err, shape_err};
pub use crate::ops::Reduction;
use crate::tensor::{DType, Tensor};

/// Options of [`cross_entropy`]; `Default` is plain mean cross-entropy.
#[derive(Debug, Clone, Default)]
pub struct CrossEntropyOptions {
    /// Mix the one-hot target with the uniform distribution: weight `eps` in `[0, 1]`.
    pub label_smoothing: f32,
    /// A weight per class (C), f32. A weighted mean divides by the sum of the targets' weights.
    pub class_weights: Option<Tensor>,
    /// How to combine the per-row losses.
    pub reduction: Reduction,
}

/// Cross-entropy of `logits` (N, C) against class indices `targets` (N, u32): see the module
/// docs for label smoothing, class weights and reductions. Differentiable in the logits.
pub fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    options: &CrossEntropyOptions,
) -> Result<Tensor> {
    const OP: &str = "cross_entropy";
    let eps = options.label_smoothing;
    if !(0.0..=1.0).contains(&eps) {
        return arg_err(OP, format!("label_smoothing must be in [0, 1], got {eps}"));
    }
    let weights = options.class_weights.as_ref();
    check_class_inputs(OP, "logits", logits, targets, weights)?;
    if eps == 0.0 && weights.is_none() {
        return logits.cross_entropy_with(targets, options.reduction);
    }
    class_loss(
        &logits.log_softmax(1)?,
        targets,
        weights,
        eps,
        options.reduction,
    )
}

/// Negative log-likelihood of `log_probs` (N, C) (e.g. a `log_softmax`) at class indices
/// `targets` (N, u32), optionally weighted per class (C): `-w[t_i] log_probs[i, t_i]`, reduced as
/// in the module docs.
pub fn nll_loss(
    log_probs: &Tensor,
    targets: &Tensor,
    class_weights: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    check_class_inputs("nll_loss", "log_probs", log_probs, targets, class_weights)?;
    class_loss(log_probs, targets, class_weights, 0.0, reduction)
}

/// Mean squared error: `(x - y)^2`, reduced.
pub fn mse_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    check_same_shape("mse_loss", input, target)?;
    reduce(input.sub(target)?.square()?, reduction)
}

/// Mean absolute error: `|x - y|`, reduced (gradient 0 where x = y).
pub fn l1_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
    check_same_shape("l1_loss", input, target)?;
    reduce(input.sub(target)?.abs()?, reduction)
}

/// PyTorch's `HuberLoss`: `d^2 / 2` where `|d| < delta`, else `delta (|d| - delta / 2)`, with
/// d = x - y, reduced. Composed as `q^2 / 2 + delta (|d| - q)` with `q = min(|d|, delta)`.
pub fn huber_loss(
    input: &Tensor,
    target: &Tensor,
    delta: f32,
    reduction: Reduction,
) -> Result<Tensor> {
    if !(delta.is_finite() && delta > 0.0) {
        return arg_err(
            "huber_loss",
            format!("delta must be finite and > 0, got {delta}"),
        );
    }
    check_same_shape("huber_loss", input, target)?;
    let d = input.sub(target)?.abs()?;
    let q = d.clamp(0.0, delta)?;
    let loss = q
        .square()?
        .mul_scalar(0.5)?
        .add(&d.sub(&q)?.mul_scalar(delta)?)?;
    reduce(loss, reduction)
}

/// Binary cross-entropy of `logits` against probabilities `targets` (same shape, f32), with an
/// optional `pos_weight` broadcast over the logits (e.g. (C) for (N, C)) that weights the positive
/// term: `-(p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x)))`, in the stable form of the module
/// docs. Differentiable in the logits and the targets.
pub fn bce_with_logits(
    logits: &Tensor,
    targets: &Tensor,
    pos_weight: Option<&Tensor>,
    reduction: Reduction,
) -> Result<Tensor> {
    const OP: &str = "bce_with_logits";
    check_same_shape(OP, logits, targets)?;
    if let Some(p) = pos_weight {
        check_f32(OP, "f32 pos_weight", p)?;
        let fits = crate::ops::broadcast_shapes(OP, p.shape(), logits.shape())
            .is_ok_and(|s| s == logits.shape());
        if !fits {
            return shape_err(
                OP,
                format!(
                    "pos_weight of shape {:?} does not broadcast to logits of shape {:?}",
                    p.shape(),
                    logits.shape()
                ),
            );
        }
    }
    let x = logits;
    let zero = Tensor::zeros_on(x.gpu(), &[])?;
    // softplus(-x) = -log sigmoid(x). `maximum` splits its gradient at a tie, so the derivative at
    // x = 0 is -1/2 = -sigmoid(0) exactly, as it should be (a relu would give 0 there).
    let log1p_exp = x.abs()?.neg()?.exp()?.add_scalar(1.0)?.log()?;
    let softplus_neg = x.neg()?.maximum(&zero)?.add(&log1p_exp)?;
    let positive = match pos_weight {
        Some(p) => p
            .sub_scalar(1.0)?
            .mul(targets)?
            .add_scalar(1.0)?
            .mul(&softplus_neg)?,
        None => softplus_neg,
    };
    let loss = targets.neg()?.add_scalar(1.0)?.mul(x)?.add(&positive)?;
    reduce(loss, reduction)
}

/// Shared path of the composed cross-entropy and nll: rows of `lp` (N, C) at `targets`.
fn class_loss(
    lp: &Tensor,
    targets: &Tensor,
    weights: Option<&Tensor>,
    smoothing: f32,
    reduction: Reduction,
) -> Result<Tensor> {
    let (n, c) = (lp.shape()[0], lp.shape()[1]);
    let picked = lp.gather(1, &targets.reshape(&[n, 1])?)?.reshape(&[n])?;
    let target_w = weights.map(|w| w.index_select(0, targets)).transpose()?;
    let mut rows = picked.neg()?;
    if let Some(tw) = &target_w {
        rows = rows.mul(tw)?;
    }
    if smoothing > 0.0 {
        let weighted = match weights {
            Some(w) => lp.mul(w)?,
            None => lp.clone(),
        };
        let smooth = weighted.sum_dims(&[1], false)?.neg()?;
        rows = rows
            .mul_scalar(1.0 - smoothing)?
            .add(&smooth.mul_scalar(smoothing / c as f32)?)?;
    }
    // gather reads 0 for a target >= C; make that row NaN, as the fused kernel does.
    let valid = targets.to_dtype(DType::F32)?.lt_scalar(c as f32)?;
    let nan = Tensor::full_on(lp.gpu(), &[], f32::NAN)?;
    let rows = Tensor::where_cond(&valid, &rows, &nan)?;
    match (reduction, &target_w) {
        (Reduction::Mean, Some(tw)) => rows.sum()?.div(&tw.sum()?),
        _ => reduce(rows, reduction),
    }
}

fn reduce(loss: Tensor, reduction: Reduction) -> Result<Tensor> {
    match reduction {
        Reduction::Mean => loss.mean(),
        Reduction::Sum => loss.sum(),
        Reduction::None => Ok(loss),
    }
}

fn check_f32(op: &'static str, expected: &'static str, t: &Tensor) -> Result<()> {
    t.expect_dtype(op, DType::F32, expected)
}

fn check_same_shape(op: &'static str, input: &Tensor, target: &Tensor) -> Result<()> {
    check_f32(op, "f32 input", input)?;
    check_f32(op, "f32 target", target)?;
    target.expect_shape_of(op, "target", ("input", input))?;
    input.expect_nonempty(op, "input")
}

/// Checks of (N, C) scores, (N) u32 targets and optional (C) weights; returns (N, C).
fn check_class_inputs(
    op: &'static str,
    what: &'static str,
    x: &Tensor,
    targets: &Tensor,
    weights: Option<&Tensor>,
) -> Result<(usize, usize)> {
    let expected = if what == "logits" {
        "f32 logits"
    } else {
        "f32 log_probs"
    };
    check_f32(op, expected, x)?;
    if x.rank() != 2 || x.numel() == 0 {
        return shape_err(
            op,
            format!(
                "{what} must have shape (N, C) with N, C > 0, got shape {:?}",
                x.shape()
            ),
        );
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    targets.expect_dtype(op, DType::U32, "u32 class indices for targets")?;
    targets.expect_len(op, "targets", n, (what, x))?;
    if let Some(w) = weights {
        check_f32(op, "f32 class_weights", w)?;
        w.expect_len(op, "class_weights", c, (what, x))?;
    }
    Ok((n, c))
}
