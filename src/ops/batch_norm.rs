//! `batch_norm2d`: normalise each channel of (N, C, H, W) over (N, H, W), fused on the GPU.
//!
//! Exactly [`crate::nn::BatchNorm1d`]'s semantics with the statistics taken over N, H and W
//! (M = N*H*W values per channel):
//!
//! ```text
//! training:  mu_c = mean x[:, c, :, :],   var_c = mean (x - mu_c)^2                (biased)
//!            y    = (x - mu_c) / sqrt(var_c + eps) * w_c + b_c
//!            running_mean = (1 - m) running_mean + m mu_c
//!            running_var  = (1 - m) running_var  + m var_c * M / (M - 1)          (unbiased)
//!            num_batches_tracked += 1
//! eval:      y    = (x - running_mean_c) / sqrt(running_var_c + eps) * w_c + b_c
//! backward:  xhat = (x - mu_c) invstd_c,  dw_c = sum g xhat,  db_c = sum g
//!            training: dx = w_c invstd_c / M * (M g - sum g - xhat * sum g xhat)
//!            eval:     dx = w_c invstd_c g
//! ```
//!
//! The forward is one kernel (`batch_norm.wgsl:forward`) after the per-channel statistics (two
//! reduce passes each for the mean and the two-pass variance, then one kernel that computes
//! invstd and updates the running statistics in place, outside autograd); the backward is the
//! per-channel sums (the weight and bias gradients) plus one fused kernel for dx.
//! Gradients are first order only (the backward is not itself differentiable).
//!
//! The layer with its parameters and running statistics is [`crate::nn::BatchNorm2d`].
//!
//! ```
//! use kiln::{Tensor, ops::batch_norm::batch_norm2d};
//! let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 1, 1, 2])?;
//! let y = batch_norm2d(&x, None, None, None, true, 0.1, 1e-5)?.to_vec::<f32>()?; // mean 2.5
//! assert!((y[0] + 1.5 / 1.25f32.sqrt()).abs() < 1e-4); // variance 1.25
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::launch::batch_norm::{self as nk, NormShape, row};
use kiln_kernels::launch::elementwise as ew;

use crate::error::{Result, shape_err};
use crate::tensor::{DType, Tensor};

const OP: &str = "batch_norm2d";

/// Row `r` of the (7, C) per-channel tensor, as a (C) view.
fn ch_row(ch: &Tensor, r: usize) -> Result<Tensor> {
    let c = ch.shape()[1];
    ch.narrow(0, r, 1)?.reshape(&[c])
}

