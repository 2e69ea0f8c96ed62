//! The affine map of `nn::Linear` as one op with one graph node: `y = x W^T + b`.
//!
//! For x (..., in), W (out, in) and b (out), with the leading dims of x flattened to R rows
//! (x2: (R, in), g2 = dL/dy as (R, out)):
//!
//! ```text
//! forward:   y[r, o] = sum_i x2[r, i] W[o, i] + b[o]                (R, out)
//! backward:  dx = g2 @ W                                            (R, in), only if x needs it
//!            dW = g2^T @ x2                                         (out, in)
//!            db = sum_r g2[r, :]                                    (out)
//! ```
//!
//! Composed, `x.matmul(&w.t())?.add(b)` gives the same values and gradients (the tests compare
//! the two), but it records three nodes and its weight gradient comes back as the transpose of
//! `x2^T @ g2`, a strided view that costs an extra strided pass when it is added into `W.grad`.
//! Here dW is computed directly in W's own row-major layout (the matmul reads `g2^T` through its
//! strides, no copy), so autograd can adopt it as the gradient buffer as it is; no gradient is
//! computed for an input that does not need one (the first layer's input, typically).
//!
//! The forward product runs the tuned matmul (see `ops/matmul.rs`) with W^T as a strided view.
//! With a bias and a 2-D input, when the tuned rung is vec4 (the default), the bias add is
//! fused into the product's store (`matmul/vec4.wgsl`, `BIAS`): one dispatch, no extra pass
//! over y. Otherwise the bias is a broadcast add after the product.
//!
//! ```
//! use kiln::Tensor;
//! let x = Tensor::from_slice(&[1.0f32, 0.0, -1.0], &[1, 3])?;
//! let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
//! let b = Tensor::from_slice(&[0.5f32, -0.5], &[2])?;
//! assert_eq!(x.linear(&w, Some(&b))?.to_vec::<f32>()?, [1.0 - 3.0 + 0.5, 4.0 - 6.0 - 0.5]);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::launch::matmul as mk;
use kiln_kernels::tune;

use crate::error::{Result, shape_err};
use crate::tensor::{DType, Tensor};

const OP: &str = "linear";

impl Tensor {
    /// `self W^T + b` over the last dim: `self` (..., in), `weight` (out, in), `bias` (out);
    /// the result is (..., out). Differentiable in all three (see the module notes); f32 only.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.expect_f32(OP)?;
        weight.expect_f32(OP)?;
        self.same_device(OP, weight)?;
        if weight.rank() != 2
            || self.rank() == 0
            || self.shape()[self.rank() - 1] != weight.shape()[1]
        {
            return shape_err(
                OP,
                format!(
                    "input must have shape (..., in) for a weight of shape (out, in), got input \
                     {:?} and weight {:?}",
                    self.shape(),
                    weight.shape()
                ),
            );
        }
        let (n_out, n_in) = (weight.shape()[0], weight.shape()[1]);
        if let Some(b) = bias {
            b.expect_f32(OP)?;
            self.same_device(OP, b)?;
            b.expect_len(OP, "bias", n_out, ("a weight", weight))?;
        }
        let y = {
            let _g = crate::no_grad();
            match bias
                .map(|b| fused_bias(self, weight, b))
                .transpose()?
                .flatten()
            {
                Some(y) => y,
                None => {
                    let y = self.matmul(&weight.t()?)?;
                    match bias {
                        Some(b) => y.add(b)?,
                        None => y,
                    }
                }
            }
        };
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let need = [
            self.requires_grad_flag(),
            weight.requires_grad_flag(),
            bias.is_some_and(|b| b.requires_grad_flag()),
        ];
        let (x, w) = (self.clone(), weight.clone());
        Ok(y.record(OP, &inputs, move |g| {
            let rows = g.numel() / n_out.max(1);
            let g2 = rows_of(g, rows, n_out)?;
            let dx = if need[0] {
                Some(g2.matmul(&w)?.reshape(x.shape())?)
            } else {
                None
            };
            let dw = if need[1] {
                Some(g2.t()?.matmul(&rows_of(&x, rows, n_in)?)?)
            } else {
                None
            };
            let db = if need[2] {
                Some(g2.sum_dims(&[0], false)?)
            } else {
                None
            };
            Ok(vec![dx, dw, db])
        }))
    }
}

/// `x W^T + b` in one dispatch (the vec4 rung's bias epilogue), or `None` when that path does
/// not apply: a bias that is not a whole contiguous buffer, an input that is not 2-D, or a tuned
/// choice of another rung for this shape.
fn fused_bias(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
    if x.rank() != 2 || b.offset() != 0 || !b.is_contiguous() || x.numel() == 0 || b.numel() == 0 {
        return Ok(None);
    }
    let (m, k, n) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    let (a, bt) = (mat(x, false), mat(w, true));
    let dims = mk::MatmulDims { batch: 1, m, n, k };
    let cfg = tune::matmul_choice(x.gpu(), dims, a.layout(), bt.layout(), false);
    if cfg.variant != mk::MatmulVariant::Vec4 {
        return Ok(None);
    }
    let y = Tensor::empty_on(x.gpu(), &[m, n], DType::F32)?;
    mk::matmul_bias(x.gpu(), cfg, a, bt, b.buffer(), y.buffer(), 0, dims)?;
    Ok(Some(y))
}

/// The kernel's view of a 2-D tensor, or of its transpose.
fn mat(t: &Tensor, transposed: bool) -> mk::MatRef<'_> {
    let (rs, cs) = (t.strides()[0], t.strides()[1]);
    let (row_stride, col_stride) = if transposed { (cs, rs) } else { (rs, cs) };
    mk::MatRef {
        buf: t.buffer(),
        offset: t.offset(),
        batch_stride: 0,
        row_stride,
        col_stride,
    }
}

/// `t` as (rows, cols): itself when already 2-D (any strides: the matmul reads views), else a
/// reshape (a copy only when the view is not contiguous).
fn rows_of(t: &Tensor, rows: usize, cols: usize) -> Result<Tensor> {
    if t.rank() == 2 {
        Ok(t.clone())
    } else {
        t.reshape(&[rows, cols])
    }
}
