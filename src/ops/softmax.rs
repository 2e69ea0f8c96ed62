//! Softmax, log-softmax and log-sum-exp along one dim, each one fused kernel (`softmax.wgsl`).
//!
//! For each row `x` along the dim, with `m = max_j x_j` and `s = sum_j e^(x_j - m)`:
//!
//! | op | forward | backward (g = dL/dy) |
//! | --- | --- | --- |
//! | softmax | `y_j = e^(x_j - m) / s` | `dx = y * (g - sum_j g_j y_j)` |
//! | log_softmax | `y_j = x_j - m - ln s` | `dx = g - e^y * sum_j g_j` |
//! | logsumexp | `l = m + ln s` | `dx = g * e^(x - l) = g * softmax(x)` |
//!
//! Subtracting `m` keeps every exponent <= 0, so nothing overflows for any finite input (the
//! composed `x.exp().sum()` overflows f32 from x > 88). The backward passes are composed from
//! primitive ops (compose before you fuse): they are a few elementwise kernels and one reduction.
//!
//! A dim that is not the last is moved last as a view; the kernel reads that view directly when
//! the remaining dims collapse to one stride, else from a contiguous copy. The result is written
//! in that order and handed back as a view with the original dim order.
//!
//! ```
//! # fn main() -> kiln::Result<()> {
//! let x = kiln::Tensor::from_slice(&[1.0f32, 2.0, 3.0, 1000.0, 1000.0, 1000.0], &[2, 3])?;
//! let y = x.softmax(-1)?.to_vec::<f32>()?;
//! let e = [1.0f32.exp(), 2.0f32.exp(), 3.0f32.exp()];
//! let s: f32 = e.iter().sum();
//! for (got, want) in y.iter().zip([e[0] / s, e[1] / s, e[2] / s, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]) {
//!     assert!((got - want).abs() < 1e-6);
//! }
//! let l = x.logsumexp(-1, false)?.to_vec::<f32>()?;
//! assert!((l[1] - (1000.0 + 3.0f32.ln())).abs() < 1e-3);
//! # Ok(())
//! # }
//! ```

use kiln_kernels::launch::elementwise::{collapse, contiguous_strides};
use kiln_kernels::launch::reduce::{ReduceStrategy, Rows};
use kiln_kernels::launch::softmax::{self as sk, SoftmaxMode};

use crate::error::{Result, shape_err};
use crate::tensor::{DType, Tensor};

/// Run `softmax.wgsl` along dim `d` of `x` (no autograd). Returns the output in `x`'s dim order:
/// `x`'s shape for softmax / log_softmax (a view when `d` is not last), the shape with dim `d`
/// removed for log-sum-exp.
fn softmax_raw(x: &Tensor, op: &'static str, d: usize, mode: SoftmaxMode) -> Result<Tensor> {
    x.expect_f32(op)?;
    let shape = x.shape();
    let len = shape[d];
    let kept: Vec<usize> = (0..x.rank()).filter(|&k| k != d).collect();
    let kept_shape: Vec<usize> = kept.iter().map(|&k| shape[k]).collect();
    let rows: usize = kept_shape.iter().product();
    let gpu = x.gpu().clone();
    let out_shape = if mode == SoftmaxMode::LogSumExp {
        if len == 0 && rows > 0 {
            return shape_err(
                op,
                format!("cannot reduce over the empty dim {d} of shape {shape:?}"),
            );
        }
        kept_shape.clone()
    } else {
        // Output in the permuted order: kept dims, then dim d.
        let mut s = kept_shape.clone();
        s.push(len);
        s
    };
    let out = Tensor::empty_on(&gpu, &out_shape, DType::F32)?;
    if rows * len > 0 {
        // Read the view directly when the kept dims collapse to one stride; else copy.
        let kept_strides: Vec<usize> = kept.iter().map(|&k| x.strides()[k]).collect();
        let (ks, kst) = collapse(&kept_shape, &[&kept_strides]);
        let copy;
        let view = if ks.len() <= 1 {
            Rows {
                buf: x.buffer(),
                offset: x.offset(),
                rows,
                len,
                row_stride: kst[0].first().copied().unwrap_or(0),
                col_stride: x.strides()[d],
            }
        } else {
            let mut perm = kept.clone();
            perm.push(d);
            copy = {
                let _g = crate::no_grad();
                x.permute(&perm)?.copy_contiguous()?
            };
            Rows {
                buf: copy.buffer(),
                offset: copy.offset(),
                rows,
                len,
                row_stride: len,
                col_stride: 1,
            }
        };
        sk::softmax_rows(&gpu, mode, ReduceStrategy::Auto, view, out.buffer(), 0)?;
    }
    if mode == SoftmaxMode::LogSumExp || d + 1 == x.rank() {
        return Ok(out);
    }
    // Hand back a view in x's dim order: dim d has the last (unit) stride of the output.
    let ps = contiguous_strides(&out_shape);
    let mut strides = vec![0; x.rank()];
    for (k, &src) in kept.iter().enumerate() {
        strides[src] = ps[k];
    }
    strides[d] = 1;
    Ok(out.with_view(shape.to_vec(), strides, 0))
}

impl Tensor {
    /// Softmax along `dim` (negative counts from the end): `e^(x - max) / sum e^(x - max)`.
    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        let d = self.norm_dim("softmax", dim)?;
        let out = softmax_raw(self, "softmax", d, SoftmaxMode::Softmax)?;
        let y = out.detach();
        Ok(out.record("softmax", &[self], move |g| {
            // dx = y * (g - sum_j g_j y_j)
            let dot = g.mul(&y)?.sum_dims(&[d as isize], true)?;
            Ok(vec![Some(y.mul(&g.sub(&dot)?)?)])
        }))
    }

    /// Log-softmax along `dim`: `x - max - ln sum e^(x - max)`, exact where `softmax().log()`
    /// underflows to `-inf`.
    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        let d = self.norm_dim("log_softmax", dim)?;
        let out = softmax_raw(self, "log_softmax", d, SoftmaxMode::LogSoftmax)?;
        let y = out.detach();
        Ok(out.record("log_softmax", &[self], move |g| {
            // dx = g - e^y * sum_j g_j
            let gs = g.sum_dims(&[d as isize], true)?;
            Ok(vec![Some(g.sub(&y.exp()?.mul(&gs)?)?)])
        }))
    }

    /// `ln sum e^x` along `dim`, computed as `max + ln sum e^(x - max)` (no overflow).
    /// With `keepdim` the reduced dim stays as size 1.
    pub fn logsumexp(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = self.norm_dim("logsumexp", dim)?;
        let raw = softmax_raw(self, "logsumexp", d, SoftmaxMode::LogSumExp)?;
        let mut kshape = self.shape().to_vec();
        kshape[d] = 1;
        let out = if keepdim {
            raw.with_view(kshape.clone(), contiguous_strides(&kshape), 0)
        } else {
            raw
        };
        let x = self.clone();
        Ok(out.record("logsumexp", &[self], move |g| {
            // dx = g * softmax(x)
            let gk = g.reshape(&kshape)?;
            Ok(vec![Some(x.softmax(d as isize)?.mul(&gk)?)])
        }))
    }
}