/// Functional batch norm of an (N, C, H, W) tensor, as PyTorch's `F.batch_norm`.
///
/// Batch statistics are used when `training` is true or no running statistics are given; then
/// `running = Some((mean, var))` (each (C)) are updated in place with `momentum`. Otherwise the
/// running statistics normalise. `weight` and `bias` (each (C)) scale and shift when given.
/// Differentiable w.r.t. x, weight and bias.
pub fn batch_norm2d(
    x: &Tensor,
    running: Option<(&Tensor, &Tensor)>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    training: bool,
    momentum: f32,
    eps: f32,
) -> Result<Tensor> {
    x.expect_f32(OP)?;
    x.expect_rank(OP, "input", 4, "(N, C, H, W)")?;
    let sh = x.shape().to_vec();
    let s = NormShape {
        n: sh[0],
        c: sh[1],
        hw: sh[2] * sh[3],
    };
    let c = s.c;
    if c == 0 {
        return shape_err(OP, format!("input has no channels (shape {sh:?})"));
    }
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t {
            t.expect_f32(OP)?;
            t.expect_len(OP, what, c, ("input", x))?;
        }
    }
    if let Some((m, v)) = running {
        for (what, t) in [("running_mean", m), ("running_var", v)] {
            t.expect_f32(OP)?;
            t.expect_len(OP, what, c, ("input", x))?;
        }
    }
    let batch = training || running.is_none();
    let m = s.per_channel();
    if batch && m <= 1 {
        return shape_err(
            OP,
            format!("training needs more than one value per channel, got input shape {sh:?}"),
        );
    }
    let gpu = x.gpu().clone();
    let xd = x.dense()?;
    let ch = Tensor::empty_on(&gpu, &[row::COUNT, c], DType::F32)?;
    {
        let _g = crate::no_grad();
        let fill = |r: usize, src: Option<&Tensor>, value: f32| -> Result<()> {
            let dst = ch_row(&ch, r)?;
            match src {
                Some(t) => dst.copy_from(t),
                None => Ok(ew::fill(&gpu, &[c], dst.strided(), value)?),
            }
        };
        fill(row::WEIGHT, weight, 1.0)?;
        fill(row::BIAS, bias, 0.0)?;
        if batch {
            let big = Tensor::empty_on(&gpu, &[s.len()], DType::F32)?;
            let small = Tensor::empty_on(&gpu, &[s.n * c], DType::F32)?;
            // The kernel updates contiguous vectors in distinct buffers; others go via copies.
            let run = match running {
                Some((rm, rv)) => {
                    let own = |t: &Tensor| match t.is_contiguous() {
                        true => Ok(t.clone()),
                        false => t.copy_contiguous(),
                    };
                    let m = own(rm)?;
                    let mut v = own(rv)?;
                    if v.shares_storage(&m) {
                        v = rv.copy_contiguous()?;
                    }
                    Some([(rm, m), (rv, v)])
                }
                None => None,
            };
            nk::batch_stats(
                &gpu,
                s,
                xd.operand(),
                eps,
                run.as_ref().map(|[(_, m), (_, v)]| nk::Running {
                    mean: m.operand(),
                    var: v.operand(),
                    momentum,
                }),
                ch.buffer(),
                big.buffer(),
                small.buffer(),
            )?;
            for (orig, used) in run.iter().flatten() {
                if orig.id() != used.id() {
                    orig.copy_from(used)?;
                }
            }
        } else if let Some((rm, rv)) = running {
            fill(row::MEAN, Some(rm), 0.0)?;
            fill(row::VAR, Some(rv), 0.0)?;
            nk::invstd(&gpu, c, eps, ch.buffer())?;
        }
    }
    let y = Tensor::empty_on(&gpu, &sh, DType::F32)?;
    nk::forward(&gpu, s, xd.operand(), ch.buffer(), y.buffer())?;

    let mut inputs = vec![x];
    inputs.extend(weight);
    inputs.extend(bias);
    let (has_w, has_b) = (weight.is_some(), bias.is_some());
    let x_needs_grad = x.requires_grad_flag();
    Ok(y.record(OP, &inputs, move |g| {
        let g = g.dense()?;
        let gpu = g.gpu().clone();
        let big = Tensor::empty_on(&gpu, &[s.len()], DType::F32)?;
        let small = Tensor::empty_on(&gpu, &[s.n * c], DType::F32)?;
        let (x, g) = (xd.operand(), g.operand());
        let chb = ch.buffer();
        nk::grad_sums(&gpu, s, x, g, chb, big.buffer(), small.buffer())?;
        // The input of a first layer needs no gradient: skip the dx kernel then.
        let dx = if x_needs_grad {
            let dx = Tensor::empty_on(&gpu, &sh, DType::F32)?;
            nk::backward_dx(&gpu, s, batch, x, g, chb, dx.buffer())?;
            Some(dx)
        } else {
            None
        };
        let mut grads = vec![dx];
        if has_w {
            grads.push(Some(ch_row(&ch, row::SUM_GXHAT)?.copy_contiguous()?));
        }
        if has_b {
            grads.push(Some(ch_row(&ch, row::SUM_G)?.copy_contiguous()?));
        }
        Ok(grads)
    }))
}
