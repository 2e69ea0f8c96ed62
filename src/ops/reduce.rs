//! Reductions over any set of axes: sum, mean, max, min (values) and argmax / argmin (indices).
//!
//! Forward: permute the kept axes to the front and the reduced ones to the back; if each group
//! is expressible as one stride the kernel reads the view directly, else it is copied contiguous
//! first; then `reduce.wgsl` reduces each row.
//!
//! Gradients:
//! - sum:  dx = expand(g)                         (g reshaped with the reduced dims kept as 1)
//! - mean: dx = expand(g) / n                     (n = number of reduced elements)
//! - max/min: dx = expand(g) * [x == m] / count   (ties share the gradient evenly; m the result)

use kiln_kernels::launch::elementwise::collapse;
use kiln_kernels::launch::reduce::{self as rk, ReduceOp, ReduceStrategy, Rows};

use crate::error::{Result, shape_err};
use crate::tensor::{DType, Tensor};

/// Which reduction.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    ArgMax,
    ArgMin,
}

/// Normalised, sorted, de-duplicated dims; empty `dims` means all.
fn norm_dims(t: &Tensor, op: &'static str, dims: &[isize]) -> Result<Vec<usize>> {
    if dims.is_empty() {
        return Ok((0..t.rank()).collect());
    }
    let mut v = Vec::with_capacity(dims.len());
    for &d in dims {
        let k = t.norm_dim(op, d)?;
        if v.contains(&k) {
            return crate::error::arg_err(op, format!("dim {d} given twice in {dims:?}"));
        }
        v.push(k);
    }
    v.sort_unstable();
    Ok(v)
}

/// The output shape with reduced dims kept as 1.
fn keep_shape(shape: &[usize], dims: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .map(|(k, &s)| if dims.contains(&k) { 1 } else { s })
        .collect()
}

/// Run the kernel: returns the output with reduced dims kept as size 1.
fn reduce_raw(x: &Tensor, op: &'static str, dims: &[usize], kind: Kind) -> Result<Tensor> {
    let shape = x.shape();
    if dims.iter().any(|&d| shape[d] == 0) {
        return shape_err(
            op,
            format!("cannot reduce over an empty dim of shape {shape:?}"),
        );
    }
    let kept: Vec<usize> = (0..x.rank()).filter(|k| !dims.contains(k)).collect();
    let rows: usize = kept.iter().map(|&k| shape[k]).product();
    let len: usize = dims.iter().map(|&k| shape[k]).product();
    let part = |ks: &[usize]| -> (Vec<usize>, Vec<usize>) {
        let s: Vec<usize> = ks.iter().map(|&k| shape[k]).collect();
        let st: Vec<usize> = ks.iter().map(|&k| x.strides()[k]).collect();
        let (cs, cst) = collapse(&s, &[&st]);
        (cs, cst.into_iter().next().unwrap_or_default())
    };
    let ((ks, kst), (rs, rst)) = (part(&kept), part(dims));
    // Use the view directly when each group is one stride; otherwise copy contiguous.
    let (src, offset, row_stride, col_stride) = if ks.len() <= 1 && rs.len() <= 1 {
        (
            x.clone(),
            x.offset(),
            kst.first().copied().unwrap_or(0),
            rst.first().copied().unwrap_or(0),
        )
    } else {
        let mut perm = kept.clone();
        perm.extend_from_slice(dims);
        let c = {
            let _g = crate::no_grad();
            x.permute(&perm)?.copy_contiguous()?
        };
        let off = c.offset();
        (c, off, len, 1)
    };
    let gpu = x.gpu().clone();
    let out_shape = keep_shape(shape, dims);
    let view = Rows {
        buf: src.buffer(),
        offset,
        rows,
        len,
        row_stride,
        col_stride,
    };
    match kind {
        Kind::ArgMax | Kind::ArgMin => {
            let out = Tensor::empty_on(&gpu, &out_shape, DType::U32)?;
            rk::arg_rows(
                &gpu,
                kind == Kind::ArgMax,
                ReduceStrategy::Auto,
                view,
                out.buffer(),
                0,
            )?;
            Ok(out)
        }
        _ => {
            let out = Tensor::empty_on(&gpu, &out_shape, DType::F32)?;
            let (rop, scale) = match kind {
                Kind::Sum => (ReduceOp::Sum, 1.0),
                Kind::Mean => (ReduceOp::Sum, 1.0 / len as f32),
                Kind::Max => (ReduceOp::Max, 1.0),
                _ => (ReduceOp::Min, 1.0),
            };
            rk::reduce_rows(
                &gpu,
                rop,
                ReduceStrategy::Auto,
                view,
                out.buffer(),
                0,
                scale,
            )?;
            Ok(out)
        }
    }
}

