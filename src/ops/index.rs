//! Indexing along one dim: `index_select`, `gather`, and `embedding` (an index_select of rows).
//!
//! With x viewed as (O, D, I) around the indexed dim and the output as (O, J, I):
//!
//! - index_select: `out[o, j, i] = x[o, idx[j], i]`
//! - gather:       `out[o, j, i] = x[o, idx[o, j, i], i]`
//!
//! The gradient w.r.t. x is a scatter-add into zeros of x's shape,
//! `gx[o, idx[..j..], i] += g[o, j, i]`: rows picked several times collect several terms. The
//! kernel sums each element's terms in increasing j without atomics, so the gradient is the same
//! bits on every run (`shaders/index.wgsl`). Indices are u32 and not differentiable. An index >= D
//! is not checked (that would need a device sync): it reads as 0 and its gradient is dropped.
//!
//! ```
//! use kiln::Tensor;
//! let w = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2])?.requires_grad();
//! let ids = Tensor::from_slice(&[2u32, 0, 2], &[3])?;
//! let e = w.embedding(&ids)?;                       // rows 2, 0, 2
//! assert_eq!(e.to_vec::<f32>()?, [5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
//! e.sum()?.backward()?;
//! assert_eq!(w.grad().unwrap().to_vec::<f32>()?, [1.0, 1.0, 0.0, 0.0, 2.0, 2.0]);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_kernels::launch::elementwise::collapse;
use kiln_kernels::launch::index::{self as ik, IndexMode, IndexShape, ScatterStrategy, View3};

use crate::error::{Result, shape_err};
use crate::tensor::{DType, Tensor};

/// `x` viewed as (O, M, I) around dim `d`: the tensor that owns the data (x itself, or a
/// contiguous copy when the outer or inner dims do not collapse to one stride each), its offset
/// and its three strides.
fn view3(x: &Tensor, d: usize) -> Result<(Tensor, usize, [usize; 3])> {
    let group = |ks: std::ops::Range<usize>| -> Option<usize> {
        let (s, st) = collapse(&x.shape()[ks.clone()], &[&x.strides()[ks]]);
        match s.len() {
            0 => Some(0),
            1 => Some(st[0][0]),
            _ => None,
        }
    };
    let r = x.rank();
    if let (Some(so), Some(si)) = (group(0..d), group(d + 1..r)) {
        return Ok((x.clone(), x.offset(), [so, x.strides()[d], si]));
    }
    let c = x.copy_contiguous()?;
    let inner: usize = x.shape()[d + 1..].iter().product();
    let offset = c.offset();
    Ok((c, offset, [x.shape()[d] * inner, inner, 1]))
}

/// The (O, D, I, J) sizes for indexing dim `d` of `x_shape` into an output with `j` there.
fn index_shape(x_shape: &[usize], d: usize, j: usize) -> IndexShape {
    IndexShape {
        outer: x_shape[..d].iter().product(),
        d: x_shape[d],
        inner: x_shape[d + 1..].iter().product(),
        j,
    }
}

/// Error unless `idx` is a u32 tensor on `x`'s device; returns it contiguous.
fn dense_indices(op: &'static str, x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    idx.expect_dtype(op, DType::U32, "u32 indices")?;
    x.same_device(op, idx)?;
    if idx.is_contiguous() {
        Ok(idx.clone())
    } else {
        idx.copy_contiguous()
    }
}

/// Forward of both ops: out (`out_shape`, x's dtype) from x indexed along `d`.
fn index_raw(
    x: &Tensor,
    d: usize,
    idx: &Tensor,
    mode: IndexMode,
    out_shape: &[usize],
) -> Result<Tensor> {
    let out = Tensor::empty_on(x.gpu(), out_shape, x.dtype())?;
    let (src, offset, strides) = view3(x, d)?;
    ik::index_forward(
        x.gpu(),
        mode,
        index_shape(x.shape(), d, out_shape[d]),
        View3 {
            buf: src.buffer(),
            offset,
            strides,
        },
        idx.operand(),
        out.operand(),
    )?;
    Ok(out)
}

