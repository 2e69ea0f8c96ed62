//! `lora_linear`: a linear layer with a LoRA adapter as one recorded op.
//!
//! For x (..., in), a frozen or trainable base W (out, in) (f32, or NF4 as
//! [`crate::ops::nf4::Nf4Weight`]), bias b (out), A (r, in), B (out, r) and scale s:
//!
//! ```text
//! forward:   y  = x W^T + b + s (x A^T) B^T                         (..., out)
//! backward:  dx = g W + s (g B) A
//!            dA = s (g B)^T x,   dB = s g^T (x A^T),   dW = g^T x,   db = sum g
//! ```
//!
//! (g, x flattened to (M, out), (M, in) with M the product of the leading dims.) The node keeps
//! x, A, B and the thin `x A^T` (..., r); the composed ops would also keep the base output and
//! the delta, two more (..., out) tensors per layer. The NF4 base gets no gradient (its dx is
//! [`crate::ops::nf4::nf4_grad_input`]); an f32 W gets one only when it requires grad.
//! Used by [`crate::nn::Linear`] when it carries an unmerged adapter without active dropout.
//!
//! ```
//! use kiln::Tensor;
//! use kiln::ops::lora::{LoraBase, lora_linear};
//! let x = Tensor::from_slice(&[1.0f32, 2.0], &[1, 2])?;
//! let w = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0], &[2, 2])?;
//! let a = Tensor::from_slice(&[1.0f32, 1.0], &[1, 2])?; // r = 1: x A^T = 3
//! let b = Tensor::from_slice(&[1.0f32, -1.0], &[2, 1])?;
//! let y = lora_linear(&x, LoraBase::Dense(&w), None, &a, &b, 0.5)?;
//! assert_eq!(y.to_vec::<f32>()?, [1.0 + 1.5, 2.0 - 1.5]);
//! # Ok::<(), kiln::Error>(())
//! ```

use super::nf4::{Nf4Compute, Nf4Weight, nf4_grad_input, nf4_linear_with};
use crate::error::{Result, shape_err};
use crate::tensor::Tensor;

const OP: &str = "lora_linear";

/// The base weight of [`lora_linear`]: f32 (out, in), or NF4 with its compute precision.
#[derive(Debug, Clone, Copy)]
pub enum LoraBase<'a> {
    /// An f32 weight (out, in); it gets a gradient when it requires one.
    Dense(&'a Tensor),
    /// A frozen NF4 weight (out, in) and the precision its fused kernel computes in.
    Nf4(&'a Nf4Weight, Nf4Compute),
}

impl LoraBase<'_> {
    /// (out, in) of the base weight.
    fn dims(&self) -> (usize, usize) {
        match self {
            LoraBase::Dense(w) => (w.shape()[0], w.shape()[1]),
            LoraBase::Nf4(w, _) => (w.out_features(), w.in_features()),
        }
    }
}

/// `x W^T + b + s (x A^T) B^T` for x (..., in), W (out, in), b (out), A (r, in), B (out, r):
/// (..., out) as one graph node (see the module notes).
pub fn lora_linear(
    x: &Tensor,
    base: LoraBase,
    bias: Option<&Tensor>,
    a: &Tensor,
    b: &Tensor,
    s: f32,
) -> Result<Tensor> {
    let (fout, fin) = base.dims();
    let r = a.shape().first().copied().unwrap_or(0);
    if x.rank() == 0
        || x.shape()[x.rank() - 1] != fin
        || a.shape() != [r, fin]
        || b.shape() != [fout, r]
    {
        return shape_err(
            OP,
            format!(
                "needs x (..., {fin}), A (r, {fin}) and B ({fout}, r) for a base ({fout}, {fin}), \
                 got x {:?}, A {:?}, B {:?}",
                x.shape(),
                a.shape(),
                b.shape()
            ),
        );
    }
    let (ad, bd) = (a.detach(), b.detach());
    let (y, xa) = {
        let _g = crate::no_grad();
        let xd = x.detach();
        let y = match base {
            LoraBase::Nf4(w, c) => nf4_linear_with(&xd, w, bias, c)?,
            LoraBase::Dense(w) => {
                let y = xd.matmul(&w.detach().t()?)?;
                match bias {
                    Some(bv) => y.add(&bv.detach())?,
                    None => y,
                }
            }
        };
        let xa = xd.matmul(&ad.t()?)?; // (..., r)
        y.axpy_assign(s, &xa.matmul(&bd.t()?)?)?;
        (y, xa)
    };
    // The backward's own copy of the base (cheap clones of shared storage).
    let (dw, owned) = match base {
        LoraBase::Dense(w) => (w.requires_grad_flag(), Ok(w.clone())),
        LoraBase::Nf4(w, c) => (false, Err((w.clone(), c))),
    };
    let db = bias.is_some_and(Tensor::requires_grad_flag);
    let xd = x.detach();
    let mut inputs = vec![x, a, b];
    if let (true, LoraBase::Dense(w)) = (dw, base) {
        inputs.push(w);
    }
    if db {
        inputs.extend(bias);
    }
    Ok(y.record(OP, &inputs, move |g| {
        let _g = crate::no_grad();
        let m = g.numel() / fout;
        let g2 = g.contiguous()?.reshape(&[m, fout])?;
        let x2 = xd.contiguous()?.reshape(&[m, fin])?;
        let xa2 = xa.reshape(&[m, r])?;
        let gb = g2.matmul(&bd)?; // (M, r)
        let dx = match &owned {
            Ok(w) => g2.matmul(&w.detach())?,
            Err((wq, c)) => nf4_grad_input(&g2, wq, *c)?,
        };
        dx.axpy_assign(s, &gb.matmul(&ad)?)?;
        let mut grads = vec![
            Some(dx.reshape(xd.shape())?),
            Some(gb.t()?.matmul(&x2)?.mul_scalar(s)?),
            Some(g2.t()?.matmul(&xa2)?.mul_scalar(s)?),
        ];
        if dw {
            grads.push(Some(g2.t()?.matmul(&x2)?));
        }
        if db {
            grads.push(Some(g2.sum_dims(&[0], false)?));
        }
        Ok(grads)
    }))
}