/// The reductions with an all-elements form and an over-`dims` form: `x.sum()` (rank 0) and
/// `x.sum_dims(dims, keepdim)` (negative dims allowed; empty = all), likewise mean, max, min.
macro_rules! reductions {
    ($($all:ident $dims:ident $kind:ident $what:literal),* $(,)?) => {
        impl Tensor {
            $(
                #[doc = concat!($what, " of all elements (a rank-0 tensor).")]
                pub fn $all(&self) -> Result<Tensor> {
                    self.reduce_op(stringify!($all), &[], false, Kind::$kind)
                }

                #[doc = concat!($what, " over `dims` (negative allowed; empty = all).")]
                pub fn $dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
                    self.reduce_op(stringify!($all), dims, keepdim, Kind::$kind)
                }
            )*
        }
    };
}

reductions! {
    sum sum_dims Sum "Sum",
    mean mean_dims Mean "Mean",
    max max_dims Max "Maximum",
    min min_dims Min "Minimum",
}

impl Tensor {
    fn reduce_op(
        &self,
        op: &'static str,
        dims: &[isize],
        keepdim: bool,
        kind: Kind,
    ) -> Result<Tensor> {
        self.expect_f32(op)?;
        let d = norm_dims(self, op, dims)?;
        let kshape = keep_shape(self.shape(), &d);
        let final_shape: Vec<usize> = if keepdim {
            kshape.clone()
        } else {
            (0..self.rank())
                .filter(|k| !d.contains(k))
                .map(|k| self.shape()[k])
                .collect()
        };
        let raw = reduce_raw(self, op, &d, kind)?;
        let out = raw.with_view(
            final_shape.clone(),
            kiln_kernels::launch::elementwise::contiguous_strides(&final_shape),
            0,
        );
        if matches!(kind, Kind::ArgMax | Kind::ArgMin) {
            return Ok(out);
        }
        let x = self.clone();
        let m = raw.detach();
        let n: usize = d.iter().map(|&k| self.shape()[k]).product();
        Ok(out.record(op, &[self], move |g| {
            let gk = g.reshape(&kshape)?.expand(x.shape())?;
            let gx = match kind {
                Kind::Sum => gk,
                Kind::Mean => gk.mul_scalar(1.0 / n as f32)?,
                _ => {
                    let mask = x.eq(&m)?;
                    let dims: Vec<isize> = d.iter().map(|&k| k as isize).collect();
                    let count = mask.sum_dims(&dims, true)?;
                    gk.mul(&mask)?.div(&count)?
                }
            };
            Ok(vec![Some(gx)])
        }))
    }

    /// Index (u32) of the first maximum along `dim`.
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce_op("argmax", &[dim], keepdim, Kind::ArgMax)
    }

    /// Index (u32) of the first minimum along `dim`.
    pub fn argmin(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce_op("argmin", &[dim], keepdim, Kind::ArgMin)
    }

    /// Index (u32) of the first maximum of the flattened tensor.
    pub fn argmax_all(&self) -> Result<Tensor> {
        self.flatten_all()?.argmax(0, false)
    }

    /// Sum a (broadcast) gradient back to `shape`: over leading extra dims and over dims where
    /// `shape` has size 1. The inverse of broadcasting `shape` up to `self.shape()`.
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let r = self.rank();
        if shape.len() > r {
            return shape_err(
                "sum_to",
                format!(
                    "cannot sum shape {:?} to larger rank {shape:?}",
                    self.shape()
                ),
            );
        }
        let pad = r - shape.len();
        let mut dims = Vec::new();
        for k in 0..r {
            if k < pad || (shape[k - pad] == 1 && self.shape()[k] != 1) {
                dims.push(k as isize);
            } else if shape[k - pad] != self.shape()[k] {
                return shape_err(
                    "sum_to",
                    format!("shape {:?} is not a broadcast of {shape:?}", self.shape()),
                );
            }
        }
        if dims.is_empty() {
            return self.reshape(shape);
        }
        self.sum_dims(&dims, true)?.reshape(shape)
    }
}
