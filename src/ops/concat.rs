//! Joining and splitting along one dim: `concat`, `stack`, `split`, `chunk`.
//!
//! - concat: `out.narrow(dim, off_k, len_k) = x_k`, with `off_k` the sum of the earlier lengths.
//!   Backward: `dx_k = g.narrow(dim, off_k, len_k)`, a view of the upstream gradient.
//! - stack: concat of the inputs, each with a size-1 dim inserted at `dim` (a view, no copy).
//! - split / chunk: views made with `narrow` (no copy); their gradient is narrow's zero-padding.
//!
//! ```
//! use kiln::Tensor;
//! let a = Tensor::from_slice(&[1.0f32, 2.0], &[1, 2])?;
//! let b = Tensor::from_slice(&[3.0f32, 4.0, 5.0, 6.0], &[2, 2])?;
//! let c = Tensor::concat(&[&a, &b], 0)?;
//! assert_eq!(c.shape(), [3, 2]);
//! let parts = c.split(&[2, 1], 0)?;
//! assert_eq!(parts[1].to_vec::<f32>()?, [5.0, 6.0]);
//! # Ok::<(), kiln::Error>(())
//! ```

use crate::error::{Result, arg_err, shape_err};
use crate::tensor::{Tensor, norm_dim};

impl Tensor {
    /// Join tensors along `dim`. All must have the same rank, dtype (f32, i32 or u32) and device,
    /// and equal sizes in every other dim. Differentiable w.r.t. every f32 input.
    pub fn concat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        const OP: &str = "concat";
        let Some(first) = tensors.first() else {
            return arg_err(OP, "needs at least one tensor, got none");
        };
        let d = first.norm_dim(OP, dim)?;
        for (k, t) in tensors.iter().enumerate() {
            t.expect_32bit(OP)?;
            if t.dtype() != first.dtype() {
                return arg_err(
                    OP,
                    format!(
                        "tensor {k} has dtype {:?} but tensor 0 has {:?}",
                        t.dtype(),
                        first.dtype()
                    ),
                );
            }
            first.same_device(OP, t)?;
            if !super::same_but(t.shape(), first.shape(), d) {
                return shape_err(
                    OP,
                    format!(
                        "tensor {k} has shape {:?} but tensor 0 has shape {:?}; they must match \
                         in every dim except dim {dim}",
                        t.shape(),
                        first.shape()
                    ),
                );
            }
        }
        let lens: Vec<usize> = tensors.iter().map(|t| t.shape()[d]).collect();
        let mut shape = first.shape().to_vec();
        shape[d] = lens.iter().sum();
        let out = Tensor::empty_on(first.gpu(), &shape, first.dtype())?;
        let mut offset = 0;
        for (t, &len) in tensors.iter().zip(&lens) {
            out.narrow(d as isize, offset, len)?.assign_from(t)?;
            offset += len;
        }
        Ok(out.record(OP, tensors, move |g| {
            let mut off = 0;
            let mut grads = Vec::with_capacity(lens.len());
            for &len in &lens {
                grads.push(Some(g.narrow(d as isize, off, len)?));
                off += len;
            }
            Ok(grads)
        }))
    }

    /// Join same-shaped tensors along a new dim `dim` (0..=rank; negative counts from the end):
    /// `n` tensors of shape S give shape S with `n` inserted at `dim`. Differentiable.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        const OP: &str = "stack";
        let Some(first) = tensors.first() else {
            return arg_err(OP, "needs at least one tensor, got none");
        };
        let d = norm_dim(OP, dim, first.rank() + 1)?;
        for (k, t) in tensors.iter().enumerate() {
            if t.shape() != first.shape() {
                return shape_err(
                    OP,
                    format!(
                        "tensor {k} has shape {:?} but tensor 0 has shape {:?}; stack needs \
                         equal shapes",
                        t.shape(),
                        first.shape()
                    ),
                );
            }
        }
        let views: Vec<Tensor> = tensors.iter().map(|t| t.unsqueeze_view(d)).collect();
        let refs: Vec<&Tensor> = views.iter().collect();
        Tensor::concat(&refs, d as isize)
    }

    /// Views of consecutive pieces along `dim` with the given lengths, which must sum to the
    /// size of `dim`. No copy; gradients flow back through `narrow`.
    pub fn split(&self, sizes: &[usize], dim: isize) -> Result<Vec<Tensor>> {
        let d = self.norm_dim("split", dim)?;
        let size = self.shape()[d];
        let total = sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s));
        if total != Some(size) {
            return shape_err(
                "split",
                format!(
                    "sizes {sizes:?} do not sum to {size}, the size of dim {dim} of shape {:?}",
                    self.shape()
                ),
            );
        }
        let mut offset = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &len in sizes {
            out.push(self.narrow(d as isize, offset, len)?);
            offset += len;
        }
        Ok(out)
    }

    /// Split `dim` into `n` views of `ceil(size / n)` elements each, the last one shorter, like
    /// PyTorch (so fewer than `n` come back when `n` does not fit evenly, e.g. size 5 in 4
    /// chunks gives 2, 2, 1). A dim of size 0 gives `n` empty views.
    pub fn chunk(&self, n: usize, dim: isize) -> Result<Vec<Tensor>> {
        let d = self.norm_dim("chunk", dim)?;
        if n == 0 {
            return arg_err(
                "chunk",
                format!("needs at least one chunk, got 0 (shape {:?})", self.shape()),
            );
        }
        let size = self.shape()[d];
        if size == 0 {
            return self.split(&vec![0; n], dim);
        }
        let step = size.div_ceil(n);
        let sizes: Vec<usize> = (0..size)
            .step_by(step)
            .map(|s| step.min(size - s))
            .collect();
        self.split(&sizes, dim)
    }

    /// A size-1 dim inserted at `d` (<= rank) as a view, never a copy (unlike `reshape` of a
    /// strided tensor). Backward drops the dim again, also as a view.
    fn unsqueeze_view(&self, d: usize) -> Tensor {
        let mut shape = self.shape().to_vec();
        let mut strides = self.strides().to_vec();
        shape.insert(d, 1);
        strides.insert(d, 1);
        self.with_view(shape, strides, self.offset())
            .record("unsqueeze", &[self], move |g| {
                let mut shape = g.shape().to_vec();
                let mut strides = g.strides().to_vec();
                shape.remove(d);
                strides.remove(d);
                Ok(vec![Some(g.with_view(shape, strides, g.offset()))])
            })
    }
}
