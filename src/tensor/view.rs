//! Views: new shape/strides/offset over the same storage, no copy.
//!
//! Gradients of views are views or cheap reductions of the upstream gradient:
//! reshape <-> reshape back; permute <-> inverse permute; narrow <-> zero-pad;
//! expand <-> sum over the expanded dims.

use super::{Tensor, norm_dim};
use crate::error::{Result, arg_err, shape_err};

impl Tensor {
    /// Same elements, new shape. Copies only if the view is not contiguous (like PyTorch).
    /// One entry may be `usize::MAX` to infer it (PyTorch's `-1`); see [`Tensor::reshape_infer`].
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let shape = infer_shape("reshape", self.shape(), shape)?;
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let src = if self.is_contiguous() {
            self.clone()
        } else {
            self.contiguous()?
        };
        let strides = kiln_kernels::launch::elementwise::contiguous_strides(&shape);
        let from = self.shape().to_vec();
        Ok(src
            .with_view(shape, strides, src.offset())
            .record("reshape", &[self], move |g| {
                Ok(vec![Some(g.reshape(&from)?)])
            }))
    }

    /// [`Tensor::reshape`] with `-1` allowed in one place.
    pub fn reshape_infer(&self, shape: &[isize]) -> Result<Tensor> {
        let s: Vec<usize> = shape
            .iter()
            .map(|&d| if d < 0 { usize::MAX } else { d as usize })
            .collect();
        self.reshape(&s)
    }

    /// Merge all dims into one.
    pub fn flatten_all(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])
    }

    /// Merge dims `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape(&[1]);
        }
        let s = self.norm_dim("flatten", start)?;
        let e = self.norm_dim("flatten", end)?;
        if s > e {
            return arg_err(
                "flatten",
                format!("start dim {start} is after end dim {end}"),
            );
        }
        let mut shape: Vec<usize> = self.shape()[..s].to_vec();
        shape.push(self.shape()[s..=e].iter().product());
        shape.extend_from_slice(&self.shape()[e + 1..]);
        self.reshape(&shape)
    }

    /// Reorder dims: output dim `k` is input dim `perm[k]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if perm.len() != r
            || perm
                .iter()
                .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
        {
            return arg_err(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the {r} dims of shape {:?}",
                    self.shape()
                ),
            );
        }
        let shape = perm.iter().map(|&p| self.shape()[p]).collect();
        let strides = perm.iter().map(|&p| self.strides()[p]).collect();
        let mut inv = vec![0; r];
        for (k, &p) in perm.iter().enumerate() {
            inv[p] = k;
        }
        Ok(self
            .with_view(shape, strides, self.offset())
            .record("permute", &[self], move |g| {
                Ok(vec![Some(g.permute(&inv)?)])
            }))
    }

    /// Swap two dims.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = self.norm_dim("transpose", d0)?;
        let b = self.norm_dim("transpose", d1)?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of the last two dims.
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return arg_err(
                "t",
                format!("needs rank >= 2, got shape {:?}", self.shape()),
            );
        }
        self.transpose(-2, -1)
    }

    /// Elements `start..start + len` along `dim`.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = self.norm_dim("narrow", dim)?;
        let size = self.shape()[d];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return arg_err(
                "narrow",
                format!(
                    "range {start}..{} is outside dim {dim} of size {size} (shape {:?})",
                    start.saturating_add(len),
                    self.shape()
                ),
            );
        }
        let mut shape = self.shape().to_vec();
        shape[d] = len;
        let offset = self.offset() + start * self.strides()[d];
        let full = self.shape().to_vec();
        Ok(self
            .with_view(shape, self.strides().to_vec(), offset)
            .record("narrow", &[self], move |g| {
                let out = Tensor::zeros_on(g.gpu(), &full)?;
                out.narrow(d as isize, start, len)?.assign_from(g)?;
                Ok(vec![Some(out)])
            }))
    }

    /// Broadcast to `shape` without copying (size-1 dims get stride 0; new dims go in front).
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let r = self.rank();
        if shape.len() < r {
            return shape_err(
                "expand",
                format!(
                    "cannot expand shape {:?} to fewer dims {shape:?}",
                    self.shape()
                ),
            );
        }
        let pad = shape.len() - r;
        let mut strides = vec![0; shape.len()];
        for k in 0..r {
            let (from, to) = (self.shape()[k], shape[pad + k]);
            if from == to {
                strides[pad + k] = self.strides()[k];
            } else if from != 1 {
                return shape_err(
                    "expand",
                    format!(
                        "cannot expand shape {:?} to {shape:?}: dim {k} is {from}, not 1",
                        self.shape()
                    ),
                );
            }
        }
        let from = self.shape().to_vec();
        Ok(self
            .with_view(shape.to_vec(), strides, self.offset())
            .record("expand", &[self], move |g| Ok(vec![Some(g.sum_to(&from)?)])))
    }

    /// Insert a size-1 dim at `dim` (which may equal the rank, or be negative).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = norm_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut shape = self.shape().to_vec();
        shape.insert(d, 1);
        self.reshape(&shape)
    }

    /// Remove dim `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = self.norm_dim("squeeze", dim)?;
        if self.shape()[d] != 1 {
            return shape_err(
                "squeeze",
                format!(
                    "dim {dim} has size {}, not 1 (shape {:?})",
                    self.shape()[d],
                    self.shape()
                ),
            );
        }
        let mut shape = self.shape().to_vec();
        shape.remove(d);
        self.reshape(&shape)
    }

    /// The same elements, contiguous from element 0 of their own buffer (what a launcher
    /// taking a bare buffer reads) and without autograd history: `self` detached when it
    /// already is, else a copy. The op that calls it records its own node.
    pub(crate) fn dense(&self) -> Result<Tensor> {
        if self.is_contiguous() && self.offset() == 0 {
            return Ok(self.detach());
        }
        let _g = crate::no_grad();
        self.copy_contiguous()
    }

    /// A contiguous tensor with the same elements (no copy if already contiguous).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        Ok(self
            .copy_contiguous()?
            .record("contiguous", &[self], |g| Ok(vec![Some(g.clone())])))
    }
}

/// Resolve one `usize::MAX` entry in `shape` so the element count matches `from`.
fn infer_shape(op: &'static str, from: &[usize], shape: &[usize]) -> Result<Vec<usize>> {
    let n: usize = from.iter().product();
    let unknown: Vec<usize> = (0..shape.len())
        .filter(|&k| shape[k] == usize::MAX)
        .collect();
    let known: usize = shape.iter().filter(|&&d| d != usize::MAX).product();
    let mut out = shape.to_vec();
    match unknown.len() {
        0 if known == n => Ok(out),
        1 if known != 0 && n.is_multiple_of(known) => {
            out[unknown[0]] = n / known;
            Ok(out)
        }
        _ => shape_err(
            op,
            format!(
                "cannot view shape {from:?} ({n} elements) as {}",
                show(shape)
            ),
        ),
    }
}

fn show(shape: &[usize]) -> String {
    let v: Vec<String> = shape
        .iter()
        .map(|&d| {
            if d == usize::MAX {
                "-1".into()
            } else {
                d.to_string()
            }
        })
        .collect();
    format!("[{}]", v.join(", "))
}