/// Backward of both ops: zeros of `x_shape` with `g` scatter-added along `d`.
fn scatter_raw(
    g: &Tensor,
    d: usize,
    idx: &Tensor,
    mode: IndexMode,
    x_shape: &[usize],
) -> Result<Tensor> {
    let gx = Tensor::zeros_on(g.gpu(), x_shape)?;
    let (src, offset, strides) = view3(g, d)?;
    ik::scatter_add(
        g.gpu(),
        mode,
        ScatterStrategy::Column,
        index_shape(x_shape, d, g.shape()[d]),
        View3 {
            buf: src.buffer(),
            offset,
            strides,
        },
        idx.operand(),
        gx.operand(),
    )?;
    Ok(gx)
}

/// `x` indexed along dim `d` by `idx` (`mode`) into `out_shape`; for f32 x the backward
/// scatter-adds the gradient back into x's shape (index_select and gather share it).
fn indexed(
    op: &'static str,
    x: &Tensor,
    d: usize,
    idx: Tensor,
    mode: IndexMode,
    out_shape: &[usize],
) -> Result<Tensor> {
    let out = index_raw(x, d, &idx, mode, out_shape)?;
    if x.dtype() != DType::F32 {
        return Ok(out);
    }
    let x_shape = x.shape().to_vec();
    Ok(out.record(op, &[x], move |g| {
        Ok(vec![Some(scatter_raw(g, d, &idx, mode, &x_shape)?)])
    }))
}

impl Tensor {
    /// Pick entries `idx` (1-D, u32) along `dim`: `out` has x's shape with `dim` resized to
    /// `idx.len()`, and `out[.., j, ..] = x[.., idx[j], ..]`. Works for f32, i32 and u32;
    /// differentiable w.r.t. `self` (f32). Indices out of range give 0 (not checked).
    pub fn index_select(&self, dim: isize, idx: &Tensor) -> Result<Tensor> {
        const OP: &str = "index_select";
        let d = self.norm_dim(OP, dim)?;
        self.expect_32bit(OP)?;
        let idx = dense_indices(OP, self, idx)?;
        idx.expect_rank(OP, "indices", 1, "1-D (J)")?;
        let mut out_shape = self.shape().to_vec();
        out_shape[d] = idx.numel();
        indexed(OP, self, d, idx, IndexMode::Select, &out_shape)
    }

    /// `torch.gather`: `out[.., j, ..] = x[.., idx[.., j, ..], ..]` along `dim`, where `idx` (u32)
    /// has x's rank and x's size in every dim except `dim`; `out` has `idx`'s shape. Works for
    /// f32, i32 and u32; differentiable w.r.t. `self` (f32). Indices out of range give 0.
    pub fn gather(&self, dim: isize, idx: &Tensor) -> Result<Tensor> {
        const OP: &str = "gather";
        let d = self.norm_dim(OP, dim)?;
        self.expect_32bit(OP)?;
        let idx = dense_indices(OP, self, idx)?;
        if !super::same_but(idx.shape(), self.shape(), d) {
            return shape_err(
                OP,
                format!(
                    "index shape {:?} must have the rank of input shape {:?} and match it in \
                     every dim except dim {dim}",
                    idx.shape(),
                    self.shape()
                ),
            );
        }
        let out_shape = idx.shape().to_vec();
        indexed(OP, self, d, idx, IndexMode::Gather, &out_shape)
    }

    /// Embedding lookup with `self` as the table: weight (V, C), `ids` (u32, any shape) ->
    /// (ids.shape..., C), row `ids[..]` of the table at each position. Differentiable w.r.t.
    /// the weight (a deterministic scatter-add of the rows' gradients). Also callable as
    /// `Tensor::embedding(&weight, &ids)`. Ids >= V give zero rows (not checked).
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        const OP: &str = "embedding";
        self.expect_f32(OP)?;
        self.expect_rank(OP, "weight", 2, "(V, C)")?;
        ids.expect_dtype(OP, DType::U32, "u32 ids")?;
        let flat = ids.reshape(&[ids.numel()])?;
        let rows = self.index_select(0, &flat)?;
        let mut shape = ids.shape().to_vec();
        shape.push(self.shape()[1]);
        rows.reshape(&shape)
    }
}
